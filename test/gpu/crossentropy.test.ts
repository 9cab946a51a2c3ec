// shaders/crossentropy.wgsl against the float64 reference ops: per-row losses and the in-place
// dlogits = (softmax − onehot)·scale, at awkward sizes, GPT-2's V = 50257, huge logits (max
// subtraction), ignored targets (0xFFFFFFFF), an out-of-range target (NaN), loss-only mode, and
// more rows than one grid dimension covers. Every case runs twice: with the prelude's
// workgroup-memory trees and with the `subgroups` kernel variant, at the same tolerances.
import { describe, expect, it } from 'vitest';
import { crossEntropy, IGNORE_TARGET } from '../../src/engine/kernels/crossentropy.ts';
import { run } from '../../src/engine/gpu/dispatch.ts';
import type { GpuContext } from '../../src/engine/gpu/context.ts';
import { ShapeError } from '../../src/engine/errors.ts';
import * as ref from '../../src/engine/reference/ops.ts';
import { download, gpuContextWith, poisoned, upload } from '../helpers/gpu.ts';
import { randn, relErr, rng } from '../helpers/numeric.ts';

/** Reference with ignored rows: loss 0 and a zero gradient row. */
function reference(logits: Float32Array, targets: Uint32Array, N: number, V: number, scale: number) {
  const t = Int32Array.from(targets, (v) => (v === IGNORE_TARGET ? 0 : v));
  const f = ref.crossEntropyForward(Float64Array.from(logits), t, N, V);
  const d = ref.crossEntropyBackward(f.probs, t, N, V, scale);
  for (let n = 0; n < N; n++) {
    if (targets[n] !== IGNORE_TARGET) continue;
    f.losses[n] = 0;
    d.fill(0, n * V, (n + 1) * V);
  }
  return { losses: f.losses, dlogits: d };
}

async function runCE(ctx: GpuContext, logits: Float32Array, targets: Uint32Array, N: number, V: number, scale: number, writeGrad = true) {
  const lr = upload(ctx, logits);
  const losses = poisoned(ctx, N);
  await run(ctx, [await crossEntropy(ctx, { label: 'ce', N, V, targets: upload(ctx, targets), logits: lr, losses, scale, writeGrad })]);
  return { losses: await download(ctx, losses), dlogits: await download(ctx, lr) };
}

function randomTargets(N: number, V: number, seed: number, ignoreEvery = 0): Uint32Array {
  const r = rng(seed);
  return Uint32Array.from({ length: N }, (_, n) => (ignoreEvery && n % ignoreEvery === ignoreEvery - 1 ? IGNORE_TARGET : Math.floor(r() * V)));
}

