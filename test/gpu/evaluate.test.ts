// Held-out evaluation on the golden tiny GPT-2 against the float64 reference (refForward, window
// by window): mean loss to 1e-5 relative, top-1 accuracy exact, over every window of the stream
// (W = ⌊(N−1)/T⌋), whatever the batch size (a last partial batch included) and with the LM head
// in several chunks. Then the counts and the bad-input errors.
import { beforeAll, describe, expect, it } from 'vitest';
import { nodeGpu } from '../../src/cli/webgpu-node.ts';
import { GpuContext } from '../../src/engine/gpu/context.ts';
import { run } from '../../src/engine/gpu/dispatch.ts';
import { argmaxRows, NO_ARGMAX } from '../../src/engine/kernels/argmax.ts';
import { evaluate, Evaluator } from '../../src/engine/eval/evaluate.ts';
import { TokenOutOfRangeError } from '../../src/engine/kernels/embedding.ts';
import { GpuWeights } from '../../src/engine/model/weights.ts';
import { refForward, toF64Params } from '../../src/engine/reference/gpt2.ts';
import { NotEnoughTokensError, WindowSampler } from '../../src/engine/train/data.ts';
import { Trainer } from '../../src/engine/train/trainer.ts';
import { loadGoldens } from '../helpers/goldens.ts';
import { download, gpuContext, upload } from '../helpers/gpu.ts';
import { randn } from '../helpers/numeric.ts';

const G = loadGoldens();
const V = G.config.vocabSize;
const T = 37;

/** The float64 reference over every window: summed loss, correct top-1 predictions, targets. */
function reference(tokens: ArrayLike<number>, T: number, params = G.params): { loss: number; correct: number; targets: number; windows: number } {
  const ref = toF64Params(params);
  const W = Math.floor((tokens.length - 1) / T);
  let sum = 0;
  let correct = 0;
  for (let w = 0; w < W; w++) {
    const inputs = Int32Array.from({ length: T }, (_, t) => tokens[w * T + t]);
    const targets = Int32Array.from({ length: T }, (_, t) => tokens[w * T + t + 1]);
    const r = refForward(G.config, ref, inputs, targets, 1, T);
    for (let t = 0; t < T; t++) {
      sum += r.losses![t];
      let best = 0;
      for (let v = 1; v < V; v++) if (r.logits[t * V + v] > r.logits[t * V + best]) best = v; // ties → lowest id
      if (best === targets[t]) correct++;
    }
  }
  return { loss: sum / (W * T), correct, targets: W * T, windows: W };
}

const REF = reference(G.tokens, T);

let ctx: GpuContext;
let weights: GpuWeights;

beforeAll(async () => {
  ctx = await gpuContext();
  weights = new GpuWeights(ctx, G.config, G.params);
});

