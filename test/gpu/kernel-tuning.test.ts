// The tuning run and the kernel variants of a run: `tune` times tilings and caches the fastest
// for this adapter; `train` takes the cached tiles (it never tunes) and records them in every
// checkpoint; `--resume` uses the recorded tiles even after the cache changed, bit-identical to
// the uninterrupted run; a recorded tile this adapter cannot run is refused with the reason; a
// damaged cache is reported and ignored, and stays on disk; generate and eval take the cached tiles
// as train does. `--subgroups` trains with subgroup reductions (other last bits than without),
// records them, and a resume keeps them bit for bit.
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tuningFilePath } from '../../src/cli/tuning-file.ts';
import { parseTile } from '../../src/engine/gpu/variants.ts';
import { emptyTuningCache, parseTuningCache, withTiles } from '../../src/io/tuning-cache.ts';
import { runCli } from '../helpers/cli.ts';
import { gpuContext } from '../helpers/gpu.ts';
import { writeTinyModelDir } from '../helpers/tiny-model.ts';

const GOLD = new URL('../goldens/gpt2-tiny/', import.meta.url).pathname;
const MODEL = join(GOLD, 'model');
const DATA = join(GOLD, 'train.bin');
const BASE = ['--model', MODEL, '--data', DATA, '--steps', '4', '--batch', '2', '--seq', '16', '--lr', '3e-3', '--save-every', '2', '--order', 'shuffled', '--dropout', '0.1'];

const cli = runCli;

const saved = process.env.STUDIO_CACHE;
let dir = '';
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kernel-tuning-'));
  process.env.STUDIO_CACHE = join(dir, 'cache');
});
afterAll(() => {
  if (saved === undefined) delete process.env.STUDIO_CACHE;
  else process.env.STUDIO_CACHE = saved;
});

const state = (p: string) => JSON.parse(readFileSync(join(p, 'trainer_state.json'), 'utf8'));

