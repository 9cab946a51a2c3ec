// Small metric helpers shared by the trainer, the evaluation pass and the charts: perplexity,
// running mean and accuracy accumulators, TensorBoard-style debiased EMA smoothing, and
// training throughput in tokens per second.
import { StudioError } from '../errors.ts';
import { tokensPerSecond } from '../throughput.ts';

/** A metric setting out of range (EMA weight outside [0, 1), a window of 0 steps ...). */
export class MetricConfigError extends StudioError {}

/**
 * Perplexity = exp(mean cross-entropy in nats). Our windows score T targets each; HF's
 * `labels=input_ids` scores T − 1 positions of a T-token block, so compare perplexities across
 * the two only on the same targets.
 */
export function perplexity(meanLoss: number): number {
  return Math.exp(meanLoss);
}

/**
 * How the page and the model card write metrics, so they agree: a loss (nats) with 4 decimals, a
 * perplexity with 2 (exponent form past a million), a fraction such as next-token accuracy as a
 * percentage with 2. Non-finite values are written as such, never as a long float.
 */
export function formatLoss(x: number | null | undefined): string {
  if (x === null || x === undefined || Number.isNaN(x)) return '—';
  return Number.isFinite(x) ? x.toFixed(4) : x > 0 ? '∞' : '−∞';
}

export function formatPerplexity(x: number | null | undefined): string {
  if (x === null || x === undefined || Number.isNaN(x)) return '—';
  if (!Number.isFinite(x)) return '∞';
  return x >= 1e6 ? x.toExponential(2) : x.toFixed(2);
}

export function formatPercent(fraction: number | null | undefined): string {
  return fraction === null || fraction === undefined || !Number.isFinite(fraction) ? '—' : `${(fraction * 100).toFixed(2)}%`;
}

/** Weighted running mean, e.g. of per-batch mean losses weighted by their target counts. */
export class RunningMean {
  private sum = 0;
  private weight = 0;

  /** Adds `value` with weight `w` (the number of items it averages). */
  add(value: number, w = 1): void {
    if (!(w >= 0) || !Number.isFinite(w)) throw new MetricConfigError(`Weight ${w} of a running mean must be a finite number ≥ 0.`);
    this.sum += value * w;
    this.weight += w;
  }

  /** Total weight added so far. */
  get count(): number {
    return this.weight;
  }

  /** The mean so far; NaN before anything was added. */
  get mean(): number {
    return this.weight > 0 ? this.sum / this.weight : Number.NaN;
  }

  reset(): void {
    this.sum = 0;
    this.weight = 0;
  }
}

/** Next-token accuracy over everything added: correct predictions / predictions. */
export class RunningAccuracy {
  private correct = 0;
  private total = 0;

  /** Adds counts already made elsewhere (e.g. on the GPU). */
  add(correct: number, total: number): void {
    if (!Number.isInteger(correct) || !Number.isInteger(total) || correct < 0 || total < correct) {
      throw new MetricConfigError(`Accuracy counts must be whole numbers with 0 ≤ correct ≤ total, got ${correct} of ${total}.`);
    }
    this.correct += correct;
    this.total += total;
  }

  /** Compares predicted ids with target ids position by position. */
  addPredictions(predicted: ArrayLike<number>, targets: ArrayLike<number>): void {
    if (predicted.length !== targets.length) {
      throw new MetricConfigError(`${predicted.length} predictions for ${targets.length} targets: they must be the same length.`);
    }
    let c = 0;
    for (let i = 0; i < targets.length; i++) if (predicted[i] === targets[i]) c++;
    this.add(c, targets.length);
  }

  get count(): number {
    return this.total;
  }

  /** Fraction correct so far; NaN before anything was added. */
  get accuracy(): number {
    return this.total > 0 ? this.correct / this.total : Number.NaN;
  }

  reset(): void {
    this.correct = 0;
    this.total = 0;
  }
}

/**
 * Exponential moving average for chart smoothing, debiased as TensorBoard's scalar dashboard
 * does (its resmoothing: last = last·w + (1 − w)·x from last = 0, shown as
 * last / (1 − w^n) after n finite points), so the curve starts at the first value instead of
 * rising from 0. Non-finite points are passed through unsmoothed and do not enter the average,
 * as in TensorBoard. w = 0 shows the raw series; TensorBoard's slider stops at 0.999.
 */
export class EmaSmoother {
  readonly weight: number;
  private last = 0;
  private n = 0;

  constructor(weight: number) {
    if (!(weight >= 0 && weight < 1)) throw new MetricConfigError(`Smoothing weight ${weight} must be in [0, 1): 0 is no smoothing, 0.6 is TensorBoard's default.`);
    this.weight = weight;
  }

  /** Adds a point and returns its smoothed value. */
  push(x: number): number {
    if (!Number.isFinite(x)) return x;
    this.last = this.last * this.weight + (1 - this.weight) * x;
    this.n++;
    return this.last / (1 - this.weight ** this.n);
  }

  reset(): void {
    this.last = 0;
    this.n = 0;
  }
}

/** A whole series smoothed with EmaSmoother. */
export function emaSmooth(values: ArrayLike<number>, weight: number): Float64Array {
  const s = new EmaSmoother(weight);
  const out = new Float64Array(values.length); // (n,)
  for (let i = 0; i < values.length; i++) out[i] = s.push(values[i]);
  return out;
}

/**
 * Throughput over the last `window` optimizer steps, so the readout follows speed changes (a
 * group unfreezing, another tab using the GPU) without jumping on every step, and over the
 * whole run.
 */
export class ThroughputMeter {
  readonly window: number;
  private tokens: number[] = [];
  private ms: number[] = [];
  private totalTokens = 0;
  private totalMs = 0;

  constructor(window = 20) {
    if (!Number.isInteger(window) || window < 1) throw new MetricConfigError(`Throughput window ${window} must be a whole number of steps ≥ 1.`);
    this.window = window;
  }

  /** Records one step: `tokens` processed (B·T·accumulation) in `ms` of wall time. */
  add(tokens: number, ms: number): void {
    if (!(tokens >= 0) || !(ms >= 0) || !Number.isFinite(tokens) || !Number.isFinite(ms)) {
      throw new MetricConfigError(`A step must have a finite token count and duration ≥ 0, got ${tokens} tokens in ${ms} ms.`);
    }
    this.tokens.push(tokens);
    this.ms.push(ms);
    if (this.tokens.length > this.window) {
      this.tokens.shift();
      this.ms.shift();
    }
    this.totalTokens += tokens;
    this.totalMs += ms;
  }

  /** Tokens/s over the last `window` steps. */
  get recent(): number {
    const t = this.tokens.reduce((a, b) => a + b, 0);
    const m = this.ms.reduce((a, b) => a + b, 0);
    return tokensPerSecond(t, m);
  }

  /** Tokens/s since the start (or the last reset). */
  get overall(): number {
    return tokensPerSecond(this.totalTokens, this.totalMs);
  }

  /** Milliseconds of all recorded steps (the run's timed time, without pauses). */
  get elapsedMs(): number {
    return this.totalMs;
  }

  /** Time `tokens` more would take at the recent rate; 0 before any step was timed. */
  etaMs(tokens: number): number {
    const rate = this.recent;
    return rate > 0 ? (tokens * 1000) / rate : 0;
  }

  reset(): void {
    this.tokens = [];
    this.ms = [];
    this.totalTokens = 0;
    this.totalMs = 0;
  }
}
