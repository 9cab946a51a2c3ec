// shaders/gemv.wgsl against the float64 reference matmul with one row: gemv (x·W + b, W stored
// (K, N) as Conv1D does) and gemvT (scale·W·x, W stored (N, K), overwriting or accumulating) at
// awkward sizes (K above one 256-wide tile of x, N not a multiple of the workgroup), on
// poisoned outputs, with a non-zero offset into a shared buffer, and the shape checks.
import { describe, expect, it } from 'vitest';
import { ShapeError } from '../../src/engine/errors.ts';
import { run, type BufferRange } from '../../src/engine/gpu/dispatch.ts';
import { gemv, gemvT } from '../../src/engine/kernels/gemv.ts';
import { refMatmul } from '../../src/engine/reference/matmul.ts';
import { download, gpuContext, poisoned, upload } from '../helpers/gpu.ts';
import { randn, relErr } from '../helpers/numeric.ts';

const f32 = (a: Float64Array) => Float32Array.from(a);

describe('gemv kernels', () => {
  // N = 144 and 256 take the vec4 entries (N a multiple of 4), the others the scalar ones.
  for (const [K, N] of [[1, 1], [48, 311], [37, 144], [600, 257], [600, 256]] as const) {
    it(`gemv K=${K} N=${N}: out = x·W + b`, async () => {
      const ctx = await gpuContext();
      const x = f32(randn(K, K * 7 + N));
      const w = f32(randn(K * N, K + N, 0.1));
      const b = f32(randn(N, N + 3));
      const out = poisoned(ctx, N);
      await run(ctx, [await gemv(ctx, { label: 'gemv', K, N, x: upload(ctx, x), w: upload(ctx, w), bias: upload(ctx, b), out })]);
      const want = refMatmul({ M: 1, N, K, a: x, b: w, bias: b });
      const got = await download(ctx, out);
      expect(got.every(Number.isFinite)).toBe(true);
      expect(relErr(got, want)).toBeLessThan(1e-6);
    });

    it(`gemvT K=${K} N=${N}: out = s·W·x, then += s·W·x`, async () => {
      const ctx = await gpuContext();
      const x = f32(randn(K, K + 11));
      const w = f32(randn(N * K, N + 13, 0.1));
      const scale = 0.75;
      const out = poisoned(ctx, N);
      const xr = upload(ctx, x);
      const wr = upload(ctx, w);
      await run(ctx, [await gemvT(ctx, { label: 'gemvT', K, N, x: xr, w: wr, out, scale })]);
      const once = Array.from(refMatmul({ M: 1, N, K, a: x, b: w, transB: true }), (v) => v * scale);
      const got = await download(ctx, out);
      expect(got.every(Number.isFinite)).toBe(true);
      expect(relErr(got, once)).toBeLessThan(1e-6);
      await run(ctx, [await gemvT(ctx, { label: 'gemvT.acc', K, N, x: xr, w: wr, out, scale, accumulate: true })]);
      expect(relErr(await download(ctx, out), once.map((v) => 2 * v))).toBeLessThan(1e-6);
    });
  }

  it('reads and writes ranges at an offset into larger buffers', async () => {
    const ctx = await gpuContext();
    const K = 40;
    const N = 70;
    const align = ctx.limits.minStorageBufferOffsetAlignment / 4; // floats
    const x = f32(randn(K, 5));
    const w = f32(randn(K * N, 6, 0.1));
    const b = f32(randn(N, 7));
    // w and out each sit at an aligned offset inside a padded buffer (two buffers: WebGPU does
    // not let one dispatch read and write the same buffer); the kernel must touch only its ranges.
    const padded = (data: Float32Array | null, n: number): { range: BufferRange; at: number } => {
      const all = new Float32Array(align + n + align).fill(-1234);
      if (data) all.set(data, align);
      const { buffer } = upload(ctx, all);
      return { range: { buffer, offset: align * 4, size: n * 4 }, at: align };
    };
    const wIn = padded(w, K * N);
    const out = padded(null, N);
    await run(ctx, [await gemv(ctx, { label: 'gemv.offset', K, N, x: upload(ctx, x), w: wIn.range, bias: upload(ctx, b), out: out.range })]);
    const all = await download(ctx, { buffer: out.range.buffer, offset: 0, size: out.range.buffer.size });
    expect(relErr(all.subarray(align, align + N), refMatmul({ M: 1, N, K, a: x, b: w, bias: b }))).toBeLessThan(1e-6);
    expect(all.subarray(0, align).every((v) => v === -1234)).toBe(true);
    expect(all.subarray(align + N, align + N + align).every((v) => v === -1234)).toBe(true);
  });

  it('refuses ranges too small for the shape', async () => {
    const ctx = await gpuContext();
    const small = poisoned(ctx, 4);
    await expect(gemv(ctx, { label: 'g', K: 8, N: 4, x: small, w: poisoned(ctx, 32), bias: small, out: small })).rejects.toThrow(ShapeError);
    await expect(gemvT(ctx, { label: 'g', K: 4, N: 8, x: small, w: poisoned(ctx, 32), out: small })).rejects.toThrow(/out is bound with 16 bytes/);
    await expect(gemv(ctx, { label: 'g', K: 0, N: 4, x: small, w: small, bias: small, out: small })).rejects.toThrow(ShapeError);
  });
});
