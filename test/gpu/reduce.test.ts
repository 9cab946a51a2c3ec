// shaders/reduce.wgsl against the float64 reference: the global gradient norm and clip
// coefficient over ranges of several buffers (torch's clip_grad_norm_), the non-finite flag,
// and the scaled sum used for the step loss. Every case runs twice: with the workgroup-memory
// trees and with the `subgroups` kernel variant, at the same tolerances.
import { describe, expect, it } from 'vitest';
import {
  NORM_PARTIALS_PER_RANGE,
  gradNorm,
  meanReduce,
  normFinalize,
  normPartialsCount,
  sumSquares,
  sumSquaresMulti,
} from '../../src/engine/kernels/reduce.ts';
import { run, type BufferRange } from '../../src/engine/gpu/dispatch.ts';
import { GpuContext } from '../../src/engine/gpu/context.ts';
import { nodeGpu } from '../../src/cli/webgpu-node.ts';
import { ShapeError } from '../../src/engine/errors.ts';
import { clipCoefficient, globalNorm } from '../../src/engine/reference/ops.ts';
import { download, gpuContextWith, poisoned, upload } from '../helpers/gpu.ts';
import { randn } from '../helpers/numeric.ts';

/** Packs tensors into one arena buffer at aligned offsets, as the trainer's gradient arena does. */
function arena(ctx: GpuContext, tensors: Float64Array[]): BufferRange[] {
  const align = ctx.alignment / 4;
  const offsets: number[] = [];
  let at = align; // start past an unused, poisoned head
  for (const t of tensors) {
    offsets.push(at);
    at = Math.ceil((at + t.length) / align) * align + align;
  }
  const all = new Float32Array(at).fill(NaN); // the gaps are poison: a read outside a range shows
  tensors.forEach((t, k) => all.set(t, offsets[k]));
  const buffer = ctx.createBuffer(all.byteLength, 'arena', all);
  return tensors.map((t, k) => ({ buffer, offset: offsets[k] * 4, size: t.length * 4 }));
}

const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