describe('kernel tuning', () => {
  it('tune times the given tilings at the model shapes and caches the fastest per class for this adapter', async () => {
    const r = await cli(['tune', '--model', MODEL, '--batch', '2', '--seq', '16', '--reps', '1', '--tiles', '64x64x32-8x8,16x16x8-4x4-v4,8x64x8-32x1-reg']);
    expect(r.code, r.errors).toBe(0);
    expect(r.printed).toMatch(/fastest per shape class:/);
    const cache = parseTuningCache(readFileSync(tuningFilePath(), 'utf8'));
    const entries = Object.values(cache.adapters);
    expect(entries).toHaveLength(1);
    const ctx = await gpuContext();
    expect(entries[0].adapter.description).toBe(ctx.adapter.description);
    // Every class of the model's shapes got one of the three tilings, each of which was timed there.
    for (const cls of ['nn', 'nt', 'tn']) expect(entries[0].matmul[cls as 'nn'], cls).toMatch(/^(64x64x32-8x8|16x16x8-4x4-v4|8x64x8-32x1-reg)$/);
    for (const t of ['64x64x32-8x8', '16x16x8-4x4-v4', '8x64x8-32x1-reg']) expect(r.printed).toMatch(new RegExp(`^tn +${t} +[0-9.]+ ms$`, 'm'));
  });

  it('train uses the cached tiles and records them; resume keeps them after the cache changed, bit for bit', async () => {
    const ctx = await gpuContext();
    // A register tile (shaders/matmul_reg.wgsl) for the weight gradients: accumulated across micro-batches.
    const tuned = { nn: parseTile('32x64x16-8x8-v4'), tn: parseTile('8x64x8-32x1-reg'), nt: parseTile('16x16x8-4x4-v4') };
    writeFileSync(tuningFilePath(), JSON.stringify(withTiles(emptyTuningCache(), ctx.adapter, tuned, 'test')));
    const whole = await cli(['train', ...BASE, '--out', join(dir, 'a')]);
    expect(whole.code, whole.errors).toBe(0);
    expect(whole.printed).toMatch(/matmul tiles: tuned for this adapter/);
    const k2 = state(join(dir, 'a', 'checkpoint-2')).kernels;
    expect(k2).toMatchObject({ precision: 'f32', subgroups: false, matmul: { nn: '32x64x16-8x8-v4', tn: '8x64x8-32x1-reg', nt: '16x16x8-4x4-v4', 'nn-deep': '64x64x32-8x8' } });

    // The cache now says otherwise; the resumed run must use what checkpoint-2 recorded.
    writeFileSync(tuningFilePath(), JSON.stringify(withTiles(emptyTuningCache(), ctx.adapter, { nn: parseTile('16x16x8-4x4'), tn: parseTile('32x64x16-8x8') }, 'test')));
    cpSync(join(dir, 'a', 'checkpoint-2'), join(dir, 'b', 'checkpoint-2'), { recursive: true });
    const resumed = await cli(['train', '--resume', join(dir, 'b')]);
    expect(resumed.code, resumed.errors).toBe(0);
    expect(resumed.printed).toMatch(/kernel variants: as checkpoint-2 recorded/);
    expect(state(join(dir, 'b', 'checkpoint-4')).kernels).toEqual(state(join(dir, 'a', 'checkpoint-4')).kernels);
    for (const f of ['model.safetensors', 'optimizer.safetensors']) {
      expect(readFileSync(join(dir, 'b', 'checkpoint-4', f)).equals(readFileSync(join(dir, 'a', 'checkpoint-4', f))), f).toBe(true);
    }
    expect(state(join(dir, 'b', 'checkpoint-4')).log_history).toEqual(state(join(dir, 'a', 'checkpoint-4')).log_history);
  });

  it('refuses to resume with a recorded tile this adapter cannot run, naming it', async () => {
    cpSync(join(dir, 'a', 'checkpoint-2'), join(dir, 'c', 'checkpoint-2'), { recursive: true });
    const p = join(dir, 'c', 'checkpoint-2', 'trainer_state.json');
    const st = JSON.parse(readFileSync(p, 'utf8'));
    st.kernels.matmul.nn = '256x256x64-16x16';
    writeFileSync(p, JSON.stringify(st));
    const r = await cli(['train', '--resume', join(dir, 'c')]);
    expect(r.code).not.toBe(0);
    expect(r.errors).toMatch(/matmul tile 256x256x64-16x16 for nn.*cannot run.*workgroup memory/);
  });

  it('generate and eval take the cached tiles too, and print what the default tiles print', async () => {
    const ctx = await gpuContext();
    const model = writeTinyModelDir(join(dir, 'gen-model'));
    mkdirSync(dirname(tuningFilePath()), { recursive: true });
    const gen = ['generate', '--model', model, '--prompt', 'Once upon a time', '--temperature', '0', '--max-new-tokens', '10', '--ignore-eos'];
    const ev = ['eval', '--model', MODEL, '--data', DATA, '--seq', '16', '--batch', '2', '--bleu-prompts', '0'];
    // The text only: generate's last line holds seconds and tokens/s.
    const numbers = (printed: string) => printed.split('\n').filter((l) => !l.startsWith('-- ')).join('\n');
    writeFileSync(tuningFilePath(), JSON.stringify(withTiles(emptyTuningCache(), ctx.adapter, {
      nn: parseTile('16x16x8-4x4-v4'), nt: parseTile('32x64x16-8x8-v4'), 'nt-deep': parseTile('16x16x8-4x4'), tn: parseTile('16x16x8-4x4'),
    }, 'test')));
    const tunedGen = await cli(gen);
    const tunedEval = await cli(ev);
    writeFileSync(tuningFilePath(), JSON.stringify(emptyTuningCache()));
    const plainGen = await cli(gen);
    const plainEval = await cli(ev);
    for (const r of [tunedGen, tunedEval, plainGen, plainEval]) expect(r.code, r.errors).toBe(0);
    expect(tunedGen.errors).toMatch(/matmul tiles: tuned for this adapter/);
    expect(tunedEval.errors).toMatch(/matmul tiles: tuned for this adapter/);
    expect(plainGen.errors).not.toMatch(/matmul tiles/);
    expect(plainEval.errors).not.toMatch(/matmul tiles/);
    expect(tunedGen.printed).toMatch(/^Once upon a time./);
    expect(numbers(tunedGen.printed)).toBe(numbers(plainGen.printed));
    // eval prints one JSON report; all but its seconds must agree.
    const report = (printed: string) => {
      const { seconds, ...rest } = JSON.parse(printed) as { seconds: unknown; loss: number };
      expect(seconds).toBeDefined();
      return rest;
    };
    expect(report(tunedEval.printed).loss).toBeGreaterThan(0);
    expect(report(tunedEval.printed)).toEqual(report(plainEval.printed));
  });

  it('a damaged cache is reported, ignored (default tiles recorded) and left on disk', async () => {
    writeFileSync(tuningFilePath(), '{"format": "webgpu-studio-kernel-tuning", "adapt');
    const r = await cli(['train', ...BASE, '--steps', '2', '--out', join(dir, 'd')]);
    expect(r.code, r.errors).toBe(0);
    expect(r.errors).toMatch(/kernel tuning cache .* is damaged .*default matmul tiles/);
    expect(state(join(dir, 'd', 'checkpoint-2')).kernels.matmul.nn).toBe('64x64x32-8x8');
    expect(readFileSync(tuningFilePath(), 'utf8')).toBe('{"format": "webgpu-studio-kernel-tuning", "adapt');
  });

  it('--subgroups trains with subgroup reductions and records them; a resume keeps them, bit for bit', async () => {
    const ctx = await gpuContext();
    expect(ctx.device.features.has('subgroups')).toBe(true);
    rmSync(tuningFilePath()); // default tiles for both runs
    const off = await cli(['train', ...BASE, '--out', join(dir, 'f')]);
    expect(off.code, off.errors).toBe(0);
    const on = await cli(['train', ...BASE, '--subgroups', '--out', join(dir, 'e')]);
    expect(on.code, on.errors).toBe(0);
    expect(on.printed).toMatch(/subgroup reductions: on/);
    expect(state(join(dir, 'e', 'checkpoint-2')).kernels).toMatchObject({ precision: 'f32', subgroups: true, matmul: { nn: '64x64x32-8x8' } });
    expect(state(join(dir, 'f', 'checkpoint-2')).kernels.subgroups).toBe(false);
    // Other summation orders: the weights differ in their last bits, the losses agree closely.
    const weights = (p: string) => readFileSync(join(dir, p, 'checkpoint-4', 'model.safetensors'));
    expect(weights('e').equals(weights('f'))).toBe(false);
    const losses = (p: string) => state(join(dir, p, 'checkpoint-4')).log_history.filter((h: { loss?: number }) => h.loss !== undefined).map((h: { loss: number }) => h.loss);
    expect(losses('e')).toHaveLength(4);
    losses('e').forEach((l: number, i: number) => expect(Math.abs(l - losses('f')[i]), `step ${i + 1}`).toBeLessThan(1e-4 * Math.abs(losses('f')[i])));

    // The resume runs with subgroups because checkpoint-2 says so (no flag given): equal to the uninterrupted run.
    cpSync(join(dir, 'e', 'checkpoint-2'), join(dir, 'g', 'checkpoint-2'), { recursive: true });
    const resumed = await cli(['train', '--resume', join(dir, 'g')]);
    expect(resumed.code, resumed.errors).toBe(0);
    expect(resumed.printed).toMatch(/kernel variants: as checkpoint-2 recorded/);
    expect(state(join(dir, 'g', 'checkpoint-4')).kernels.subgroups).toBe(true);
    for (const f of ['model.safetensors', 'optimizer.safetensors']) {
      expect(readFileSync(join(dir, 'g', 'checkpoint-4', f)).equals(readFileSync(join(dir, 'e', 'checkpoint-4', f))), f).toBe(true);
    }
    expect(state(join(dir, 'g', 'checkpoint-4')).log_history).toEqual(state(join(dir, 'e', 'checkpoint-4')).log_history);

    // --subgroups cannot switch a run trained without them.
    cpSync(join(dir, 'f', 'checkpoint-2'), join(dir, 'h', 'checkpoint-2'), { recursive: true });
    const refused = await cli(['train', '--resume', join(dir, 'h'), '--subgroups']);
    expect(refused.code).not.toBe(0);
    expect(refused.errors).toMatch(/--subgroups \(the checkpoint has kernels\.subgroups off\)/);
  });
});
