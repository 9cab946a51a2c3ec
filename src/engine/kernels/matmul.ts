// Wrapper for shaders/matmul.wgsl: C (M, N) = op(A) · op(B) [+ bias] [+ C].
import type { GpuContext } from '../gpu/context.ts';
import { bindGroup, uniformWords, workgroupCount, type BufferRange, type Dispatch } from '../gpu/dispatch.ts';

export interface MatmulArgs {
  label: string;
  M: number;
  N: number;
  K: number;
  /** (M, K), or (K, M) with transA */
  a: BufferRange;
  /** (K, N), or (N, K) with transB */
  b: BufferRange;
  /** (N) added to every row */
  bias?: BufferRange;
  /** (M, N) */
  out: BufferRange;
  transA?: boolean;
  transB?: boolean;
  /** out += op(A)·op(B) instead of out = ... (gradient accumulation) */
  accumulate?: boolean;
}

export const MATMUL_TILE = 64;

export async function matmul(ctx: GpuContext, args: MatmulArgs): Promise<Dispatch> {
  const { M, N, K } = args;
  const pipeline = await ctx.pipeline('matmul', 'main', {
    TRANS_A: !!args.transA,
    TRANS_B: !!args.transB,
    HAS_BIAS: !!args.bias,
    ACCUMULATE: !!args.accumulate,
  });
  const dims = uniformWords(ctx, `${args.label}.dims`, [M, N, K, 0]);
  // An unused bias binding still needs a buffer: bind A's range (never read).
  const bias = args.bias ?? args.a;
  return {
    label: args.label,
    pipeline,
    bindGroup: bindGroup(ctx, pipeline, args.label, dims, [args.a, args.b, bias, args.out]),
    workgroups: [
      workgroupCount(ctx, Math.ceil(N / MATMUL_TILE), args.label),
      workgroupCount(ctx, Math.ceil(M / MATMUL_TILE), args.label),
      1,
    ],
  };
}

export interface BiasGradArgs {
  label: string;
  M: number;
  N: number;
  /** (M, N) gradient of the layer's output, read */
  dout: BufferRange;
  /** (N) bias gradient, written (or added into with accumulate) */
  dbias: BufferRange;
  accumulate?: boolean;
}

/** db [+]= column sums of dY: the bias gradient of y = x·W + b. */
export async function biasGrad(ctx: GpuContext, args: BiasGradArgs): Promise<Dispatch> {
  const pipeline = await ctx.pipeline('matmul', 'bias_grad', { ACCUMULATE: !!args.accumulate });
  const dims = uniformWords(ctx, `${args.label}.dims`, [args.M, args.N, 0, 0]);
  return {
    label: args.label,
    pipeline,
    bindGroup: bindGroup(ctx, pipeline, args.label, dims, [args.dout, args.dbias]),
    workgroups: [workgroupCount(ctx, Math.ceil(args.N / 256), args.label), 1, 1],
  };
}
