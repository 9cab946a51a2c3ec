// shaders/layernorm.wgsl against the float64 reference ops: forward out/mean/rstd, backward dx
// (written or accumulated) and dw/db (written or accumulated, two-stage deterministic reduction),
// at awkward sizes, C up to 1600, one channel, more rows than one grid dimension covers, and a
// frozen LayerNorm (dx only). Every case runs twice: with the workgroup-memory tree and with
// the `subgroups` kernel variant (subgroupAdd, then the partials), at the same tolerances.
import { describe, expect, it } from 'vitest';
import { layernormBackward, layernormForward, layernormScratchElements } from '../../src/engine/kernels/layernorm.ts';
import { run } from '../../src/engine/gpu/dispatch.ts';
import type { GpuContext } from '../../src/engine/gpu/context.ts';
import { ShapeError } from '../../src/engine/errors.ts';
import * as ref from '../../src/engine/reference/ops.ts';
import { download, gpuContext as sharedContext, poisoned, upload } from '../helpers/gpu.ts';
import { loadShader } from '../../src/engine/gpu/shaders.ts';
import { randn, relErr } from '../helpers/numeric.ts';

const EPS = 1e-5;

function f32(a: Float64Array): Float32Array {
  return Float32Array.from(a);
}
function f64(a: Float32Array): Float64Array {
  return Float64Array.from(a);
}

interface Case {
  N: number;
  C: number;
  accumulate: boolean;
}

async function forward(ctx: GpuContext, N: number, C: number, seed: number) {
  // Inputs far from zero mean, so a one-pass E[x²] − E[x]² would show.
  const x = f32(randn(N * C, seed, 3).map((v) => v + 20));
  const w = f32(randn(C, seed + 1, 0.5).map((v) => v + 1));
  const b = f32(randn(C, seed + 2, 0.5));
  const xr = upload(ctx, x);
  const wr = upload(ctx, w);
  const out = poisoned(ctx, N * C);
  const mean = poisoned(ctx, N);
  const rstd = poisoned(ctx, N);
  await run(ctx, [await layernormForward(ctx, { label: 'ln', N, C, eps: EPS, x: xr, weight: wr, bias: upload(ctx, b), out, mean, rstd })]);
  return { x, w, b, xr, wr, out, mean, rstd };
}

