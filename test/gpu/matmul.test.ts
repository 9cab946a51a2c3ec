// shaders/matmul.wgsl against the float64 reference, at sizes that are no multiple of the tile,
// in every transpose / bias / accumulate combination, with the output poisoned beforehand; then
// every tiling variant, with vec4 and scalar loads, against the reference and bit for bit against
// the default tiling (all variants sum in the same order), including operands that are column
// blocks of wider matrices (aligned and odd leading dimensions); and the GELU epilogue against
// the plain matmul followed by the GELU kernel, bit for bit.
import { describe, expect, it } from 'vitest';
import { geluForward, type GeluKind } from '../../src/engine/kernels/gelu.ts';
import { biasGrad, matmul, type MatmulArgs } from '../../src/engine/kernels/matmul.ts';
import { DEFAULT_TILE, parseTile, tileName, type MatmulTile } from '../../src/engine/gpu/variants.ts';
import { KernelVariantError, ShapeError } from '../../src/engine/errors.ts';
import { run } from '../../src/engine/gpu/dispatch.ts';
import { f16Bits } from '../../src/engine/reference/f16.ts';
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

// Tilings unlike the default in every parameter: a non-square tile whose operands stage in
// different counts, fewer threads (4×8) on a tall tile, and a small tile with a short K step;
// then register tiles (shaders/matmul_reg.wgsl): one and two columns per thread, and a small one
// with several workgroups along both sides of the test shapes.
const REG_TILES: MatmulTile[] = [parseTile('16x64x8-64x1-reg'), parseTile('16x128x8-64x1-reg'), parseTile('5x32x8-16x1-reg')];
const TILES: MatmulTile[] = [DEFAULT_TILE, parseTile('32x64x16-8x8'), parseTile('32x16x16-4x8'), parseTile('16x16x8-4x4'), ...REG_TILES];

interface Case {
  M: number; N: number; K: number;
  transA: boolean; transB: boolean; bias: boolean; accumulate: boolean;
  /** extra floats per stored row of A and B (a column block of a wider matrix) */
  padA: number; padB: number;
}

/** Runs one case with `tile` and `vec4` (and a register tile's subgroup path on or off); returns the output and the float64 reference. */
async function runCase(c: Case, tile: MatmulTile, vec4: boolean, seed: number, subgroups?: boolean): Promise<{ got: Float32Array; ref: Float64Array }> {
  const ctx = await gpuContext();
  const [aRows, aWidth] = c.transA ? [c.K, c.M] : [c.M, c.K];
  const [bRows, bWidth] = c.transB ? [c.N, c.K] : [c.K, c.N];
  const lda = aWidth + c.padA;
  const ldb = bWidth + c.padB;
  const a = randn(aRows * aWidth, seed);
  const b = randn(bRows * bWidth, seed + 1);
  const bias = randn(c.N, seed + 2);
  const c0 = randn(c.M * c.N, seed + 3);
  // Stored with leading dimensions; the padding holds NaN, so reading it would show.
  const strided = (x: Float64Array, rows: number, width: number, ld: number) => {
    const out = new Float32Array(rows * ld).fill(NaN);
    for (let r = 0; r < rows; r++) for (let j = 0; j < width; j++) out[r * ld + j] = x[r * width + j];
    return out;
  };
  const out = c.accumulate ? upload(ctx, Float32Array.from(c0)) : poisoned(ctx, c.M * c.N);
  const args: MatmulArgs = {
    label: 'mm', M: c.M, N: c.N, K: c.K,
    a: upload(ctx, strided(a, aRows, aWidth, lda)), b: upload(ctx, strided(b, bRows, bWidth, ldb)), lda, ldb,
    bias: c.bias ? upload(ctx, Float32Array.from(bias)) : undefined,
    out, transA: c.transA, transB: c.transB, accumulate: c.accumulate, tile, vec4, subgroups,
  };
  await run(ctx, [await matmul(ctx, args)]);
  const got = await download(ctx, out);
  const ref = refMatmul({
    M: c.M, N: c.N, K: c.K, a, b, bias: c.bias ? bias : undefined, c0: c.accumulate ? c0 : undefined, transA: c.transA, transB: c.transB,
  });
  return { got, ref };
}

