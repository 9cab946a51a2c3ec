// The page's GPU self-test: one matmul of seeded random inputs on the device, checked against the
// float64 product on the CPU (cpuMatmul below) with the engine's one seeded generator
// (engine/random.ts), so a broken adapter or driver shows up before a run, with its error size.
import type { GpuContext } from '../engine/gpu/context.ts';
import { run } from '../engine/gpu/dispatch.ts';
import { matmul } from '../engine/kernels/matmul.ts';
import { uniformStream } from '../engine/random.ts';

export interface SelftestShape {
  M: number;
  N: number;
  K: number;
  seed: number;
}

export interface SelftestReport {
  M: number;
  N: number;
  K: number;
  /** max |GPU − float64 reference| over C (M, N); Infinity when any element is NaN */
  maxAbsError: number;
  /** upload, dispatch and readback, in milliseconds */
  ms: number;
  /** the first elements of C, for a glance */
  sample: number[];
}

/** C (M, N) = A (M, K) · B (K, N) on the GPU, A and B uniform in [−1, 1) from `seed`. */
export async function matmulSelftest(ctx: GpuContext, { M, N, K, seed }: SelftestShape): Promise<SelftestReport> {
  const rand = uniformStream(seed >>> 0);
  const a = Float32Array.from({ length: M * K }, () => rand() * 2 - 1); // (M, K)
  const b = Float32Array.from({ length: K * N }, () => rand() * 2 - 1); // (K, N)
  const t0 = performance.now();
  const ra = { buffer: ctx.createBuffer(a.byteLength, 'selftest.a', a), offset: 0, size: a.byteLength };
  const rb = { buffer: ctx.createBuffer(b.byteLength, 'selftest.b', b), offset: 0, size: b.byteLength };
  // Poisoned with NaN, so an element the kernel never writes is an error, not a lucky zero.
  const rc = { buffer: ctx.createBuffer(M * N * 4, 'selftest.c', new Float32Array(M * N).fill(NaN)), offset: 0, size: M * N * 4 };
  try {
    await run(ctx, [await matmul(ctx, { label: 'selftest', M, N, K, a: ra, b: rb, out: rc })]);
    const c = await ctx.readF32(rc.buffer, 0, M * N); // (M, N)
    const ms = performance.now() - t0;
    const ref = cpuMatmul(M, N, K, a, b);
    let maxAbsError = 0;
    for (let i = 0; i < M * N; i++) {
      const d = Math.abs(c[i] - ref[i]);
      maxAbsError = Number.isNaN(d) ? Infinity : Math.max(maxAbsError, d);
    }
    return { M, N, K, maxAbsError, ms, sample: Array.from(c.slice(0, 4)) };
  } finally {
    for (const r of [ra, rb, rc]) r.buffer.destroy();
  }
}

/**
 * C (M, N) = A (M, K) · B (K, N) in float64 on the CPU. The test oracle (engine/reference) is not
 * imported by the product (docs/ARCHITECTURE.md, Rooms), so the self-test carries this product.
 */
function cpuMatmul(M: number, N: number, K: number, a: Float32Array, b: Float32Array): Float64Array {
  const out = new Float64Array(M * N); // (M, N)
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[m * K + k] * b[k * N + n];
      out[m * N + n] = s;
    }
  }
  return out;
}
