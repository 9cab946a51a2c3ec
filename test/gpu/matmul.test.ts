// shaders/matmul.wgsl against the float64 reference, at sizes that are no multiple of the tile,
// in every transpose / bias / accumulate combination, with the output poisoned beforehand.
import { describe, expect, it } from 'vitest';
import { biasGrad, matmul } from '../../src/engine/kernels/matmul.ts';
import { run } from '../../src/engine/gpu/dispatch.ts';
import { refMatmul } from '../../src/engine/reference/matmul.ts';
import { download, gpuContext, poisoned, upload } from '../helpers/gpu.ts';
import { randn, relErr } from '../helpers/numeric.ts';

const shapes = [
  { M: 37, N: 48, K: 311 },
  { M: 1, N: 1, K: 1 },
  { M: 130, N: 67, K: 5 },
  { M: 64, N: 64, K: 64 },
];
const modes = [
  { transA: false, transB: false, bias: true, accumulate: false },
  { transA: false, transB: true, bias: false, accumulate: false },
  { transA: true, transB: false, bias: false, accumulate: true },
  { transA: true, transB: true, bias: true, accumulate: true },
];

describe('matmul kernel', () => {
  let seed = 1;
  for (const s of shapes) {
    for (const m of modes) {
      it(`M=${s.M} N=${s.N} K=${s.K} ${JSON.stringify(m)}`, async () => {
        const ctx = await gpuContext();
        const a = randn(s.M * s.K, seed++);
        const b = randn(s.K * s.N, seed++);
        const bias = randn(s.N, seed++);
        const c0 = randn(s.M * s.N, seed++);
        const out = m.accumulate ? upload(ctx, Float32Array.from(c0)) : poisoned(ctx, s.M * s.N);
        const d = await matmul(ctx, {
          label: 'mm', ...s,
          a: upload(ctx, Float32Array.from(a)),
          b: upload(ctx, Float32Array.from(b)),
          bias: m.bias ? upload(ctx, Float32Array.from(bias)) : undefined,
          out, transA: m.transA, transB: m.transB, accumulate: m.accumulate,
        });
        await run(ctx, [d]);
        const got = await download(ctx, out);
        const ref = refMatmul({ ...s, a, b, bias: m.bias ? bias : undefined, c0: m.accumulate ? c0 : undefined, transA: m.transA, transB: m.transB });
        expect(relErr(got, ref)).toBeLessThan(1e-6);
      });
    }
  }
});

describe('bias gradient kernel', () => {
  for (const [M, N, accumulate] of [[37, 48, false], [300, 311, true], [1, 1, false]] as const) {
    it(`M=${M} N=${N} accumulate=${accumulate}`, async () => {
      const ctx = await gpuContext();
      const dy = randn(M * N, 100 + M);
      const db0 = randn(N, 200 + N);
      const dbias = accumulate ? upload(ctx, Float32Array.from(db0)) : poisoned(ctx, N);
      await run(ctx, [await biasGrad(ctx, { label: 'db', M, N, dout: upload(ctx, Float32Array.from(dy)), dbias, accumulate })]);
      const got = await download(ctx, dbias);
      const ref = new Float64Array(N);
      for (let n = 0; n < N; n++) {
        let s = accumulate ? db0[n] : 0;
        for (let m = 0; m < M; m++) s += dy[m * N + n];
        ref[n] = s;
      }
      expect(relErr(got, ref)).toBeLessThan(1e-6);
    });
  }
});
