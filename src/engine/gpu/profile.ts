// Time per kernel family of a list of prepared dispatches (a training step, a forward pass):
//  - with the adapter's `timestamp-query` feature, each dispatch gets its own compute pass whose
//    beginning and end are timestamped, all in one command buffer;
//  - without it, each dispatch is submitted alone and timed from submit to onSubmittedWorkDone,
//    less the round trip of an empty submit measured the same way.
// Either way the dispatches run once, in their order, with the same inputs, so profiling a
// training step performs that step and leaves the same results as an unprofiled one.
// A family is a shader's entry point with the override constants that select its variant
// (matmul with TRANS_A, …). GFLOP/s is shown where a kernel wrapper declared its FLOPs
// (Dispatch.flops); GB/s counts the bytes bound to the dispatch (every storage range and uniform
// once), a lower bound on the traffic of kernels that read their inputs more than once.
import { UnsupportedConfigError } from '../errors.ts';
import { boundBytes, type Dispatch } from './dispatch.ts';
import type { GpuContext } from './context.ts';

export type ProfileMethod = 'timestamp-query' | 'one-by-one';

export interface ProfileRow {
  family: string;
  dispatches: number;
  ms: number;
  /** share of the profiled total */
  fraction: number;
  flops: number | null;
  bytes: number;
  gflops: number | null;
  gbps: number;
}

export interface ProfileResult {
  method: ProfileMethod;
  totalMs: number;
  /** slowest family first */
  rows: ProfileRow[];
}

export interface ProfileOptions {
  /** 'auto': timestamps when the device has them, else one by one */
  method?: ProfileMethod | 'auto';
  /** recorded before the dispatches, in the same submission (e.g. zeroing the gradients) */
  before?: (enc: GPUCommandEncoder) => void;
  /** recorded after them (e.g. copying the metrics out) */
  after?: (enc: GPUCommandEncoder) => void;
}

/**
 * `matmul:main:[["TRANS_A",1],…]` (GpuContext.pipeline's label) → `matmul.main TRANS_A`; a
 * specialized kernel's label ends in `:[["BM",64],…]` (its defines: tile sizes), which the
 * family leaves out, so one kernel's time is one row whichever tiling the adapter uses.
 */
export function familyOf(d: Dispatch): string {
  const label = d.pipeline.label || d.label;
  const m = /^([^:]+):([^:]+):([^:]*)(?::(.*))?$/.exec(label);
  if (!m) return d.label;
  const flags: string[] = [];
  try {
    const consts = JSON.parse(m[3]) as Array<[string, number]>;
    for (const [k, v] of consts) if (v !== 0) flags.push(v === 1 ? k : `${k}=${v}`);
  } catch {
    // not a constants list: the family is the entry point alone
  }
  return `${m[1]}.${m[2]}${flags.length ? ` ${flags.join(' ')}` : ''}`;
}

