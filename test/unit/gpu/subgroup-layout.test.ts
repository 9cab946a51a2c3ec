// The subgroup layout check (src/engine/gpu/subgroup-layout.ts) on synthetic probe outputs: the
// layout the subgroup reductions assume passes at every allowed size, others are named.
import { describe, expect, it } from 'vitest';
import { KernelVariantError } from '../../../src/engine/errors.ts';
import { layoutRefusal, subgroupLayoutIssue } from '../../../src/engine/gpu/subgroup-layout.ts';

/** Probe output for `groups` workgroups of `wg` where invocation lid is lane lane(lid) of subgroup group(lid). */
function probe(wg: number, size: number, groups: number, map: (lid: number) => { group: number; lane: number }): Uint32Array {
  const out = new Uint32Array(groups * wg * 4);
  const members = new Map<number, number[]>();
  for (let lid = 0; lid < wg; lid++) {
    const g = map(lid).group;
    members.set(g, [...(members.get(g) ?? []), lid]);
  }
  for (let w = 0; w < groups; w++) {
    for (let lid = 0; lid < wg; lid++) {
      const { group, lane } = map(lid);
      const m = members.get(group)!;
      out.set([size, lane, Math.min(...m), Math.max(...m)], 4 * (w * wg + lid));
    }
  }
  return out;
}

const consecutive = (size: number) => (lid: number) => ({ group: Math.floor(lid / size), lane: lid % size });

describe('subgroupLayoutIssue', () => {
  for (const wg of [64, 256]) {
    for (const size of [4, 8, 16, 32, 64, 128]) {
      it(`workgroup ${wg}, subgroups of ${size} consecutive invocations: no issue`, () => {
        expect(subgroupLayoutIssue(wg, probe(wg, size, 2, consecutive(size)))).toBeNull();
      });
    }
  }

  it('names strided subgroups (invocation lid in subgroup lid mod k)', () => {
    const wg = 64;
    const size = 8;
    const groups = wg / size;
    const issue = subgroupLayoutIssue(wg, probe(wg, size, 2, (lid) => ({ group: lid % groups, lane: Math.floor(lid / groups) })));
    expect(issue).toBe('in a workgroup of 64, invocation 0 is lane 0 of a subgroup spanning local indices 0…56 (assumed: lane 0 of 0…7, subgroups of 8 consecutive invocations)');
  });

  it('names lanes numbered in another order within consecutive subgroups', () => {
    const issue = subgroupLayoutIssue(64, probe(64, 8, 1, (lid) => ({ group: Math.floor(lid / 8), lane: 7 - (lid % 8) })));
    expect(issue).toMatch(/invocation 0 is lane 7/);
  });

  it('names a subgroup size outside 4…128 or not a power of two', () => {
    expect(subgroupLayoutIssue(64, probe(64, 2, 1, consecutive(2)))).toMatch(/subgroup size 2 \(not a power of two from 4 to 128\)/);
    expect(subgroupLayoutIssue(64, probe(64, 12, 1, consecutive(12)))).toMatch(/subgroup size 12/);
  });

  it('names a probe output of the wrong length', () => {
    expect(subgroupLayoutIssue(64, new Uint32Array(4 * 63))).toMatch(/the probe returned 252 words for workgroups of 64/);
    expect(subgroupLayoutIssue(64, new Uint32Array(0))).toMatch(/returned 0 words/);
  });
});

describe('layoutRefusal', () => {
  it('says who asked, which adapter, what differs, and what to do', () => {
    const e = layoutRefusal('train --subgroups', 'acme gpu', 'subgroup size 2 (not a power of two from 4 to 128)');
    expect(e).toBeInstanceOf(KernelVariantError);
    expect(e.message).toBe("train --subgroups: this adapter (acme gpu) has subgroups, but not in the layout the subgroup reductions assume: subgroup size 2 (not a power of two from 4 to 128). They would sum wrongly here; train without subgroup reductions.");
  });
});
