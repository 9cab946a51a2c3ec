// Held-out evaluation on the golden tiny GPT-2 against the float64 reference (refForward, window
// by window): mean loss to 1e-5 relative, top-1 accuracy exact, over every window of the stream
// (W = ⌊(N−1)/T⌋), whatever the batch size (a last partial batch included) and with the LM head
// in several chunks. Then the counts and the bad-input errors.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { decodeIds, modelTokenizer } from '../../src/cli/commands/generate.ts';
import { main } from '../../src/cli/main.ts';
import { loadModelDir } from '../../src/io/node-model.ts';
import { nodeGpu } from '../../src/cli/webgpu-node.ts';
import { GpuContext } from '../../src/engine/gpu/context.ts';
import { run } from '../../src/engine/gpu/dispatch.ts';
import { argmaxRows, NO_ARGMAX } from '../../src/engine/kernels/argmax.ts';
import { evaluate, Evaluator } from '../../src/engine/eval/evaluate.ts';
import { TokenOutOfRangeError } from '../../src/engine/kernels/embedding.ts';
import { bleuEval, BleuEvalError, bleuPromptStarts } from '../../src/engine/eval/bleu-eval.ts';
import { corpusBleu } from '../../src/engine/eval/bleu.ts';
import { Generator } from '../../src/engine/generate/generator.ts';
import type { HostParams } from '../../src/engine/model/params.ts';
import { GpuWeights } from '../../src/engine/model/weights.ts';
import { refForward, toF64Params } from '../../src/engine/reference/gpt2.ts';
import { refMergeLora } from '../../src/engine/reference/lora.ts';
import { initLoraParams, LoraWeights, loraTargets, type LoraConfig } from '../../src/engine/model/lora.ts';
import { WindowSampler } from '../../src/engine/train/data.ts';
import { NotEnoughTokensError } from '../../src/engine/windows.ts';
import { Trainer } from '../../src/engine/train/trainer.ts';
import { loadGoldens } from '../helpers/goldens.ts';
import { download, gpuContext, upload } from '../helpers/gpu.ts';
import { randn } from '../helpers/numeric.ts';
import { writeTinyModelDir } from '../helpers/tiny-model.ts';

const G = loadGoldens();
const V = G.config.vocabSize;
const T = 37;

