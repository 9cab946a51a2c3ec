// Wrapper for shaders/reduce.wgsl: the global gradient norm and clip coefficient
// (torch.nn.utils.clip_grad_norm_) over gradients spread across several buffer ranges, and a
// scaled sum (the step loss). All sums run in a fixed order, so results are reproducible.
// The workgroup sums use subgroup operations when the context's `subgroups` variant is on
// (shaders/reduce.wgsl's header).
import { ShapeError } from '../errors.ts';
import type { GpuContext } from '../gpu/context.ts';
import { useSubgroups } from '../gpu/variants.ts';
import { bindAll, bindAt, flatGrid, packSpans, uniformWords, whole, type BufferRange, type Dispatch } from '../gpu/dispatch.ts';

/** Partial sums each sum-of-squares dispatch writes: one per workgroup, a fixed count per range. */
export const NORM_PARTIALS_PER_RANGE = 256;
/** Floats in the `norm` buffer: [totalNorm, clipCoef, nonFiniteFlag]. */
export const NORM_WORDS = 3;

/** Size of the partials buffer for `rangeCount` gradient ranges, in floats. */
export function normPartialsCount(rangeCount: number): number {
  return rangeCount * NORM_PARTIALS_PER_RANGE;
}

function elements(label: string, r: BufferRange, n?: number): number {
  const count = n ?? r.size / 4;
  if (!Number.isInteger(count) || count < 0 || count * 4 > r.size) {
    throw new ShapeError(`${label}: ${count} floats do not fit the bound range of ${r.size} bytes.`);
  }
  return count;
}

function dims(ctx: GpuContext, label: string, n: number, slot: number, accumulate: boolean, value: number): GPUBuffer {
  return uniformWords(ctx, `${label}.dims`, [n, slot, accumulate ? 1 : 0, { f32: value }]);
}

function slotRange(label: string, buffer: GPUBuffer, slot: number, count: number): BufferRange {
  if (!Number.isInteger(slot) || slot < 0 || (slot + count) * 4 > buffer.size) {
    throw new ShapeError(`${label}: slots ${slot}..${slot + count - 1} are outside the ${buffer.size / 4}-float buffer ${buffer.label}.`);
  }
  return { buffer, offset: 0, size: buffer.size };
}

export interface SumSquaresArgs {
  label: string;
  /** (n) input: one gradient range, n = x.size / 4 unless given */
  x: BufferRange;
  n?: number;
  /**
   * Output buffer of partial sums, bound whole; this dispatch owns floats slot .. slot + NORM_PARTIALS_PER_RANGE − 1
   * and writes the first ⌈n/256⌉ of them: the others must hold 0 (a fresh buffer does).
   */
  partials: GPUBuffer;
  slot: number;
}

/** partials[slot + w] = Σ x² over workgroup w's share of the range (w < NORM_PARTIALS_PER_RANGE). */
export async function sumSquares(ctx: GpuContext, args: SumSquaresArgs): Promise<Dispatch> {
  const n = elements(args.label, args.x, args.n);
  const pipeline = await ctx.pipeline('reduce', 'sum_squares', {}, { SUBGROUPS: useSubgroups(ctx, args.label) });
  const u = dims(ctx, args.label, n, args.slot, false, 0);
  const out = slotRange(args.label, args.partials, args.slot, NORM_PARTIALS_PER_RANGE);
  return {
    label: args.label,
    pipeline,
    bindGroup: bindAll(ctx, pipeline, args.label, [u], [args.x, out]),
    // No more workgroups than the range has 256-element blocks: element i goes to workgroup
    // ⌊i/256⌋ mod the count either way, so the partials are the same as with all of them, and the
    // slots of workgroups not launched keep the zeros the buffer was created with. A small
    // tensor (a bias, a LayerNorm) then costs one workgroup instead of 256.
    workgroups: [Math.min(NORM_PARTIALS_PER_RANGE, Math.max(1, Math.ceil(n / 256))), 1, 1],
  };
}

