// Wrapper for shaders/residual.wgsl: out = a + dropout(b), the residual add with the block's
// output dropout; and its backward db = dropout_backward(dout) through shaders/dropout.wgsl
// (da = dout, so the trainer reuses dout and nothing is launched for it).
import type { GpuContext } from '../gpu/context.ts';
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
