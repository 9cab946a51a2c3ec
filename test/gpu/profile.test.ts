// The profiler (src/engine/gpu/profile.ts): a profiled training step is the same step (loss,
// gradient norm and updated weights bit-identical to an unprofiled one, by either timing
// method), every dispatch is accounted for once, and the matmul families carry the FLOPs the
// kernel wrapper declares.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.ts';
import { familyOf, profileTable } from '../../src/engine/gpu/profile.ts';
import { matmul } from '../../src/engine/kernels/matmul.ts';
import { GpuWeights } from '../../src/engine/model/weights.ts';
import { WindowSampler } from '../../src/engine/train/data.ts';
import { Trainer } from '../../src/engine/train/trainer.ts';
import { loadGoldens } from '../helpers/goldens.ts';
import { gpuContext, poisoned, upload } from '../helpers/gpu.ts';

const G = loadGoldens();
const GOLD = new URL('../goldens/gpt2-tiny/', import.meta.url).pathname;
const NO_DROPOUT = { embd: 0, attn: 0, resid: 0 };

async function twoSteps(profile?: 'timestamp-query' | 'one-by-one') {
  const ctx = await gpuContext();
  const c = G.cases[0];
  const w = new GpuWeights(ctx, G.config, G.params);
  const trainer = await Trainer.create(ctx, w, {
    batch: c.B, seq: c.T, gradAccum: 1, dropout: NO_DROPOUT, seed: 0,
    beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, gradClip: 1, frozen: new Set(),
  });
  const sampler = new WindowSampler({ tokens: G.tokens, T: c.T, shuffle: false, seed: 0 });
  const lr = () => 1e-3;
  const first = await trainer.step([sampler.nextBatch(c.B)], lr);
  const sub = await trainer.submit([sampler.nextBatch(c.B)], lr, profile ? { profile } : {});
  const second = await sub.metrics;
  const params = await w.download();
  const dispatches = (trainer as unknown as { plan: { dispatches: unknown[] } }).plan.dispatches.length;
  trainer.destroy();
  w.destroy();
  return { ctx, first, second, params, profile: sub.profile, dispatches };
}

describe('profiler', () => {
  it('a profiled step equals an unprofiled one bit for bit, by timestamps and one kernel at a time', async () => {
    const plain = await twoSteps();
    expect(plain.profile).toBeUndefined();
    const methods = ['one-by-one'] as Array<'timestamp-query' | 'one-by-one'>;
    if (plain.ctx.device.features.has('timestamp-query')) methods.push('timestamp-query');
    for (const method of methods) {
      const p = await twoSteps(method);
      expect(p.second.loss).toBe(plain.second.loss);
      expect(p.second.gradNorm).toBe(plain.second.gradNorm);
      for (const [name, v] of plain.params) expect(p.params.get(name), name).toEqual(v);
      const r = p.profile!;
      expect(r.method).toBe(method);
      // every dispatch of the step, once
      expect(r.rows.reduce((a, x) => a + x.dispatches, 0)).toBe(p.dispatches);
      expect(r.rows.every((x) => x.ms >= 0 && Number.isFinite(x.ms))).toBe(true);
      expect(r.totalMs).toBeGreaterThan(0);
      for (let i = 1; i < r.rows.length; i++) expect(r.rows[i - 1].ms).toBeGreaterThanOrEqual(r.rows[i].ms);
      const table = profileTable(r.rows, 3);
      expect(table.split('\n')).toHaveLength(2 + 3 + 1 + 1); // header, top 3, the rest, total
    }
  });

  it('names families by entry point and variant, and counts matmul FLOPs', async () => {
    const ctx = await gpuContext();
    const [M, N, K] = [5, 7, 3];
    const d = await matmul(ctx, { label: 'mm', M, N, K, a: upload(ctx, new Float32Array(K * M)), b: upload(ctx, new Float32Array(K * N)), out: poisoned(ctx, M * N), transA: true });
    expect(familyOf(d)).toBe('matmul.main TRANS_A');
    expect(d.flops).toBe(2 * M * N * K);
    const plain = await matmul(ctx, { label: 'mm', M, N, K, a: upload(ctx, new Float32Array(M * K)), b: upload(ctx, new Float32Array(K * N)), out: poisoned(ctx, M * N) });
    expect(familyOf(plain)).toBe('matmul.main');
  });

  it('train --profile prints the table of one step and logs the same losses as a run without it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-profile-'));
    const run = async (extra: string[], name: string) => {
      const printed: string[] = [];
      const log = join(dir, `${name}.jsonl`);
      const args = ['train', '--model', join(GOLD, 'model'), '--data', join(GOLD, 'train.bin'), '--out', join(dir, name), '--steps', '3', '--batch', '2', '--seq', '16', '--dropout', '0', '--log', log, ...extra];
      expect(await main(args, (l) => printed.push(l))).toBe(0);
      return { printed: printed.join('\n'), log: readFileSync(log, 'utf8') };
    };
    const plain = await run([], 'plain');
    const profiled = await run(['--profile'], 'profiled');
    expect(profiled.log).toBe(plain.log);
    expect(plain.printed).not.toMatch(/kernel family/);
    expect(profiled.printed).toMatch(/profile of step 2 \((timestamp-query|one-by-one)\)/);
    expect(profiled.printed).toMatch(/\| matmul\.main HAS_BIAS \| \d+ \| [\d.]+ \| [\d.]+% \| [\d.]+ \|/);
  });
});
