// shaders/dropout.wgsl against the float64 reference (reference/ops.ts dropoutForward/Backward
// with the counter-based mask of src/engine/random.ts): mask equality element by element, the exact
// p threshold, p = 0 as an exact copy, replay after the trainer rewrites the rng uniform, a
// tensor bigger than one grid dimension covers, and the refusals.
import { describe, expect, it } from 'vitest';
import { dropout, createRngUniform, writeRng, dropoutParams, DropoutConfigError } from '../../src/engine/kernels/dropout.ts';
import { flatGrid } from '../../src/engine/gpu/dispatch.ts';
import { run } from '../../src/engine/gpu/dispatch.ts';
import { ShapeError } from '../../src/engine/errors.ts';
import * as ref from '../../src/engine/reference/ops.ts';
import { DROPOUT_SITE, dropoutStream, dropoutUniform } from '../../src/engine/random.ts';
import { download, gpuContext, poisoned, upload } from '../helpers/gpu.ts';
import { randn, relErr } from '../helpers/numeric.ts';

const SEED = 0x9e3779b9;

function f32(a: Float64Array): Float32Array {
  return Float32Array.from(a);
}

/** Indices where exactly one of got / want is zero (inputs are nonzero randn, so zero means dropped). */
function maskMismatches(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let bad = 0;
  for (let i = 0; i < want.length; i++) if ((got[i] === 0) !== (want[i] === 0)) bad++;
  return bad;
}

