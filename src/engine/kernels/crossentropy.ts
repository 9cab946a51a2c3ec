// Wrapper for shaders/crossentropy.wgsl: fused softmax cross-entropy over a chunk of logit rows,
// writing per-row losses and overwriting the logits in place with their gradient. The row max
// and sum use subgroup operations when the context's `subgroups` variant is on.
import { ShapeError } from '../errors.ts';
import type { GpuContext } from '../gpu/context.ts';
import { useSubgroups } from '../gpu/variants.ts';
import { bindAll, flatGrid, needElements, needPositive, uniformWords, type BufferRange, type Dispatch } from '../gpu/dispatch.ts';

/** A target with this value (u32 0xFFFFFFFF) contributes loss 0 and a zero gradient (padding). */
export const IGNORE_TARGET = 0xffffffff;

export interface CrossEntropyArgs {
  label: string;
  /** rows in this chunk */
  N: number;
  /** vocabulary size */
  V: number;
  /** (N) u32 targets, read; IGNORE_TARGET for positions that do not count */
  targets: BufferRange;
  /** (N, V) logits, read, then overwritten in place with dlogits = (softmax − onehot)·scale unless writeGrad is false */
  logits: BufferRange;
  /** (N) written: logsumexp − logit[target] (0 for ignored rows, NaN for a target ≥ V) */
  losses: BufferRange;
  /** gradient scale, 1/(B·T·accumulation steps) so chunks and micro-batches add up to the mean loss */
  scale: number;
  /** false: losses only, logits left unchanged (evaluation) */
  writeGrad?: boolean;
}

export async function crossEntropy(ctx: GpuContext, args: CrossEntropyArgs): Promise<Dispatch> {
  const { label, N, V } = args;
  needPositive(N, 'N', label);
  needPositive(V, 'V', label);
  if (!Number.isFinite(args.scale)) throw new ShapeError(`${label}: gradient scale must be finite, got ${args.scale}.`);
  needElements(args.targets, N, 'targets', label);
  needElements(args.logits, N * V, 'logits', label);
  needElements(args.losses, N, 'losses', label);
  const pipeline = await ctx.pipeline('crossentropy', 'main', { WRITE_GRAD: args.writeGrad ?? true }, { SUBGROUPS: useSubgroups(ctx, label) });
  const dims = uniformWords(ctx, `${label}.dims`, [N, V, { f32: args.scale }]);
  return {
    label,
    pipeline,
    bindGroup: bindAll(ctx, pipeline, label, [dims], [args.targets, args.logits, args.losses]),
    workgroups: flatGrid(ctx, N, label),
  };
}
