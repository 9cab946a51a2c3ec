// Wrapper for shaders/argmax.wgsl: the index of each row's largest logit (ties → lowest index),
// for next-token top-1 accuracy without copying (N × V) logits to the CPU.
import type { GpuContext } from '../gpu/context.ts';
import { bindAll, flatGrid, needElements, needPositive, uniformWords, type BufferRange, type Dispatch } from '../gpu/dispatch.ts';

/** What argmax writes for a row with no finite maximum (all −∞ or NaN): matches no token. */
export const NO_ARGMAX = 0xffffffff;

export interface ArgmaxArgs {
  label: string;
  /** rows */
  N: number;
  /** columns (vocabulary size) */
  V: number;
  /** (N, V) read */
  logits: BufferRange;
  /** (N) u32 written */
  out: BufferRange;
  /** a row holding any NaN gets NO_ARGMAX too (generation then lets the CPU sampler report it) */
  refuseNaN?: boolean;
}

export async function argmaxRows(ctx: GpuContext, args: ArgmaxArgs): Promise<Dispatch> {
  const { label, N, V } = args;
  needPositive(N, 'N', label);
  needPositive(V, 'V', label);
  needElements(args.logits, N * V, 'logits', label);
  needElements(args.out, N, 'out', label);
  const pipeline = await ctx.pipeline('argmax', 'main', args.refuseNaN ? { REFUSE_NAN: true } : {});
  const dims = uniformWords(ctx, `${label}.dims`, [N, V]);
  return {
    label,
    pipeline,
    bindGroup: bindAll(ctx, pipeline, label, [dims], [args.logits, args.out]),
    workgroups: flatGrid(ctx, N, label),
  };
}