for (const subgroups of [false, true]) describe(`crossentropy kernel, subgroups ${subgroups ? 'on' : 'off'}`, () => {
  const gpuContext = () => gpuContextWith({ subgroups });
  const cases = [
    { N: 2 * 37, V: 311, scale: 1 / (2 * 37), std: 2, offset: 0, ignoreEvery: 0 },
    { N: 2 * 37, V: 311, scale: 1 / (2 * 37 * 3), std: 1, offset: 0, ignoreEvery: 5 },
    { N: 3, V: 50257, scale: 1 / 12, std: 4, offset: 0, ignoreEvery: 0 },
    { N: 5, V: 257, scale: 0.5, std: 3, offset: 1000, ignoreEvery: 0 }, // exp(1000) overflows without max subtraction
    { N: 7, V: 1, scale: 1, std: 1, offset: -50, ignoreEvery: 3 },
  ];
  let seed = 1;
  for (const c of cases) {
    it(`N=${c.N} V=${c.V} logits ~ ${c.offset} + ${c.std}·randn${c.ignoreEvery ? `, every ${c.ignoreEvery}th target ignored` : ''}`, async () => {
      const ctx = await gpuContext();
      seed += 3;
      const logits = Float32Array.from(randn(c.N * c.V, seed, c.std), (v) => v + c.offset);
      const targets = randomTargets(c.N, c.V, seed + 1, c.ignoreEvery);
      const got = await runCE(ctx, logits, targets, c.N, c.V, c.scale);
      const want = reference(logits, targets, c.N, c.V, c.scale);
      expect(got.losses.every(Number.isFinite)).toBe(true);
      expect(relErr(got.losses, want.losses)).toBeLessThan(1e-6);
      if (c.V > 1) expect(relErr(got.dlogits, want.dlogits)).toBeLessThan(1e-5);
      else expect(Array.from(got.dlogits)).toEqual(Array.from(want.dlogits)); // softmax of one logit is 1: all-zero gradient
      for (let n = 0; n < c.N; n++) {
        if (targets[n] !== IGNORE_TARGET) continue;
        expect(got.losses[n]).toBe(0);
        expect(got.dlogits.subarray(n * c.V, (n + 1) * c.V).every((v) => v === 0)).toBe(true);
      }
    });
  }

  it('loss-only mode leaves the logits unchanged', async () => {
    const ctx = await gpuContext();
    const N = 9;
    const V = 311;
    const logits = Float32Array.from(randn(N * V, 50, 2));
    const targets = randomTargets(N, V, 51, 4);
    const got = await runCE(ctx, logits, targets, N, V, 1, false);
    expect(Array.from(got.dlogits)).toEqual(Array.from(logits));
    expect(relErr(got.losses, reference(logits, targets, N, V, 1).losses)).toBeLessThan(1e-6);
  });

  it('a target ≥ V (other than the ignore value) gives a NaN loss and gradient row, and only that row', async () => {
    const ctx = await gpuContext();
    const N = 4;
    const V = 37;
    const logits = Float32Array.from(randn(N * V, 60));
    const targets = Uint32Array.from([3, V, 0, V + 1000]);
    const got = await runCE(ctx, logits, targets, N, V, 0.25);
    expect(Number.isNaN(got.losses[1]) && Number.isNaN(got.losses[3])).toBe(true);
    expect(got.dlogits.subarray(V, 2 * V).every(Number.isNaN)).toBe(true);
    const ok = Uint32Array.from([3, IGNORE_TARGET, 0, IGNORE_TARGET]);
    const want = reference(logits, ok, N, V, 0.25);
    for (const n of [0, 2]) {
      expect(Math.abs(got.losses[n] - want.losses[n])).toBeLessThan(1e-5);
      expect(relErr(got.dlogits.subarray(n * V, (n + 1) * V), want.dlogits.subarray(n * V, (n + 1) * V))).toBeLessThan(1e-5);
    }
  });

  it('more rows than one grid dimension covers (N > 65535, V = 3)', async () => {
    const ctx = await gpuContext();
    const N = ctx.limits.maxComputeWorkgroupsPerDimension + 200;
    const V = 3;
    const logits = Float32Array.from(randn(N * V, 70, 2));
    const targets = randomTargets(N, V, 71, 7);
    const got = await runCE(ctx, logits, targets, N, V, 1 / N);
    const want = reference(logits, targets, N, V, 1 / N);
    expect(relErr(got.losses, want.losses)).toBeLessThan(1e-6);
    expect(relErr(got.dlogits, want.dlogits)).toBeLessThan(1e-5);
  });

  it('refuses short buffers and a non-finite scale', async () => {
    const ctx = await gpuContext();
    const targets = upload(ctx, new Uint32Array(4));
    await expect(crossEntropy(ctx, { label: 'a', N: 4, V: 10, targets, logits: poisoned(ctx, 39), losses: poisoned(ctx, 4), scale: 1 })).rejects.toThrow(ShapeError);
    await expect(crossEntropy(ctx, { label: 'b', N: 4, V: 10, targets, logits: poisoned(ctx, 40), losses: poisoned(ctx, 3), scale: 1 })).rejects.toThrow(ShapeError);
    await expect(crossEntropy(ctx, { label: 'c', N: 4, V: 10, targets, logits: poisoned(ctx, 40), losses: poisoned(ctx, 4), scale: Infinity })).rejects.toThrow(ShapeError);
  });
});
