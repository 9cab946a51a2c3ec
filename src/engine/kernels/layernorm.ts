// Wrapper for shaders/layernorm.wgsl: LayerNorm forward (saving mean and rstd per row) and
// backward (dx, and dw/db as a deterministic two-stage reduction over rows through a scratch
// buffer of per-chunk partial sums). The row reductions of the forward and dx use subgroup
// operations when the context's `subgroups` variant is on (shaders/layernorm.wgsl's header).
import { ShapeError } from '../errors.ts';
import type { GpuContext } from '../gpu/context.ts';
import { useSubgroups } from '../gpu/variants.ts';
import { bindAll, flatGrid, needElements, needPositive, uniformWords, type BufferRange, type Dispatch } from '../gpu/dispatch.ts';

/** Rows summed by one thread in the first stage of the dw/db reduction. */
export const LAYERNORM_ROWS_PER_CHUNK = 32;

function chunking(N: number, ctx: GpuContext): { rowsPerChunk: number; chunks: number } {
  const max = ctx.limits.maxComputeWorkgroupsPerDimension;
  const rowsPerChunk = Math.max(LAYERNORM_ROWS_PER_CHUNK, Math.ceil(N / max));
  return { rowsPerChunk, chunks: Math.ceil(N / rowsPerChunk) };
}

/**
 * Elements of the scratch buffer layernormBackward needs for the dw/db partial sums
 * (2 · chunks · C). One scratch can serve every LayerNorm of the model: their backward
 * dispatches run one after another.
 */
export function layernormScratchElements(N: number, C: number, ctx: GpuContext): number {
  return 2 * chunking(N, ctx).chunks * C;
}

export interface LayernormForwardArgs {
  label: string;
  /** rows (B·T) */
  N: number;
  /** channels */
  C: number;
  /** layer_norm_epsilon (1e-5 for GPT-2) */
  eps: number;
  /** (N, C) read */
  x: BufferRange;
  /** (C) read */
  weight: BufferRange;
  /** (C) read */
  bias: BufferRange;
  /** (N, C) written; must not alias x */
  out: BufferRange;
  /** (N) written: row means, saved for the backward */
  mean: BufferRange;
  /** (N) written: 1/sqrt(var + eps), saved for the backward */
  rstd: BufferRange;
}

export async function layernormForward(ctx: GpuContext, args: LayernormForwardArgs): Promise<Dispatch> {
  const { label, N, C } = args;
  needPositive(N, 'N', label);
  needPositive(C, 'C', label);
  if (!(args.eps > 0)) throw new ShapeError(`${label}: layer_norm_epsilon must be positive, got ${args.eps}.`);
  needElements(args.x, N * C, 'x', label);
  needElements(args.weight, C, 'weight', label);
  needElements(args.bias, C, 'bias', label);
  needElements(args.out, N * C, 'out', label);
  needElements(args.mean, N, 'mean', label);
  needElements(args.rstd, N, 'rstd', label);
  const pipeline = await ctx.pipeline('layernorm', 'forward', {}, { SUBGROUPS: useSubgroups(ctx, label) });
  const dims = uniformWords(ctx, `${label}.dims`, [N, C, { f32: args.eps }, 0, 0]);
  return {
    label,
    pipeline,
    bindGroup: bindAll(ctx, pipeline, label, [dims], [args.x, args.weight, args.bias, args.out, args.mean, args.rstd]),
    workgroups: flatGrid(ctx, N, label),
  };
}

export interface LayernormBackwardArgs {
  label: string;
  N: number;
  C: number;
  /** (N, C) gradient of out, read */
  dout: BufferRange;
  /** (N, C) the forward's input, read */
  x: BufferRange;
  /** (C) read */
  weight: BufferRange;
  /** (N) from the forward, read */
  mean: BufferRange;
  /** (N) from the forward, read */
  rstd: BufferRange;
  /** (N, C) gradient of x: written, or added into with accumulateDx (the residual stream's gradient) */
  dx: BufferRange;
  accumulateDx?: boolean;
  /** (C) gradient of weight; omit dweight and dbias together for a frozen LayerNorm (dx only) */
  dweight?: BufferRange;
  /** (C) gradient of bias */
  dbias?: BufferRange;
  /** dweight/dbias += instead of = (gradient accumulation over micro-batches) */
  accumulateParams?: boolean;
  /** layernormScratchElements(N, C) floats; allocated here when omitted */
  scratch?: BufferRange;
}

/** [dx] or [dx, dw/db partial sums, dw/db reduction], to be run in this order. */
export async function layernormBackward(ctx: GpuContext, args: LayernormBackwardArgs): Promise<Dispatch[]> {
  const { label, N, C } = args;
  needPositive(N, 'N', label);
  needPositive(C, 'C', label);
  needElements(args.dout, N * C, 'dout', label);
  needElements(args.x, N * C, 'x', label);
  needElements(args.weight, C, 'weight', label);
  needElements(args.mean, N, 'mean', label);
  needElements(args.rstd, N, 'rstd', label);
  needElements(args.dx, N * C, 'dx', label);
  if (!args.dweight !== !args.dbias) {
    throw new ShapeError(`${label}: pass dweight and dbias together (both for a trainable LayerNorm, neither for a frozen one).`);
  }
  const { rowsPerChunk, chunks } = chunking(N, ctx);
  const dims = uniformWords(ctx, `${label}.dims`, [N, C, { f32: 0 }, rowsPerChunk, chunks]);
  const dxPipe = await ctx.pipeline('layernorm', 'backward_dx', { ACCUMULATE_DX: !!args.accumulateDx }, { SUBGROUPS: useSubgroups(ctx, label) });
  const out: Dispatch[] = [
    {
      label: `${label}.dx`,
      pipeline: dxPipe,
      bindGroup: bindAll(ctx, dxPipe, `${label}.dx`, [dims], [args.dout, args.x, args.weight, args.mean, args.rstd, args.dx]),
      workgroups: flatGrid(ctx, N, label),
    },
  ];
  if (!args.dweight || !args.dbias) return out;
  needElements(args.dweight, C, 'dweight', label);
  needElements(args.dbias, C, 'dbias', label);
  const scratchCount = 2 * chunks * C;
  const scratch: BufferRange = args.scratch ?? { buffer: ctx.createBuffer(scratchCount * 4, `${label}.scratch`), offset: 0, size: scratchCount * 4 };
  needElements(scratch, scratchCount, 'scratch', label);
  const partialPipe = await ctx.pipeline('layernorm', 'backward_params_partial');
  const reducePipe = await ctx.pipeline('layernorm', 'backward_params_reduce', { ACCUMULATE_PARAMS: !!args.accumulateParams });
  const channelGroups = Math.ceil(C / 256);
  out.push(
    {
      label: `${label}.dparams.partial`,
      pipeline: partialPipe,
      bindGroup: bindAll(ctx, partialPipe, `${label}.dparams.partial`, [dims], [args.dout, args.x, args.mean, args.rstd, scratch]),
      workgroups: [channelGroups, chunks, 1],
    },
    {
      label: `${label}.dparams.reduce`,
      pipeline: reducePipe,
      bindGroup: bindAll(ctx, reducePipe, `${label}.dparams.reduce`, [dims], [scratch, args.dweight, args.dbias]),
      workgroups: [channelGroups, 1, 1],
    },
  );
  return out;
}
