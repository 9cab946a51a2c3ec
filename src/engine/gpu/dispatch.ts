// A kernel launch prepared once and replayed every step: the pipeline, its bind group (which
// pins the buffer ranges and a uniform of sizes) and the workgroup counts. Building these up
// front is what keeps the steady-state training step free of allocation.
import type { GpuContext } from './context.ts';

/** A byte range of a GPU buffer, bound as one storage binding. */
export interface BufferRange {
  buffer: GPUBuffer;
  /** Byte offset; a multiple of the device's minStorageBufferOffsetAlignment. */
  offset: number;
  /** Byte length. */
  size: number;
}

export interface Dispatch {
  label: string;
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  workgroups: [number, number, number];
  /** floating-point operations of one run, where the kernel wrapper counts them (the profiler's GFLOP/s) */
  flops?: number;
}

/** Bytes bound by each bind group made through bindGroup(): the profiler's traffic estimate. */
const bound = new WeakMap<GPUBindGroup, number>();

/** Bytes of the buffer ranges bound by `group` (0 for a group not made by bindGroup()). */
export function boundBytes(group: GPUBindGroup): number {
  return bound.get(group) ?? 0;
}

export function whole(buffer: GPUBuffer, bytes = buffer.size): BufferRange {
  return { buffer, offset: 0, size: bytes };
}

/** Bind group for `pipeline`'s group 0: a uniform (if given) at binding 0, then the storage ranges in order. */
export function bindGroup(ctx: GpuContext, pipeline: GPUComputePipeline, label: string, uniform: GPUBuffer | null, ranges: BufferRange[]): GPUBindGroup {
  const entries: GPUBindGroupEntry[] = [];
  let i = 0;
  if (uniform) entries.push({ binding: i++, resource: { buffer: uniform } });
  for (const r of ranges) entries.push({ binding: i++, resource: { buffer: r.buffer, offset: r.offset, size: r.size } });
  const group = ctx.device.createBindGroup({ label, layout: pipeline.getBindGroupLayout(0), entries });
  bound.set(group, (uniform?.size ?? 0) + ranges.reduce((a, r) => a + r.size, 0));
  return group;
}

/** Uniform of u32/f32 words, written once. */
export function uniformWords(ctx: GpuContext, label: string, words: Array<number | { f32: number }>): GPUBuffer {
  const buf = new ArrayBuffer(Math.max(16, Math.ceil((words.length * 4) / 16) * 16));
  const u = new Uint32Array(buf);
  const f = new Float32Array(buf);
  words.forEach((w, i) => {
    if (typeof w === 'number') u[i] = w >>> 0;
    else f[i] = w.f32;
  });
  return ctx.createUniform(buf, label);
}

export function workgroupCount(ctx: GpuContext, n: number, label: string): number {
  const max = ctx.limits.maxComputeWorkgroupsPerDimension;
  if (n > max) throw new Error(`${label}: ${n} workgroups exceed the adapter's ${max} per dimension`);
  return Math.max(1, n);
}

/** Records prepared dispatches into one compute pass. */
export function encode(pass: GPUComputePassEncoder, dispatches: readonly Dispatch[]): void {
  for (const d of dispatches) {
    pass.setPipeline(d.pipeline);
    pass.setBindGroup(0, d.bindGroup);
    pass.dispatchWorkgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
  }
}

/** Runs prepared dispatches in one command buffer and waits for the queue. */
export async function run(ctx: GpuContext, dispatches: readonly Dispatch[]): Promise<void> {
  const enc = ctx.device.createCommandEncoder();
  const pass = enc.beginComputePass();
  encode(pass, dispatches);
  pass.end();
  ctx.device.queue.submit([enc.finish()]);
  await ctx.device.queue.onSubmittedWorkDone();
}