/** The middle value (the mean of the two middle ones for an even count): the profiler's and the tile tuner's timing statistic. */
export function median(xs: readonly number[]): number {
  if (!xs.length) throw new RangeError('median of no values');
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

/** Largest query set the WebGPU spec guarantees (4096 queries): two per dispatch. */
const QUERIES_PER_SET = 4096;

async function timestamped(ctx: GpuContext, dispatches: readonly Dispatch[], opts: ProfileOptions): Promise<number[]> {
  const { device } = ctx;
  const n = dispatches.length;
  const sets: GPUQuerySet[] = [];
  const perSet = QUERIES_PER_SET / 2;
  for (let i = 0; i < n; i += perSet) sets.push(device.createQuerySet({ type: 'timestamp', count: 2 * Math.min(perSet, n - i) }));
  const resolve = device.createBuffer({ size: Math.max(16, 16 * n), usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC, label: 'profile.resolve' });
  const staging = device.createBuffer({ size: Math.max(16, 16 * n), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: 'profile.staging' });
  try {
    const enc = device.createCommandEncoder({ label: 'profile' });
    opts.before?.(enc);
    dispatches.forEach((d, i) => {
      const querySet = sets[Math.floor(i / perSet)];
      const q = 2 * (i % perSet);
      const pass = enc.beginComputePass({ label: d.label, timestampWrites: { querySet, beginningOfPassWriteIndex: q, endOfPassWriteIndex: q + 1 } });
      pass.setPipeline(d.pipeline);
      pass.setBindGroup(0, d.bindGroup);
      pass.dispatchWorkgroups(...d.workgroups);
      pass.end();
    });
    sets.forEach((s, k) => enc.resolveQuerySet(s, 0, s.count, resolve, k * perSet * 16));
    enc.copyBufferToBuffer(resolve, 0, staging, 0, staging.size);
    opts.after?.(enc);
    device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const t = new BigUint64Array(staging.getMappedRange().slice(0));
    staging.unmap();
    // A timestamp pair that runs backwards (some drivers reset the counter) counts as 0.
    return dispatches.map((_, i) => Math.max(0, Number(t[2 * i + 1] - t[2 * i])) / 1e6);
  } finally {
    for (const s of sets) s.destroy();
    resolve.destroy();
    staging.destroy();
  }
}

async function oneByOne(ctx: GpuContext, dispatches: readonly Dispatch[], opts: ProfileOptions): Promise<number[]> {
  const { device } = ctx;
  const submitAndWait = async (record: (enc: GPUCommandEncoder) => void): Promise<number> => {
    const enc = device.createCommandEncoder({ label: 'profile' });
    record(enc);
    const t0 = performance.now();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
    return performance.now() - t0;
  };
  if (opts.before) await submitAndWait(opts.before);
  // The fixed cost of a submission and its completion callback, taken off every kernel's time.
  const empty: number[] = [];
  for (let i = 0; i < 5; i++) empty.push(await submitAndWait((enc) => enc.beginComputePass().end()));
  const base = median(empty);
  const ms: number[] = [];
  for (const d of dispatches) {
    const t = await submitAndWait((enc) => {
      const pass = enc.beginComputePass({ label: d.label });
      pass.setPipeline(d.pipeline);
      pass.setBindGroup(0, d.bindGroup);
      pass.dispatchWorkgroups(...d.workgroups);
      pass.end();
    });
    ms.push(Math.max(0, t - base));
  }
  if (opts.after) await submitAndWait(opts.after);
  return ms;
}

/** Runs `dispatches` once, timing each; returns the time per family, slowest first. */
export async function profileDispatches(ctx: GpuContext, dispatches: readonly Dispatch[], opts: ProfileOptions = {}): Promise<ProfileResult> {
  const want = opts.method ?? 'auto';
  const hasTimestamps = ctx.device.features.has('timestamp-query');
  if (want === 'timestamp-query' && !hasTimestamps) throw new UnsupportedConfigError('This device has no timestamp-query feature; profile one by one instead.');
  const method: ProfileMethod = want === 'auto' ? (hasTimestamps ? 'timestamp-query' : 'one-by-one') : want;
  const times = method === 'timestamp-query' ? await timestamped(ctx, dispatches, opts) : await oneByOne(ctx, dispatches, opts);
  const byFamily = new Map<string, { dispatches: number; ms: number; flops: number | null; bytes: number }>();
  dispatches.forEach((d, i) => {
    const f = familyOf(d);
    const r = byFamily.get(f) ?? { dispatches: 0, ms: 0, flops: d.flops === undefined ? null : 0, bytes: 0 };
    r.dispatches++;
    r.ms += times[i];
    if (r.flops !== null) r.flops = d.flops === undefined ? null : r.flops + d.flops;
    r.bytes += boundBytes(d.bindGroup);
    byFamily.set(f, r);
  });
  const totalMs = times.reduce((a, b) => a + b, 0);
  const rows: ProfileRow[] = [...byFamily].map(([family, r]) => ({
    family, dispatches: r.dispatches, ms: r.ms, fraction: totalMs > 0 ? r.ms / totalMs : 0, flops: r.flops, bytes: r.bytes,
    gflops: r.flops !== null && r.ms > 0 ? r.flops / (r.ms / 1000) / 1e9 : null,
    gbps: r.ms > 0 ? r.bytes / (r.ms / 1000) / 1e9 : 0,
  }));
  rows.sort((a, b) => b.ms - a.ms);
  return { method, totalMs, rows };
}

/** A Markdown table of the `top` slowest families, then one line for the rest. */
export function profileTable(rows: readonly ProfileRow[], top = 10): string {
  const lines = ['| kernel family | dispatches | ms | share | GFLOP/s | GB/s (bound bytes) |', '|---|---|---|---|---|---|'];
  const row = (r: Pick<ProfileRow, 'family' | 'dispatches' | 'ms' | 'fraction' | 'gflops' | 'gbps'>) =>
    `| ${r.family} | ${r.dispatches} | ${r.ms.toFixed(2)} | ${(100 * r.fraction).toFixed(1)}% | ${r.gflops === null ? '—' : r.gflops.toFixed(2)} | ${r.gbps > 0 ? r.gbps.toFixed(2) : '—'} |`;
  for (const r of rows.slice(0, top)) lines.push(row(r));
  const rest = rows.slice(top);
  if (rest.length) {
    const ms = rest.reduce((a, r) => a + r.ms, 0);
    lines.push(row({ family: `${rest.length} other families`, dispatches: rest.reduce((a, r) => a + r.dispatches, 0), ms, fraction: rest.reduce((a, r) => a + r.fraction, 0), gflops: null, gbps: 0 }));
  }
  const total = rows.reduce((a, r) => a + r.ms, 0);
  lines.push(`| total | ${rows.reduce((a, r) => a + r.dispatches, 0)} | ${total.toFixed(2)} | 100% | | |`);
  return lines.join('\n');
}
