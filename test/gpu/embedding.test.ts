// shaders/embedding.wgsl against the float64 reference ops: forward (token + position, with
// embedding dropout at site 0), backward dwpe (column sums over the batch) and dwte (the
// deterministic bucket gather), written or accumulated, with dropout regenerating the forward's
// mask; buckets rewritten between steps with fewer unique tokens; more unique tokens than one
// grid dimension covers; the CPU bucket helpers; and the refusals.
import { describe, expect, it } from 'vitest';
import {
  buildTokenBuckets, embeddingBackward, embeddingForward, packTokenBuckets, tokenBucketWords, TokenOutOfRangeError, writeTokenBuckets,
} from '../../src/engine/kernels/embedding.ts';
import { createRngUniform } from '../../src/engine/kernels/dropout.ts';
import { run } from '../../src/engine/gpu/dispatch.ts';
import type { GpuContext } from '../../src/engine/gpu/context.ts';
import { ShapeError } from '../../src/engine/errors.ts';
import * as ref from '../../src/engine/reference/ops.ts';
import { DROPOUT_SITE, dropoutStream } from '../../src/engine/random.ts';
import { download, gpuContext, poisoned, upload } from '../helpers/gpu.ts';
import { randn, relErr, rng } from '../helpers/numeric.ts';

const SEED = 0xc0ffee;

function randomTokens(n: number, range: number, seed: number): Uint32Array {
  const r = rng(seed);
  return Uint32Array.from({ length: n }, () => Math.floor(r() * range));
}

function bucketRange(ctx: GpuContext, BT: number) {
  return upload(ctx, new Uint32Array(tokenBucketWords(BT)).fill(0xdeadbeef), 'buckets');
}

describe('token buckets (CPU)', () => {
  it('groups positions by token, in increasing order', () => {
    const b = buildTokenBuckets(Uint32Array.from([5, 2, 5, 0, 2, 5]), 6);
    expect(Array.from(b.uniqueTokens)).toEqual([0, 2, 5]);
    expect(Array.from(b.starts)).toEqual([0, 1, 3, 6]);
    expect(Array.from(b.positions)).toEqual([3, 1, 4, 0, 2, 5]);
  });

  it('is a partition of the positions for random batches', () => {
    for (const [n, range] of [[1, 1], [74, 5], [500, 311], [4096, 50257]]) {
      const tokens = randomTokens(n, range, n + range);
      const b = buildTokenBuckets(tokens, range);
      expect(b.starts[0]).toBe(0);
      expect(b.starts[b.uniqueTokens.length]).toBe(n);
      expect(new Set(b.positions).size).toBe(n);
      for (let u = 0; u < b.uniqueTokens.length; u++) {
        if (u > 0) expect(b.uniqueTokens[u]).toBeGreaterThan(b.uniqueTokens[u - 1]);
        expect(b.starts[u + 1]).toBeGreaterThan(b.starts[u]);
        for (let k = b.starts[u]; k < b.starts[u + 1]; k++) {
          expect(tokens[b.positions[k]]).toBe(b.uniqueTokens[u]);
          if (k > b.starts[u]) expect(b.positions[k]).toBeGreaterThan(b.positions[k - 1]);
        }
      }
    }
  });

  it('packs [U | unique | starts | positions] at capacity offsets, and refuses what does not fit', () => {
    const b = buildTokenBuckets(Uint32Array.from([7, 3, 7]), 8);
    const w = packTokenBuckets(b, 5);
    expect(w.length).toBe(tokenBucketWords(5));
    expect(w[0]).toBe(2);
    expect(Array.from(w.subarray(1, 3))).toEqual([3, 7]);
    expect(Array.from(w.subarray(6, 9))).toEqual([0, 1, 3]);
    expect(Array.from(w.subarray(12, 15))).toEqual([1, 0, 2]);
    expect(() => packTokenBuckets(b, 2)).toThrow(ShapeError);
  });

  it('refuses a token outside the vocabulary', () => {
    expect(() => buildTokenBuckets(Uint32Array.from([1, 2, 311]), 311)).toThrow(TokenOutOfRangeError);
  });
});

interface Case {
  B: number;
  T: number;
  C: number;
  V: number;
  P: number;
  /** tokens drawn from [0, range): small ranges repeat tokens */
  range: number;
  p: number;
  accumulateWte: boolean;
  accumulateWpe: boolean;
}

