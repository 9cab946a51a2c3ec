// Wrapper for shaders/adamw.wgsl: torch.optim.AdamW on one parameter range per dispatch
// (adamw), or on many per dispatch through a table of tensor ranges (adamwMulti: what the
// trainer uses, one dispatch per arena span instead of one per tensor), with the clip
// coefficient and non-finite flag read from the GPU-side norm (kernels/reduce.ts) and the
// hyperparameters from a per-tensor record buffer the trainer rewrites every step.
import { ShapeError } from '../errors.ts';
import type { GpuContext } from '../gpu/context.ts';
import { bindAll, bindAt, flatGrid, packSpans, uniformWords, whole, type BufferRange, type Dispatch } from '../gpu/dispatch.ts';

/**
 * f32 words per tensor record: [beta1, beta2, 1 − beta1, 1 − beta2, eps, 1 − lr·wd,
 * lr / (1 − beta1^t), √(1 − beta2^t), active (1 or 0)]. The derived words are computed in
 * float64 and rounded once, as torch does with its Python-float scalars.
 */
export const ADAMW_RECORD_WORDS = 9;
export const ADAMW_RECORD_BYTES = ADAMW_RECORD_WORDS * 4;
/** Workgroups (of 256 threads) per dispatch at most, about the resident threads of a large GPU; larger tensors are walked by a grid-stride loop. */
export const ADAMW_MAX_WORKGROUPS = 1024;

/** One tensor's optimizer settings for the coming step (torch.optim.AdamW's names). */
export interface AdamwHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** This tensor's 1-based step count for the update about to run (torch's state['step'] after += 1). */
  step: number;
  /** false skips the tensor this step (params, m and v untouched); default true. */
  active?: boolean;
}

/** Records for the `records` buffer, tensor k at words [9k, 9k + 9) (layout: ADAMW_RECORD_WORDS). */
export function packAdamwRecords(list: readonly AdamwHyper[]): Float32Array {
  const out = new Float32Array(list.length * ADAMW_RECORD_WORDS);
  list.forEach((h, k) => {
    const active = h.active ?? true;
    if (active && !(Number.isInteger(h.step) && h.step >= 1)) {
      throw new ShapeError(`AdamW record ${k}: step count must be an integer ≥ 1 (the update about to run), got ${h.step}.`);
    }
    for (const [name, x] of Object.entries({ lr: h.lr, eps: h.eps, weightDecay: h.weightDecay })) {
      if (!(x >= 0) || !Number.isFinite(x)) throw new ShapeError(`AdamW record ${k}: ${name} must be a finite number ≥ 0, got ${x}.`);
    }
    for (const [name, b] of Object.entries({ beta1: h.beta1, beta2: h.beta2 })) {
      if (!(b >= 0 && b < 1)) throw new ShapeError(`AdamW record ${k}: ${name} must be in [0, 1), got ${b}.`);
    }
    const step = active ? h.step : 1;
    out.set(
      [
        h.beta1,
        h.beta2,
        1 - h.beta1,
        1 - h.beta2,
        h.eps,
        1 - h.lr * h.weightDecay,
        h.lr / (1 - h.beta1 ** step),
        Math.sqrt(1 - h.beta2 ** step),
        active ? 1 : 0,
      ],
      k * ADAMW_RECORD_WORDS,
    );
  });
  return out;
}

/** Packs `list` and writes it over the records buffer from record 0 (queue.writeBuffer: once per step, before the step's command buffer). */
export function writeAdamwRecords(ctx: GpuContext, records: GPUBuffer, list: readonly AdamwHyper[]): void {
  const packed = packAdamwRecords(list);
  if (packed.byteLength > records.size) {
    throw new ShapeError(`${list.length} AdamW records need ${packed.byteLength} bytes; the records buffer ${records.label} has ${records.size}.`);
  }
  ctx.device.queue.writeBuffer(records, 0, packed.buffer as ArrayBuffer, packed.byteOffset, packed.byteLength);
}

export interface AdamwArgs {
  label: string;
  /** Elements; param.size / 4 unless given. */
  n?: number;
  /** (n) read_write: the parameter range */
  param: BufferRange;
  /** (n) read: its gradient (must not share a buffer with param, m or v: a buffer is either read or written in one dispatch) */
  grad: BufferRange;
  /** (n) read_write: AdamW first moment, zero before the first step */
  m: BufferRange;
  /** (n) read_write: AdamW second moment, zero before the first step */
  v: BufferRange;
  /** (3) read: [totalNorm, clipCoef, nonFiniteFlag] written by reduce's gradNorm earlier in the step */
  norm: BufferRange;
  /** Per-tensor records (packAdamwRecords), bound whole. */
  records: GPUBuffer;
  /** This tensor's record index. */
  record: number;
}

