// Wrapper for shaders/attention.wgsl: causal multi-head self-attention, flash style
// (forward saves only the row logsumexp; backward recomputes the probabilities from it).
import { ShapeError } from '../errors.ts';
import type { GpuContext } from '../gpu/context.ts';
import { bindAt, uniformWords, whole, workgroupCount, type BufferRange, type Dispatch } from '../gpu/dispatch.ts';

/** Largest head size the kernel holds per thread (its private arrays are this long). */
export const ATTENTION_MAX_HEAD_SIZE = 128;
/** Queries (forward, dq) or keys (dk, dv) per workgroup. */
export const ATTENTION_ROWS_PER_WORKGROUP = 64;

export interface AttentionShape {
  B: number;
  T: number;
  C: number;
  NH: number;
}

export interface AttentionDropout {
  /** Attention-probability dropout rate in [0, 1); 0 reproduces the no-dropout result exactly. */
  p: number;
  /** The trainer's `Rng { seed: u32, step: u32 }` uniform, rewritten once per optimizer step. */
  rng: GPUBuffer;
  /** Micro-batch index within the optimizer step. */
  micro: number;
  /** Dropout site of this layer: 1 + 3·layer (see the RNG contract). */
  site: number;
}

export interface AttentionForwardArgs extends AttentionShape {
  label: string;
  /** (B, T, 3C) input: q, k, v blocks */
  qkv: BufferRange;
  /** (B, T, C) output */
  out: BufferRange;
  /** (B, NH, T) output: logsumexp of each query's scaled scores, kept for backward */
  lse: BufferRange;
  dropout?: AttentionDropout;
}

export interface AttentionBackwardArgs extends AttentionShape {
  label: string;
  /** (B, T, C) input: gradient of the attention output */
  dout: BufferRange;
  /** (B, T, 3C) input: the forward's qkv */
  qkv: BufferRange;
  /** (B, T, C) input: the forward's out */
  out: BufferRange;
  /** (B, NH, T) input: the forward's lse */
  lse: BufferRange;
  /** (B, T, 3C) output, overwritten: dq, dk, dv blocks */
  dqkv: BufferRange;
  /** Must match the forward's (same p, rng, micro, site), so the same mask is regenerated. */
  dropout?: AttentionDropout;
}

function check(ctx: GpuContext, a: AttentionShape & { label: string; dropout?: AttentionDropout }): number {
  const { B, T, C, NH } = a;
  for (const [k, v] of Object.entries({ B, T, C, NH })) {
    if (!Number.isInteger(v) || v < 1) throw new ShapeError(`${a.label}: attention ${k} must be a positive integer, got ${v}.`);
  }
  if (C % NH !== 0) throw new ShapeError(`${a.label}: n_embd ${C} is not divisible by n_head ${NH}; use a config where it is.`);
  const hs = C / NH;
  if (hs > ATTENTION_MAX_HEAD_SIZE) {
    throw new ShapeError(`${a.label}: head size ${hs} exceeds the attention kernel's limit of ${ATTENTION_MAX_HEAD_SIZE}; use more heads or a smaller n_embd.`);
  }
  const p = a.dropout?.p ?? 0;
  if (!(p >= 0 && p < 1)) throw new ShapeError(`${a.label}: attention dropout ${p} must be in [0, 1).`);
  // Dropout indices ((b·NH + h)·T + i)·T + j are u32.
  if (B * NH * T * T > 2 ** 32) throw new ShapeError(`${a.label}: B·NH·T² = ${B * NH * T * T} exceeds 2^32; use a smaller batch or sequence.`);
  workgroupCount(ctx, B * NH, a.label);
  return hs;
}

/** Zero `Rng` for launches without dropout: the binding must exist, its value is never read when p = 0. */
function rngOrZero(ctx: GpuContext, label: string, d?: AttentionDropout): GPUBuffer {
  return d?.rng ?? uniformWords(ctx, `${label}.rng`, [0, 0]);
}

function dims(ctx: GpuContext, a: AttentionShape & { label: string; dropout?: AttentionDropout }, hs: number): GPUBuffer {
  const d = a.dropout;
  return uniformWords(ctx, `${a.label}.dims`, [a.B, a.T, a.C, a.NH, hs, d?.micro ?? 0, d?.site ?? 0, { f32: d?.p ?? 0 }]);
}



/** out (B, T, C), lse (B, NH, T) ← causal softmax(q·kᵀ/√hs) [dropout] · v, one dispatch. */
export async function attentionForward(ctx: GpuContext, args: AttentionForwardArgs): Promise<Dispatch> {
  const hs = check(ctx, args);
  const pipeline = await ctx.pipeline('attention', 'forward');
  const u = dims(ctx, args, hs);
  const rng = whole(rngOrZero(ctx, args.label, args.dropout), 8);
  return {
    label: args.label,
    pipeline,
    bindGroup: bindAt(ctx, pipeline, args.label, [[0, whole(u, 32)], [1, rng], [2, args.qkv], [3, args.out], [4, args.lse]]),
    workgroups: [workgroupCount(ctx, Math.ceil(args.T / ATTENTION_ROWS_PER_WORKGROUP), args.label), args.B * args.NH, 1],
  };
}

/** dqkv (B, T, 3C) ← gradient of attentionForward; two dispatches (dq by query, then dk and dv by key). */
export async function attentionBackward(ctx: GpuContext, args: AttentionBackwardArgs): Promise<Dispatch[]> {
  const hs = check(ctx, args);
  const u = dims(ctx, args, hs);
  const rng = whole(rngOrZero(ctx, args.label, args.dropout), 8);
  const slots: Array<[number, BufferRange]> = [
    [0, whole(u, 32)], [1, rng], [2, args.qkv], [5, args.out], [6, args.lse], [7, args.dout], [8, args.dqkv],
  ];
  const grid: [number, number, number] = [workgroupCount(ctx, Math.ceil(args.T / ATTENTION_ROWS_PER_WORKGROUP), args.label), args.B * args.NH, 1];
  const out: Dispatch[] = [];
  for (const entry of ['backward_dq', 'backward_dkv']) {
    const pipeline = await ctx.pipeline('attention', entry);
    const label = `${args.label}.${entry}`;
    out.push({ label, pipeline, bindGroup: bindAt(ctx, pipeline, label, slots), workgroups: grid });
  }
  return out;
}