describe('embedding kernel', () => {
  const cases: Case[] = [
    { B: 2, T: 37, C: 48, V: 311, P: 40, range: 311, p: 0, accumulateWte: true, accumulateWpe: false },
    { B: 2, T: 37, C: 48, V: 311, P: 40, range: 9, p: 0.1, accumulateWte: false, accumulateWpe: true },
    { B: 3, T: 5, C: 300, V: 50, P: 5, range: 2, p: 0.5, accumulateWte: true, accumulateWpe: true },
    { B: 1, T: 1, C: 1, V: 1, P: 1, range: 1, p: 0, accumulateWte: false, accumulateWpe: false },
  ];
  let seed = 10;
  for (const c of cases) {
    it(`B=${c.B} T=${c.T} C=${c.C} V=${c.V} P=${c.P} tokens<${c.range} p=${c.p} accWte=${c.accumulateWte} accWpe=${c.accumulateWpe}`, async () => {
      const ctx = await gpuContext();
      const { B, T, C, V, P } = c;
      seed += 10;
      const step = 4;
      const micro = 2;
      const stream = dropoutStream(step, micro, DROPOUT_SITE.embedding);
      const rngBuf = createRngUniform(ctx, 'rng', SEED, step);
      const dropout = { p: c.p, micro, rng: rngBuf };
      const wte = Float32Array.from(randn(V * C, seed));
      const wpe = Float32Array.from(randn(P * C, seed + 1));
      const tokens = randomTokens(B * T, c.range, seed + 2);
      const tokRange = upload(ctx, tokens, 'tokens');
      const out = poisoned(ctx, B * T * C);
      const dims = { B, T, C, V, P, dropout };
      await run(ctx, [await embeddingForward(ctx, { label: 'emb', ...dims, tokens: tokRange, wte: upload(ctx, wte), wpe: upload(ctx, wpe), out })]);
      const tok32 = Int32Array.from(tokens);
      const wantOut = ref.dropoutForward(ref.encoderForward(Float64Array.from(wte), Float64Array.from(wpe), tok32, B, T, C), c.p, SEED, stream);
      const gotOut = await download(ctx, out);
      expect(relErr(gotOut, wantOut)).toBeLessThan(1e-6);
      let maskBad = 0;
      for (let i = 0; i < wantOut.length; i++) if ((gotOut[i] === 0) !== (wantOut[i] === 0)) maskBad++;
      expect(maskBad).toBe(0);

      const dout = Float32Array.from(randn(B * T * C, seed + 3));
      const dwte0 = Float32Array.from(randn(V * C, seed + 4));
      const dwpe0 = Float32Array.from(randn(P * C, seed + 5));
      const dwte = c.accumulateWte ? upload(ctx, dwte0) : poisoned(ctx, V * C);
      const dwpe = c.accumulateWpe ? upload(ctx, dwpe0) : poisoned(ctx, P * C);
      const buckets = bucketRange(ctx, B * T);
      writeTokenBuckets(ctx, buckets, tokens, V);
      const ds = await embeddingBackward(ctx, {
        label: 'emb.bwd', ...dims, dout: upload(ctx, dout), buckets, dwte, accumulateWte: c.accumulateWte, dwpe, accumulateWpe: c.accumulateWpe,
      });
      expect(ds.length).toBe(c.accumulateWte ? 2 : 3);
      await run(ctx, ds);
      const g = ref.encoderBackward(ref.dropoutBackward(Float64Array.from(dout), c.p, SEED, stream), tok32, B, T, C, V, P);
      const wantWte = c.accumulateWte ? g.dwte.map((v, i) => v + dwte0[i]) : g.dwte;
      const wantWpe = c.accumulateWpe ? g.dwpe.map((v, i) => v + dwpe0[i]) : g.dwpe;
      expect(relErr(await download(ctx, dwte), wantWte)).toBeLessThan(1e-6);
      expect(relErr(await download(ctx, dwpe), wantWpe)).toBeLessThan(1e-6);
    });
  }

  it('replays with new tokens written into the same bucket buffer (fewer unique tokens than before)', async () => {
    const ctx = await gpuContext();
    const B = 2;
    const T = 37;
    const C = 48;
    const V = 311;
    const P = 37;
    const buckets = bucketRange(ctx, B * T);
    const dout = Float32Array.from(randn(B * T * C, 3));
    const dwte = poisoned(ctx, V * C);
    const ds = await embeddingBackward(ctx, { label: 'replay', B, T, C, V, P, dout: upload(ctx, dout), buckets, dwte, accumulateWte: false });
    for (const [range, s] of [[311, 1], [3, 2], [1, 3]]) {
      const tokens = randomTokens(B * T, range, s);
      writeTokenBuckets(ctx, buckets, tokens, V);
      await run(ctx, ds);
      const g = ref.encoderBackward(Float64Array.from(dout), Int32Array.from(tokens), B, T, C, V, P);
      expect(relErr(await download(ctx, dwte), g.dwte)).toBeLessThan(1e-6);
    }
  });

  it('bucket slots at and beyond U are never read, whatever they hold', async () => {
    const ctx = await gpuContext();
    const B = 1;
    const T = 20;
    const C = 7;
    const V = 30;
    const BT = B * T;
    const tokens = randomTokens(BT, 4, 9); // U ≤ 4, so most slots are unused
    const words = packTokenBuckets(buildTokenBuckets(tokens, V), BT);
    const U = words[0];
    // Unused slots claim token 1 with the whole batch as its positions (starts 0, n, 0, n ...).
    for (let g = U; g < BT; g++) words[1 + g] = 1;
    for (let k = U + 1; k <= BT; k++) words[1 + BT + k] = (k - U) % 2 === 1 ? 0 : BT;
    const dout = Float32Array.from(randn(BT * C, 10));
    const dwte = poisoned(ctx, V * C);
    await run(ctx, await embeddingBackward(ctx, { label: 'tail', B, T, C, V, P: T, dout: upload(ctx, dout), buckets: upload(ctx, words), dwte }));
    const g = ref.encoderBackward(Float64Array.from(dout), Int32Array.from(tokens), B, T, C, V, T);
    expect(relErr(await download(ctx, dwte), g.dwte)).toBeLessThan(1e-6);
  });

  it('more unique tokens than one grid dimension covers (B·T = 70000 distinct tokens)', async () => {
    const ctx = await gpuContext();
    const T = Math.max(70000, ctx.limits.maxComputeWorkgroupsPerDimension + 1000);
    const B = 1;
    const C = 2;
    const V = T + 3;
    const P = T;
    // a permutation of [0, V) minus three ids: every position its own bucket
    const r = rng(5);
    const perm = Uint32Array.from({ length: V }, (_, i) => i);
    for (let i = V - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [perm[i], perm[j]] = [perm[j], perm[i]];
    }
    const tokens = perm.slice(0, T);
    const wte = Float32Array.from(randn(V * C, 6));
    const wpe = Float32Array.from(randn(P * C, 7));
    const dout = Float32Array.from(randn(B * T * C, 8));
    const out = poisoned(ctx, B * T * C);
    const dwte = poisoned(ctx, V * C);
    const dwpe = poisoned(ctx, P * C);
    const buckets = bucketRange(ctx, B * T);
    writeTokenBuckets(ctx, buckets, tokens, V);
    const dims = { B, T, C, V, P };
    await run(ctx, [
      await embeddingForward(ctx, { label: 'big', ...dims, tokens: upload(ctx, tokens), wte: upload(ctx, wte), wpe: upload(ctx, wpe), out }),
      ...(await embeddingBackward(ctx, { label: 'big.bwd', ...dims, dout: upload(ctx, dout), buckets, dwte, dwpe })),
    ]);
    const tok32 = Int32Array.from(tokens);
    expect(relErr(await download(ctx, out), ref.encoderForward(Float64Array.from(wte), Float64Array.from(wpe), tok32, B, T, C))).toBeLessThan(1e-6);
    const g = ref.encoderBackward(Float64Array.from(dout), tok32, B, T, C, V, P);
    expect(relErr(await download(ctx, dwte), g.dwte)).toBeLessThan(1e-6);
    expect(relErr(await download(ctx, dwpe), g.dwpe)).toBeLessThan(1e-6);
  });

  it('a token id ≥ V in the forward gives NaN rows (only those)', async () => {
    const ctx = await gpuContext();
    const B = 1;
    const T = 3;
    const C = 5;
    const V = 4;
    const out = poisoned(ctx, B * T * C);
    await run(ctx, [await embeddingForward(ctx, {
      label: 'oov', B, T, C, V, P: T, tokens: upload(ctx, Uint32Array.from([1, 4, 3])),
      wte: upload(ctx, Float32Array.from(randn(V * C, 1))), wpe: upload(ctx, Float32Array.from(randn(T * C, 2))), out,
    })]);
    const got = await download(ctx, out);
    expect(got.subarray(0, C).every(Number.isFinite)).toBe(true);
    expect(got.subarray(C, 2 * C).every(Number.isNaN)).toBe(true);
    expect(got.subarray(2 * C).every(Number.isFinite)).toBe(true);
  });

  it('refuses T > n_positions, a backward with no gradient, and short buffers', async () => {
    const ctx = await gpuContext();
    const f = upload(ctx, new Float32Array(64));
    const t = upload(ctx, new Uint32Array(8));
    await expect(embeddingForward(ctx, { label: 'a', B: 1, T: 8, C: 2, V: 4, P: 7, tokens: t, wte: f, wpe: f, out: f })).rejects.toThrow(ShapeError);
    await expect(embeddingForward(ctx, { label: 'b', B: 1, T: 8, C: 2, V: 40, P: 8, tokens: t, wte: f, wpe: f, out: f })).rejects.toThrow(ShapeError);
    await expect(embeddingBackward(ctx, { label: 'c', B: 1, T: 8, C: 2, V: 4, P: 8, dout: f, buckets: bucketRange(ctx, 8) })).rejects.toThrow(ShapeError);
    await expect(embeddingBackward(ctx, { label: 'd', B: 1, T: 8, C: 2, V: 4, P: 8, dout: f, buckets: bucketRange(ctx, 4), dwte: f })).rejects.toThrow(ShapeError);
  });
});
