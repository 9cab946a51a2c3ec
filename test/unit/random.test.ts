// The studio's random numbers: the sequential SeededRng (reproducible, uniform, refusing bad
// seeds) and the counter-based dropout stream against values computed independently in Python
// with explicit `& 0xffffffff` u32 arithmetic, and its keep fraction against 1 − p.
import { describe, expect, it } from 'vitest';
import { DROPOUT_SITE, dropoutKeep, dropoutStream, dropoutUniform, hashU32, RandomSeedError, SeededRng } from '../../src/engine/random.ts';

/** |f − p| within 5 standard deviations of a binomial proportion. */
function expectClose(freq: number[], p: number[], draws: number): void {
  p.forEach((pi, i) => {
    const sd = Math.sqrt((pi * (1 - pi)) / draws);
    expect(Math.abs(freq[i] - pi), `token ${i}: frequency ${freq[i]} vs ${pi}`).toBeLessThanOrEqual(5 * sd + 1e-12);
  });
}

describe('SeededRng', () => {
  it('repeats its sequence for a seed and differs between seeds and streams', () => {
    const seq = (seed: number, stream = 0) => {
      const r = new SeededRng(seed, stream);
      return Array.from({ length: 8 }, () => r.nextUint32());
    };
    expect(seq(1)).toEqual(seq(1));
    expect(seq(1)).not.toEqual(seq(2));
    expect(seq(1, 0)).not.toEqual(seq(1, 1));
    expect(seq(0)).not.toEqual(new Array(8).fill(0));
    expect(seq(2 ** 40)).not.toEqual(seq(0)); // high bits of a large seed count
  });

  it('next() is uniform in [0, 1)', () => {
    const r = new SeededRng(9);
    const n = 20000;
    const bins = new Array(10).fill(0);
    for (let i = 0; i < n; i++) {
      const u = r.next();
      expect(u >= 0 && u < 1).toBe(true);
      bins[Math.floor(u * 10)]++;
    }
    expectClose(bins.map((b) => b / n), new Array(10).fill(0.1), n);
  });

  it('nextInt(n) is uniform over 0 … n−1', () => {
    const r = new SeededRng(4);
    const n = 30000;
    const counts = new Array(3).fill(0);
    for (let i = 0; i < n; i++) counts[r.nextInt(3)]++;
    expectClose(counts.map((c) => c / n), [1 / 3, 1 / 3, 1 / 3], n);
    expect(new SeededRng(1).nextInt(1)).toBe(0);
    expect(() => r.nextInt(0)).toThrow(RandomSeedError);
  });

  it('refuses seeds that are not whole numbers ≥ 0', () => {
    expect(() => new SeededRng(-1)).toThrow(RandomSeedError);
    expect(() => new SeededRng(0.5)).toThrow(RandomSeedError);
  });
});


// (x, lowbias32(x)) from Python: x ^= x>>16; x = (x*0x7feb352d)&M; x ^= x>>15; x = (x*0x846ca68b)&M; x ^= x>>16
const HASHES: Array<[number, number]> = [
  [0, 0],
  [1, 1753845952],
  [2, 3507691905],
  [12345, 2435775735],
  [0x7fffffff, 2368339896],
  [0x80000000, 3427483940],
  [0xffffffff, 1734902346],
  [0xdeadbeef, 3861431939],
];

// (seed, stream, index, u >> 8) with u = hash(index ^ hash(seed ^ hash(stream))), from Python
const UNIFORMS: Array<[number, number, number, number]> = [
  [0, 0, 0, 0],
  [1, 2, 3, 4679868],
  [42, 4096, 17, 9463311],
  [0xffffffff, (5 * 64 + 1) * 4096 + 4, 999, 16033020],
  [1234, 0, 0xffffffff, 15475554],
];

describe('dropout RNG', () => {
  it.each(HASHES)('hashU32(%i) = %i', (x, h) => {
    expect(hashU32(x)).toBe(h);
  });

  it.each(UNIFORMS)('uniform(seed %i, stream %i, index %i) = %i · 2^-24', (seed, stream, index, bits) => {
    expect(dropoutUniform(seed, stream, index)).toBe(bits * 2 ** -24);
  });

  it('keep is uniform >= p, so p = 0 keeps everything', () => {
    const [seed, stream, index, bits] = UNIFORMS[2];
    const u = bits * 2 ** -24;
    expect(dropoutKeep(seed, stream, index, u)).toBe(true);
    expect(dropoutKeep(seed, stream, index, u + 2 ** -24)).toBe(false);
    // the all-zero case draws exactly 0, which p = 0 keeps
    expect(dropoutKeep(0, 0, 0, 0)).toBe(true);
  });

  it.each([0.1, 0.5, 0.9])('keeps a fraction 1 − p of elements (p = %f), independently per stream', (p) => {
    const n = 200_000;
    let kept = 0;
    let both = 0;
    for (let i = 0; i < n; i++) {
      const a = dropoutKeep(7, 11, i, p);
      const b = dropoutKeep(7, 12, i, p);
      if (a) kept++;
      if (a && b) both++;
    }
    // binomial standard deviation sqrt(p(1−p)/n) ≤ 0.0012; allow 5σ
    expect(Math.abs(kept / n - (1 - p))).toBeLessThan(0.006);
    // two streams are independent: P(both) ≈ (1 − p)²
    expect(Math.abs(both / n - (1 - p) ** 2)).toBeLessThan(0.006);
  });

  it('uniform values are in [0, 1) with mean 1/2', () => {
    let sum = 0;
    let min = 1;
    let max = 0;
    for (let i = 0; i < 100_000; i++) {
      const u = dropoutUniform(3, 5, i);
      sum += u;
      min = Math.min(min, u);
      max = Math.max(max, u);
    }
    expect(min).toBeGreaterThanOrEqual(0);
    expect(max).toBeLessThan(1);
    expect(Math.abs(sum / 100_000 - 0.5)).toBeLessThan(0.005);
  });

  it('streams: base (step·64 + micro)·4096 plus the site, wrapping to u32', () => {
    expect(dropoutStream(0, 0, DROPOUT_SITE.embedding)).toBe(0);
    expect(dropoutStream(2, 3, DROPOUT_SITE.attnProbs(1))).toBe((2 * 64 + 3) * 4096 + 4);
    expect(dropoutStream(2, 3, DROPOUT_SITE.attnResid(1))).toBe((2 * 64 + 3) * 4096 + 5);
    expect(dropoutStream(2, 3, DROPOUT_SITE.mlpResid(1))).toBe((2 * 64 + 3) * 4096 + 6);
    // (70000·64 + 3)·4096 + 7 mod 2^32, from Python
    expect(dropoutStream(70000, 3, 7)).toBe(1170223111);
  });
});
