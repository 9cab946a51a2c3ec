// Wrapper for shaders/gelu.wgsl: GELU forward and backward over a flat tensor, in the two forms
// Hugging Face's GPT-2 may name in `activation_function`: 'gelu_new' (tanh form) and 'gelu' (erf);
// and the backward fused with the bias gradient of the layer before it (geluBackwardBias: the
// MLP's c_fc, one dispatch instead of two).
import { UnsupportedConfigError } from '../errors.ts';
import type { GpuContext } from '../gpu/context.ts';
import { bindAll, bindAt, flatGrid, needElements, needPositive, uniformWords, whole, workgroupCount, type BufferRange, type Dispatch } from '../gpu/dispatch.ts';

export type GeluKind = 'gelu_new' | 'gelu';

const KIND: Record<GeluKind, number> = { gelu_new: 0, gelu: 1 };

export interface GeluForwardArgs {
  label: string;
  /** element count (B·T·4C) */
  n: number;
  kind: GeluKind;
  /** (n) pre-activation, read (keep it for the backward) */
  x: BufferRange;
  /** (n) written: gelu(x); must not alias x */
  out: BufferRange;
}

export interface GeluBackwardArgs {
  label: string;
  n: number;
  kind: GeluKind;
  /** (n) the forward's pre-activation, read */
  x: BufferRange;
  /** (n) gradient of the activation output, read (or overwritten with dx when dx is omitted) */
  dout: BufferRange;
  /** (n) written: gelu'(x)·dout. Omit it to overwrite dout in place (saves a B·T·4C buffer). */
  dx?: BufferRange;
}

/** The KIND override of shaders/gelu.wgsl (and GELU_KIND of matmul.wgsl's epilogue) for `kind`. */
export function geluKindConstant(kind: GeluKind): number {
  const k = KIND[kind];
  if (k === undefined) throw new UnsupportedConfigError(`activation_function '${String(kind)}' is not supported: use 'gelu_new' (GPT-2) or 'gelu'.`);
  return k;
}

export async function geluForward(ctx: GpuContext, args: GeluForwardArgs): Promise<Dispatch> {
  const { label, n } = args;
  needPositive(n, 'n', label);
  needElements(args.x, n, 'x', label);
  needElements(args.out, n, 'out', label);
  const pipeline = await ctx.pipeline('gelu', 'forward', { KIND: geluKindConstant(args.kind) });
  const dims = uniformWords(ctx, `${label}.dims`, [n]);
  return {
    label,
    pipeline,
    bindGroup: bindAll(ctx, pipeline, label, [dims], [args.x, args.out]),
    workgroups: flatGrid(ctx, Math.ceil(n / 256), label),
  };
}

export async function geluBackward(ctx: GpuContext, args: GeluBackwardArgs): Promise<Dispatch> {
  const { label, n } = args;
  needPositive(n, 'n', label);
  needElements(args.x, n, 'x', label);
  needElements(args.dout, n, 'dout', label);
  if (args.dx) needElements(args.dx, n, 'dx', label);
  const entry = args.dx ? 'backward' : 'backward_inplace';
  const pipeline = await ctx.pipeline('gelu', entry, { KIND: geluKindConstant(args.kind) });
  const dims = uniformWords(ctx, `${label}.dims`, [n]);
  const ranges = args.dx ? [args.x, args.dout, args.dx] : [args.x, args.dout];
  return {
    label,
    pipeline,
    bindGroup: bindAll(ctx, pipeline, label, [dims], ranges),
    workgroups: flatGrid(ctx, Math.ceil(n / 256), label),
  };
}

export interface GeluBackwardBiasArgs {
  label: string;
  /** rows (B·T) */
  M: number;
  /** columns (4C) */
  N: number;
  kind: GeluKind;
  /** (M, N) the forward's pre-activation, read */
  x: BufferRange;
  /** (M, N) gradient of the activation output, overwritten with gelu'(x)·grad */
  grad: BufferRange;
  /** (N) gradient of the bias that produced x: written, or added into with accumulate */
  dbias: BufferRange;
  accumulate?: boolean;
}

/**
 * grad ← gelu'(x)·grad in place, and dbias (+)= its column sums: geluBackward (in place) then
 * biasGrad in one dispatch, the same sums in the same order (bit-identical).
 */
export async function geluBackwardBias(ctx: GpuContext, args: GeluBackwardBiasArgs): Promise<Dispatch> {
  const { label, M, N } = args;
  needPositive(M, 'M', label);
  needPositive(N, 'N', label);
  needElements(args.x, M * N, 'x', label);
  needElements(args.grad, M * N, 'grad', label);
  needElements(args.dbias, N, 'dbias', label);
  const pipeline = await ctx.pipeline('gelu', 'backward_bias', { KIND: geluKindConstant(args.kind), ACCUMULATE: !!args.accumulate });
  const dims = uniformWords(ctx, `${label}.dims`, [M, N]);
  return {
    label,
    pipeline,
    bindGroup: bindAt(ctx, pipeline, label, [[0, whole(dims, 16)], [1, args.x], [2, args.grad], [4, args.dbias]]),
    workgroups: [workgroupCount(ctx, Math.ceil(N / 64), label), 1, 1],
    flops: M * N,
  };
}