/** The float64 reference over every window: summed loss, correct top-1 predictions, targets. */
function reference(tokens: ArrayLike<number>, T: number, params = G.params,
  ref = toF64Params(params)): { loss: number; correct: number; targets: number; windows: number } {
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
let trained: Promise<{ w: GpuWeights; params: HostParams }> | null = null;

/** A model that predicts: the golden model after 60 AdamW steps on the stream itself (built once). */
function trainedModel(): Promise<{ w: GpuWeights; params: HostParams }> {
  trained ??= (async () => {
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
    return { w, params: await w.download() };
  })();
  return trained;
}

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
    const { w, params: trained } = await trainedModel();
    const ref = reference(G.tokens, T, trained);
    const r = await evaluate(ctx, w, G.tokens, { batch: 4, seq: T });
    console.log(`[evaluate] trained: loss ${r.loss.toFixed(6)} (ref ${ref.loss.toFixed(6)}), accuracy ${r.correct}/${r.tokens} (ref ${ref.correct})`);
    expect(ref.correct / ref.targets).toBeGreaterThan(0.1); // 122 of 777 here; chance is 1/311
    expect(Math.abs(r.loss - ref.loss) / ref.loss).toBeLessThan(1e-5);
    expect(r.correct).toBe(ref.correct);
  });

  it('with LoRA adapters: the merged model\'s numbers, LoRA dropout off', async () => {
    const cfg: LoraConfig = { r: 4, alpha: 8, dropout: 0.3, targets: ['c_attn', 'c_proj', 'c_fc'], rslora: false };
    const lp = initLoraParams(G.config, cfg, 5);
    loraTargets(G.config, cfg).forEach((t, k) => lp.set(t.b, Float32Array.from(randn(t.out * cfg.r, 50 + k, 0.2))));
    const lora = new LoraWeights(ctx, G.config, cfg, lp);
    const { w, params } = await trainedModel(); // a base whose predictions the adapters visibly move
    const merged = refMergeLora(G.config, toF64Params(params), { config: cfg, params: toF64Params(lp) });
    const ref = reference(G.tokens, T, params, merged);
    const base = reference(G.tokens, T, params);
    const r = await evaluate(ctx, w, G.tokens, { batch: 4, seq: T, lora });
    console.log(`[evaluate] LoRA: loss ${r.loss.toFixed(6)} (ref ${ref.loss.toFixed(6)}, base ${base.loss.toFixed(6)}), accuracy ${r.correct} (ref ${ref.correct}, base ${base.correct})`);
    expect(Math.abs(ref.loss - base.loss) / base.loss).toBeGreaterThan(1e-3); // the adapters matter
    expect(Math.abs(r.loss - ref.loss) / ref.loss).toBeLessThan(1e-5);
    expect(r.correct).toBe(ref.correct);
    lora.destroy();
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
    // Generation's variant: a row holding NaN anywhere gets NO_ARGMAX, the others are unchanged.
    await run(ctx, [await argmaxRows(ctx, { label: 'argmax.refuseNaN', N, V, logits: upload(ctx, logits), out, refuseNaN: true })]);
    const refusing = Array.from(new Uint32Array((await download(ctx, out)).buffer));
    expect(refusing).toEqual(expected.map((e, n) => (n % 7 === 3 ? NO_ARGMAX : e)));
  });
});

