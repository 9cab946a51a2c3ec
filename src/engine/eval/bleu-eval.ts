// BLEU-4 of greedy continuations on held-out data: the hypotheses are the model's greedy
// continuations of prompts taken from the held-out token stream, the references the stream's
// true continuations, scored with corpus BLEU exactly as nltk's corpus_bleu (eval/bleu.ts: word
// tokens `\w+|[^\w\s]`, uniform weights, brevity penalty; smoothing off or nltk's method1).
//
// Prompts: up to `prompts` spans of promptTokens + continuationTokens tokens, at evenly spaced
// starts of the stream: start_i = ⌊i·(N − span)/(n − 1)⌋ for i = 0 … n−1 (the first at 0, the
// last at the end of the stream), n = min(prompts, N − span + 1). Spans may overlap when the
// stream is short. A continuation ends at EOS on both sides: generation stops there (Hugging
// Face generate()'s eos_token_id) and the reference is cut before its first EOS (the next
// document is not what the prompt continues). Texts come from the caller's `decode` (the
// model's tokenizer), so the engine stays free of tokenizer files.
import { StudioError } from '../errors.ts';
import { GREEDY, type Generator } from '../generate/generator.ts';
import { corpusBleu, type BleuResult, type BleuSmoothing } from './bleu.ts';
import { tokensPerSecond } from '../throughput.ts';

/** BLEU settings that cannot be used with this model or data. */
export class BleuEvalError extends StudioError {}

export interface BleuEvalOptions {
  /** prompts at most (evenly spaced over the stream) */
  prompts: number;
  /** tokens of each prompt */
  promptTokens: number;
  /** tokens of each continuation: the reference length and the most the model generates */
  continuationTokens: number;
  smoothing: BleuSmoothing;
}

/** Defaults: 50 prompts of 32 tokens continued by 32 tokens (64 fit every GPT-2 context), no smoothing as nltk. */
export const DEFAULT_BLEU_EVAL: BleuEvalOptions = { prompts: 50, promptTokens: 32, continuationTokens: 32, smoothing: 'none' };

export interface BleuSample {
  /** position of the prompt in the stream */
  start: number;
  prompt: string;
  hypothesis: string;
  reference: string;
}

export interface BleuEvalResult extends BleuResult {
  /** prompts scored */
  prompts: number;
  promptTokens: number;
  continuationTokens: number;
  smoothing: BleuSmoothing;
  /** every prompt with its greedy continuation and true continuation */
  samples: BleuSample[];
  /** wall time of the pass */
  ms: number;
  /** generated tokens per second over the whole pass */
  tokensPerSecond: number;
}

export interface BleuRunOptions {
  /** stop token on both sides; default the model's eos_token_id; null: never cut */
  eosTokenId?: number | null;
  onProgress?(done: number, total: number): void;
  signal?: AbortSignal;
}

/** Evenly spaced starts of `count` spans of `span` tokens in a stream of N tokens (see the header). */
export function bleuPromptStarts(N: number, count: number, span: number): number[] {
  const n = Math.min(count, N - span + 1);
  if (n < 1) return [];
  if (n === 1) return [0];
  return Array.from({ length: n }, (_, i) => Math.floor((i * (N - span)) / (n - 1)));
}

function checkOptions(o: BleuEvalOptions, nPositions: number, N: number): void {
  for (const k of ['prompts', 'promptTokens', 'continuationTokens'] as const) {
    if (!(Number.isInteger(o[k]) && o[k] >= 1)) throw new BleuEvalError(`BLEU ${k} must be a whole number ≥ 1, got ${o[k]}.`);
  }
  const span = o.promptTokens + o.continuationTokens;
  if (span > nPositions) {
    throw new BleuEvalError(
      `A BLEU prompt of ${o.promptTokens} tokens plus a continuation of ${o.continuationTokens} is ${span} tokens, more than the model's context of n_positions = ${nPositions}. Use shorter prompts or continuations.`,
    );
  }
  if (N < span) {
    throw new BleuEvalError(`The evaluation data has ${N} tokens; one BLEU prompt and continuation need ${span}. Add held-out data or use shorter prompts or continuations.`);
  }
}

/** Corpus BLEU-4 of greedy continuations of held-out prompts against the true continuations. */
export async function bleuEval(
  generator: Generator, tokens: ArrayLike<number>, decode: (ids: number[]) => string, opts: BleuEvalOptions, run: BleuRunOptions = {},
): Promise<BleuEvalResult> {
  const c = generator.config;
  checkOptions(opts, c.nPositions, tokens.length);
  const eos = run.eosTokenId === undefined ? c.eosTokenId : run.eosTokenId;
  const span = opts.promptTokens + opts.continuationTokens;
  const starts = bleuPromptStarts(tokens.length, opts.prompts, span);
  const samples: BleuSample[] = [];
  let generated = 0;
  const t0 = performance.now();
  for (const [i, s] of starts.entries()) {
    if (run.signal?.aborted) throw new DOMException('BLEU evaluation aborted.', 'AbortError');
    const prompt = Array.from({ length: opts.promptTokens }, (_, t) => tokens[s + t]);
    let truth = Array.from({ length: opts.continuationTokens }, (_, t) => tokens[s + opts.promptTokens + t]);
    const r = await generator.generate(prompt, { maxNewTokens: opts.continuationTokens, sampling: GREEDY, eosTokenId: eos });
    generated += r.tokens.length;
    const hyp = r.stop === 'eos' ? r.tokens.slice(0, -1) : r.tokens;
    if (eos !== null && truth.includes(eos)) truth = truth.slice(0, truth.indexOf(eos));
    samples.push({ start: s, prompt: decode(prompt), hypothesis: decode(hyp), reference: decode(truth) });
    run.onProgress?.(i + 1, starts.length);
  }
  const ms = performance.now() - t0;
  const bleu = corpusBleu(samples.map((x) => [x.reference]), samples.map((x) => x.hypothesis), { smoothing: opts.smoothing });
  return {
    ...bleu,
    prompts: samples.length,
    promptTokens: opts.promptTokens,
    continuationTokens: opts.continuationTokens,
    smoothing: opts.smoothing,
    samples,
    ms,
    tokensPerSecond: tokensPerSecond(generated, ms),
  };
}