describe('matmul tiling variants', () => {
  // Every dimension and leading dimension a multiple of 4 (vec4 loads), none a multiple of a tile.
  const aligned = { M: 68, N: 72, K: 44, padA: 4, padB: 0 };
  for (const tile of TILES) {
    for (const m of modes) {
      for (const vec4 of tile === DEFAULT_TILE ? [false, true] : [true]) {
        it(`${tileName(tile)} ${tile.reg ? 'register' : vec4 ? 'vec4' : 'scalar'} ${JSON.stringify(m)}`, async () => {
          const c = { ...aligned, ...m };
          const { got, ref } = await runCase(c, tile, vec4, 500);
          expect(relErr(got, ref)).toBeLessThan(1e-6);
          // The same sums in the same order as the default tiling with scalar loads.
          const base = await runCase(c, DEFAULT_TILE, false, 500);
          expect(Array.from(got)).toEqual(Array.from(base.got));
        });
      }
    }
  }
  // Odd leading dimensions and a ragged K: the vec4 request falls back to scalar loads.
  for (const tile of TILES.slice(1)) {
    it(`${tileName(tile)} ${tile.reg ? 'reads' : 'falls back to scalar loads for'} odd leading dimensions`, async () => {
      const c = { M: 37, N: 41, K: 29, padA: 1, padB: 3, transA: true, transB: false, bias: true, accumulate: false };
      const { got, ref } = await runCase(c, tile, true, 600);
      expect(relErr(got, ref)).toBeLessThan(1e-6);
    });
  }
  // Register tiles: the subgroup broadcast path (where the device has subgroups) and the plain
  // loads path give the default's sums bit for bit, at K with and without a remainder of 8 steps
  // and a K shorter than one step, both sides ragged.
  for (const tile of REG_TILES) {
    for (const subgroups of [true, false]) {
      for (const m of modes) {
        for (const K of [40, 3]) {
          it(`${tileName(tile)} ${subgroups ? 'subgroups' : 'plain loads'} K=${K} ${JSON.stringify(m)}`, async (t) => {
            const ctx = await gpuContext();
            if (subgroups && !ctx.device.features.has('subgroups')) t.skip();
            const c = { M: 37, N: 131, K, padA: 3, padB: 1, ...m };
            const { got, ref } = await runCase(c, tile, false, 700 + K, subgroups);
            expect(relErr(got, ref)).toBeLessThan(1e-6);
            const base = await runCase(c, DEFAULT_TILE, false, 700 + K);
            expect(Array.from(got)).toEqual(Array.from(base.got));
          });
        }
      }
    }
  }
  it('refuses a register tile of the wrong form, naming why', async () => {
    const ctx = await gpuContext();
    const r = upload(ctx, new Float32Array(16));
    await expect(matmul(ctx, { label: 'mm', M: 2, N: 2, K: 2, a: r, b: r, out: r, tile: parseTile('16x64x16-64x1-reg') })).rejects.toThrow(/steps K by 8/);
    await expect(matmul(ctx, { label: 'mm', M: 2, N: 2, K: 2, a: r, b: r, out: r, tile: parseTile('16x64x8-8x8-reg') })).rejects.toThrow(/ty = 1/);
    await expect(matmul(ctx, { label: 'mm', M: 2, N: 2, K: 2, a: r, b: r, out: r, tile: parseTile('64x128x8-64x1-reg') })).rejects.toThrow(/outputs per thread/);
  });
  it('refuses a tiling the adapter cannot run, naming why', async () => {
    const ctx = await gpuContext();
    const big = parseTile('256x256x64-16x16'); // 128 KiB of workgroup memory
    const r = upload(ctx, new Float32Array(16));
    await expect(matmul(ctx, { label: 'mm', M: 2, N: 2, K: 2, a: r, b: r, out: r, tile: big })).rejects.toThrow(KernelVariantError);
    await expect(matmul(ctx, { label: 'mm', M: 2, N: 2, K: 2, a: r, b: r, out: r, tile: big })).rejects.toThrow(/workgroup memory/);
  });
});