describe('BLEU-4 of greedy continuations', () => {
  // One word per token, so the BLEU words are the token ids themselves.
  const decode = (ids: number[]) => ids.map((i) => `t${i}`).join(' ');

  /** Greedy continuation by the float64 reference (argmax of full forward passes), cut at eos. */
  function refGreedy(params: HostParams, prompt: number[], n: number, eos: number | null): number[] {
    const ref = toF64Params(params);
    const seq = [...prompt];
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const { logits } = refForward(G.config, ref, Int32Array.from(seq), null, 1, seq.length);
      const o = (seq.length - 1) * V;
      let best = 0;
      for (let v = 1; v < V; v++) if (logits[o + v] > logits[o + best]) best = v;
      if (best === eos) break;
      out.push(best);
      seq.push(best);
    }
    return out;
  }

  /** Expected samples of `stream` under the rules of bleu-eval.ts, from the float64 reference. */
  function expected(params: HostParams, stream: ArrayLike<number>, starts: number[], p: number, c: number, eos: number | null) {
    const hyps: string[] = [];
    const refs: string[][] = [];
    for (const s of starts) {
      const prompt = Array.from({ length: p }, (_, t) => stream[s + t]);
      let truth = Array.from({ length: c }, (_, t) => stream[s + p + t]);
      if (eos !== null && truth.includes(eos)) truth = truth.slice(0, truth.indexOf(eos));
      hyps.push(decode(refGreedy(params, prompt, c, eos)));
      refs.push([decode(truth)]);
    }
    return { hyps, refs };
  }

  /**
   * K spans of p + c tokens back to back (so the K evenly spaced prompts are exactly these
   * spans): prompts from the golden stream, continued by the model's own greedy tokens where
   * `own(i)`, else by the stream's true tokens. BLEU is then 100 on the first kind and low on
   * the second.
   */
  function spanStream(K: number, p: number, c: number, own: (i: number) => boolean): number[] {
    const out: number[] = [];
    for (let i = 0; i < K; i++) {
      const s = 100 * i;
      const prompt = Array.from(G.tokens.slice(s, s + p));
      out.push(...prompt, ...(own(i) ? refGreedy(G.params, prompt, c, null) : Array.from(G.tokens.slice(s + p, s + p + c))));
    }
    return out;
  }

  it('hypotheses are the greedy continuations, references the true ones, the score nltk corpus BLEU', async () => {
    const gen = await Generator.create(ctx, weights);
    const starts = bleuPromptStarts(G.tokens.length, 6, 16);
    expect(starts).toEqual([0, 153, 306, 459, 612, 765]); // evenly spaced, the last span ends the stream
    const mixed = spanStream(6, 8, 8, (i) => i % 2 === 0);
    expect(bleuPromptStarts(mixed.length, 6, 16)).toEqual([0, 16, 32, 48, 64, 80]);
    for (const [name, stream] of [['golden stream', Array.from(G.tokens)], ['half own continuations', mixed]] as const) {
      for (const smoothing of ['none', 'method1'] as const) {
        const r = await bleuEval(gen, stream, decode, { prompts: 6, promptTokens: 8, continuationTokens: 8, smoothing }, { eosTokenId: null });
        const e = expected(G.params, stream, bleuPromptStarts(stream.length, 6, 16), 8, 8, null);
        expect(r.samples.map((x) => x.hypothesis)).toEqual(e.hyps);
        expect(r.samples.map((x) => [x.reference])).toEqual(e.refs);
        expect(r.score).toBe(corpusBleu(e.refs, e.hyps, { smoothing }).score);
        expect(r.prompts).toBe(6);
        console.log(`[bleu] ${name}, ${smoothing}: ${r.score.toFixed(2)} (precisions ${r.precisions.map((x) => x.toFixed(3)).join(' ')}, BP ${r.brevityPenalty.toFixed(3)})`);
        if (stream === mixed) {
          expect(r.score).toBeGreaterThan(30);
          expect(r.score).toBeLessThan(100);
        }
      }
    }
    const own = spanStream(3, 8, 8, () => true);
    expect((await bleuEval(gen, own, decode, { prompts: 3, promptTokens: 8, continuationTokens: 8, smoothing: 'none' }, { eosTokenId: null })).score).toBeCloseTo(100, 10);
    gen.destroy();
  });

  it('EOS ends the hypothesis and cuts the reference', async () => {
    const gen = await Generator.create(ctx, weights);
    const starts = bleuPromptStarts(G.tokens.length, 8, 20);
    const stream = Array.from(G.tokens);
    for (const eos of [stream[starts[1] + 8 + 3], refGreedy(G.params, stream.slice(starts[2], starts[2] + 8), 12, null)[5]]) {
      const r = await bleuEval(gen, stream, decode, { prompts: 8, promptTokens: 8, continuationTokens: 12, smoothing: 'method1' }, { eosTokenId: eos });
      const e = expected(G.params, stream, starts, 8, 12, eos);
      expect(r.samples.map((x) => x.hypothesis)).toEqual(e.hyps);
      expect(r.samples.map((x) => [x.reference])).toEqual(e.refs);
      expect(e.refs.some(([x]) => x.split(' ').length < 12) || e.hyps.some((x) => x.split(' ').length < 12)).toBe(true); // something was cut
      expect(r.score).toBe(corpusBleu(e.refs, e.hyps, { smoothing: 'method1' }).score);
    }
    gen.destroy();
  });

  it('refuses spans beyond n_positions, data shorter than one span, and zero prompts', async () => {
    const gen = await Generator.create(ctx, weights);
    const o = { prompts: 4, promptTokens: 32, continuationTokens: 33, smoothing: 'none' as const };
    await expect(bleuEval(gen, G.tokens, decode, o)).rejects.toThrow(BleuEvalError);
    await expect(bleuEval(gen, G.tokens, decode, o)).rejects.toThrow(/65 tokens, more than the model's context of n_positions = 64/);
    await expect(bleuEval(gen, G.tokens.slice(0, 20), decode, { ...o, continuationTokens: 8 })).rejects.toThrow(/20 tokens; one BLEU prompt and continuation need 40/);
    await expect(bleuEval(gen, G.tokens, decode, { ...o, prompts: 0 })).rejects.toThrow(/prompts must be a whole number ≥ 1/);
    expect(bleuPromptStarts(50, 10, 45)).toEqual([0, 1, 2, 3, 4, 5]); // fewer spans than asked when the stream is short
    expect(bleuPromptStarts(40, 3, 40)).toEqual([0]);
    gen.destroy();
  });
});

