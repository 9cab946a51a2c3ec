// Evaluation for the page: loss, perplexity and next-token accuracy on the validation split
// (engine/eval/evaluate.ts) and BLEU-4 of greedy continuations of validation prompts
// (engine/eval/bleu-eval.ts), for the fine-tuned weights and for the loaded base model. The base
// model's numbers are measured once per split and length and kept, so before/after stays cheap.
import { bleuEval, DEFAULT_BLEU_EVAL, type BleuEvalOptions } from '../engine/eval/bleu-eval.ts';
import { evaluate, type EvalResult as EngineEval } from '../engine/eval/evaluate.ts';
import type { GpuContext } from '../engine/gpu/context.ts';
import type { LoraWeights } from '../engine/model/lora.ts';
import type { GpuWeights } from '../engine/model/weights.ts';
import type { Tokenizer } from '../io/tokenizer.ts';
import { Generators } from './generation.ts';
import type { EvalResult } from './protocol.ts';

/** BLEU on the page: fewer prompts than the CLI's default, so before/after stays quick. */
const PAGE_BLEU: BleuEvalOptions = { ...DEFAULT_BLEU_EVAL, prompts: 20 };

export type Progress = (label: string, done: number, total: number) => void;

/** What the page shows of an engine evaluation, with the BLEU score beside it. */
export function pageEval(r: EngineEval, bleu: number | null): EvalResult {
  return { loss: r.loss, perplexity: r.perplexity, accuracy: r.accuracy, bleu, tokens: r.tokens, windows: r.windows };
}

export interface EvalTarget {
  ctx: GpuContext;
  weights: GpuWeights;
  lora: LoraWeights | null;
  tokenizer: Tokenizer;
}

export class Evaluator {
  /** the generators BLEU and samples use (one per weights copy and LoRA weights) */
  readonly generators = new Generators();
  /** the base model's metrics, for the split version and length they were measured at */
  private before: { key: string; result: EvalResult } | null = null;

  constructor(private readonly progress: Progress) {}

  /** BLEU-4 of greedy continuations of validation prompts, or null when the split is too short for one. */
  async bleu(t: EvalTarget, val: ArrayLike<number>, label: string): Promise<number | null> {
    const half = Math.floor(t.weights.config.nPositions / 2);
    const opts = { ...PAGE_BLEU, promptTokens: Math.min(PAGE_BLEU.promptTokens, half), continuationTokens: Math.min(PAGE_BLEU.continuationTokens, half) };
    if (val.length < opts.promptTokens + opts.continuationTokens) return null;
    const gen = await this.generators.get(t.ctx, t.weights, t.lora);
    const r = await bleuEval(gen, val, (ids) => t.tokenizer.decode(ids), opts, { onProgress: (done, total) => this.progress(label, done, total) });
    return r.score;
  }

  /** The base model's metrics on `val` (measured once per `splitVersion` and length). */
  async base(t: EvalTarget, val: ArrayLike<number>, s: { seq: number; batch: number }, splitVersion: number): Promise<EvalResult> {
    const key = `${splitVersion}:${s.seq}`;
    if (this.before?.key === key) return this.before.result;
    const r = await evaluate(t.ctx, t.weights, val, { batch: s.batch, seq: s.seq, onProgress: (p) => this.progress('Evaluating the base model', p.windowsDone, p.windows) });
    const bleu = await this.bleu(t, val, 'Scoring BLEU of the base model');
    this.before = { key, result: pageEval(r, bleu) };
    return this.before.result;
  }

  /** The base metrics measured so far, if any. */
  get baseResult(): EvalResult | null {
    return this.before?.result ?? null;
  }

  /** The fine-tuned model's metrics on `val`, BLEU included. */
  async tuned(t: EvalTarget, val: ArrayLike<number>, s: { seq: number; batch: number }): Promise<EvalResult> {
    const r = await evaluate(t.ctx, t.weights, val, { ...s, lora: t.lora ?? undefined, onProgress: (p) => this.progress('Evaluating the fine-tuned model', p.windowsDone, p.windows) });
    return pageEval(r, await this.bleu(t, val, 'Scoring BLEU of the fine-tuned model'));
  }

  /** Takes base metrics measured earlier (a resumed run's), for `splitVersion` and `seq`. */
  restoreBase(result: EvalResult, splitVersion: number, seq: number): void {
    this.before = { key: `${splitVersion}:${seq}`, result };
  }

  /** Forgets the base metrics (a new model was loaded). */
  forgetBase(): void {
    this.before = null;
  }
}
