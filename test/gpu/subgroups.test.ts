// What the `subgroups` kernel variant takes from the adapter (shaders/subgroups.wgsl's header):
// in a one-dimensional workgroup of 64 or 256 threads, subgroup k is the invocations
// k·size … k·size + size − 1 of local_invocation_index, subgroup_invocation_id is the index
// within it, and the size is a power of two from 4 to 128. The reductions index their partials
// by local_invocation_index / subgroup_size, so a layout other than this would sum wrongly:
// checked here on the test adapter, and the kernels' own tests check their results.
import { describe, expect, it } from 'vitest';
import { MissingFeatureError } from '../../src/engine/errors.ts';
import { probeSubgroupLayout, requireSubgroupReductions, subgroupLayoutProblem } from '../../src/engine/gpu/subgroup-layout.ts';
import { gpuContext } from '../helpers/gpu.ts';

const PROBE = (wg: number) => `enable subgroups;
@group(0) @binding(0) var<storage, read_write> out: array<vec4u>;
@compute @workgroup_size(${wg})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) w: vec3u,
        @builtin(subgroup_size) size: u32, @builtin(subgroup_invocation_id) id: u32) {
  // (size, id, the smallest and the largest local index in this invocation's subgroup)
  out[w.x * ${wg}u + lid] = vec4u(size, id, subgroupMin(lid), subgroupMax(lid));
}`;

describe('subgroup layout of the test adapter', () => {
  for (const wg of [64, 256]) {
    it(`workgroups of ${wg}: subgroups are consecutive runs of local_invocation_index`, async () => {
      const ctx = await gpuContext();
      expect(ctx.device.features.has('subgroups')).toBe(true);
      const groups = 3;
      const module = ctx.device.createShaderModule({ code: PROBE(wg) });
      const pipeline = await ctx.device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' } });
      const out = ctx.createBuffer(groups * wg * 16, 'probe');
      const enc = ctx.device.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, ctx.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: out } }] }));
      pass.dispatchWorkgroups(groups);
      pass.end();
      ctx.device.queue.submit([enc.finish()]);
      const got = new Uint32Array(await ctx.read(out, 0, groups * wg * 16));
      const size = got[0];
      expect([4, 8, 16, 32, 64, 128]).toContain(size);
      console.log(`[subgroups] workgroup of ${wg}: subgroup size ${size}`);
      for (let i = 0; i < groups * wg; i++) {
        const lid = i % wg;
        const first = Math.floor(lid / size) * size;
        expect(Array.from(got.subarray(4 * i, 4 * i + 4)), `invocation ${lid}`).toEqual([size, lid % size, first, Math.min(first + size, wg) - 1]);
      }
      out.destroy();
    });
  }
});

describe('the subgroup layout probe runs (src/engine/gpu/subgroup-layout.ts)', () => {
  it('passes the test adapter, once per device, and lets subgroup reductions run', async () => {
    const ctx = await gpuContext();
    const p = subgroupLayoutProblem(ctx);
    expect(subgroupLayoutProblem(ctx)).toBe(p);
    expect(await p).toBeNull();
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

