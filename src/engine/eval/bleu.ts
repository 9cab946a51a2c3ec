// Corpus BLEU-4, computed as nltk.translate.bleu_score.corpus_bleu (nltk 3.8) computes it, so
// scores can be compared with Python evaluations:
//   - uniform weights (¼ each for 1- to 4-grams), no auto re-weighting;
//   - modified n-gram precision: each hypothesis n-gram count is clipped to its largest count
//     in any one reference; clipped matches and hypothesis n-gram counts are summed over the
//     corpus before dividing (a corpus-level ratio, not a mean of sentence scores); a sentence
//     with no n-grams of some order still adds 1 to that order's total (nltk's
//     modified_precision takes max(1, count) as its denominator);
//   - brevity penalty over the corpus: c = total hypothesis length, r = sum over sentences of
//     the reference length closest to the hypothesis length (ties go to the shorter reference);
//     BP = 1 if c > r, 0 if c = 0, else exp(1 − r/c);
//   - no matching unigram at all gives 0; otherwise, without smoothing, any order with no match
//     gives 0 (nltk warns and substitutes sys.float_info.min, a score of about 1e-77);
//     SmoothingFunction().method1 instead uses (0 + ε)/total for such orders, ε = 0.1.
// Text is split into word tokens with Python's `\w+|[^\w\s]` over Unicode strings (re module
// semantics: \w is a letter, a number or '_'; \s is Python's str.isspace set), case kept.
import { StudioError } from '../errors.ts';

/** The corpus given to BLEU does not fit together (counts differ, a hypothesis without references). */
export class BleuInputError extends StudioError {}

export type BleuSmoothing = 'none' | 'method1';

export interface BleuOptions {
  /** 'none' (nltk's default, method0) or nltk's SmoothingFunction().method1. */
  smoothing?: BleuSmoothing;
  /** method1's ε added to zero match counts; nltk's default 0.1. */
  epsilon?: number;
}

export interface BleuResult {
  /** corpus BLEU-4 on a 0–100 scale */
  score: number;
  /** (4,) clipped n-gram matches, n = 1 … 4, summed over the corpus */
  matches: number[];
  /** (4,) hypothesis n-gram counts (each sentence at least 1), summed over the corpus */
  totals: number[];
  /** (4,) matches / totals, before smoothing */
  precisions: number[];
  /** c: total hypothesis length in tokens */
  hypLength: number;
  /** r: total closest-reference length in tokens */
  refLength: number;
  brevityPenalty: number;
}

const MAX_ORDER = 4;

// Python's str.isspace set (what `\s` matches in a str pattern): JavaScript's `\s` differs by
// also matching U+FEFF and by missing U+001C–U+001F and U+0085.
const PY_SPACE = '\\t\\n\\v\\f\\r \\x1c-\\x1f\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
// Python's Unicode `\w` is str.isalnum() or '_': letters (L*) and numbers (N*). JavaScript's `\w`
// stays ASCII even with the `u` flag, so the classes are spelled out.
const PY_WORD = '\\p{L}\\p{N}_';
const TOKEN_RE = new RegExp(`[${PY_WORD}]+|[^${PY_WORD}${PY_SPACE}]`, 'gu');

/** Word tokens of `text`: runs of word characters, and every other non-space character alone. */
export function bleuTokenize(text: string): string[] {
  return text.match(TOKEN_RE) ?? [];
}

/** Counts of the n-grams of `tokens`, keyed unambiguously (tokens may hold any character). */
function ngramCounts(tokens: readonly string[], n: number): Map<string, number> {
  const out = new Map<string, number>();
  for (let i = 0; i + n <= tokens.length; i++) {
    const key = JSON.stringify(tokens.slice(i, i + n));
    out.set(key, (out.get(key) ?? 0) + 1);
  }
  return out;
}

/** nltk closest_ref_length: the reference length nearest to the hypothesis, the shorter on a tie. */
function closestRefLength(refLens: readonly number[], hypLen: number): number {
  let best = refLens[0];
  for (const r of refLens) {
    const d = Math.abs(r - hypLen);
    const bd = Math.abs(best - hypLen);
    if (d < bd || (d === bd && r < best)) best = r;
  }
  return best;
}

/** nltk brevity_penalty(closest_ref_len r, hyp_len c). */
export function brevityPenalty(r: number, c: number): number {
  if (c > r) return 1;
  if (c === 0) return 0;
  return Math.exp(1 - r / c);
}

/**
 * Corpus BLEU-4 over tokenized sentences: `references[i]` holds one or more token lists for
 * hypothesis `hypotheses[i]`.
 */
export function corpusBleuTokens(
  references: ReadonlyArray<ReadonlyArray<readonly string[]>>,
  hypotheses: ReadonlyArray<readonly string[]>,
  options: BleuOptions = {},
): BleuResult {
  const smoothing = options.smoothing ?? 'none';
  const epsilon = options.epsilon ?? 0.1;
  if (references.length !== hypotheses.length) {
    throw new BleuInputError(`BLEU needs one reference set per hypothesis: got ${hypotheses.length} hypotheses and ${references.length} reference sets.`);
  }
  if (!(epsilon > 0 && Number.isFinite(epsilon))) throw new BleuInputError(`Smoothing epsilon ${epsilon} must be a positive number (nltk uses 0.1).`);

  const matches = new Array<number>(MAX_ORDER).fill(0);
  const totals = new Array<number>(MAX_ORDER).fill(0);
  let hypLength = 0;
  let refLength = 0;
  hypotheses.forEach((hyp, s) => {
    const refs = references[s];
    if (refs.length === 0) throw new BleuInputError(`Hypothesis ${s} has no reference: give at least one reference per hypothesis.`);
    for (let n = 1; n <= MAX_ORDER; n++) {
      const counts = ngramCounts(hyp, n);
      const refCounts = refs.map((r) => ngramCounts(r, n));
      let hypCount = 0;
      for (const [gram, c] of counts) {
        let maxRef = 0;
        for (const rc of refCounts) maxRef = Math.max(maxRef, rc.get(gram) ?? 0);
        matches[n - 1] += Math.min(c, maxRef);
        hypCount += c;
      }
      totals[n - 1] += Math.max(1, hypCount);
    }
    hypLength += hyp.length;
    refLength += closestRefLength(refs.map((r) => r.length), hyp.length);
  });

  const brevity = brevityPenalty(refLength, hypLength);
  const precisions = matches.map((m, i) => m / totals[i]);
  let score = 0;
  // nltk returns 0 when no unigram matches, whatever the smoothing.
  if (matches[0] > 0 && (smoothing === 'method1' || matches.every((m) => m > 0))) {
    let logSum = 0;
    for (let i = 0; i < MAX_ORDER; i++) {
      const p = matches[i] > 0 ? matches[i] / totals[i] : epsilon / totals[i];
      logSum += Math.log(p) / MAX_ORDER;
    }
    score = 100 * brevity * Math.exp(logSum);
  }
  return { score, matches, totals, precisions, hypLength, refLength, brevityPenalty: brevity };
}

/** Corpus BLEU-4 over raw text, tokenized with bleuTokenize. */
export function corpusBleu(references: ReadonlyArray<readonly string[]>, hypotheses: readonly string[], options: BleuOptions = {}): BleuResult {
  return corpusBleuTokens(
    references.map((refs) => refs.map(bleuTokenize)),
    hypotheses.map(bleuTokenize),
    options,
  );
}
