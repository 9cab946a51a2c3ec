// shaders/residual.wgsl (out = a + dropout(b)) and its backward (db = dropout_backward(dout))
// against the float64 reference ops, with and without resid_pdrop, at awkward sizes and at a
// size bigger than one grid dimension covers. The fused residual + LayerNorm runs with and
// without the `subgroups` kernel variant (layernorm.wgsl and residual.wgsl switch together).
import { describe, expect, it } from 'vitest';
import { residualBackward, residualForward, residualLayernorm } from '../../src/engine/kernels/residual.ts';
import { layernormForward } from '../../src/engine/kernels/layernorm.ts';
import { createRngUniform } from '../../src/engine/kernels/dropout.ts';
import { run } from '../../src/engine/gpu/dispatch.ts';
import { ShapeError } from '../../src/engine/errors.ts';
import * as ref from '../../src/engine/reference/ops.ts';
import { DROPOUT_SITE, dropoutStream, dropoutUniform } from '../../src/engine/random.ts';
import { download, gpuContextWith, poisoned, upload } from '../helpers/gpu.ts';
import { randn, relErr } from '../helpers/numeric.ts';

const SEED = 1234567;
const gpuContext = () => gpuContextWith({ subgroups: false });

describe('residual kernel', () => {
  const cases = [
    { n: 2 * 37 * 48, p: 0, layer: 0, attn: true },
    { n: 2 * 37 * 48, p: 0.1, layer: 2, attn: true },
    { n: 3 * 311 + 1, p: 0.4, layer: 5, attn: false },
  ];
  for (const c of cases) {
    it(`forward and backward n=${c.n} p=${c.p} site=${c.attn ? 'attnResid' : 'mlpResid'}(${c.layer})`, async () => {
      const ctx = await gpuContext();
      const step = 7;
      const micro = 3;
      const site = c.attn ? DROPOUT_SITE.attnResid(c.layer) : DROPOUT_SITE.mlpResid(c.layer);
      const stream = dropoutStream(step, micro, site);
      const rng = createRngUniform(ctx, 'rng', SEED, step);
      const a = Float32Array.from(randn(c.n, 1));
      const b = Float32Array.from(randn(c.n, 2));
      const dout = Float32Array.from(randn(c.n, 3));
      const spec = { p: c.p, site, micro, rng };
      const out = poisoned(ctx, c.n);
      const db = poisoned(ctx, c.n);
      const fwd = await residualForward(ctx, { label: 'res', n: c.n, a: upload(ctx, a), b: upload(ctx, b), out, dropout: spec });
      const bwd = await residualBackward(ctx, { label: 'res.bwd', n: c.n, dout: upload(ctx, dout), db, dropout: spec });
      await run(ctx, [fwd, bwd]);
      const gotOut = await download(ctx, out);
      const gotDb = await download(ctx, db);
      const dropped = ref.dropoutForward(Float64Array.from(b), c.p, SEED, stream);
      const wantOut = Float64Array.from(a, (v, i) => v + dropped[i]);
      const wantDb = ref.dropoutBackward(Float64Array.from(dout), c.p, SEED, stream);
      expect(relErr(gotOut, wantOut)).toBeLessThan(1e-6);
      expect(relErr(gotDb, wantDb)).toBeLessThan(1e-6);
      // masks: db is zero exactly where b was dropped
      let bad = 0;
      for (let i = 0; i < c.n; i++) if ((gotDb[i] === 0) !== (dropped[i] === 0)) bad++;
      expect(bad).toBe(0);
      if (c.p === 0) {
        // p = 0 is exactly a + b in f32 and db = dout
        expect(Array.from(gotOut)).toEqual(Array.from(a, (v, i) => Math.fround(v + b[i])));
        expect(Array.from(gotDb)).toEqual(Array.from(dout));
      }
    });
  }

  it('without a dropout spec it is the plain residual add', async () => {
    const ctx = await gpuContext();
    const n = 101;
    const a = Float32Array.from(randn(n, 4));
    const b = Float32Array.from(randn(n, 5));
    const out = poisoned(ctx, n);
    const db = poisoned(ctx, n);
    const dout = Float32Array.from(randn(n, 6));
    await run(ctx, [
      await residualForward(ctx, { label: 'plain', n, a: upload(ctx, a), b: upload(ctx, b), out }),
      await residualBackward(ctx, { label: 'plain.bwd', n, dout: upload(ctx, dout), db }),
    ]);
    expect(Array.from(await download(ctx, out))).toEqual(Array.from(a, (v, i) => Math.fround(v + b[i])));
    expect(Array.from(await download(ctx, db))).toEqual(Array.from(dout));
  });

  it('covers more elements than 65535 workgroups of 256 (2-D grid)', async () => {
    const ctx = await gpuContext();
    const n = ctx.limits.maxComputeWorkgroupsPerDimension * 256 + 777;
    const a = new Float32Array(n);
    const b = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      a[i] = i % 17;
      b[i] = (i % 1009) + 1;
    }
    const rng = createRngUniform(ctx, 'rng', SEED, 2);
    const out = poisoned(ctx, n);
    await run(ctx, [await residualForward(ctx, { label: 'big', n, a: upload(ctx, a), b: upload(ctx, b), out, dropout: { p: 0.2, site: 5, micro: 0, rng } })]);
    const got = await download(ctx, out);
    const stream = dropoutStream(2, 0, 5);
    const scale = Math.fround(1 / 0.8);
    let bad = 0;
    for (let i = 0; i < n; i++) {
      const d = dropoutUniform(SEED, stream, i) >= 0.2 ? Math.fround(b[i] * scale) : 0;
      if (got[i] !== Math.fround(a[i] + d)) bad++;
    }
    expect(bad).toBe(0);
  });

  it('refuses buffers shorter than n', async () => {
    const ctx = await gpuContext();
    await expect(residualForward(ctx, { label: 'short', n: 8, a: upload(ctx, new Float32Array(8)), b: upload(ctx, new Float32Array(4)), out: poisoned(ctx, 8) })).rejects.toThrow(ShapeError);
  });

  // The fused residual + LayerNorm: against the float64 reference, and bit for bit against the
  // two dispatches it replaces (so training with it computes exactly what it computed before),
  // with each form of the row sums.
  for (const subgroups of [false, true]) for (const c of [
    { N: 74, C: 48, p: 0 },
    { N: 37, C: 130, p: 0.1 },
    { N: 3, C: 768, p: 0.25 },
  ]) {
    it(`residual + LayerNorm in one dispatch, N=${c.N} C=${c.C} p=${c.p}, subgroups ${subgroups ? 'on' : 'off'}`, async () => {
      const ctx = await gpuContextWith({ subgroups });
      const { N, C } = c;
      const n = N * C;
      const site = DROPOUT_SITE.mlpResid(1);
      const rng = createRngUniform(ctx, 'rng', SEED, 4);
      const spec = { p: c.p, site, micro: 1, rng };
      const a = Float32Array.from(randn(n, 11));
      const b = Float32Array.from(randn(n, 12));
      const w = Float32Array.from(randn(C, 13, 0.5), (v) => 1 + v);
      const bias = Float32Array.from(randn(C, 14, 0.1));
      const [ua, ub, uw, ubias] = [a, b, w, bias].map((x) => upload(ctx, x));
      const outs = () => ({ out: poisoned(ctx, n), ln: poisoned(ctx, n), mean: poisoned(ctx, N), rstd: poisoned(ctx, N) });
      const fused = outs();
      const apart = outs();
      await run(ctx, [
        await residualLayernorm(ctx, { label: 'rl', N, C, eps: 1e-5, a: ua, b: ub, dropout: spec, weight: uw, bias: ubias, ...fused }),
        await residualForward(ctx, { label: 'r', n, a: ua, b: ub, out: apart.out, dropout: spec }),
        await layernormForward(ctx, { label: 'l', N, C, eps: 1e-5, x: apart.out, weight: uw, bias: ubias, out: apart.ln, mean: apart.mean, rstd: apart.rstd }),
      ]);
      for (const k of ['out', 'ln', 'mean', 'rstd'] as const) {
        expect(Array.from(await download(ctx, fused[k])), k).toEqual(Array.from(await download(ctx, apart[k])));
      }
      const dropped = ref.dropoutForward(Float64Array.from(b), c.p, SEED, dropoutStream(4, 1, site));
      const x = Float64Array.from(a, (v, i) => v + dropped[i]);
      const want = ref.layernormForward(x, Float64Array.from(w), Float64Array.from(bias), N, C, 1e-5);
      expect(relErr(await download(ctx, fused.out), x)).toBeLessThan(1e-6);
      expect(relErr(await download(ctx, fused.ln), want.out)).toBeLessThan(1e-5);
      expect(relErr(await download(ctx, fused.rstd), want.rstd)).toBeLessThan(1e-5);
    });
  }

  it('residual + LayerNorm refuses short buffers and a non-positive eps', async () => {
    const ctx = await gpuContext();
    const r = (k: number) => upload(ctx, new Float32Array(k));
    const args = { label: 'rl', N: 4, C: 8, eps: 1e-5, a: r(32), b: r(32), out: r(32), weight: r(8), bias: r(8), ln: r(32), mean: r(4), rstd: r(4) };
    await residualLayernorm(ctx, args);
    await expect(residualLayernorm(ctx, { ...args, ln: r(16) })).rejects.toThrow(/ln is bound with 64 bytes/);
    await expect(residualLayernorm(ctx, { ...args, eps: 0 })).rejects.toThrow(ShapeError);
  });
});