describe('dropout kernel', () => {
  const cases = [
    { n: 1, p: 0.5, step: 0, micro: 0, site: 0 },
    { n: 2 * 37 * 48, p: 0.1, step: 3, micro: 1, site: DROPOUT_SITE.mlpResid(2) },
    { n: 311 * 5 + 7, p: 0.5, step: 17, micro: 63, site: 4095 },
    { n: 1000, p: 0.9, step: 1, micro: 2, site: 7 },
  ];
  for (const c of cases) {
    it(`forward and backward n=${c.n} p=${c.p} step=${c.step} micro=${c.micro} site=${c.site}`, async () => {
      const ctx = await gpuContext();
      const x = f32(randn(c.n, 11 + c.n));
      const rng = createRngUniform(ctx, 'rng', SEED, c.step);
      const stream = dropoutStream(c.step, c.micro, c.site);
      // forward on activations, backward (the same kernel) on a gradient
      for (const [label, input] of [['fwd', x], ['bwd', f32(randn(c.n, 99 + c.n))]] as const) {
        const out = poisoned(ctx, c.n);
        const d = await dropout(ctx, { label, n: c.n, input: upload(ctx, input), output: out, dropout: { p: c.p, site: c.site, micro: c.micro, rng } });
        await run(ctx, [d]);
        const got = await download(ctx, out);
        const want = label === 'fwd' ? ref.dropoutForward(Float64Array.from(input), c.p, SEED, stream) : ref.dropoutBackward(Float64Array.from(input), c.p, SEED, stream);
        expect(maskMismatches(got, want)).toBe(0);
        expect(relErr(got, want)).toBeLessThan(1e-6);
      }
      if (c.n >= 1000) {
        // The mask is random: about (1 − p)·n kept.
        const kept = ref.dropoutForward(Float64Array.from(x), c.p, SEED, stream).filter((v) => v !== 0).length;
        expect(Math.abs(kept / c.n - (1 - c.p))).toBeLessThan(0.05);
      }
    });
  }

  it('p = 0 copies exactly, with no rng uniform needed', async () => {
    const ctx = await gpuContext();
    const n = 4099;
    const x = f32(randn(n, 5));
    const out = poisoned(ctx, n);
    await run(ctx, [await dropout(ctx, { label: 'p0', n, input: upload(ctx, x), output: out, dropout: { p: 0, site: 3, micro: 0 } })]);
    expect(Array.from(await download(ctx, out))).toEqual(Array.from(x));
  });

  it('the threshold is exact: an element whose uniform equals p is kept, one just above p is dropped', async () => {
    const ctx = await gpuContext();
    const n = 64;
    const step = 5;
    const stream = dropoutStream(step, 0, 1);
    const x = new Float32Array(n).fill(1);
    const rng = createRngUniform(ctx, 'rng', SEED, step);
    const u = dropoutUniform(SEED, stream, 10);
    for (const [p, keep10] of [[u, true], [u + 2 ** -40, false]] as const) {
      const out = poisoned(ctx, n);
      await run(ctx, [await dropout(ctx, { label: 'edge', n, input: upload(ctx, x), output: out, dropout: { p, site: 1, micro: 0, rng } })]);
      const got = await download(ctx, out);
      expect(got[10] !== 0).toBe(keep10);
      expect(maskMismatches(got, ref.dropoutForward(Float64Array.from(x), p, SEED, stream))).toBe(0);
    }
  });

  it('replays with a new mask after writeRng moves to the next step (no rebuild)', async () => {
    const ctx = await gpuContext();
    const n = 777;
    const x = f32(randn(n, 8));
    const rng = createRngUniform(ctx, 'rng', SEED, 0);
    const out = poisoned(ctx, n);
    const d = await dropout(ctx, { label: 'replay', n, input: upload(ctx, x), output: out, dropout: { p: 0.3, site: DROPOUT_SITE.attnResid(0), micro: 2, rng } });
    const masks: Float32Array[] = [];
    for (const step of [0, 1, 2]) {
      writeRng(ctx, rng, SEED, step);
      await run(ctx, [d]);
      const got = await download(ctx, out);
      expect(maskMismatches(got, ref.dropoutForward(Float64Array.from(x), 0.3, SEED, dropoutStream(step, 2, DROPOUT_SITE.attnResid(0))))).toBe(0);
      masks.push(got);
    }
    expect(maskMismatches(masks[0], masks[1])).toBeGreaterThan(50);
    // another seed, same step: another mask
    writeRng(ctx, rng, SEED + 1, 2);
    await run(ctx, [d]);
    expect(maskMismatches(await download(ctx, out), masks[2])).toBeGreaterThan(50);
  });

  it('covers more elements than 65535 workgroups of 256 (2-D grid)', async () => {
    const ctx = await gpuContext();
    const max = ctx.limits.maxComputeWorkgroupsPerDimension;
    const n = max * 256 + 1000;
    const grid = flatGrid(ctx, Math.ceil(n / 256), 'big');
    expect(grid[1]).toBeGreaterThan(1);
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) x[i] = (i % 1013) + 1; // nonzero, cheap to make
    const rng = createRngUniform(ctx, 'rng', SEED, 4);
    const out = poisoned(ctx, n);
    await run(ctx, [await dropout(ctx, { label: 'big', n, input: upload(ctx, x), output: out, dropout: { p: 0.25, site: 9, micro: 3, rng } })]);
    const got = await download(ctx, out);
    const stream = dropoutStream(4, 3, 9);
    const scale = Math.fround(1 / 0.75);
    let bad = 0;
    for (let i = 0; i < n; i++) {
      const want = dropoutUniform(SEED, stream, i) >= 0.25 ? Math.fround(x[i] * scale) : 0;
      if (got[i] !== want) bad++;
    }
    expect(bad).toBe(0);
  });

  it('refuses p outside [0, 1), bad micro or site, p > 0 without rng, and short buffers', async () => {
    const ctx = await gpuContext();
    const rng = createRngUniform(ctx);
    for (const spec of [
      { p: 1, site: 0, micro: 0, rng },
      { p: -0.1, site: 0, micro: 0, rng },
      { p: Number.NaN, site: 0, micro: 0, rng },
      { p: 0.1, site: 0, micro: 64, rng },
      { p: 0.1, site: 4096, micro: 0, rng },
      { p: 0.1, site: 1.5, micro: 0, rng },
      { p: 0.1, site: 0, micro: 0 },
    ]) {
      expect(() => dropoutParams(ctx, spec, 'bad')).toThrow(DropoutConfigError);
    }
    await expect(dropout(ctx, { label: 'short', n: 10, input: upload(ctx, new Float32Array(9)), output: poisoned(ctx, 10), dropout: { p: 0, site: 0, micro: 0 } })).rejects.toThrow(ShapeError);
    await expect(dropout(ctx, { label: 'zero', n: 0, input: upload(ctx, new Float32Array(4)), output: poisoned(ctx, 4), dropout: { p: 0, site: 0, micro: 0 } })).rejects.toThrow(ShapeError);
  });

  it('site numbers match the reference contract', () => {
    for (const i of [0, 1, 11, 47]) {
      expect(DROPOUT_SITE.attnProbs(i)).toBe(DROPOUT_SITE.attnProbs(i));
      expect(DROPOUT_SITE.attnResid(i)).toBe(DROPOUT_SITE.attnResid(i));
      expect(DROPOUT_SITE.mlpResid(i)).toBe(DROPOUT_SITE.mlpResid(i));
    }
    expect(DROPOUT_SITE.embedding).toBe(DROPOUT_SITE.embedding);
  });
});
