// Wrapper for shaders/matmul.wgsl: C (M, N) = op(A) · op(B) [+ bias] [+ C], with optional
// leading dimensions so A, B or C can be a column block of a wider row-major matrix. The tiling
// comes from the context's KernelVariants (per shape class, see gpu/variants.ts) or the caller; vec4
// staging of an operand where its layout allows; an f16 B operand (F16_B: precision f16's weight
// copies) widened to f32 as it is staged; a GELU epilogue (c_fc's forward writes its output and the
// output's GELU in one pass). A register tiling (`-reg`) runs shaders/matmul_reg.wgsl instead,
// with the same bindings and bit-identical results.
import { KernelVariantError, ShapeError } from '../errors.ts';
import type { GpuContext } from '../gpu/context.ts';
import { bindAll, uniformWords, workgroupCount, type BufferRange, type Dispatch } from '../gpu/dispatch.ts';
import { DEFAULT_TILE, matmulClass, tileName, tileProblem, vec4Fits, type MatmulTile } from '../gpu/variants.ts';
import { geluKindConstant, type GeluKind } from './gelu.ts';

export interface MatmulArgs {
  label: string;
  M: number;
  N: number;
  K: number;
  /** (M, K), or (K, M) with transA */
  a: BufferRange;
  /** (K, N), or (N, K) with transB */
  b: BufferRange;
  /** B is stored as f16 (an f16 weight copy, model/weights.ts); products and sums stay float32. Needs shader-f16. */
  bF16?: boolean;
  /** (N) added to every row */
  bias?: BufferRange;
  /** (M, N) */
  out: BufferRange;
  /**
   * Also write GELU of every output to `gelu.out` (M, N, leading dimension ldc), with the function
   * of kernels/gelu.ts's geluForward, bit for bit: `out` keeps the pre-activation. Not with accumulate.
   */
  gelu?: { kind: GeluKind; out: BufferRange };
  transA?: boolean;
  transB?: boolean;
  /** out += op(A)·op(B) instead of out = ... (gradient accumulation) */
  accumulate?: boolean;
  /** Elements between consecutive stored rows of A (default: its stored width, K or M with transA). */
  lda?: number;
  /** Elements between consecutive stored rows of B (default: N, or K with transB). */
  ldb?: number;
  /** Elements between consecutive rows of C (default N): C may be a column block of an (M, ldc) matrix. */
  ldc?: number;
  /** this tiling instead of the context's choice for the shape class (tests, the tuning run) */
  tile?: MatmulTile;
  /** stage operands as vec4 where alignment allows (default: the tile's own vec4 flag; a register tile has none) */
  vec4?: boolean;
  /** a register tile's subgroup broadcast path (default: where the device has `subgroups`; false: plain loads, the same sums) */
  subgroups?: boolean;
}

/** Floats a strided (rows, width) block with leading dimension `ld` spans: (rows − 1)·ld + width. */
export function stridedElements(rows: number, width: number, ld: number): number {
  return rows === 0 ? 0 : (rows - 1) * ld + width;
}

function checkOperand(label: string, what: string, r: BufferRange, rows: number, width: number, ld: number, elementBytes = 4): void {
  if (!Number.isInteger(ld) || ld < width) throw new ShapeError(`${label}: leading dimension of ${what} is ${ld}, less than its stored width ${width}.`);
  const need = stridedElements(rows, width, ld) * elementBytes;
  if (r.size < need) throw new ShapeError(`${label}: ${what} is bound as ${r.size} bytes; a (${rows}, ${width}) block with leading dimension ${ld} needs ${need}.`);
}

/**
 * The text defines (shaders/matmul.wgsl) of a tiling. Throws KernelVariantError when the device
 * cannot run it, naming why: a tiling read from a cache or a checkpoint is never silently swapped.
 */
export function tileDefines(ctx: GpuContext, t: MatmulTile, vecA = false, vecB = false, f16B = false): Record<string, number | boolean> {
  const problem = tileProblem(t, ctx.limits);
  if (problem) throw new KernelVariantError(`matmul tile ${tileName(t)} cannot run on this adapter: ${problem}.`);
  return { BM: t.bm, BN: t.bn, BK: t.bk, TX: t.tx, TY: t.ty, VEC_A: vecA, VEC_B: vecB, F16_B: f16B };
}

/** The text defines (shaders/matmul_reg.wgsl) of a register tiling; throws like tileDefines. */
export function regTileDefines(ctx: GpuContext, t: MatmulTile, subgroups: boolean, f16B = false): Record<string, number | boolean> {
  const problem = tileProblem(t, ctx.limits);
  if (problem) throw new KernelVariantError(`matmul tile ${tileName(t)} cannot run on this adapter: ${problem}.`);
  return { BM: t.bm, BN: t.bn, TX: t.tx, SUBGROUPS: subgroups, F16_B: f16B };
}

/** Whether an operand stored with `width` floats per row and leading dimension `ld`, at byte `offset`, can be read as vec4s. */
function vec4Aligned(width: number, ld: number, offset: number): boolean {
  return width % 4 === 0 && ld % 4 === 0 && offset % 16 === 0;
}

