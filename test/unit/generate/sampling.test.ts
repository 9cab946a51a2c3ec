// Next-token choice: greedy, temperature, top-k and top-p as Hugging Face's logits warpers,
// drawn with a seeded generator. Distributions are checked by empirical frequencies.
import { describe, expect, it } from 'vitest';
import {
  argmax,
  DEFAULT_SAMPLING,
  InvalidLogitsError,
  SamplingConfigError,
  TokenSampler,
  type SamplingConfig,
} from '../../../src/engine/generate/sampling.ts';
import { randn } from '../../helpers/numeric.ts';

const cfg = (o: Partial<SamplingConfig>): SamplingConfig => ({ temperature: 1, topK: 0, topP: 1, ...o });
const logitsOf = (p: number[]) => Float32Array.from(p, (x) => Math.log(x));

/** Frequencies of each token over `draws` samples. */
function frequencies(s: TokenSampler, logits: ArrayLike<number>, draws: number): number[] {
  const counts = new Array<number>(logits.length).fill(0);
  for (let i = 0; i < draws; i++) counts[s.sample(logits)]++;
  return counts.map((c) => c / draws);
}

/** |f − p| within 5 standard deviations of a binomial proportion. */
function expectClose(freq: number[], p: number[], draws: number): void {
  p.forEach((pi, i) => {
    const sd = Math.sqrt((pi * (1 - pi)) / draws);
    expect(Math.abs(freq[i] - pi), `token ${i}: frequency ${freq[i]} vs ${pi}`).toBeLessThanOrEqual(5 * sd + 1e-12);
  });
}

describe('argmax / greedy', () => {
  it('takes the lowest index among equal maxima and skips −∞', () => {
    expect(argmax([1, 3, 3, 2])).toBe(1);
    expect(argmax([-Infinity, -5, -Infinity])).toBe(1);
    expect(argmax(Float32Array.from([0, 0, 0]))).toBe(0);
  });

  it('refuses NaN and all −∞', () => {
    expect(() => argmax([0, Number.NaN])).toThrow(InvalidLogitsError);
    expect(() => argmax([-Infinity, -Infinity])).toThrow(/−∞/);
    expect(() => new TokenSampler(cfg({}), 1).sample([1, Number.NaN])).toThrow(InvalidLogitsError);
  });

  it('temperature 0 is greedy, whatever the seed', () => {
    const logits = [0.1, 2.5, 2.5, -1];
    for (let seed = 0; seed < 5; seed++) expect(new TokenSampler(cfg({ temperature: 0 }), seed).sample(logits)).toBe(1);
    expect(new TokenSampler(cfg({ temperature: 0 }), 0).candidates(logits)).toEqual([{ token: 1, prob: 1 }]);
  });
});

describe('sampling distributions', () => {
  const p = [0.5, 0.3, 0.15, 0.05];
  const draws = 20000;

  it('temperature 1, no filters: the softmax of the logits', () => {
    const s = new TokenSampler(cfg({}), 1);
    expectClose(frequencies(s, logitsOf(p), draws), p, draws);
  });

  it('temperature 2 flattens to p^(1/2), renormalized', () => {
    const s = new TokenSampler(cfg({ temperature: 2 }), 2);
    const q = p.map(Math.sqrt);
    const z = q.reduce((a, b) => a + b);
    expectClose(frequencies(s, logitsOf(p), draws), q.map((x) => x / z), draws);
  });

  it('top-k 2 keeps the two most likely, renormalized, and never picks outside them', () => {
    const s = new TokenSampler(cfg({ topK: 2 }), 3);
    const f = frequencies(s, logitsOf(p), draws);
    expect(f[2] + f[3]).toBe(0);
    expectClose(f, [0.5 / 0.8, 0.3 / 0.8, 0, 0], draws);
  });

  it('top-k keeps ties with the k-th logit, as HF does', () => {
    const s = new TokenSampler(cfg({ topK: 2 }), 4);
    const f = frequencies(s, [3, 2, 2, 1], draws);
    expect(f[3]).toBe(0);
    const e = [Math.E, 1, 1].map((x) => x / (Math.E + 2));
    expectClose(f, [...e, 0], draws);
  });

  it('top-p keeps the smallest set reaching p', () => {
    // Mass above each token: 0, 0.5, 0.8, 0.95. p = 0.79 keeps {0, 1}; p = 0.81 keeps {0, 1, 2}.
    const a = frequencies(new TokenSampler(cfg({ topP: 0.79 }), 5), logitsOf(p), draws);
    expectClose(a, [0.5 / 0.8, 0.3 / 0.8, 0, 0], draws);
    expect(a[2] + a[3]).toBe(0);
    const b = frequencies(new TokenSampler(cfg({ topP: 0.81 }), 6), logitsOf(p), draws);
    expectClose(b, [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0], draws);
    expect(b[3]).toBe(0);
  });

  it('top-p drops a token once the mass above it reaches p exactly (HF: cumulative ≤ 1 − p)', () => {
    // Logits ln 2, 0, 0 give probabilities ½, ¼, ¼ exactly in float64. With p = ¾ the mass above
    // token 2 is ¾: HF's ascending cumulative for token 2 is ¼ ≤ 1 − ¾, so it is removed.
    const logits = [Math.LN2, 0, 0];
    expect(new TokenSampler(cfg({ topP: 0.75 }), 1).candidates(logits).map((c) => c.token)).toEqual([0, 1]);
    expect(new TokenSampler(cfg({ topP: 0.5 }), 1).candidates(logits).map((c) => c.token)).toEqual([0]);
  });

  it('a tiny top-p still keeps the most likely token', () => {
    const s = new TokenSampler(cfg({ topP: 1e-9 }), 7);
    for (let i = 0; i < 50; i++) expect(s.sample(logitsOf(p))).toBe(0);
  });

  it('top-p applies to the top-k set renormalized (HF warper order)', () => {
    // After top-k 3: 0.5/0.95, 0.3/0.95, 0.15/0.95 = 0.526, 0.316, 0.158. Mass above token 2 is
    // 0.842 of the top-k set, so p = 0.83 drops it, though over the full distribution 0.8 < 0.83.
    const s = new TokenSampler(cfg({ topK: 3, topP: 0.83 }), 8);
    expect(s.candidates(logitsOf(p)).map((c) => c.token)).toEqual([0, 1]);
    const s2 = new TokenSampler(cfg({ topK: 0, topP: 0.83 }), 8);
    expect(s2.candidates(logitsOf(p)).map((c) => c.token)).toEqual([0, 1, 2]);
  });

  it('never picks a token with logit −∞', () => {
    const s = new TokenSampler(cfg({ temperature: 5 }), 9);
    const logits = [-Infinity, 0, -Infinity, 0];
    for (let i = 0; i < 500; i++) expect([1, 3]).toContain(s.sample(logits));
  });

  it('the same seed gives the same tokens; another seed other tokens', () => {
    const logits = Float32Array.from(randn(100, 1));
    const run = (seed: number) => {
      const s = new TokenSampler(DEFAULT_SAMPLING, seed);
      return Array.from({ length: 40 }, () => s.sample(logits));
    };
    expect(run(123)).toEqual(run(123));
    expect(run(123)).not.toEqual(run(124));
  });
});

