// shaders/gelu.wgsl against the float64 reference ops: gelu_new (tanh form) and exact gelu (erf
// form), forward and backward (into a separate dx and in place), on randn inputs, on a grid of
// values out to ±100 (no NaN from tanh/exp overflow), and at a size bigger than one grid dimension.
import { describe, expect, it } from 'vitest';
import { geluBackward, geluBackwardBias, geluForward, type GeluKind } from '../../src/engine/kernels/gelu.ts';
import { biasGrad } from '../../src/engine/kernels/matmul.ts';
import { flatGrid, run } from '../../src/engine/gpu/dispatch.ts';
import { ShapeError, UnsupportedConfigError } from '../../src/engine/errors.ts';
import * as ref from '../../src/engine/reference/ops.ts';
import { download, gpuContext, poisoned, upload } from '../helpers/gpu.ts';
import { maxAbsDiff, randn, relErr } from '../helpers/numeric.ts';

const kinds: GeluKind[] = ['gelu_new', 'gelu'];

async function runGelu(kind: GeluKind, x: Float32Array, dout: Float32Array) {
  const ctx = await gpuContext();
  const n = x.length;
  const xr = upload(ctx, x);
  const out = poisoned(ctx, n);
  const dx = poisoned(ctx, n);
  const grad = upload(ctx, dout); // overwritten in place
  await run(ctx, [
    await geluForward(ctx, { label: 'gelu', n, kind, x: xr, out }),
    await geluBackward(ctx, { label: 'gelu.bwd', n, kind, x: xr, dout: upload(ctx, dout), dx }),
    await geluBackward(ctx, { label: 'gelu.bwd.inplace', n, kind, x: xr, dout: grad }),
  ]);
  return { out: await download(ctx, out), dx: await download(ctx, dx), inplace: await download(ctx, grad) };
}