/** param, m, v ← one AdamW step of `grad` · norm[1], unless norm[2] is set or the record is inactive. */
export async function adamw(ctx: GpuContext, args: AdamwArgs): Promise<Dispatch> {
  const n = args.n ?? args.param.size / 4;
  for (const [name, r] of Object.entries({ param: args.param, grad: args.grad, m: args.m, v: args.v })) {
    if (!Number.isInteger(n) || n < 1 || r.size < n * 4) {
      throw new ShapeError(`${args.label}: ${name} range holds ${r.size / 4} floats, the update needs ${n}; bind equal ranges.`);
    }
  }
  if (args.norm.size < 12) throw new ShapeError(`${args.label}: the norm range must hold 3 floats [norm, clipCoef, nonFinite].`);
  const count = Math.floor(args.records.size / ADAMW_RECORD_BYTES);
  if (!Number.isInteger(args.record) || args.record < 0 || args.record >= count) {
    throw new ShapeError(`${args.label}: record ${args.record} is outside the records buffer, which holds ${count}.`);
  }
  const pipeline = await ctx.pipeline('adamw', 'main');
  const dims = uniformWords(ctx, `${args.label}.dims`, [n, args.record, 0, 0]);
  const records: BufferRange = { buffer: args.records, offset: 0, size: count * ADAMW_RECORD_BYTES };
  return {
    label: args.label,
    pipeline,
    bindGroup: bindAll(ctx, pipeline, args.label, [dims], [records, args.norm, args.grad, args.param, args.m, args.v]),
    workgroups: [Math.min(Math.ceil(n / 256), ADAMW_MAX_WORKGROUPS, ctx.limits.maxComputeWorkgroupsPerDimension), 1, 1],
  };
}

/** u32 words per table entry of adamw.wgsl's `multi` (struct Entry). */
const ENTRY_WORDS = 8;
/**
 * Elements per invocation `multi` aims at (fewer workgroups per tensor than `main`): its table
 * lookup is per invocation, and at one element each it was a large part of the work (GPT-2 124M's
 * 148 tensors on lavapipe: 993 → 851 ms at 16 on an idle machine, 2.41 → 1.68 s under load;
 * bench/README.md). Elementwise, so the values are the same at any grid.
 */
const ELEMENTS_PER_INVOCATION = 16;

export interface AdamwTensor {
  /** (n) read_write: the parameter range */
  param: BufferRange;
  /** (n) read: its gradient */
  grad: BufferRange;
  /** (n) read_write: first moment */
  m: BufferRange;
  /** (n) read_write: second moment */
  v: BufferRange;
  /** its record index */
  record: number;
}

export interface AdamwMultiArgs {
  label: string;
  /** the tensor ranges, in order; each as `adamw` would take it */
  tensors: readonly AdamwTensor[];
  norm: BufferRange;
  records: GPUBuffer;
}

export interface AdamwMulti {
  /** one dispatch per span of consecutive ranges that fit one binding per arena */
  dispatches: Dispatch[];
  /** the tables the dispatches read (allocated here, written once); the caller destroys them */
  tables: GPUBuffer[];
}

/**
 * The same updates as one `adamw` dispatch per tensor, bit for bit, in one dispatch per span
 * (gpu/dispatch.ts packSpans): a whole model's AdamW in one or a few dispatches.
 */
export async function adamwMulti(ctx: GpuContext, args: AdamwMultiArgs): Promise<AdamwMulti> {
  const { label, tensors } = args;
  if (tensors.length === 0) throw new ShapeError(`${label}: no tensors to update.`);
  const count = Math.floor(args.records.size / ADAMW_RECORD_BYTES);
  tensors.forEach((t, k) => {
    const n = t.param.size / 4;
    for (const [name, r] of Object.entries({ param: t.param, grad: t.grad, m: t.m, v: t.v })) {
      if (!Number.isInteger(n) || n < 1 || r.size !== n * 4) {
        throw new ShapeError(`${label}: tensor ${k}'s ${name} range holds ${r.size / 4} floats, the parameter ${n}; bind equal ranges.`);
      }
    }
    if (!Number.isInteger(t.record) || t.record < 0 || t.record >= count) {
      throw new ShapeError(`${label}: tensor ${k}'s record ${t.record} is outside the records buffer, which holds ${count}.`);
    }
  });
  if (args.norm.size < 12) throw new ShapeError(`${label}: the norm range must hold 3 floats [norm, clipCoef, nonFinite].`);
  const pipeline = await ctx.pipeline('adamw', 'multi');
  const records: BufferRange = { buffer: args.records, offset: 0, size: count * ADAMW_RECORD_BYTES };
  const spans = packSpans(tensors.map((t) => [t.param, t.grad, t.m, t.v]), ctx.maxBinding);
  const dispatches: Dispatch[] = [];
  const tables: GPUBuffer[] = [];
  for (const [s, span] of spans.entries()) {
    const l = spans.length > 1 ? `${label}${s}` : label;
    const table = new Uint32Array(span.items.length * ENTRY_WORDS);
    let wg0 = 0;
    span.items.forEach((k, e) => {
      const n = tensors[k].param.size / 4;
      const wgs = Math.min(Math.ceil(n / (256 * ELEMENTS_PER_INVOCATION)), ADAMW_MAX_WORKGROUPS);
      table.set([...span.at[e], n, tensors[k].record, wg0, wgs], e * ENTRY_WORDS);
      wg0 += wgs;
    });
    const buf = ctx.createBuffer(table.byteLength, `${l}.table`, table);
    tables.push(buf);
    const dims = uniformWords(ctx, `${l}.dims`, [span.items.length, wg0, 0, 0]);
    const [param, grad, m, v] = span.ranges;
    dispatches.push({
      label: l,
      pipeline,
      bindGroup: bindAt(ctx, pipeline, l, [[0, whole(dims, 16)], [1, records], [2, args.norm], [3, grad], [4, param], [5, m], [6, v], [7, whole(buf)]]),
      workgroups: flatGrid(ctx, wg0, l),
    });
  }
  return { dispatches, tables };
}
