// A kernel launch prepared once and replayed every step: the pipeline, its bind group (which
// pins the buffer ranges and a uniform of sizes) and the workgroup counts. Building these up
// front is what keeps the steady-state training step free of allocation.
import { ShapeError } from '../errors.ts';
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

/** Bytes bound by each bind group made through bindAll() or bindAt(): the profiler's traffic estimate. */
const bound = new WeakMap<GPUBindGroup, number>();

/** Bytes of the buffers and ranges bound by `group` (0 for a group not made here). */
export function boundBytes(group: GPUBindGroup): number {
  return bound.get(group) ?? 0;
}

/** The first `bytes` of a buffer (all of it by default) as a range. */
export function whole(buffer: GPUBuffer, bytes = buffer.size): BufferRange {
  return { buffer, offset: 0, size: bytes };
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

/** Checks a 1-D workgroup count against the adapter's per-dimension limit. */
export function workgroupCount(ctx: GpuContext, n: number, label: string): number {
  const max = ctx.limits.maxComputeWorkgroupsPerDimension;
  if (n > max) throw new ShapeError(`${label}: ${n} workgroups exceed the adapter's ${max} per dimension; use a smaller batch or sequence.`);
  return Math.max(1, n);
}

/** Throws ShapeError unless `range` holds at least `count` 4-byte elements. */
export function needElements(range: BufferRange, count: number, what: string, label: string): void {
  if (range.size < count * 4) {
    throw new ShapeError(`${label}: ${what} is bound with ${range.size} bytes but needs ${count} elements (${count * 4} bytes).`);
  }
}

/** Throws ShapeError unless `n` is a positive integer. */
export function needPositive(n: number, what: string, label: string): void {
  if (!Number.isInteger(n) || n <= 0) throw new ShapeError(`${label}: ${what} must be a positive integer, got ${n}.`);
}

/**
 * Workgroup grid for `count` workgroups laid out as x + y·X (shaders read num_workgroups.x), so
 * counts above maxComputeWorkgroupsPerDimension (65535) still fit. Surplus workgroups exit.
 */
export function flatGrid(ctx: GpuContext, count: number, label: string): [number, number, number] {
  const max = ctx.limits.maxComputeWorkgroupsPerDimension;
  const n = Math.max(1, Math.ceil(count));
  const x = Math.min(n, max);
  const y = Math.ceil(n / x);
  if (y > max) throw new ShapeError(`${label}: ${n} workgroups exceed the adapter's ${max}×${max} grid.`);
  return [x, y, 1];
}

/** Bind group for group 0: the uniforms at bindings 0, 1, ... then the storage ranges in order. */
export function bindAll(ctx: GpuContext, pipeline: GPUComputePipeline, label: string, uniforms: GPUBuffer[], ranges: BufferRange[]): GPUBindGroup {
  const entries: GPUBindGroupEntry[] = [];
  for (const u of uniforms) entries.push({ binding: entries.length, resource: { buffer: u } });
  for (const r of ranges) entries.push({ binding: entries.length, resource: { buffer: r.buffer, offset: r.offset, size: r.size } });
  const group = ctx.device.createBindGroup({ label, layout: pipeline.getBindGroupLayout(0), entries });
  bound.set(group, uniforms.reduce((a, u) => a + u.size, 0) + ranges.reduce((a, r) => a + r.size, 0));
  return group;
}

/** Bind group with explicit binding numbers (for shaders whose entry points use different slots). */
export function bindAt(ctx: GpuContext, pipeline: GPUComputePipeline, label: string, slots: Array<[number, BufferRange]>): GPUBindGroup {
  const group = ctx.device.createBindGroup({
    label,
    layout: pipeline.getBindGroupLayout(0),
    entries: slots.map(([binding, r]) => ({ binding, resource: { buffer: r.buffer, offset: r.offset, size: r.size } })),
  });
  bound.set(group, slots.reduce((a, [, r]) => a + r.size, 0));
  return group;
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

/** One binding per list covering several items' ranges; `at[i][j]`: item i's offset in list j's binding, in floats. */
export interface Span {
  /** the binding of each list: from the first item's offset to the furthest end */
  ranges: BufferRange[];
  /** the items (indices into the input) in this span, in input order */
  items: number[];
  /** per item of the span, per list: its offset from the binding's start, in floats */
  at: number[][];
}

/**
 * Groups consecutive items (each a range in every one of several lists: a parameter, its
 * gradient, its two moments) into spans that one dispatch can bind: per list one binding from
 * the span's first range to the furthest end, at most `maxBinding` bytes, every range of the list
 * in the same buffer at or after the first. A span also ends where two lists' bindings would
 * overlap in one buffer (WebGPU refuses a writable binding that aliases another). Multi-tensor
 * kernels (AdamW, the gradient norm) then run one dispatch per span instead of one per tensor.
 */
export function packSpans(items: readonly BufferRange[][], maxBinding: number): Span[] {
  const out: Span[] = [];
  let cur: Span | null = null;
  const fits = (s: Span, rs: BufferRange[]) => {
    const next = s.ranges.map((b, j) => {
      const r = rs[j];
      if (r.buffer !== b.buffer || r.offset < b.offset) return null;
      return { buffer: b.buffer, offset: b.offset, size: Math.max(b.size, r.offset + r.size - b.offset) };
    });
    if (next.some((b) => b === null || b.size > maxBinding)) return null;
    const bs = next as BufferRange[];
    for (let a = 0; a < bs.length; a++) {
      for (let b = a + 1; b < bs.length; b++) {
        if (bs[a].buffer === bs[b].buffer && bs[a].offset < bs[b].offset + bs[b].size && bs[b].offset < bs[a].offset + bs[a].size) return null;
      }
    }
    return bs;
  };
  items.forEach((rs, i) => {
    const grown = cur && fits(cur, rs);
    if (cur && grown) {
      cur.ranges = grown;
      cur.items.push(i);
      cur.at.push(rs.map((r, j) => (r.offset - grown[j].offset) / 4));
      return;
    }
    cur = { ranges: rs.map((r) => ({ ...r })), items: [i], at: [rs.map(() => 0)] };
    out.push(cur);
  });
  return out;
}
