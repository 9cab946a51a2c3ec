// The check behind the `subgroups` kernel variant (shaders/subgroups.wgsl): its reductions take
// subgroup k of a one-dimensional workgroup to be the invocations k·size … k·size + size − 1 of
// local_invocation_index, with subgroup_invocation_id the index within it and a size that is a
// power of two from 4 to 128. Vulkan, D3D12 and Metal lay out a one-dimensional workgroup that
// way, but WGSL does not promise it, and on a device that differed the reductions would sum
// wrongly without any error. So before a run turns the variant on, a probe kernel asks this
// device, once per device, in workgroups of the two sizes the reductions use (64 and 256).
import { KernelVariantError, MissingFeatureError } from '../errors.ts';
import type { GpuContext } from './context.ts';

/** Workgroup sizes the subgroup reductions run in. */
const SIZES = [64, 256] as const;
/** Workgroups probed per size (the layout must not depend on the workgroup). */
const GROUPS = 2;

const probeCode = (wg: number) => `enable subgroups;
@group(0) @binding(0) var<storage, read_write> out: array<vec4u>;
@compute @workgroup_size(${wg})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) w: vec3u,
        @builtin(subgroup_size) size: u32, @builtin(subgroup_invocation_id) id: u32) {
  out[w.x * ${wg}u + lid] = vec4u(size, id, subgroupMin(lid), subgroupMax(lid));
}`;

/**
 * What differs from the assumed layout in one probe's output — per invocation (workgroup-major,
 * `wg` each): (subgroup_size, subgroup_invocation_id, smallest and largest local index in its
 * subgroup) — or null when there is nothing.
 */
export function subgroupLayoutIssue(wg: number, got: Uint32Array): string | null {
  const n = got.length / 4;
  if (!Number.isInteger(n / wg) || n === 0) return `the probe returned ${got.length} words for workgroups of ${wg}`;
  for (let i = 0; i < n; i++) {
    const lid = i % wg;
    const [size, id, lo, hi] = got.subarray(4 * i, 4 * i + 4);
    if (!(size >= 4 && size <= 128 && (size & (size - 1)) === 0)) return `subgroup size ${size} (not a power of two from 4 to 128)`;
    const first = Math.floor(lid / size) * size;
    const want = [size, lid % size, first, Math.min(first + size, wg) - 1];
    if (id !== want[1] || lo !== want[2] || hi !== want[3]) {
      return `in a workgroup of ${wg}, invocation ${lid} is lane ${id} of a subgroup spanning local indices ${lo}…${hi} ` +
        `(assumed: lane ${want[1]} of ${want[2]}…${want[3]}, subgroups of ${size} consecutive invocations)`;
    }
  }
  return null;
}

/**
 * Runs the probe (`code(wg)`: the layout probe unless a test gives another) in workgroups of 64
 * and 256 and returns the first difference from the assumed layout, or null. Needs the feature.
 */
export async function probeSubgroupLayout(ctx: GpuContext, code: (wg: number) => string = probeCode): Promise<string | null> {
  for (const wg of SIZES) {
    const module = ctx.device.createShaderModule({ code: code(wg), label: `subgroup-layout.${wg}` });
    const pipeline = await ctx.device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' } });
    const out = ctx.createBuffer(GROUPS * wg * 16, `subgroup-layout.${wg}`);
    try {
      const enc = ctx.device.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, ctx.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: out } }] }));
      pass.dispatchWorkgroups(GROUPS);
      pass.end();
      ctx.device.queue.submit([enc.finish()]);
      const issue = subgroupLayoutIssue(wg, new Uint32Array(await ctx.read(out, 0, GROUPS * wg * 16)));
      if (issue) return issue;
    } finally {
      out.destroy();
    }
  }
  return null;
}

const probes = new WeakMap<GPUDevice, Promise<string | null>>();

/**
 * Null when this device has the `subgroups` feature and lays out subgroups as the reductions
 * assume, else the reason they cannot run (no feature, or the first difference the probe found).
 * Probes once per device.
 */
export function subgroupLayoutProblem(ctx: GpuContext): Promise<string | null> {
  if (!ctx.device.features.has('subgroups')) return Promise.resolve("the device lacks the 'subgroups' feature");
  let p = probes.get(ctx.device);
  if (!p) {
    p = probeSubgroupLayout(ctx);
    probes.set(ctx.device, p);
  }
  return p;
}

/** The refusal for `what` on adapter `name` when the probe found `problem`. */
export function layoutRefusal(what: string, name: string, problem: string): KernelVariantError {
  return new KernelVariantError(`${what}: this adapter (${name}) has subgroups, but not in the layout the subgroup reductions assume: ${problem}. They would sum wrongly here; train without subgroup reductions.`);
}

/**
 * Throws unless subgroup reductions can run on this device: MissingFeatureError without the
 * `subgroups` feature, KernelVariantError (layoutRefusal) when the probe finds another layout.
 * `what` names who asks (`train --subgroups`, the page's setting, a resume of a run that used them).
 */
export async function requireSubgroupReductions(ctx: GpuContext, what: string): Promise<void> {
  const name = `${ctx.adapter.vendor} ${ctx.adapter.description}`.trim();
  if (!ctx.device.features.has('subgroups')) {
    throw new MissingFeatureError(`${what} needs the WebGPU feature 'subgroups', which this adapter (${name}) does not offer.`);
  }
  const problem = await subgroupLayoutProblem(ctx);
  if (problem) throw layoutRefusal(what, name, problem);
}
