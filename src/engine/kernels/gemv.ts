// Wrapper for shaders/gemv.wgsl: matrix-vector products for one-row linear layers — a Conv1D
// layer y = x·W + b (gemv), and y [+]= s·W·x over rows of W (gemvT: the tied LM head over a
// range of wte's rows, LoRA's factors). Generation runs its decode step on these; the CPU
// reference is refMatmul with one row (test/gpu/gemv.test.ts).
import type { GpuContext } from '../gpu/context.ts';
import { bindAt, flatGrid, needElements, needPositive, uniformWords, whole, type BufferRange, type Dispatch } from '../gpu/dispatch.ts';

export interface GemvArgs {
  label: string;
  /** input length */
  K: number;
  /** output length */
  N: number;
  /** (K) read */
  x: BufferRange;
  /** (K, N) read: a Conv1D weight (y = x·W + b) */
  w: BufferRange;
  /** (N) read */
  bias: BufferRange;
  /** (N) written */
  out: BufferRange;
}

/** out (N) = x (K) · W (K, N) + bias: a Conv1D layer on one row. */
export async function gemv(ctx: GpuContext, args: GemvArgs): Promise<Dispatch> {
  const { label, K, N } = args;
  needPositive(K, 'K', label);
  needPositive(N, 'N', label);
  needElements(args.x, K, 'x', label);
  needElements(args.w, K * N, 'w', label);
  needElements(args.bias, N, 'bias', label);
  needElements(args.out, N, 'out', label);
  // N a multiple of 4 (every GPT-2 layer's): the vec4 entry, same sums.
  const vec4 = N % 4 === 0;
  const pipeline = await ctx.pipeline('gemv', vec4 ? 'gemv4' : 'gemv');
  const dims = uniformWords(ctx, `${label}.dims`, [K, N, { f32: 1 }]);
  return {
    label,
    pipeline,
    bindGroup: bindAt(ctx, pipeline, label, [[0, whole(dims, 16)], [1, args.x], [2, args.w], [3, args.bias], [4, args.out]]),
    workgroups: flatGrid(ctx, Math.ceil(N / (vec4 ? 64 : 256)), label),
  };
}

export interface GemvTArgs {
  label: string;
  /** input length (C) */
  K: number;
  /** output length: rows of W */
  N: number;
  /** (K) read */
  x: BufferRange;
  /** (N, K) read: rows of wte, or a LoRA A (r, in) or B (out, r) */
  w: BufferRange;
  /** (N) written, or added into with accumulate */
  out: BufferRange;
  /** multiplies W·x; default 1 */
  scale?: number;
  /** out += scale·W·x instead of out = scale·W·x */
  accumulate?: boolean;
}

/** out (N) [+]= scale · W (N, K) · x (K): the tied LM head on one row (over a range of wte's rows), or a LoRA factor. */
export async function gemvT(ctx: GpuContext, args: GemvTArgs): Promise<Dispatch> {
  const { label, K, N } = args;
  needPositive(K, 'K', label);
  needPositive(N, 'N', label);
  needElements(args.x, K, 'x', label);
  needElements(args.w, K * N, 'w', label);
  needElements(args.out, N, 'out', label);
  // K a multiple of 4 (every GPT-2 width; a LoRA rank may not be): the vec4 entry, same sums.
  const vec4 = K % 4 === 0;
  const pipeline = await ctx.pipeline('gemv', vec4 ? 'gemv_t4' : 'gemv_t', { ACCUMULATE: !!args.accumulate });
  const dims = uniformWords(ctx, `${label}.dims`, [K, N, { f32: args.scale ?? 1 }]);
  return {
    label,
    pipeline,
    bindGroup: bindAt(ctx, pipeline, label, [[0, whole(dims, 16)], [1, args.x], [2, args.w], [4, args.out]]),
    workgroups: flatGrid(ctx, Math.ceil(N / (vec4 ? 16 : 256)), label),
  };
}