describe('evaluation over every held-out window matches the float64 reference', () => {
  for (const B of [4, 3, 1]) {
    it(`B = ${B}: loss (rel ≤ 1e-5), perplexity, accuracy (exact) and counts`, async () => {
      const r = await evaluate(ctx, weights, G.tokens, { batch: B, seq: T });
      expect(REF.windows).toBe(21);
      expect(r.windows).toBe(REF.windows);
      expect(r.batches).toBe(Math.ceil(21 / B));
      expect(r.tokens).toBe(REF.targets);
      expect(r.unscored).toBe(G.tokens.length - 1 - 21 * T);
      expect(Math.abs(r.loss - REF.loss) / REF.loss).toBeLessThan(1e-5);
      expect(r.perplexity).toBeCloseTo(Math.exp(r.loss), 10);
      expect(r.correct).toBe(REF.correct);
      expect(r.accuracy).toBe(REF.correct / REF.targets);
      console.log(`[evaluate] B=${B}: loss ${r.loss.toFixed(6)} (ref ${REF.loss.toFixed(6)}), ppl ${r.perplexity.toFixed(3)}, accuracy ${r.correct}/${r.tokens}, ${r.batches} batches, ${r.tokensPerSecond.toFixed(0)} tok/s`);
    });
  }

  it('the LM head in two chunks (a binding limit of 64 rows of logits)', async () => {
    // 64 rows × 311 logits × 4 bytes: the head computes rows 0-63 and 64-73 of each (2, 37) batch.
    const small = await GpuContext.create(await nodeGpu(), 'high-performance', { maxStorageBufferBindingSize: 64 * V * 4 });
    const w = new GpuWeights(small, G.config, G.params);
    const e = await Evaluator.create(small, w, { batch: 2, seq: T });
    const r = await e.evaluate(G.tokens);
    expect(Math.abs(r.loss - REF.loss) / REF.loss).toBeLessThan(1e-5);
    expect(r.correct).toBe(REF.correct);
    e.destroy();
    w.destroy();
    small.destroy();
  });

  it('after training (top-1 accuracy far above chance), every window still matches', async () => {
    // A model that predicts: 60 AdamW steps on the stream itself.
    const w = new GpuWeights(ctx, G.config, G.params);
    const trainer = await Trainer.create(ctx, w, {
      batch: 4, seq: T, gradAccum: 1, dropout: { embd: 0, attn: 0, resid: 0 }, seed: 0,
      beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, gradClip: 1, frozen: new Set(),
    });
    const sampler = new WindowSampler({ tokens: G.tokens, T, shuffle: false, seed: 0 });
    for (let s = 0; s < 60; s++) {
      const b = sampler.nextBatch(4);
      await trainer.submit([{ inputs: b.inputs.slice(), targets: b.targets.slice() }], () => 1e-2);
    }
    await trainer.drain();
    trainer.destroy();
    const trained = await w.download();
    const ref = reference(G.tokens, T, trained);
    const r = await evaluate(ctx, w, G.tokens, { batch: 4, seq: T });
    console.log(`[evaluate] trained: loss ${r.loss.toFixed(6)} (ref ${ref.loss.toFixed(6)}), accuracy ${r.correct}/${r.tokens} (ref ${ref.correct})`);
    expect(ref.correct / ref.targets).toBeGreaterThan(0.1); // 122 of 777 here; chance is 1/311
    expect(Math.abs(r.loss - ref.loss) / ref.loss).toBeLessThan(1e-5);
    expect(r.correct).toBe(ref.correct);
    w.destroy();
  });

  it('a stream of exactly one window, and progress reports', async () => {
    const tokens = G.tokens.slice(200, 200 + T + 1);
    const one = reference(tokens, T);
    const seen: number[] = [];
    const r = await evaluate(ctx, weights, tokens, { batch: 4, seq: T, onProgress: (p) => seen.push(p.windowsDone) });
    expect(r.windows).toBe(1);
    expect(r.unscored).toBe(0);
    expect(Math.abs(r.loss - one.loss) / one.loss).toBeLessThan(1e-5);
    expect(r.correct).toBe(one.correct);
    expect(seen.at(-1)).toBe(1);
  });
});

describe('evaluation errors', () => {
  it('data shorter than one window, and token ids outside the vocabulary', async () => {
    await expect(evaluate(ctx, weights, G.tokens.slice(0, T), { batch: 2, seq: T })).rejects.toThrow(NotEnoughTokensError);
    await expect(evaluate(ctx, weights, G.tokens.slice(0, T), { batch: 2, seq: T })).rejects.toThrow(/37 tokens; one window of 37 targets needs 38/);
    const bad = Uint32Array.from(G.tokens);
    bad[500] = V;
    await expect(evaluate(ctx, weights, bad, { batch: 2, seq: T })).rejects.toThrow(TokenOutOfRangeError);
    await expect(Evaluator.create(ctx, weights, { batch: 1, seq: G.config.nPositions + 1 })).rejects.toThrow(/exceeds the model's n_positions 64/);
  });
});

describe('argmax kernel', () => {
  it('rows of random logits, ties to the lowest index, −∞ and NaN never win', async () => {
    const N = 70;
    const logits = Float32Array.from(randn(N * V, 5));
    const expected: number[] = [];
    for (let n = 0; n < N; n++) {
      const row = logits.subarray(n * V, (n + 1) * V);
      if (n % 7 === 1) { row[17] = 9; row[250] = 9; row[3] = 9; } // three-way tie: 3
      if (n % 7 === 2) { row[300] = 9; row[299] = 9; } // 299
      if (n % 7 === 3) { row[0] = Number.NaN; row[310] = 9; } // NaN ignored: 310
      if (n % 7 === 4) { row.fill(Number.NEGATIVE_INFINITY); row[42] = -1e30; } // 42
      if (n % 7 === 5) row.fill(Number.NEGATIVE_INFINITY); // nothing: NO_ARGMAX
      let best = -1;
      for (let v = 0; v < V; v++) if (row[v] > (best < 0 ? -Infinity : row[best]) && row[v] > -3.4028234663852886e38) best = v;
      if (n % 7 === 4) best = 42;
      expected.push(best < 0 ? NO_ARGMAX : best);
    }
    const out = upload(ctx, new Uint32Array(N).fill(12345));
    await run(ctx, [await argmaxRows(ctx, { label: 'argmax', N, V, logits: upload(ctx, logits), out })]);
    const got = Array.from(new Uint32Array((await download(ctx, out)).buffer));
    expect(expected[1]).toBe(3);
    expect(expected[2]).toBe(299);
    expect(expected[3]).toBe(310);
    expect(expected[5]).toBe(NO_ARGMAX);
    expect(got).toEqual(expected);
  });
});