export interface NormFinalizeArgs {
  label: string;
  /** (count) input: the partial sums of squares */
  partials: BufferRange;
  count: number;
  /** (3) output: [totalNorm, clipCoef, nonFiniteFlag] */
  norm: BufferRange;
  /** Clip threshold; 0 turns clipping off (clipCoef = 1). Can be changed later with setMaxNorm. */
  maxNorm: number;
  /**
   * Keep the non-finite flag once set (norm[2] is read before it is written): every later step
   * is skipped too until the caller zeroes norm[2]. A trainer uses it so the steps queued behind a
   * non-finite one cannot move the weights away from the last good step.
   */
  sticky?: boolean;
}

export interface NormFinalize {
  dispatch: Dispatch;
  /** Rewrites the threshold in the dims uniform (queue.writeBuffer; no new dispatch). */
  setMaxNorm(maxNorm: number): void;
}

function checkMaxNorm(label: string, maxNorm: number): void {
  if (!(maxNorm >= 0) || !Number.isFinite(maxNorm)) throw new ShapeError(`${label}: max grad norm ${maxNorm} must be a finite number ≥ 0 (0 = no clipping).`);
}

/** norm = [√Σ partials, min(1, maxNorm/(norm + 1e-6)) or 1, nonFinite ? 1 : 0]; one workgroup. */
export async function normFinalize(ctx: GpuContext, args: NormFinalizeArgs): Promise<NormFinalize> {
  elements(args.label, args.partials, args.count);
  elements(args.label, args.norm, NORM_WORDS);
  checkMaxNorm(args.label, args.maxNorm);
  const pipeline = await ctx.pipeline('reduce', 'norm_finalize', {}, { SUBGROUPS: useSubgroups(ctx, args.label) });
  const u = dims(ctx, args.label, args.count, 0, !!args.sticky, args.maxNorm);
  return {
    dispatch: { label: args.label, pipeline, bindGroup: bindAll(ctx, pipeline, args.label, [u], [args.partials, args.norm]), workgroups: [1, 1, 1] },
    setMaxNorm(maxNorm: number) {
      checkMaxNorm(args.label, maxNorm);
      ctx.device.queue.writeBuffer(u, 12, new Float32Array([maxNorm]));
    },
  };
}

export interface GradNormArgs {
  label: string;
  /** The trainable gradients, each range ≤ maxStorageBufferBindingSize; fixed order. */
  grads: BufferRange[];
  /** (3) output: [totalNorm, clipCoef, nonFiniteFlag] */
  norm: BufferRange;
  maxNorm: number;
  /** see NormFinalizeArgs.sticky */
  sticky?: boolean;
}

export interface GradNorm extends NormFinalize {
  /** The sum-of-squares dispatches (one per span of ranges), then the finalize dispatch: encode them in this order. */
  dispatches: Dispatch[];
  /** The partials buffer (normPartialsCount(grads.length) floats), allocated once here. */
  partials: GPUBuffer;
  /** the range tables the sum-of-squares dispatches read (allocated here); destroy with partials */
  tables: GPUBuffer[];
}

/** u32 words per table entry of reduce.wgsl's sum_squares_multi (struct SqEntry). */
const SQ_ENTRY_WORDS = 8;

export interface SumSquaresMulti {
  dispatches: Dispatch[];
  tables: GPUBuffer[];
}

/**
 * sumSquares of every range in `xs` (range k owning partial slots from k·NORM_PARTIALS_PER_RANGE),
 * bit for bit, in one dispatch per span of ranges that fits one binding (gpu/dispatch.ts packSpans).
 */
