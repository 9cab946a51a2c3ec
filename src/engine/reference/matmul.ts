// Float64 reference of shaders/matmul.wgsl: C (M, N) = op(A) · op(B) [+ bias] [+ C0].
// A test oracle (also the page's GPU self-test, src/worker/selftest.ts); the engine never calls it.

export interface RefMatmulArgs {
  M: number;
  N: number;
  K: number;
  a: ArrayLike<number>; // (M, K) or (K, M) when transA
  b: ArrayLike<number>; // (K, N) or (N, K) when transB
  bias?: ArrayLike<number>; // (N)
  c0?: ArrayLike<number>; // (M, N), added when accumulating
  transA?: boolean;
  transB?: boolean;
}

export function refMatmul(x: RefMatmulArgs): Float64Array {
  const { M, N, K } = x;
  const out = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) {
        const av = x.transA ? x.a[k * M + m] : x.a[m * K + k];
        const bv = x.transB ? x.b[n * K + k] : x.b[k * N + n];
        s += av * bv;
      }
      if (x.bias) s += x.bias[n];
      if (x.c0) s += x.c0[m * N + n];
      out[m * N + n] = s;
    }
  }
  return out;
}