describe('cli eval and train --eval-every', () => {
  const GOLD = new URL('../goldens/gpt2-tiny/', import.meta.url).pathname;

  async function cli(args: string[]): Promise<{ code: number; lines: string[] }> {
    const lines: string[] = [];
    const err = vi.spyOn(console, 'error').mockImplementation(() => {}); // progress lines
    try {
      return { code: await main(args, (l) => lines.push(l)), lines };
    } finally {
      err.mockRestore();
    }
  }

  it('eval prints one JSON object: the engine\'s loss, perplexity, accuracy, BLEU and counts', async () => {
    const dir = writeTinyModelDir(join(mkdtempSync(join(tmpdir(), 'cli-eval-')), 'tiny'));
    const r = await cli(['eval', '--model', dir, '--data', join(GOLD, 'train.bin'), '--seq', String(T), '--batch', '3',
      '--bleu-prompts', '4', '--bleu-prompt-tokens', '12', '--bleu-continuation-tokens', '10', '--smoothing', 'method1', '--bleu-samples', '2']);
    expect(r.code).toBe(0);
    expect(r.lines).toHaveLength(1);
    const j = JSON.parse(r.lines[0]);
    expect(Math.abs(j.loss - REF.loss) / REF.loss).toBeLessThan(1e-5);
    expect(j.perplexity).toBeCloseTo(Math.exp(j.loss), 3);
    expect(j.accuracy).toBeCloseTo(REF.correct / REF.targets, 6);
    expect(j.counts).toMatchObject({ data_tokens: 781, windows: 21, targets: 777, correct: REF.correct, unscored_tokens: 3, batches: 7, bleu_prompts: 4 });
    expect(j.settings).toEqual({ seq: T, batch: 3, bleu_prompt_tokens: 12, bleu_continuation_tokens: 10, smoothing: 'method1' });
    // BLEU as the engine computes it with the folder's tokenizer.
    const { tokenizer } = await modelTokenizer(dir);
    const g = await Generator.create(ctx, weights);
    const b = await bleuEval(g, G.tokens, (ids) => decodeIds(tokenizer, ids), { prompts: 4, promptTokens: 12, continuationTokens: 10, smoothing: 'method1' });
    g.destroy();
    expect(j.bleu).toBeCloseTo(b.score, 5);
    expect(j.bleu_detail.matches).toEqual(b.matches);
    expect(j.counts.bleu_hypothesis_words).toBe(b.hypLength);
    expect(j.bleu_samples).toEqual(b.samples.slice(0, 2));
  });

  it('eval of a text file tokenized with the folder\'s tokenizer, without BLEU', async () => {
    const root = mkdtempSync(join(tmpdir(), 'cli-eval-text-'));
    const dir = writeTinyModelDir(join(root, 'tiny'));
    const text = 'The cat sat on the mat. The dog sat on the log. '.repeat(12);
    writeFileSync(join(root, 'held.txt'), text);
    const r = await cli(['eval', '--model', dir, '--data', join(root, 'held.txt'), '--seq', '20', '--batch', '2', '--bleu-prompts', '0']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.lines[0]);
    const { tokenizer } = await modelTokenizer(dir);
    const ids = [...tokenizer.encode(text), tokenizer.eosId]; // one document, followed by EOS
    const e = await evaluate(ctx, weights, ids, { batch: 2, seq: 20 });
    expect(j.counts.data_tokens).toBe(ids.length);
    expect(j.counts.windows).toBe(e.windows);
    expect(Math.abs(j.loss - e.loss) / e.loss).toBeLessThan(1e-6);
    expect(j.counts.correct).toBe(e.correct);
    expect(j.bleu).toBeNull();
    expect(j.bleu_detail).toBeUndefined();
  });

  it('train --eval-every: eval lines after steps 3, 6 and the last, each on the weights after that step', async () => {
    const root = mkdtempSync(join(tmpdir(), 'cli-train-eval-'));
    const base = ['train', '--model', join(GOLD, 'model'), '--data', join(GOLD, 'train.bin'), '--batch', '2', '--seq', '16', '--lr', '1e-2', '--dropout', '0', '--schedule', 'constant'];
    const held = Uint16Array.from(G.tokens.slice(400));
    writeFileSync(join(root, 'held.bin'), new Uint8Array(held.buffer));
    const log = join(root, 'log.jsonl');
    const r = await cli([...base, '--steps', '7', '--out', join(root, 'out7'), '--eval-data', join(root, 'held.bin'), '--eval-every', '3', '--log', log]);
    expect(r.code).toBe(0);
    const lines = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const evals = lines.filter((l) => 'eval_loss' in l);
    expect(evals.map((l) => l.step)).toEqual([3, 6, 7]);
    expect(lines.map((l) => l.step)).toEqual([1, 2, 3, 3, 4, 5, 6, 6, 7, 7]); // each evaluation right after its step
    for (const l of evals) {
      expect(Object.keys(l).sort()).toEqual(['eval_acc', 'eval_loss', 'eval_ppl', 'step']);
      expect(l.eval_ppl).toBeCloseTo(Math.exp(l.eval_loss), 8);
    }
    expect(r.lines.filter((l) => l.startsWith('eval after step'))).toHaveLength(3);
    // The same numbers from the saved weights after 7 steps, and from a separate 3-step run.
    const check = async (outDir: string, l: { eval_loss: number; eval_acc: number }) => {
      const m = await loadModelDir(outDir);
      const w = new GpuWeights(ctx, m.config, m.params);
      const e = await evaluate(ctx, w, held, { batch: 2, seq: 16 });
      w.destroy();
      expect(Math.abs(l.eval_loss - e.loss) / e.loss).toBeLessThan(1e-6);
      expect(l.eval_acc).toBe(e.accuracy);
    };
    await check(join(root, 'out7'), evals[2]);
    expect((await cli([...base, '--steps', '3', '--out', join(root, 'out3')])).code).toBe(0);
    await check(join(root, 'out3'), evals[0]);
    expect(evals[0].eval_loss).not.toBe(evals[2].eval_loss);
  });

  it('train: --eval-every without --eval-data, and held-out data shorter than a window', async () => {
    const root = mkdtempSync(join(tmpdir(), 'cli-train-eval-bad-'));
    writeFileSync(join(root, 'short.bin'), new Uint8Array(new Uint16Array([1, 2, 3]).buffer));
    const base = ['train', '--model', join(GOLD, 'model'), '--data', join(GOLD, 'train.bin'), '--out', join(root, 'o'), '--steps', '1', '--batch', '1', '--seq', '8'];
    const errs: string[] = [];
    const spy = vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void errs.push(a.join(' ')));
    try {
      expect(await main([...base, '--eval-every', '2'], () => {})).toBe(2);
      expect(errs.at(-1)).toMatch(/^error: train: --eval-every needs --eval-data <file>/);
      expect(await main([...base, '--eval-data', join(root, 'short.bin')], () => {})).toBe(2);
      expect(errs.at(-1)).toMatch(/^error: train: the --eval-data has 3 tokens, shorter than one window of --seq 8/);
    } finally {
      spy.mockRestore();
    }
  });
});
