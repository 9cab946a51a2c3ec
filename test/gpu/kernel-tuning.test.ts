// The tuning run and the kernel variants of a run: `tune` times tilings and caches the fastest
// for this adapter; `train` takes the cached tiles (it never tunes) and records them in every
// checkpoint; `--resume` uses the recorded tiles even after the cache changed, bit-identical to
// the uninterrupted run; a recorded tile this adapter cannot run is refused with the reason; a
// damaged cache is reported and ignored, and stays on disk.
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.ts';
import { tuningFilePath } from '../../src/cli/tuning-file.ts';
import { parseTile } from '../../src/engine/gpu/variants.ts';
import { emptyTuningCache, parseTuningCache, withTiles } from '../../src/io/tuning-cache.ts';
import { gpuContext } from '../helpers/gpu.ts';

const GOLD = new URL('../goldens/gpt2-tiny/', import.meta.url).pathname;
const MODEL = join(GOLD, 'model');
const DATA = join(GOLD, 'train.bin');
const BASE = ['--model', MODEL, '--data', DATA, '--steps', '4', '--batch', '2', '--seq', '16', '--lr', '3e-3', '--save-every', '2', '--order', 'shuffled', '--dropout', '0.1'];

async function cli(args: string[]): Promise<{ code: number; printed: string; errors: string }> {
  const printed: string[] = [];
  const errors: string[] = [];
  const spy = vi.spyOn(console, 'error').mockImplementation((...m: unknown[]) => void errors.push(m.join(' ')));
  try {
    const code = await main(args, (l) => printed.push(l));
    return { code, printed: printed.join('\n'), errors: errors.join('\n') };
  } finally {
    spy.mockRestore();
  }
}

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

  it('a damaged cache is reported, ignored (default tiles recorded) and left on disk', async () => {
    writeFileSync(tuningFilePath(), '{"format": "webgpu-studio-kernel-tuning", "adapt');
    const r = await cli(['train', ...BASE, '--steps', '2', '--out', join(dir, 'd')]);
    expect(r.code, r.errors).toBe(0);
    expect(r.errors).toMatch(/kernel tuning cache .* is damaged .*default matmul tiles/);
    expect(state(join(dir, 'd', 'checkpoint-2')).kernels.matmul.nn).toBe('64x64x32-8x8');
    expect(readFileSync(tuningFilePath(), 'utf8')).toBe('{"format": "webgpu-studio-kernel-tuning", "adapt');
  });
});
