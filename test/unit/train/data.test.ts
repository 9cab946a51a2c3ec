// Windows and batches (docs/ARCHITECTURE.md, Windows): window w reads tokens[w·T .. w·T + T] as
// inputs and targets shifted by one; row j reads window j mod W in order, or the epoch's
// seeded permutation when shuffled.
import { describe, expect, it } from 'vitest';
import { epochPermutation, WindowSampler } from '../../../src/engine/train/data.ts';
import { BatchConfigError, NotEnoughTokensError, windowCount } from '../../../src/engine/windows.ts';

/** A stream whose token at position i is i, so a batch shows where it was read from. */
const iota = (n: number) => Uint32Array.from({ length: n }, (_, i) => i);

describe('windowCount', () => {
  it.each([
    [0, 4, 0],
    [1, 4, 0],
    [4, 4, 0], // T tokens are one short: the last target is missing
    [5, 4, 1],
    [8, 4, 1],
    [9, 4, 2],
    [1025, 1024, 1],
  ])('N = %s, T = %s → %s windows', (N, T, W) => {
    expect(windowCount(N, T)).toBe(W);
  });
});

describe('WindowSampler, sequential', () => {
  it('reads window w as tokens[w·T, w·T+T) with targets one later, and wraps around', () => {
    // N = 11, T = 3: W = ⌊10/3⌋ = 3; token 10 is never read.
    const s = new WindowSampler({ tokens: iota(11), T: 3, shuffle: false, seed: 0 });
    expect(s.W).toBe(3);
    const b1 = s.nextBatch(2);
    expect(b1.windows).toEqual([0, 1]);
    expect([...b1.inputs]).toEqual([0, 1, 2, 3, 4, 5]);
    expect([...b1.targets]).toEqual([1, 2, 3, 4, 5, 6]);
    const b2 = s.nextBatch(2); // rows 2, 3 → windows 2, 0: the batch straddles the epoch end
    expect(b2.windows).toEqual([2, 0]);
    expect([...b2.inputs]).toEqual([6, 7, 8, 0, 1, 2]);
    expect([...b2.targets]).toEqual([7, 8, 9, 1, 2, 3]);
    expect(s.position).toBe(4);
  });

  it('counts every micro-batch row: row j reads window j mod W', () => {
    const s = new WindowSampler({ tokens: iota(50), T: 7, shuffle: false, seed: 0 }); // W = 7
    const seen: number[] = [];
    for (let i = 0; i < 5; i++) seen.push(...s.nextBatch(3).windows);
    expect(seen).toEqual(Array.from({ length: 15 }, (_, j) => j % 7));
  });

  it('reuses the same arrays from call to call', () => {
    const s = new WindowSampler({ tokens: iota(40), T: 4, shuffle: false, seed: 0 });
    const a = s.nextBatch(2);
    const inputs = a.inputs;
    const b = s.nextBatch(2);
    expect(b.inputs).toBe(inputs);
    expect(b.inputs.length).toBe(8);
  });

  it('accepts uint16 token files and keeps ids above 255', () => {
    const tokens = Uint16Array.from([50256, 300, 65535, 7, 9]);
    const s = new WindowSampler({ tokens, T: 2, shuffle: false, seed: 0 }); // W = 2
    const b = s.nextBatch(2);
    expect([...b.inputs]).toEqual([50256, 300, 65535, 7]);
    expect([...b.targets]).toEqual([300, 65535, 7, 9]);
  });

  it('epochAt is ⌊j / W⌋', () => {
    const s = new WindowSampler({ tokens: iota(11), T: 3, shuffle: false, seed: 0 });
    expect([0, 2, 3, 5, 6, 299, 300].map((j) => s.epochAt(j))).toEqual([0, 0, 1, 1, 2, 99, 100]);
  });

  it('refuses a stream shorter than one window, and bad sizes', () => {
    expect(() => new WindowSampler({ tokens: iota(4), T: 4, shuffle: false, seed: 0 })).toThrow(NotEnoughTokensError);
    expect(() => new WindowSampler({ tokens: iota(4), T: 4, shuffle: false, seed: 0 })).toThrow(/needs 5/);
    expect(() => new WindowSampler({ tokens: iota(10), T: 0, shuffle: false, seed: 0 })).toThrow(BatchConfigError);
    const s = new WindowSampler({ tokens: iota(10), T: 2, shuffle: false, seed: 0 });
    expect(() => s.nextBatch(0)).toThrow(BatchConfigError);
    expect(() => s.seek(-1)).toThrow(BatchConfigError);
    expect(() => new WindowSampler({ tokens: iota(10), T: 2, shuffle: true, seed: -3 })).toThrow(/seed/);
  });
});

describe('WindowSampler, shuffled', () => {
  const tokens = iota(20 * 5 + 1); // T = 5 → W = 20

  function rows(seed: number, batches: number, B: number, startRow = 0): number[] {
    const s = new WindowSampler({ tokens, T: 5, shuffle: true, seed, startRow });
    const out: number[] = [];
    for (let i = 0; i < batches; i++) out.push(...s.nextBatch(B).windows);
    return out;
  }

  it('reads every window once per epoch, in a new order each epoch', () => {
    const r = rows(7, 20, 3); // 60 rows = 3 epochs, batches straddle the epoch ends
    const epochs = [r.slice(0, 20), r.slice(20, 40), r.slice(40, 60)];
    for (const e of epochs) expect([...e].sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(epochs[0]).not.toEqual(epochs[1]);
    expect(epochs[1]).not.toEqual(epochs[2]);
    expect(epochs[0]).not.toEqual(Array.from({ length: 20 }, (_, i) => i));
  });

  it('inputs and targets follow the window read', () => {
    const s = new WindowSampler({ tokens, T: 5, shuffle: true, seed: 3 });
    const b = s.nextBatch(4);
    b.windows.forEach((w, r) => {
      expect([...b.inputs.subarray(r * 5, r * 5 + 5)]).toEqual([0, 1, 2, 3, 4].map((t) => w * 5 + t));
      expect([...b.targets.subarray(r * 5, r * 5 + 5)]).toEqual([1, 2, 3, 4, 5].map((t) => w * 5 + t));
    });
  });

  it('is deterministic in the seed and independent of how rows are batched', () => {
    expect(rows(11, 10, 4)).toEqual(rows(11, 10, 4));
    expect(rows(11, 10, 4)).toEqual(rows(11, 40, 1));
    expect(rows(11, 10, 4)).not.toEqual(rows(12, 10, 4));
  });

  it('a run resumed at row j reads what an uninterrupted run reads', () => {
    const full = rows(5, 15, 4); // 60 rows
    expect(rows(5, 8, 4, 28)).toEqual(full.slice(28, 60));
    const s = new WindowSampler({ tokens, T: 5, shuffle: true, seed: 5 });
    s.seek(41);
    expect(s.nextBatch(3).windows).toEqual(full.slice(41, 44));
    expect(s.windowAt(2)).toBe(full[2]); // random access back into an earlier epoch
  });

  it('permutations are uniform: each window is first equally often over many epochs', () => {
    // W = 5, 5000 epochs: each count ~ Binomial(5000, 0.2), sd ≈ 28; allow 5 sd.
    const counts = new Array(5).fill(0);
    for (let e = 0; e < 5000; e++) counts[epochPermutation(5, 42, e)[0]]++;
    for (const c of counts) expect(Math.abs(c - 1000)).toBeLessThan(141);
  });
});
