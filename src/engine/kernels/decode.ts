// Wrapper for shaders/decode.wgsl: the embedding of one token at one position, single-query
// attention over a layer's key/value cache (storing the new key and value first) and the cache
// fill from a prefill's qkv (the one-row linear layers are kernels/gemv.ts). The token and
// position come from a Step uniform that the generator rewrites before each step, so these
// dispatches are built once and replayed.
import { ShapeError } from '../errors.ts';
import type { GpuContext } from '../gpu/context.ts';
import { useSubgroups } from '../gpu/variants.ts';
import { bindAt, flatGrid, needElements, needPositive, uniformWords, whole, type BufferRange, type Dispatch } from '../gpu/dispatch.ts';
import { ATTENTION_MAX_HEAD_SIZE } from './attention.ts';

export interface DecodeShape {
  label: string;
  /** channels */
  C: number;
  /** heads; C must divide by it */
  NH: number;
  /** n_positions: rows of the cache */
  P: number;
}

/** The `Step { token, pos }` uniform of one generator, rewritten with writeDecodeStep. */
export function createStepUniform(ctx: GpuContext, label = 'decode.step'): GPUBuffer {
  return ctx.createUniform(new Uint32Array(4).buffer, label);
}

/** queue.writeBuffer of the token to embed and its position (no GPU allocation). */
export function writeDecodeStep(ctx: GpuContext, step: GPUBuffer, token: number, pos: number): void {
  ctx.device.queue.writeBuffer(step, 0, new Uint32Array([token >>> 0, pos >>> 0]));
}

/** Floats of one layer's cache: keys and values for P positions, (2, P, C). */
export function kvCacheElements(C: number, P: number): number {
  return 2 * P * C;
}

function check(s: DecodeShape): number {
  needPositive(s.C, 'C', s.label);
  needPositive(s.NH, 'NH', s.label);
  needPositive(s.P, 'P', s.label);
  if (s.C % s.NH !== 0) throw new ShapeError(`${s.label}: n_embd ${s.C} is not divisible by n_head ${s.NH}; use a config where it is.`);
  const hs = s.C / s.NH;
  if (hs > ATTENTION_MAX_HEAD_SIZE) {
    throw new ShapeError(`${s.label}: head size ${hs} exceeds the attention kernels' limit of ${ATTENTION_MAX_HEAD_SIZE}; use more heads or a smaller n_embd.`);
  }
  return hs;
}

function dims(ctx: GpuContext, s: DecodeShape, hs: number, T: number, wteRows = { start: 0, count: 0 }): GPUBuffer {
  return uniformWords(ctx, `${s.label}.dims`, [s.C, s.NH, hs, s.P, T, { f32: 1 / Math.sqrt(hs) }, wteRows.start, wteRows.count]);
}



export interface DecodeEmbedArgs extends DecodeShape {
  /** vocabulary size (rows of wte) */
  V: number;
  step: GPUBuffer;
  /** (count, C) read: rows [start, start + count) of wte */
  wte: BufferRange;
  /** the wte rows this range holds; default all V (wte bound whole) */
  wteRows?: { start: number; count: number };
  /** (P, C) read */
  wpe: BufferRange;
  /** (C) written */
  out: BufferRange;
}

/**
 * out (C) = wte[step.token] + wpe[step.pos], written only when the token is in this dispatch's
 * wte rows (one dispatch per bindable range of wte). The caller keeps token < V and pos < P.
 */
export async function decodeEmbed(ctx: GpuContext, args: DecodeEmbedArgs): Promise<Dispatch> {
  const hs = check(args);
  const { label, C, V, P } = args;
  const wteRows = args.wteRows ?? { start: 0, count: V };
  if (!(Number.isInteger(wteRows.start) && Number.isInteger(wteRows.count) && wteRows.start >= 0 && wteRows.count >= 1 && wteRows.start + wteRows.count <= V)) {
    throw new ShapeError(`${label}: wte rows [${wteRows.start}, ${wteRows.start + wteRows.count}) are not a range of the ${V} rows.`);
  }
  needElements(args.wte, wteRows.count * C, 'wte', label);
  needElements(args.wpe, P * C, 'wpe', label);
  needElements(args.out, C, 'out', label);
  const pipeline = await ctx.pipeline('decode', 'embed');
  return {
    label,
    pipeline,
    bindGroup: bindAt(ctx, pipeline, label, [[0, whole(dims(ctx, args, hs, 1, wteRows), 32)], [1, whole(args.step, 16)], [2, args.wte], [3, args.wpe],
      [4, args.out]]),
    workgroups: [Math.ceil(C / 256), 1, 1],
  };
}

export interface DecodeAttendArgs extends DecodeShape {
  step: GPUBuffer;
  /** (3C) read: q, k, v of the new token (c_attn's output) */
  qkv: BufferRange;
  /** (2, P, C) the layer's cache: row step.pos is written, rows 0 … pos read */
  kv: BufferRange;
  /** (NH, P) scratch */
  scores: BufferRange;
  /** (C) written: the heads' outputs, concatenated */
  out: BufferRange;
}

/** Stores the new key/value at step.pos and attends over positions 0 … pos; one workgroup per head. */
export async function decodeAttend(ctx: GpuContext, args: DecodeAttendArgs): Promise<Dispatch> {
  const hs = check(args);
  const { label, C, NH, P } = args;
  needElements(args.qkv, 3 * C, 'qkv', label);
  needElements(args.kv, kvCacheElements(C, P), 'kv', label);
  needElements(args.scores, NH * P, 'scores', label);
  needElements(args.out, C, 'out', label);
  const pipeline = await ctx.pipeline('decode', 'attend', {}, { SUBGROUPS: useSubgroups(ctx, label) });
  return {
    label,
    pipeline,
    bindGroup: bindAt(ctx, pipeline, label, [
      [0, whole(dims(ctx, args, hs, 1), 32)], [1, whole(args.step, 16)], [5, args.qkv], [6, args.kv], [7, args.scores], [8, args.out],
    ]),
    workgroups: [NH, 1, 1],
  };
}

export interface FillCacheArgs extends DecodeShape {
  /** prompt length: rows to copy, ≤ P */
  T: number;
  /** (T, 3C) read: a prefill's c_attn output */
  qkv: BufferRange;
  /** (2, P, C) written: rows 0 … T−1 of keys and values */
  kv: BufferRange;
}

/** Copies the keys and values of a prefill's T positions into the layer's cache. */
export async function fillCache(ctx: GpuContext, args: FillCacheArgs): Promise<Dispatch> {
  const hs = check(args);
  const { label, C, P, T } = args;
  needPositive(T, 'T', label);
  if (T > P) throw new ShapeError(`${label}: ${T} prompt positions do not fit a cache of n_positions = ${P}.`);
  needElements(args.qkv, T * 3 * C, 'qkv', label);
  needElements(args.kv, kvCacheElements(C, P), 'kv', label);
  const pipeline = await ctx.pipeline('decode', 'fill_cache');
  return {
    label,
    pipeline,
    bindGroup: bindAt(ctx, pipeline, label, [[0, whole(dims(ctx, args, hs, T), 32)], [6, args.kv], [9, args.qkv]]),
    workgroups: flatGrid(ctx, Math.ceil((T * C) / 256), label),
  };
}
