// The tuner's timing order (src/engine/train/tune.ts, timeInterleaved): interleaved, rotating
// rounds with medians pick the truly fastest candidate under a load that drifts during the run,
// where timing candidates one after another does not.
import { describe, expect, it } from 'vitest';
import { median } from '../../../src/engine/gpu/profile.ts';
import { timeInterleaved } from '../../../src/engine/train/tune.ts';

/** A clock whose every measurement costs base[i] × a load that grows by `drift` per measurement. */
function driftingTimer(base: readonly number[], drift: number) {
  const calls: number[] = [];
  return {
    calls,
    timeOne: async (i: number) => {
      const t = base[i] * (1 + drift * calls.length);
      calls.push(i);
      return t;
    },
  };
}

const argmin = (xs: readonly number[]) => xs.indexOf(Math.min(...xs));

describe('timeInterleaved', () => {
  it('times every candidate once per round, starting one further along each round', async () => {
    const clock = driftingTimer([1, 1, 1], 0);
    const ms = await timeInterleaved(3, 4, clock.timeOne);
    expect(ms).toEqual([1, 1, 1]);
    expect(clock.calls).toEqual([0, 1, 2, 1, 2, 0, 2, 0, 1, 0, 1, 2]);
  });

  it('picks the fastest under a drifting load, which one-after-another timing misses', async () => {
    const base = [10, 9, 11, 12]; // candidate 1 is fastest
    // the premise: one after another (all rounds of 0, then of 1, …) credits the drift to the order
    const seq = driftingTimer(base, 0.1);
    const seqMs: number[] = [];
    for (let i = 0; i < base.length; i++) {
      const ts: number[] = [];
      for (let r = 0; r < 3; r++) ts.push(await seq.timeOne(i));
      seqMs.push(median(ts));
    }
    expect(argmin(seqMs)).toBe(0);
    const clock = driftingTimer(base, 0.1);
    const ms = await timeInterleaved(base.length, 3, clock.timeOne);
    expect(argmin(ms)).toBe(1);
    expect(ms[1]).toBeCloseTo(9 * 1.4, 10); // its rounds ran at calls 1, 4 and 11
  });

  it('drops a round that a hiccup spoiled', async () => {
    let n = 0;
    const ms = await timeInterleaved(2, 5, async (i) => {
      n++;
      if (n === 2) return 1000; // candidate 1's first round
      return i === 0 ? 5 : 4;
    });
    expect(ms).toEqual([5, 4]);
  });

  it('median: odd and even counts, and refuses none', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(() => median([])).toThrow(RangeError);
  });
});
