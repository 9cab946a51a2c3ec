// Wrapper for shaders/residual.wgsl: out = a + dropout(b), the residual add with the block's
// output dropout; the same add fused with the LayerNorm of its result (residualLayernorm: one
// dispatch for a block's resid2 + ln_2 and for resid3 + the next ln_1 or ln_f); and the add's
// backward db = dropout_backward(dout) through shaders/dropout.wgsl (da = dout, so the trainer
// reuses dout and nothing is launched for it).
import { ShapeError } from '../errors.ts';
import type { GpuContext } from '../gpu/context.ts';
import { useSubgroups } from '../gpu/variants.ts';
import { bindAll, flatGrid, needElements, needPositive, uniformWords, type BufferRange, type Dispatch } from '../gpu/dispatch.ts';
import { dropout, dropoutParams, type DropoutSpec } from './dropout.ts';

export interface ResidualForwardArgs {
  label: string;
  /** element count (B·T·C) */
  n: number;
  /** (n) the residual stream, read */
  a: BufferRange;
  /** (n) the branch output (attention or MLP projection), read */
  b: BufferRange;
  /** (n) written: a + dropout(b); must not alias a or b */
  out: BufferRange;
  /** resid_pdrop at site DROPOUT_SITE.attnResid(i) or .mlpResid(i); omitted means p = 0 */
  dropout?: DropoutSpec;
}

export async function residualForward(ctx: GpuContext, args: ResidualForwardArgs): Promise<Dispatch> {
  const { label, n } = args;
  needPositive(n, 'n', label);
  needElements(args.a, n, 'a', label);
  needElements(args.b, n, 'b', label);
  needElements(args.out, n, 'out', label);
  const { words, rng } = dropoutParams(ctx, args.dropout, label);
  const pipeline = await ctx.pipeline('residual', 'main');
  const dims = uniformWords(ctx, `${label}.dims`, [n, ...words]);
  return {
    label,
    pipeline,
    bindGroup: bindAll(ctx, pipeline, label, [dims, rng], [args.a, args.b, args.out]),
    workgroups: flatGrid(ctx, Math.ceil(n / 256), label),
  };
}

export interface ResidualLayernormArgs {
  label: string;
  /** rows (B·T) */
  N: number;
  /** channels */
  C: number;
  /** layer_norm_epsilon */
  eps: number;
  /** (N, C) the residual stream, read */
  a: BufferRange;
  /** (N, C) the branch output, read */
  b: BufferRange;
  /** (N, C) written: a + dropout(b) */
  out: BufferRange;
  /** resid_pdrop of the add; omitted means p = 0 */
  dropout?: DropoutSpec;
  /** (C) LayerNorm weight and bias, read */
  weight: BufferRange;
  bias: BufferRange;
  /** (N, C) written: LayerNorm(out) */
  ln: BufferRange;
  /** (N) written: row means and 1/sqrt(var + eps), saved for the backward */
  mean: BufferRange;
  rstd: BufferRange;
}

/** out = a + dropout(b), then ln = LayerNorm(out): residualForward and layernormForward in one dispatch, bit for bit. */
export async function residualLayernorm(ctx: GpuContext, args: ResidualLayernormArgs): Promise<Dispatch> {
  const { label, N, C } = args;
  needPositive(N, 'N', label);
  needPositive(C, 'C', label);
  if (!(args.eps > 0)) throw new ShapeError(`${label}: layer_norm_epsilon must be positive, got ${args.eps}.`);
  for (const [name, r] of Object.entries({ a: args.a, b: args.b, out: args.out, ln: args.ln })) needElements(r, N * C, name, label);
  for (const [name, r] of Object.entries({ weight: args.weight, bias: args.bias })) needElements(r, C, name, label);
  for (const [name, r] of Object.entries({ mean: args.mean, rstd: args.rstd })) needElements(r, N, name, label);
  const { words, rng } = dropoutParams(ctx, args.dropout, label);
  const pipeline = await ctx.pipeline('residual', 'residual_layernorm', {}, { SUBGROUPS: useSubgroups(ctx, label) });
  const dims = uniformWords(ctx, `${label}.dims`, [N, C, { f32: args.eps }, ...words]);
  return {
    label,
    pipeline,
    bindGroup: bindAll(ctx, pipeline, label, [dims, rng], [args.a, args.b, args.out, args.weight, args.bias, args.ln, args.mean, args.rstd]),
    workgroups: flatGrid(ctx, N, label),
  };
}

export interface ResidualBackwardArgs {
  label: string;
  /** element count */
  n: number;
  /** (n) gradient of out, read (it is also da) */
  dout: BufferRange;
  /** (n) written: gradient of b = dropout_backward(dout); must not alias dout */
  db: BufferRange;
  /** the same spec as the forward */
  dropout?: DropoutSpec;
}

export function residualBackward(ctx: GpuContext, args: ResidualBackwardArgs): Promise<Dispatch> {
  return dropout(ctx, { label: args.label, n: args.n, input: args.dout, output: args.db, dropout: args.dropout ?? { p: 0, site: 0, micro: 0 } });
}