describe('gelu kernel', () => {
  for (const kind of kinds) {
    for (const n of [1, 2 * 37 * 4 * 48, 1000 * 3 + 1]) {
      it(`${kind} n=${n} forward and backward on randn·2`, async () => {
        const x = Float32Array.from(randn(n, n + 1, 2));
        const dout = Float32Array.from(randn(n, n + 2));
        const got = await runGelu(kind, x, dout);
        const x64 = Float64Array.from(x);
        const wantOut = ref.geluForward(x64, kind);
        const wantDx = ref.geluBackward(x64, Float64Array.from(dout), kind);
        expect(relErr(got.out, wantOut)).toBeLessThan(1e-6);
        // gelu' = Φ(x) + x·φ(x) cancels near x ≈ −0.75 (f32 leaves ~1e-6 of a near-zero value)
        expect(relErr(got.dx, wantDx)).toBeLessThan(1e-5);
        expect(Array.from(got.inplace)).toEqual(Array.from(got.dx));
      });
    }

    it(`${kind} stays finite and accurate from −100 to 100`, async () => {
      const vals: number[] = [];
      for (let v = -100; v <= 100; v += 0.0625) vals.push(v);
      vals.push(-1e4, 1e4, -1e-30, 1e-30, 0);
      const x = Float32Array.from(vals);
      const dout = new Float32Array(x.length).fill(1);
      const got = await runGelu(kind, x, dout);
      const x64 = Float64Array.from(x);
      const wantOut = ref.geluForward(x64, kind);
      const wantDx = ref.geluBackward(x64, Float64Array.from(dout), kind);
      expect(got.out.every(Number.isFinite)).toBe(true);
      expect(got.dx.every(Number.isFinite)).toBe(true);
      expect(relErr(got.out, wantOut)).toBeLessThan(1e-6);
      expect(relErr(got.dx, wantDx)).toBeLessThan(1e-6);
      // elementwise: absolute error small where values are O(1), relative where they are large
      for (let i = 0; i < x.length; i++) {
        const tolOut = 2e-6 * Math.max(1, Math.abs(wantOut[i]));
        if (!(Math.abs(got.out[i] - wantOut[i]) <= tolOut)) throw new Error(`${kind}(${x[i]}) = ${got.out[i]}, want ${wantOut[i]}`);
        if (!(Math.abs(got.dx[i] - wantDx[i]) <= 2e-6)) throw new Error(`${kind}'(${x[i]}) = ${got.dx[i]}, want ${wantDx[i]}`);
      }
    });
  }

  it('gelu_new and gelu differ (the kind reaches the shader)', async () => {
    const x = Float32Array.from(randn(500, 77));
    const a = await runGelu('gelu_new', x, x);
    const b = await runGelu('gelu', x, x);
    expect(maxAbsDiff(a.out, b.out)).toBeGreaterThan(1e-4);
  });

  it('covers more elements than 65535 workgroups of 256 (2-D grid)', async () => {
    const ctx = await gpuContext();
    const n = ctx.limits.maxComputeWorkgroupsPerDimension * 256 + 300;
    expect(flatGrid(ctx, Math.ceil(n / 256), 'big')[1]).toBeGreaterThan(1);
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) x[i] = ((i % 4001) - 2000) / 500;
    const got = await runGelu('gelu_new', x, new Float32Array(n).fill(1));
    // Each distinct input value once through the reference.
    const table = ref.geluForward(Float64Array.from({ length: 4001 }, (_, k) => Math.fround((k - 2000) / 500)), 'gelu_new');
    const dtable = ref.geluBackward(Float64Array.from({ length: 4001 }, (_, k) => Math.fround((k - 2000) / 500)), new Float64Array(4001).fill(1), 'gelu_new');
    let worst = 0;
    for (let i = 0; i < n; i++) {
      worst = Math.max(worst, Math.abs(got.out[i] - table[i % 4001]), Math.abs(got.dx[i] - dtable[i % 4001]));
      if (Number.isNaN(got.out[i]) || Number.isNaN(got.dx[i])) worst = Infinity;
    }
    expect(worst).toBeLessThan(2e-6);
  });

  it('refuses an unknown kind and short buffers', async () => {
    const ctx = await gpuContext();
    const x = upload(ctx, new Float32Array(8));
    await expect(geluForward(ctx, { label: 'k', n: 8, kind: 'relu' as GeluKind, x, out: poisoned(ctx, 8) })).rejects.toThrow(UnsupportedConfigError);
    await expect(geluForward(ctx, { label: 's', n: 9, kind: 'gelu', x, out: poisoned(ctx, 9) })).rejects.toThrow(ShapeError);
    await expect(geluBackward(ctx, { label: 's', n: 8, kind: 'gelu', x, dout: upload(ctx, new Float32Array(8)), dx: poisoned(ctx, 4) })).rejects.toThrow(ShapeError);
  });

  // The fused backward + bias gradient: bit for bit what backward_inplace then bias_grad give,
  // and against the float64 reference; accumulating into a dbias that already holds a value.
  for (const kind of kinds) {
    for (const [M, N, accumulate] of [[74, 192, false], [3, 3072, true], [130, 7, true]] as const) {
      it(`${kind} backward fused with the bias gradient, M=${M} N=${N}${accumulate ? ', accumulating' : ''}`, async () => {
        const ctx = await gpuContext();
        const x = Float32Array.from(randn(M * N, M + N, 2));
        const dout = Float32Array.from(randn(M * N, M + N + 1));
        const db0 = Float32Array.from(randn(N, N + 5));
        const xr = upload(ctx, x);
        const fusedGrad = upload(ctx, dout);
        const fusedDb = upload(ctx, db0);
        const apartGrad = upload(ctx, dout);
        const apartDb = upload(ctx, db0);
        await run(ctx, [
          await geluBackwardBias(ctx, { label: 'fused', M, N, kind, x: xr, grad: fusedGrad, dbias: fusedDb, accumulate }),
          await geluBackward(ctx, { label: 'apart', n: M * N, kind, x: xr, dout: apartGrad }),
          await biasGrad(ctx, { label: 'apart.db', M, N, dout: apartGrad, dbias: apartDb, accumulate }),
        ]);
        const g = await download(ctx, fusedGrad);
        const db = await download(ctx, fusedDb);
        expect(Array.from(g)).toEqual(Array.from(await download(ctx, apartGrad)));
        expect(Array.from(db)).toEqual(Array.from(await download(ctx, apartDb)));
        const want = ref.geluBackward(Float64Array.from(x), Float64Array.from(dout), kind);
        expect(relErr(g, want)).toBeLessThan(1e-5);
        const wantDb = Float64Array.from({ length: N }, (_, n) => {
          let sum = accumulate ? db0[n] : 0;
          for (let m = 0; m < M; m++) sum += want[m * N + n];
          return sum;
        });
        expect(relErr(db, wantDb)).toBeLessThan(1e-5);
      });
    }
  }
});