export async function matmul(ctx: GpuContext, args: MatmulArgs): Promise<Dispatch> {
  const { M, N, K } = args;
  for (const [k, v] of Object.entries({ M, N, K })) {
    if (!Number.isInteger(v) || v < 1) throw new ShapeError(`${args.label}: matmul ${k} must be a positive integer, got ${v}.`);
  }
  // Stored shapes: A (M, K) or (K, M); B (K, N) or (N, K); C (M, N).
  const [aRows, aWidth] = args.transA ? [K, M] : [M, K];
  const [bRows, bWidth] = args.transB ? [N, K] : [K, N];
  const lda = args.lda ?? aWidth;
  const ldb = args.ldb ?? bWidth;
  const ldc = args.ldc ?? N;
  checkOperand(args.label, 'A', args.a, aRows, aWidth, lda);
  checkOperand(args.label, 'B', args.b, bRows, bWidth, ldb, args.bF16 ? 2 : 4);
  checkOperand(args.label, 'C', args.out, M, N, ldc);
  if (args.gelu) {
    if (args.accumulate) throw new ShapeError(`${args.label}: a GELU epilogue cannot accumulate into its output.`);
    checkOperand(args.label, 'the GELU output', args.gelu.out, M, N, ldc);
  }
  if (args.bias && args.bias.size < N * 4) throw new ShapeError(`${args.label}: bias is bound as ${args.bias.size} bytes; it needs N = ${N} floats.`);
  const tile = args.tile ?? ctx.kernels.matmul[matmulClass(M, N, K, args.transA, args.transB)] ?? DEFAULT_TILE;
  if (args.bF16) ctx.requireF16(`${args.label}: a matmul with an f16 operand`);
  const overrides = {
    TRANS_A: !!args.transA,
    TRANS_B: !!args.transB,
    HAS_BIAS: !!args.bias,
    ACCUMULATE: !!args.accumulate,
    ...(args.gelu ? { GELU_KIND: geluKindConstant(args.gelu.kind) } : {}),
  };
  const gelu = { GELU: !!args.gelu };
  const pipeline = tile.reg
    ? await ctx.pipeline('matmul_reg', 'main', overrides, { ...regTileDefines(ctx, tile, args.subgroups ?? ctx.device.features.has('subgroups'), !!args.bF16), ...gelu })
    : await tiledPipeline(ctx, args, tile, overrides, aWidth, lda, bWidth, ldb, gelu);
  const dims = uniformWords(ctx, `${args.label}.dims`, [M, N, K, lda, ldb, ldc, 0, 0]);
  // An unused bias binding still needs a buffer: bind A's range (never read).
  const bias = args.bias ?? args.a;
  return {
    label: args.label,
    pipeline,
    bindGroup: bindAll(ctx, pipeline, args.label, [dims], args.gelu ? [args.a, args.b, bias, args.out, args.gelu.out] : [args.a, args.b, bias, args.out]),
    workgroups: [
      workgroupCount(ctx, Math.ceil(N / tile.bn), args.label),
      workgroupCount(ctx, Math.ceil(M / tile.bm), args.label),
      1,
    ],
    flops: 2 * M * N * K,
  };
}

/** The pipeline of a workgroup-memory tiling (shaders/matmul.wgsl), with vec4 staging of each operand where its layout allows. */
function tiledPipeline(
  ctx: GpuContext, args: MatmulArgs, tile: MatmulTile, overrides: Record<string, boolean | number>, aWidth: number, lda: number, bWidth: number, ldb: number,
  extra: Record<string, boolean>,
): Promise<GPUComputePipeline> {
  const vec4 = args.vec4 ?? !!tile.vec4;
  const vecA = vec4 && vec4Fits(tile, 'a') && vec4Aligned(aWidth, lda, args.a.offset);
  // An f16 B (precision f16's weight copies) is read scalar: the F16_B variant has no vec4 path.
  const vecB = !args.bF16 && vec4 && vec4Fits(tile, 'b') && vec4Aligned(bWidth, ldb, args.b.offset);
  return ctx.pipeline('matmul', 'main', overrides, { ...tileDefines(ctx, tile, vecA, vecB, !!args.bF16), ...extra });
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
  // The module is specialized for a tiling; bias_grad uses none of it, so any valid one serves.
  const pipeline = await ctx.pipeline('matmul', 'bias_grad', { ACCUMULATE: !!args.accumulate }, tileDefines(ctx, DEFAULT_TILE));
  const dims = uniformWords(ctx, `${args.label}.dims`, [args.M, args.N, 0, 0, 0, 0, 0, 0]);
  return {
    label: args.label,
    pipeline,
    bindGroup: bindAll(ctx, pipeline, args.label, [dims], [args.dout, args.dbias]),
    workgroups: [workgroupCount(ctx, Math.ceil(args.N / 256), args.label), 1, 1],
    flops: args.M * args.N,
  };
}
