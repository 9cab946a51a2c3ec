// Wrapper for shaders/cast.wgsl: writes the f16 copies of float32 ranges, the copies that matmuls
// read under --precision f16 (model/weights.ts keeps them and refreshes one tensor's after an
// upload; the trainer refreshes every updated weight's after its AdamW update), as many ranges per
// dispatch as fit one binding of each arena.
import { ShapeError } from '../errors.ts';
import type { GpuContext } from '../gpu/context.ts';
import { bindAt, flatGrid, packSpans, uniformWords, whole, type BufferRange, type Dispatch } from '../gpu/dispatch.ts';

/** Workgroups (of 256 threads) per range at most; larger ranges are walked by a grid-stride loop. */
const CAST_MAX_WORKGROUPS = 1024;

/** One range to convert: dst[dstOffset + i] = f16(src[srcOffset + i]) for i < n. */
export interface CastPiece {
  /** elements to convert */
  n: number;
  /** float32 source range; elements [srcOffset, srcOffset + n) are read */
  src: BufferRange;
  srcOffset?: number;
  /** f16 destination range; elements [dstOffset, dstOffset + n) are written */
  dst: BufferRange;
  dstOffset?: number;
}

/** u32 words per table entry of cast.wgsl (struct Entry). */
const ENTRY_WORDS = 8;
/** Elements per invocation the kernel aims at, as kernels/adamw.ts's multi does: the table lookup is per invocation. */
const ELEMENTS_PER_INVOCATION = 16;

/**
 * The conversions of `pieces`, in one dispatch per span of consecutive pieces whose src ranges
 * and dst ranges each fit one binding (gpu/dispatch.ts packSpans): every f16 copy a step refreshes
 * in one or a few dispatches. Needs a device with shader-f16. The tables the dispatches read are
 * allocated here; the caller destroys them.
 */
export async function castToF16(ctx: GpuContext, label: string, pieces: readonly CastPiece[]): Promise<{ dispatches: Dispatch[]; tables: GPUBuffer[] }> {
  if (!pieces.length) return { dispatches: [], tables: [] };
  ctx.requireF16('Precision f16');
  pieces.forEach((p, k) => {
    const so = p.srcOffset ?? 0;
    const dO = p.dstOffset ?? 0;
    if (!Number.isInteger(p.n) || p.n < 1) throw new ShapeError(`${label}: piece ${k}'s length must be a positive integer, got ${p.n}.`);
    if (p.src.size < (so + p.n) * 4) throw new ShapeError(`${label}: piece ${k}'s src holds ${p.src.size / 4} floats; elements up to ${so + p.n} are read.`);
    if (p.dst.size < (dO + p.n) * 2) throw new ShapeError(`${label}: piece ${k}'s dst holds ${p.dst.size / 2} halves; elements up to ${dO + p.n} are written.`);
    if (p.src.offset % 4 || p.dst.offset % 2) throw new ShapeError(`${label}: piece ${k}'s ranges must start on an element.`);
  });
  const pipeline = await ctx.pipeline('cast', 'main');
  const spans = packSpans(pieces.map((p) => [p.src, p.dst]), ctx.maxBinding);
  const dispatches: Dispatch[] = [];
  const tables: GPUBuffer[] = [];
  for (const [s, span] of spans.entries()) {
    const l = spans.length > 1 ? `${label}${s}` : label;
    const [src, dst] = span.ranges;
    const table = new Uint32Array(span.items.length * ENTRY_WORDS);
    let wg0 = 0;
    for (const [e, k] of span.items.entries()) {
      const p = pieces[k];
      const wgs = Math.min(Math.ceil(p.n / (256 * ELEMENTS_PER_INVOCATION)), CAST_MAX_WORKGROUPS);
      const srcAt = (p.src.offset - src.offset) / 4 + (p.srcOffset ?? 0);
      const dstAt = (p.dst.offset - dst.offset) / 2 + (p.dstOffset ?? 0);
      table.set([srcAt, dstAt, p.n, wg0, wgs, 0, 0, 0], e * ENTRY_WORDS);
      wg0 += wgs;
    }
    const buf = ctx.createBuffer(table.byteLength, `${l}.table`, table);
    tables.push(buf);
    const dims = uniformWords(ctx, `${l}.dims`, [span.items.length, wg0, 0, 0]);
    dispatches.push({
      label: l,
      pipeline,
      bindGroup: bindAt(ctx, pipeline, l, [[0, whole(dims, 16)], [1, src], [2, dst], [3, whole(buf)]]),
      workgroups: flatGrid(ctx, wg0, l),
    });
  }
  return { dispatches, tables };
}
