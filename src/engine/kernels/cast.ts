// Wrapper for shaders/cast.wgsl: writes the f16 copy of (part of) a float32 tensor, the copy
// that matmuls read under --precision f16 (model/weights.ts keeps them; the trainer refreshes
// each after its AdamW update).
import { ShapeError } from '../errors.ts';
import type { GpuContext } from '../gpu/context.ts';
import { bindAll, uniformWords, type BufferRange, type Dispatch } from '../gpu/dispatch.ts';

/** Workgroups (of 256 threads) per dispatch at most; larger ranges are walked by a grid-stride loop. */
export const CAST_MAX_WORKGROUPS = 1024;

export interface CastArgs {
  label: string;
  /** elements to convert */
  n: number;
  /** float32 source range; elements [srcOffset, srcOffset + n) are read */
  src: BufferRange;
  srcOffset?: number;
  /** f16 destination range; elements [dstOffset, dstOffset + n) are written */
  dst: BufferRange;
  dstOffset?: number;
}

/** dst[dstOffset + i] = f16(src[srcOffset + i]), i < n. Needs a device with shader-f16. */
export async function castToF16(ctx: GpuContext, args: CastArgs): Promise<Dispatch> {
  const { n } = args;
  const so = args.srcOffset ?? 0;
  const dO = args.dstOffset ?? 0;
  if (!Number.isInteger(n) || n < 1) throw new ShapeError(`${args.label}: cast length must be a positive integer, got ${n}.`);
  if (args.src.size < (so + n) * 4) throw new ShapeError(`${args.label}: src holds ${args.src.size / 4} floats; elements up to ${so + n} are read.`);
  if (args.dst.size < (dO + n) * 2) throw new ShapeError(`${args.label}: dst holds ${args.dst.size / 2} halves; elements up to ${dO + n} are written.`);
  ctx.requireF16('Precision f16');
  const pipeline = await ctx.pipeline('cast', 'main');
  const dims = uniformWords(ctx, `${args.label}.dims`, [n, so, dO, 0]);
  return {
    label: args.label,
    pipeline,
    bindGroup: bindAll(ctx, pipeline, args.label, [dims], [args.src, args.dst]),
    workgroups: [Math.min(Math.ceil(n / 256), CAST_MAX_WORKGROUPS, ctx.limits.maxComputeWorkgroupsPerDimension), 1, 1],
  };
}