for (const subgroups of [false, true]) describe(`layernorm kernel, subgroups ${subgroups ? 'on' : 'off'}`, () => {
  // The shared device with this describe's variant selected (tests of a file run one at a time).
  async function gpuContext(): Promise<GpuContext> {
    const ctx = await sharedContext();
    ctx.kernels = { ...ctx.kernels, subgroups };
    return ctx;
  }

  it(subgroups ? 'the test adapter has subgroups, and the module enables them' : 'the module does not use subgroups', async () => {
    const ctx = await gpuContext();
    const code = await loadShader('layernorm', { SUBGROUPS: subgroups });
    expect(code.includes('enable subgroups;')).toBe(subgroups);
    expect(code.includes('subgroupAdd(')).toBe(subgroups);
    if (subgroups) expect(ctx.device.features.has('subgroups')).toBe(true);
  });

  const cases: Case[] = [
    { N: 2 * 37, C: 48, accumulate: false },
    { N: 2 * 37, C: 48, accumulate: true },
    { N: 3, C: 1600, accumulate: false },
    { N: 33, C: 257, accumulate: true },
    { N: 5, C: 1, accumulate: false },
  ];
  let seed = 100;
  for (const c of cases) {
    it(`N=${c.N} C=${c.C} accumulate=${c.accumulate}`, async () => {
      const ctx = await gpuContext();
      const { N, C } = c;
      seed += 10;
      const f = await forward(ctx, N, C, seed);
      const want = ref.layernormForward(f64(f.x), f64(f.w), f64(f.b), N, C, EPS);
      expect(relErr(await download(ctx, f.out), want.out)).toBeLessThan(1e-5);
      expect(relErr(await download(ctx, f.mean), want.mean)).toBeLessThan(1e-6);
      expect(relErr(await download(ctx, f.rstd), want.rstd)).toBeLessThan(1e-5);

      const dout = f32(randn(N * C, seed + 3));
      const dx0 = f32(randn(N * C, seed + 4));
      const dw0 = f32(randn(C, seed + 5));
      const db0 = f32(randn(C, seed + 6));
      const dx = c.accumulate ? upload(ctx, dx0) : poisoned(ctx, N * C);
      const dw = c.accumulate ? upload(ctx, dw0) : poisoned(ctx, C);
      const db = c.accumulate ? upload(ctx, db0) : poisoned(ctx, C);
      const ds = await layernormBackward(ctx, {
        label: 'ln.bwd', N, C, dout: upload(ctx, dout), x: f.xr, weight: f.wr, mean: f.mean, rstd: f.rstd,
        dx, accumulateDx: c.accumulate, dweight: dw, dbias: db, accumulateParams: c.accumulate,
      });
      expect(ds.length).toBe(3);
      await run(ctx, ds);
      const g = ref.layernormBackward(f64(dout), f64(f.x), f64(f.w), want.mean, want.rstd, N, C);
      const add = (base: Float32Array, d: Float64Array) => (c.accumulate ? d.map((v, i) => v + base[i]) : d);
      expect(relErr(await download(ctx, dx), add(dx0, g.dx))).toBeLessThan(1e-4);
      expect(relErr(await download(ctx, dw), add(dw0, g.dw))).toBeLessThan(1e-5);
      expect(relErr(await download(ctx, db), add(db0, g.db))).toBeLessThan(1e-6);
    });
  }

  it('more rows than one grid dimension covers (N = 66000, C = 3), dx accumulated into the residual gradient', async () => {
    const ctx = await gpuContext();
    const N = Math.max(66000, ctx.limits.maxComputeWorkgroupsPerDimension + 465);
    const C = 3;
    const f = await forward(ctx, N, C, 7);
    const want = ref.layernormForward(f64(f.x), f64(f.w), f64(f.b), N, C, EPS);
    expect(relErr(await download(ctx, f.out), want.out)).toBeLessThan(1e-5);
    expect(relErr(await download(ctx, f.rstd), want.rstd)).toBeLessThan(1e-5);
    const dout = f32(randn(N * C, 8));
    const dx0 = f32(randn(N * C, 9));
    const dx = upload(ctx, dx0);
    const dw = poisoned(ctx, C);
    const db = poisoned(ctx, C);
    await run(ctx, await layernormBackward(ctx, {
      label: 'ln.big', N, C, dout: upload(ctx, dout), x: f.xr, weight: f.wr, mean: f.mean, rstd: f.rstd, dx, accumulateDx: true, dweight: dw, dbias: db,
    }));
    const g = ref.layernormBackward(f64(dout), f64(f.x), f64(f.w), want.mean, want.rstd, N, C);
    expect(relErr(await download(ctx, dx), g.dx.map((v, i) => v + dx0[i]))).toBeLessThan(1e-4);
    expect(relErr(await download(ctx, dw), g.dw)).toBeLessThan(1e-4);
    expect(relErr(await download(ctx, db), g.db)).toBeLessThan(1e-5);
  });

  it('frozen LayerNorm: dx only, one dispatch, parameter gradients untouched', async () => {
    const ctx = await gpuContext();
    const N = 10;
    const C = 48;
    const f = await forward(ctx, N, C, 31);
    const dout = f32(randn(N * C, 32));
    const dx = poisoned(ctx, N * C);
    const ds = await layernormBackward(ctx, { label: 'ln.frozen', N, C, dout: upload(ctx, dout), x: f.xr, weight: f.wr, mean: f.mean, rstd: f.rstd, dx });
    expect(ds.length).toBe(1);
    await run(ctx, ds);
    const want = ref.layernormForward(f64(f.x), f64(f.w), f64(f.b), N, C, EPS);
    const g = ref.layernormBackward(f64(dout), f64(f.x), f64(f.w), want.mean, want.rstd, N, C);
    expect(relErr(await download(ctx, dx), g.dx)).toBeLessThan(1e-4);
  });

  it('one shared scratch serves several LayerNorms in one pass', async () => {
    const ctx = await gpuContext();
    const N = 70;
    const C = 40;
    const scratchCount = layernormScratchElements(N, C, ctx);
    const scratch = poisoned(ctx, scratchCount);
    const results: Array<{ dw: ReturnType<typeof poisoned>; db: ReturnType<typeof poisoned>; want: ReturnType<typeof ref.layernormBackward> }> = [];
    const all = [];
    for (const s of [41, 51]) {
      const f = await forward(ctx, N, C, s);
      const dout = f32(randn(N * C, s + 7));
      const dw = poisoned(ctx, C);
      const db = poisoned(ctx, C);
      all.push(...(await layernormBackward(ctx, {
        label: `ln${s}`, N, C, dout: upload(ctx, dout), x: f.xr, weight: f.wr, mean: f.mean, rstd: f.rstd, dx: poisoned(ctx, N * C), dweight: dw, dbias: db, scratch,
      })));
      const m = ref.layernormForward(f64(f.x), f64(f.w), f64(f.b), N, C, EPS);
      results.push({ dw, db, want: ref.layernormBackward(f64(dout), f64(f.x), f64(f.w), m.mean, m.rstd, N, C) });
    }
    await run(ctx, all);
    for (const r of results) {
      expect(relErr(await download(ctx, r.dw), r.want.dw)).toBeLessThan(1e-5);
      expect(relErr(await download(ctx, r.db), r.want.db)).toBeLessThan(1e-6);
    }
  });

  it('is deterministic: the same inputs give bit-identical gradients', async () => {
    const ctx = await gpuContext();
    const N = 300;
    const C = 96;
    const f = await forward(ctx, N, C, 61);
    const dout = upload(ctx, f32(randn(N * C, 62)));
    const outs: Float32Array[][] = [];
    for (let k = 0; k < 2; k++) {
      const dx = poisoned(ctx, N * C);
      const dw = poisoned(ctx, C);
      const db = poisoned(ctx, C);
      await run(ctx, await layernormBackward(ctx, { label: 'det', N, C, dout, x: f.xr, weight: f.wr, mean: f.mean, rstd: f.rstd, dx, dweight: dw, dbias: db }));
      outs.push([await download(ctx, dx), await download(ctx, dw), await download(ctx, db)]);
    }
    for (let j = 0; j < 3; j++) expect(Array.from(outs[1][j])).toEqual(Array.from(outs[0][j]));
  });

  it('refuses mismatched sizes, a lone dweight and a small scratch', async () => {
    const ctx = await gpuContext();
    const N = 4;
    const C = 8;
    const x = upload(ctx, new Float32Array(N * C));
    const w = upload(ctx, new Float32Array(C));
    const v = upload(ctx, new Float32Array(N));
    await expect(layernormForward(ctx, { label: 'a', N, C, eps: EPS, x, weight: w, bias: w, out: poisoned(ctx, N * C - 1), mean: v, rstd: v })).rejects.toThrow(ShapeError);
    await expect(layernormForward(ctx, { label: 'b', N, C, eps: 0, x, weight: w, bias: w, out: poisoned(ctx, N * C), mean: v, rstd: v })).rejects.toThrow(ShapeError);
    const base = { label: 'c', N, C, dout: x, x, weight: w, mean: v, rstd: v, dx: poisoned(ctx, N * C) };
    await expect(layernormBackward(ctx, { ...base, dweight: w })).rejects.toThrow(ShapeError);
    await expect(layernormBackward(ctx, { ...base, dweight: w, dbias: w, scratch: poisoned(ctx, 1) })).rejects.toThrow(ShapeError);
  });
});