for (const subgroups of [false, true]) describe(`gradient norm and clipping, subgroups ${subgroups ? 'on' : 'off'}`, () => {
  const gpuContext = () => gpuContextWith({ subgroups });
  // Sizes: one element, awkward, more than one pass of the 256×256-thread grid.
  const sizes = [1, 311, 37 * 48, 150_001, 5];

  it('matches globalNorm and clipCoefficient over ranges in two arenas', async () => {
    const ctx = await gpuContext();
    const tensors = sizes.map((n, k) => randn(n, 40 + k, 0.01 * (k + 1)));
    const grads = [...arena(ctx, tensors.slice(0, 3)), ...arena(ctx, tensors.slice(3))];
    const ref = globalNorm(tensors);
    const norm = poisoned(ctx, 3, 'norm');
    for (const maxNorm of [ref / 3, 0, ref * 2]) {
      const g = await gradNorm(ctx, { label: 'clip', grads, norm, maxNorm });
      // One sum-of-squares dispatch per arena buffer (the ranges of each fit one binding), then the finalize.
      expect(g.dispatches.length).toBe(2 + 1);
      expect(g.partials.size).toBeGreaterThanOrEqual(normPartialsCount(sizes.length) * 4);
      await run(ctx, g.dispatches);
      const [n, coef, flag] = await download(ctx, norm);
      expect(rel(n, ref)).toBeLessThan(1e-6);
      expect(rel(coef, clipCoefficient(ref, Math.fround(maxNorm)))).toBeLessThan(1e-6);
      expect(flag).toBe(0);
    }
  });

  it('one multi-range dispatch writes the same partials, bit for bit, as one sumSquares per range', async () => {
    const ctx = await gpuContext();
    const tensors = sizes.map((n, k) => randn(n, 60 + k, 0.01 * (k + 1)));
    const grads = arena(ctx, tensors);
    const count = normPartialsCount(sizes.length);
    const one = ctx.createBuffer(count * 4, 'partials.one');
    const many = ctx.createBuffer(count * 4, 'partials.many');
    const multi = await sumSquaresMulti(ctx, { label: 'sq', xs: grads, partials: many });
    expect(multi.dispatches).toHaveLength(1);
    await run(ctx, multi.dispatches);
    const single = [];
    for (const [k, x] of grads.entries()) single.push(await sumSquares(ctx, { label: `sq${k}`, x, partials: one, slot: k * NORM_PARTIALS_PER_RANGE }));
    await run(ctx, single);
    const a = await download(ctx, { buffer: one, offset: 0, size: count * 4 });
    const b = await download(ctx, { buffer: many, offset: 0, size: count * 4 });
    expect(b).toEqual(a);
    // Each range's partials are where sumSquares puts them, and they add up to its sum of squares.
    for (const [k, t] of tensors.entries()) {
      const got = b.subarray(k * NORM_PARTIALS_PER_RANGE, (k + 1) * NORM_PARTIALS_PER_RANGE).reduce((x, y) => x + y, 0);
      expect(rel(got, t.reduce((x, y) => x + y * y, 0))).toBeLessThan(1e-5);
    }
    // A binding limit below the arena: several spans (the 150001-float range alone in one), the same partials.
    const split = await GpuContext.create(await nodeGpu(), 'high-performance', { maxStorageBufferBindingSize: 150_016 * 4 });
    split.kernels = { ...split.kernels, subgroups };
    const g2 = arena(split, tensors);
    const p2 = split.createBuffer(count * 4, 'partials.split');
    const m2 = await sumSquaresMulti(split, { label: 'sq', xs: g2, partials: p2 });
    expect(m2.dispatches.length).toBeGreaterThan(1);
    await run(split, m2.dispatches);
    expect(await download(split, { buffer: p2, offset: 0, size: count * 4 })).toEqual(a);
    split.destroy();
  });

  it('setMaxNorm changes the coefficient without new dispatches, and replays are bit-identical', async () => {
    const ctx = await gpuContext();
    const tensors = [randn(1000, 1), randn(77, 2)];
    const ref = globalNorm(tensors);
    const norm = poisoned(ctx, 3);
    const g = await gradNorm(ctx, { label: 'clip', grads: arena(ctx, tensors), norm, maxNorm: 0 });
    await run(ctx, g.dispatches);
    const first = await download(ctx, norm);
    expect(first[1]).toBe(1);
    g.setMaxNorm(ref / 4);
    await run(ctx, g.dispatches);
    const second = await download(ctx, norm);
    expect(second[0]).toBe(first[0]);
    expect(rel(second[1], clipCoefficient(ref, Math.fround(ref / 4)))).toBeLessThan(1e-6);
    await run(ctx, g.dispatches);
    expect(await download(ctx, norm)).toEqual(second);
  });

  for (const bad of [NaN, Infinity, -Infinity]) {
    it(`flags a non-finite gradient (${bad})`, async () => {
      const ctx = await gpuContext();
      const t = randn(5000, 3);
      t[4321] = bad;
      const norm = poisoned(ctx, 3);
      const g = await gradNorm(ctx, { label: 'clip', grads: arena(ctx, [randn(10, 4), t]), norm, maxNorm: 1 });
      await run(ctx, g.dispatches);
      const [, coef, flag] = await download(ctx, norm);
      expect(flag).toBe(1);
      expect(coef).toBe(1);
    });
  }

  it('flags a sum of squares that overflows float32 although every gradient is finite', async () => {
    const ctx = await gpuContext();
    const t = new Float64Array(10).fill(3e19);
    const norm = poisoned(ctx, 3);
    const g = await gradNorm(ctx, { label: 'clip', grads: arena(ctx, [t]), norm, maxNorm: 1 });
    await run(ctx, g.dispatches);
    expect((await download(ctx, norm))[2]).toBe(1);
  });

  it('sumSquares writes exactly its own partial slots', async () => {
    const ctx = await gpuContext();
    const x = randn(70_000, 9);
    const slot = NORM_PARTIALS_PER_RANGE + 3;
    const partials = poisoned(ctx, slot + NORM_PARTIALS_PER_RANGE + 5, 'partials');
    await run(ctx, [await sumSquares(ctx, { label: 'sq', x: upload(ctx, Float32Array.from(x)), partials: partials.buffer, slot })]);
    const got = await download(ctx, partials);
    const own = got.slice(slot, slot + NORM_PARTIALS_PER_RANGE);
    expect(got.slice(0, slot).every(Number.isNaN)).toBe(true);
    expect(got.slice(slot + NORM_PARTIALS_PER_RANGE).every(Number.isNaN)).toBe(true);
    expect(rel(own.reduce((a, b) => a + b, 0), globalNorm([x]) ** 2)).toBeLessThan(1e-6);
  });

  it('normFinalize sums exactly the first `count` partials', async () => {
    const ctx = await gpuContext();
    const parts = Float64Array.from(randn(600, 5), (v) => v * v);
    const host = Float32Array.from([...parts, NaN, NaN]); // trailing poison must not be read
    const norm = poisoned(ctx, 3);
    const f = await normFinalize(ctx, { label: 'fin', partials: upload(ctx, host), count: parts.length, norm, maxNorm: 2 });
    await run(ctx, [f.dispatch]);
    const [n, coef, flag] = await download(ctx, norm);
    const ref = Math.sqrt(parts.reduce((a, b) => a + b, 0));
    expect(rel(n, ref)).toBeLessThan(1e-6);
    expect(rel(coef, clipCoefficient(ref, 2))).toBeLessThan(1e-6);
    expect(flag).toBe(0);
  });

  it('refuses bad arguments with ShapeError', async () => {
    const ctx = await gpuContext();
    const r = upload(ctx, new Float32Array(8));
    await expect(gradNorm(ctx, { label: 'g', grads: [], norm: r, maxNorm: 1 })).rejects.toThrow(ShapeError);
    await expect(gradNorm(ctx, { label: 'g', grads: [r], norm: r, maxNorm: -1 })).rejects.toThrow(/max grad norm/);
    const small = poisoned(ctx, 10);
    await expect(sumSquares(ctx, { label: 's', x: r, partials: small.buffer, slot: 0 })).rejects.toThrow(ShapeError);
    await expect(meanReduce(ctx, { label: 'm', x: r, scale: 1, out: small.buffer, slot: 100 })).rejects.toThrow(/outside/);
  });
});