describe('matmul with the GELU epilogue (c_fc forward)', () => {
  // Pre-activations spread over GELU's whole range (σ = 3), rows and columns off the tiles, a bias.
  const sh = { M: 37, N: 72, K: 44 };
  const cases: Array<{ kind: GeluKind; tile: MatmulTile; vec4: boolean; f16: boolean }> = [];
  for (const kind of ['gelu_new', 'gelu'] as const) {
    for (const tile of TILES) for (const vec4 of [false, true]) cases.push({ kind, tile, vec4, f16: false });
    cases.push({ kind, tile: DEFAULT_TILE, vec4: false, f16: true });
  }
  for (const c of cases) {
    it(`${c.kind} ${tileName(c.tile)} ${c.vec4 ? 'vec4' : 'scalar'}${c.f16 ? ' f16 B' : ''}: the output, and GELU of it as the GELU kernel writes it`, async () => {
      const ctx = await gpuContext();
      if (c.f16 && !ctx.device.features.has('shader-f16')) return; // the f16 suite reports the feature's absence
      const a = upload(ctx, Float32Array.from(randn(sh.M * sh.K, 900), (v) => v * 3));
      const bias = upload(ctx, Float32Array.from(randn(sh.N, 902)));
      const bValues = Float32Array.from(randn(sh.K * sh.N, 901), (v) => v * 0.5);
      let b = upload(ctx, bValues);
      if (c.f16) {
        const half = Uint16Array.from(bValues, f16Bits); // K·N is even: whole 4-byte words
        b = { buffer: ctx.createBuffer(half.byteLength, 'b16', half), offset: 0, size: half.byteLength };
      }
      const base = { label: 'mm', ...sh, a, b, bF16: c.f16, bias, tile: c.tile, vec4: c.vec4 };
      const plain = poisoned(ctx, sh.M * sh.N);
      const plainGelu = poisoned(ctx, sh.M * sh.N, 'gelu');
      await run(ctx, [
        await matmul(ctx, { ...base, out: plain }),
        await geluForward(ctx, { label: 'gelu', n: sh.M * sh.N, kind: c.kind, x: plain, out: plainGelu }),
      ]);
      const out = poisoned(ctx, sh.M * sh.N);
      const g = poisoned(ctx, sh.M * sh.N, 'g');
      await run(ctx, [await matmul(ctx, { ...base, out, gelu: { kind: c.kind, out: g } })]);
      const [want, wantG, got, gotG] = await Promise.all([download(ctx, plain), download(ctx, plainGelu), download(ctx, out), download(ctx, g)]);
      expect(Array.from(got)).toEqual(Array.from(want));
      expect(Array.from(gotG)).toEqual(Array.from(wantG));
      expect(gotG.some((v, i) => v !== got[i])).toBe(true); // the activation really is applied
    });
  }
  it('refuses to accumulate, and a short GELU output', async () => {
    const ctx = await gpuContext();
    const r = upload(ctx, new Float32Array(16));
    const small = upload(ctx, new Float32Array(3));
    await expect(matmul(ctx, { label: 'mm', M: 2, N: 2, K: 2, a: r, b: r, out: r, accumulate: true, gelu: { kind: 'gelu_new', out: r } })).rejects.toThrow(/cannot accumulate/);
    await expect(matmul(ctx, { label: 'mm', M: 2, N: 2, K: 2, a: r, b: r, out: r, gelu: { kind: 'gelu_new', out: small } })).rejects.toThrow(ShapeError);
  });
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
