// What the `subgroups` kernel variant takes from the adapter (shaders/subgroups.wgsl's header):
// in a one-dimensional workgroup of 64 or 256 threads, subgroup k is the invocations
// k·size … k·size + size − 1 of local_invocation_index, subgroup_invocation_id is the index
// within it, and the size is a power of two from 4 to 128. The reductions index their partials
// by local_invocation_index / subgroup_size, so a layout other than this would sum wrongly.
// src/engine/gpu/subgroup-layout.ts probes it before a run turns them on: here, that probe on the
// test adapter, on a layout it must refuse, and without the feature (its checker on synthetic
// layouts: test/unit/gpu/subgroup-layout.test.ts; the kernels' own tests check their results).
import { describe, expect, it } from 'vitest';
import { MissingFeatureError } from '../../src/engine/errors.ts';
import { probeSubgroupLayout, requireSubgroupReductions, subgroupLayoutProblem } from '../../src/engine/gpu/subgroup-layout.ts';
import { gpuContext } from '../helpers/gpu.ts';

describe('the subgroup layout probe runs (src/engine/gpu/subgroup-layout.ts)', () => {
  it('passes the test adapter, once per device, and lets subgroup reductions run', async () => {
    const ctx = await gpuContext();
    const p = subgroupLayoutProblem(ctx);
    expect(subgroupLayoutProblem(ctx)).toBe(p);
    expect(await p).toBeNull();
    expect(ctx.device.features.has('subgroups'), 'the gpu tier runs on an adapter with subgroups (lavapipe has them)').toBe(true);
    await expect(requireSubgroupReductions(ctx, 'test')).resolves.toBeUndefined();
  });

  it('names a layout it does not assume (a probe whose invocations report a strided subgroup)', async () => {
    const ctx = await gpuContext();
    // Output slot v = the invocation's lane · (wg / size) + its subgroup: as if subgroups were
    // every (wg / size)-th invocation, the layout the reductions must refuse.
    const strided = (wg: number) => `enable subgroups;
@group(0) @binding(0) var<storage, read_write> out: array<vec4u>;
@compute @workgroup_size(${wg})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) w: vec3u,
        @builtin(subgroup_size) size: u32, @builtin(subgroup_invocation_id) id: u32) {
  let per = ${wg}u / size;
  let v = (lid % size) * per + lid / size;
  out[w.x * ${wg}u + v] = vec4u(size, id, subgroupMin(v), subgroupMax(v));
}`;
    const issue = await probeSubgroupLayout(ctx, strided);
    // Slot 0's subgroup is 0, per, 2·per, …: it spans 0 … wg − per instead of 0 … size − 1
    // (in workgroups of 64 unless the subgroups are that wide, where the strided layout is the same).
    const m = /^in a workgroup of (64|256), invocation 0 is lane 0 of a subgroup spanning local indices 0…(\d+) \(assumed: lane 0 of 0…(\d+), subgroups of (\d+) consecutive invocations\)$/.exec(issue ?? '');
    expect(m, String(issue)).not.toBeNull();
    const [wg, size] = [Number(m![1]), Number(m![4])];
    expect([Number(m![2]), Number(m![3])]).toEqual([wg - wg / size, size - 1]);
  });

  it('refuses by name on a device without the feature', async () => {
    const ctx = await gpuContext();
    const features = new Set([...ctx.device.features].filter((f) => f !== 'subgroups'));
    const own = Object.getOwnPropertyDescriptor(ctx.device, 'features');
    Object.defineProperty(ctx.device, 'features', { value: features, configurable: true });
    try {
      expect(await subgroupLayoutProblem(ctx)).toBe("the device lacks the 'subgroups' feature");
      await expect(requireSubgroupReductions(ctx, 'train --subgroups')).rejects.toThrow(MissingFeatureError);
      await expect(requireSubgroupReductions(ctx, 'train --subgroups')).rejects.toThrow(/^train --subgroups needs the WebGPU feature 'subgroups', which this adapter \(.*\) does not offer\.$/);
    } finally {
      if (own) Object.defineProperty(ctx.device, 'features', own);
      else delete (ctx.device as unknown as Record<string, unknown>).features;
    }
    expect(ctx.device.features.has('subgroups')).toBe(true);
  });
});

