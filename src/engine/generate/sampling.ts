// The CPU side of generation: choosing the next token from one row of logits (V,).
//
// Greedy decoding takes the argmax. Sampling applies, in Hugging Face's order
// (transformers' generation/logits_process.py: TemperatureLogitsWarper, then TopKLogitsWarper,
// then TopPLogitsWarper), a temperature, a top-k filter and a nucleus (top-p) filter, then draws
// from the softmax of what is left with a seeded generator, so the same seed gives the same text.
import { StudioError } from '../errors.ts';
import { SeededRng } from '../random.ts';

/** A sampling setting out of range (negative temperature, top-p above 1 ...). */
export class SamplingConfigError extends StudioError {}

/** The logits row holds NaN, or every entry is −∞: no token can be chosen. */
export class InvalidLogitsError extends StudioError {}

export interface SamplingConfig {
  /**
   * Divides the logits before the softmax: < 1 sharpens, > 1 flattens. 0 means greedy
   * decoding (HF refuses 0 and asks for do_sample=False instead; a slider that reaches 0 is
   * friendlier). GPT-2 samples read well around 0.7–1.0.
   */
  temperature: number;
  /** Keep only the k most likely tokens (ties with the k-th are kept, as HF does); 0: off. */
  topK: number;
  /** Keep the smallest set of most likely tokens whose probability sums to ≥ p; 1: off. */
  topP: number;
}

/** HF's generate() defaults for sampling: temperature 1, top_k 50, top_p 1. */
export const DEFAULT_SAMPLING: SamplingConfig = { temperature: 1, topK: 50, topP: 1 };

// ---------------------------------------------------------------------------------------------
// Token choice.

function checkConfig(c: SamplingConfig): void {
  if (!(c.temperature >= 0 && Number.isFinite(c.temperature))) {
    throw new SamplingConfigError(`Temperature ${c.temperature} must be ≥ 0 (0 is greedy, 1 samples the model as is).`);
  }
  if (!Number.isInteger(c.topK) || c.topK < 0) {
    throw new SamplingConfigError(`top-k ${c.topK} must be a whole number ≥ 0 (0 turns it off).`);
  }
  if (!(c.topP > 0 && c.topP <= 1)) {
    throw new SamplingConfigError(`top-p ${c.topP} must be in (0, 1] (1 turns it off).`);
  }
}

/** Index of the largest logit, the lowest index among equals (as torch.argmax). */
export function argmax(logits: ArrayLike<number>): number {
  let best = -1;
  let bestV = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i];
    if (Number.isNaN(v)) throw new InvalidLogitsError(`Logit ${i} is NaN: the model produced non-finite values; check the weights or lower the learning rate.`);
    if (v > bestV) {
      bestV = v;
      best = i;
    }
  }
  if (best < 0) throw new InvalidLogitsError(`All ${logits.length} logits are −∞: no token can be chosen.`);
  return best;
}

/**
 * Chooses next tokens from rows of logits. Holds scratch arrays for one vocabulary size so that
 * a long generation does not allocate per token.
 */
export class TokenSampler {
  readonly config: SamplingConfig;
  readonly rng: SeededRng;
  private probs = new Float64Array(0); // (V,) unnormalized probabilities
  private order = new Int32Array(0); // (V,) candidate indices, most likely first

  constructor(config: SamplingConfig, seed: number) {
    checkConfig(config);
    this.config = { ...config };
    this.rng = new SeededRng(seed);
  }

  /** The next token for one row of logits (V,). */
  sample(logits: ArrayLike<number>): number {
    if (this.config.temperature === 0) return argmax(logits);
    const kept = this.filter(logits);
    return this.draw(kept.order, kept.n, kept.mass);
  }

  /**
   * The tokens `sample` chooses among for this row, most likely first, with the probability of
   * each (summing to 1): the argmax alone when greedy. For showing the choice, and for tests.
   */
  candidates(logits: ArrayLike<number>): Array<{ token: number; prob: number }> {
    if (this.config.temperature === 0) return [{ token: argmax(logits), prob: 1 }];
    const { order, n, mass } = this.filter(logits);
    const out: Array<{ token: number; prob: number }> = [];
    for (let i = 0; i < n; i++) {
      const token = order ? order[i] : i;
      if (this.probs[token] > 0) out.push({ token, prob: this.probs[token] / mass });
    }
    if (!order) out.sort((a, b) => b.prob - a.prob || a.token - b.token);
    return out;
  }