export async function sumSquaresMulti(ctx: GpuContext, args: { label: string; xs: readonly BufferRange[]; partials: GPUBuffer }): Promise<SumSquaresMulti> {
  const { label, xs, partials } = args;
  if (xs.length === 0) throw new ShapeError(`${label}: no ranges to sum.`);
  for (const [k, x] of xs.entries()) elements(`${label}[${k}]`, x);
  const out = slotRange(label, partials, 0, normPartialsCount(xs.length));
  const pipeline = await ctx.pipeline('reduce', 'sum_squares_multi', {}, { SUBGROUPS: useSubgroups(ctx, label) });
  const spans = packSpans(xs.map((x) => [x]), ctx.maxBinding);
  const dispatches: Dispatch[] = [];
  const tables: GPUBuffer[] = [];
  for (const [s, span] of spans.entries()) {
    const l = spans.length > 1 ? `${label}${s}` : label;
    const table = new Uint32Array(span.items.length * SQ_ENTRY_WORDS);
    let wg0 = 0;
    span.items.forEach((k, e) => {
      const n = Math.floor(xs[k].size / 4);
      // As sumSquares launches: no more workgroups than the range has 256-element blocks.
      const count = Math.min(NORM_PARTIALS_PER_RANGE, Math.max(1, Math.ceil(n / 256)));
      table.set([span.at[e][0], n, k * NORM_PARTIALS_PER_RANGE, wg0, count], e * SQ_ENTRY_WORDS);
      wg0 += count;
    });
    const buf = ctx.createBuffer(table.byteLength, `${l}.table`, table);
    tables.push(buf);
    const u = dims(ctx, l, span.items.length, wg0, false, 0);
    dispatches.push({
      label: l,
      pipeline,
      bindGroup: bindAt(ctx, pipeline, l, [[0, whole(u, 16)], [1, span.ranges[0]], [2, out], [3, whole(buf)]]),
      workgroups: flatGrid(ctx, wg0, l),
    });
  }
  return { dispatches, tables };
}

/** The whole clip_grad_norm_ computation over `grads`, prepared once: sum of squares over every range (sumSquaresMulti) + normFinalize. */
export async function gradNorm(ctx: GpuContext, args: GradNormArgs): Promise<GradNorm> {
  if (args.grads.length === 0) throw new ShapeError(`${args.label}: no gradient ranges; at least one tensor must be trainable.`);
  const count = normPartialsCount(args.grads.length);
  const partials = ctx.createBuffer(count * 4, `${args.label}.partials`);
  const sq = await sumSquaresMulti(ctx, { label: `${args.label}.sq`, xs: args.grads, partials });
  const dispatches: Dispatch[] = [...sq.dispatches];
  const fin = await normFinalize(ctx, {
    label: `${args.label}.final`,
    partials: { buffer: partials, offset: 0, size: count * 4 },
    count,
    norm: args.norm,
    maxNorm: args.maxNorm,
    sticky: args.sticky,
  });
  dispatches.push(fin.dispatch);
  return { ...fin, dispatches, partials, tables: sq.tables };
}

export interface MeanReduceArgs {
  label: string;
  /** (n) input, n = x.size / 4 unless given */
  x: BufferRange;
  n?: number;
  /** Multiplier of the sum, e.g. 1/(B·T·microBatches) for the mean loss of an accumulated step. */
  scale: number;
  /** Output buffer, bound whole; float `slot` is written. */
  out: GPUBuffer;
  slot: number;
  /** out[slot] += sum·scale instead of = (the micro-batches of one optimizer step). */
  accumulate?: boolean;
}

/** out[slot] (+)= scale · Σ x, summed in a fixed order by one workgroup. */
export async function meanReduce(ctx: GpuContext, args: MeanReduceArgs): Promise<Dispatch> {
  const n = elements(args.label, args.x, args.n);
  const pipeline = await ctx.pipeline('reduce', 'mean_reduce', {}, { SUBGROUPS: useSubgroups(ctx, args.label) });
  const u = dims(ctx, args.label, n, args.slot, !!args.accumulate, args.scale);
  const out = slotRange(args.label, args.out, args.slot, 1);
  return { label: args.label, pipeline, bindGroup: bindAll(ctx, pipeline, args.label, [u], [args.x, out]), workgroups: [1, 1, 1] };
}
