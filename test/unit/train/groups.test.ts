// Depth groups, discriminative rates and gradual unfreezing (docs/ARCHITECTURE.md, Training semantics).
import { describe, expect, it } from 'vitest';
import { GPT2_SMALL } from '../../../src/engine/model/config.ts';
import { paramSpecs } from '../../../src/engine/model/params.ts';
import {
  depthGroupCount,
  describeGroupRates,
  GroupConfigError,
  groupLabel,
  groupLrFactors,
  unfreezeSchedule,
} from '../../../src/engine/train/groups.ts';

describe('depth groups', () => {
  it('counts L + 2 groups, the same groups params.ts assigns', () => {
    const L = GPT2_SMALL.nLayer;
    expect(depthGroupCount(L)).toBe(14);
    const used = new Set(paramSpecs(GPT2_SMALL).map((s) => s.group));
    expect([...used].sort((a, b) => a - b)).toEqual(Array.from({ length: depthGroupCount(L) }, (_, i) => i));
  });

  it('labels embeddings, blocks and ln_f', () => {
    expect([0, 1, 3, 4].map((g) => groupLabel(3, g))).toEqual(['embeddings', 'block 0', 'block 2', 'ln_f']);
    expect(() => groupLabel(3, 5)).toThrow(GroupConfigError);
    expect(() => groupLabel(0, 0)).toThrow(/Layer count/);
  });
});

describe('groupLrFactors', () => {
  it('divides by f once per level below the top: lr / f^(L+1−d)', () => {
    // L = 2: groups embeddings, block 0, block 1, ln_f → 1/f³, 1/f², 1/f, 1.
    const f = 2.6;
    const got = groupLrFactors(2, f);
    const want = [1 / (2.6 * 2.6 * 2.6), 1 / (2.6 * 2.6), 1 / 2.6, 1];
    expect(got.length).toBe(4);
    got.forEach((v, i) => expect(v).toBeCloseTo(want[i], 15));
  });

  it('f = 1 gives every group the base rate', () => {
    expect([...groupLrFactors(12, 1)]).toEqual(new Array(14).fill(1));
  });

  it('GPT-2 small with f = 1/0.9: embeddings at 0.9^13', () => {
    const fac = groupLrFactors(12, 1 / 0.9);
    expect(fac[13]).toBe(1);
    expect(fac[0]).toBeCloseTo(0.9 ** 13, 12);
    for (let d = 1; d < 14; d++) expect(fac[d - 1]).toBeLessThan(fac[d]);
  });

  it('refuses f < 1 and suggests the inverse of a decay rate', () => {
    expect(() => groupLrFactors(12, 0.9)).toThrow(/f = 1\/0\.9 = 1\.1111/);
    expect(() => groupLrFactors(12, Number.NaN)).toThrow(GroupConfigError);
    expect(() => groupLrFactors(12, 0)).toThrow(GroupConfigError);
  });

  it('prints the rate of each group, top first', () => {
    const text = describeGroupRates(2, 1e-3, 2);
    const lines = text.split('\n');
    expect(lines).toHaveLength(5);
    expect(lines[1]).toMatch(/^ln_f\s+1\.000e-3$/);
    expect(lines[2]).toMatch(/^block 1\s+5\.000e-4$/);
    expect(lines[4]).toMatch(/^embeddings\s+1\.250e-4$/);
  });
});

describe('unfreezeSchedule', () => {
  it('opens k top groups at 0, then one more every N steps', () => {
    // L = 3: groups 0 (embeddings) … 4 (ln_f). k = 2 → ln_f and block 2 at 0; block 1 at 10,
    // block 0 at 20, embeddings at 30.
    const s = unfreezeSchedule({ L: 3, start: 2, every: 10, userFrozen: new Set() });
    expect(s.openAt).toEqual([30, 20, 10, 0, 0]);
    expect(s.openGroupsAt(0)).toEqual([3, 4]);
    expect(s.openGroupsAt(9)).toEqual([3, 4]);
    expect(s.openGroupsAt(10)).toEqual([2, 3, 4]);
    expect(s.openGroupsAt(29)).toEqual([1, 2, 3, 4]);
    expect(s.openGroupsAt(1000)).toEqual([0, 1, 2, 3, 4]);
    expect(s.openingAt(20)).toEqual([1]);
    expect(s.openingAt(0)).toEqual([3, 4]);
    expect(s.openingAt(5)).toEqual([]);
    expect(s.firstTrainingStep()).toBe(0);
  });

  it('ULMFiT: only the last group first (k = 1)', () => {
    const s = unfreezeSchedule({ L: 12, start: 1, every: 100, userFrozen: new Set() });
    expect(s.openAt[13]).toBe(0);
    expect(s.openAt[12]).toBe(100);
    expect(s.openAt[0]).toBe(1300);
  });

  it('counts user-frozen groups in the turns but never opens them', () => {
    // Block 1 (group 2) frozen by the user: its turn (step 10) passes, block 0 still opens at 20.
    const s = unfreezeSchedule({ L: 3, start: 2, every: 10, userFrozen: new Set([2, 0]) });
    expect(s.openAt).toEqual([null, 20, null, 0, 0]);
    expect(s.openGroupsAt(15)).toEqual([3, 4]);
    expect(s.openGroupsAt(1e9)).toEqual([1, 3, 4]);
    expect(s.openingAt(10)).toEqual([]);
  });

  it('a user-frozen group among the first k stays frozen', () => {
    const s = unfreezeSchedule({ L: 3, start: 1, every: 5, userFrozen: new Set([4]) });
    expect(s.openAt).toEqual([20, 15, 10, 5, null]);
    expect(s.openGroupsAt(0)).toEqual([]);
    expect(s.firstTrainingStep()).toBe(5);
    expect(s.describe()).toMatch(/No group trains before step 5/);
  });

  it('k ≥ L + 2 opens everything at once', () => {
    const s = unfreezeSchedule({ L: 2, start: 9, every: 5, userFrozen: new Set() });
    expect(s.openAt).toEqual([0, 0, 0, 0]);
  });

  it('describes the schedule as a table, top group first', () => {
    const s = unfreezeSchedule({ L: 2, start: 1, every: 50, userFrozen: new Set([1]) });
    expect(s.describe().split('\n')).toEqual([
      'group        opens at step',
      'ln_f         0',
      'block 1      50',
      'block 0      never (frozen)',
      'embeddings   150',
    ]);
    const all = unfreezeSchedule({ L: 1, start: 1, every: 1, userFrozen: new Set([0, 1, 2]) });
    expect(all.firstTrainingStep()).toBeNull();
    expect(all.describe()).toMatch(/Every group is frozen/);
  });

  it('refuses bad settings', () => {
    expect(() => unfreezeSchedule({ L: 3, start: 0, every: 5, userFrozen: new Set() })).toThrow(/at least one group/);
    expect(() => unfreezeSchedule({ L: 3, start: 1, every: 0, userFrozen: new Set() })).toThrow(GroupConfigError);
    expect(() => unfreezeSchedule({ L: 3, start: 1, every: 2.5, userFrozen: new Set() })).toThrow(GroupConfigError);
    expect(() => unfreezeSchedule({ L: 3, start: 1, every: 5, userFrozen: new Set([5]) })).toThrow(/does not exist/);
  });
});