  /**
   * Temperature softmax into `probs`, then top-k and top-p. Returns the kept tokens: the first
   * n of `order` (most likely first), or all V in index order when nothing is filtered
   * (order null), and their unnormalized mass.
   */
  private filter(logits: ArrayLike<number>): { order: Int32Array | null; n: number; mass: number } {
    const { temperature, topK, topP } = this.config;
    const V = logits.length;
    const top = argmax(logits); // also rejects NaN and all −∞
    if (this.probs.length !== V) {
      this.probs = new Float64Array(V);
      this.order = new Int32Array(V);
    }
    const probs = this.probs;
    // Softmax of logits / temperature in float64, shifted by the maximum for range.
    const m = logits[top];
    let sum = 0;
    for (let i = 0; i < V; i++) {
      const p = Math.exp((logits[i] - m) / temperature);
      probs[i] = p;
      sum += p;
    }
    const k = topK > 0 ? Math.min(topK, V) : V;
    if (k === V && topP >= 1) return { order: null, n: V, mass: sum };

    // Candidates, most likely first. Only the tokens that can survive need sorting: gather those
    // at or above a threshold, lowering it until the gathered set provably holds the kept set.
    const n = this.rankCandidates(probs, sum, k, topP);
    const order = this.order;
    let keep = n;
    let kmass = sum;
    if (k < V) {
      // top-k: HF keeps every token whose logit is ≥ the k-th largest, so ties with it survive.
      keep = k;
      const kth = probs[order[k - 1]];
      while (keep < n && probs[order[keep]] === kth) keep++;
      kmass = 0;
      for (let i = 0; i < keep; i++) kmass += probs[order[i]];
    }
    // top-p over what top-k left, renormalized (the warpers run in sequence): keep a token while
    // the mass ranked above it is < p (HF removes those whose ascending cumulative probability is
    // ≤ 1 − p). The most likely token is always kept (min_tokens_to_keep = 1).
    if (topP < 1) {
      let above = 0;
      let i = 0;
      while (i < keep && (i === 0 || above < topP * kmass)) above += probs[order[i++]];
      keep = i;
    }
    let mass = 0;
    for (let i = 0; i < keep; i++) mass += probs[order[i]];
    return { order, n: keep, mass };
  }

  /**
   * Fills `order` with the indices of every token that could survive top-k and top-p, sorted by
   * probability (descending, lower index first among equals); returns how many. Tokens below a
   * threshold t can be left out once those at or above it number ≥ k when top-k is on (then
   * the whole top-k set, its ties included, is gathered, and top-p works inside it), or hold
   * ≥ p of the mass when only top-p is on (top-p stops before reaching below t); t falls
   * until that holds.
   */
  private rankCandidates(probs: Float64Array, sum: number, k: number, topP: number): number {
    const order = this.order;
    const V = probs.length;
    let n = 0;
    for (let t = Math.min(0.01 * sum, sum / k); ; t /= 16) {
      n = 0;
      let mass = 0;
      for (let i = 0; i < V; i++) {
        if (probs[i] >= t) {
          order[n++] = i;
          mass += probs[i];
        }
      }
      // Ties at the threshold are all in (≥ t), so the kept set cannot be cut through a tie.
      const enough = k < V ? n >= k : mass >= topP * sum;
      if (enough || t === 0 || n === V) break;
      if (t < Number.MIN_VALUE * 16) t = 0; // reach an exact 0 threshold (gathers all)
    }
    const sorted = Array.from(order.subarray(0, n)).sort((a, b) => probs[b] - probs[a] || a - b);
    order.set(sorted);
    return n;
  }

  /** Draws one of `n` tokens (all when `order` is null) in proportion to probs; `total` is their sum. */
  private draw(order: Int32Array | null, n: number, total: number): number {
    const probs = this.probs;
    const u = this.rng.next() * total;
    let acc = 0;
    let last = -1;
    for (let i = 0; i < n; i++) {
      const tok = order ? order[i] : i;
      if (probs[tok] === 0) continue;
      acc += probs[tok];
      last = tok;
      if (u < acc) return tok;
    }
    // Rounding can leave u a hair above the accumulated sum: the last token with mass takes it.
    return last;
  }
}