for (const subgroups of [false, true]) describe(`meanReduce, subgroups ${subgroups ? 'on' : 'off'}`, () => {
  const gpuContext = () => gpuContextWith({ subgroups });
  for (const n of [1, 74, 4099]) {
    it(`n=${n}: out[slot] = scale·Σx, and accumulates across micro-batches`, async () => {
      const ctx = await gpuContext();
      const a = randn(n, n, 3);
      const b = randn(n, n + 1, 3);
      const scale = 1 / (2 * n);
      const out = poisoned(ctx, 8, 'loss');
      const first = await meanReduce(ctx, { label: 'm0', x: upload(ctx, Float32Array.from(a)), scale, out: out.buffer, slot: 5 });
      const second = await meanReduce(ctx, { label: 'm1', x: upload(ctx, Float32Array.from(b)), scale, out: out.buffer, slot: 5, accumulate: true });
      await run(ctx, [first]);
      const sa = a.reduce((s, v) => s + v, 0) * scale;
      const got1 = await download(ctx, out);
      expect(Math.abs(got1[5] - sa)).toBeLessThan(1e-6 * Math.max(1, Math.abs(sa)));
      expect(got1.filter((_, i) => i !== 5).every(Number.isNaN)).toBe(true);
      await run(ctx, [second]);
      const sab = sa + b.reduce((s, v) => s + v, 0) * scale;
      expect(Math.abs((await download(ctx, out))[5] - sab)).toBeLessThan(1e-6 * Math.max(1, Math.abs(sab)));
    });
  }
});