describe('candidates on a GPT-2-sized vocabulary', () => {
  // Brute force from the definitions: sort all V tokens, keep logit ≥ the k-th largest, then HF's
  // TopPLogitsWarper over the renormalized top-k: drop tokens whose ascending cumulative
  // probability is ≤ 1 − p, keeping at least one.
  function bruteForce(logits: Float32Array, c: SamplingConfig): number[] {
    const V = logits.length;
    const scaled = Array.from(logits, (l) => l / c.temperature);
    let idx = Array.from({ length: V }, (_, i) => i).sort((a, b) => scaled[b] - scaled[a] || a - b);
    if (c.topK > 0 && c.topK < V) {
      const kth = scaled[idx[c.topK - 1]];
      idx = idx.filter((i) => scaled[i] >= kth);
    }
    const m = scaled[idx[0]];
    const w = idx.map((i) => Math.exp(scaled[i] - m));
    const z = w.reduce((a, b) => a + b);
    const asc = [...w].reverse();
    let cum = 0;
    const removeAsc = asc.map((x) => (cum += x / z) <= 1 - c.topP);
    removeAsc[removeAsc.length - 1] = false;
    return idx.filter((_, j) => !removeAsc[idx.length - 1 - j]);
  }

  it.each([
    [cfg({ topK: 50 })],
    [cfg({ topP: 0.9 })],
    [cfg({ topP: 0.95, temperature: 0.7 })],
    [cfg({ topK: 40, topP: 0.5 })],
    [cfg({ topP: 0.999, temperature: 3 })], // flat: the kept set reaches far down
    [cfg({ topK: 2000, topP: 0.3, temperature: 1.5 })],
  ])('%o keeps the same tokens as the brute-force definition', (c) => {
    const V = 50257;
    const logits = Float32Array.from(randn(V, 77, 3));
    const s = new TokenSampler(c, 1);
    const got = s.candidates(logits);
    expect(got.map((x) => x.token)).toEqual(bruteForce(logits, c));
    expect(got.reduce((a, x) => a + x.prob, 0)).toBeCloseTo(1, 12);
    const kept = new Set(got.map((x) => x.token));
    for (let i = 0; i < 20; i++) expect(kept.has(s.sample(logits))).toBe(true);
  });
});

describe('configuration', () => {
  it('refuses settings out of range', () => {
    expect(() => new TokenSampler(cfg({ temperature: -1 }), 0)).toThrow(SamplingConfigError);
    expect(() => new TokenSampler(cfg({ topK: 1.5 }), 0)).toThrow(/top-k/);
    expect(() => new TokenSampler(cfg({ topP: 0 }), 0)).toThrow(/top-p/);
    expect(() => new TokenSampler(cfg({ topP: 1.1 }), 0)).toThrow(/top-p/);
  });
});
