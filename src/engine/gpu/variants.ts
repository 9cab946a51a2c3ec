// Kernel variants: the choices that change how a kernel runs — the matmul tiling per shape class
// and its vectorized loads, chosen per adapter by the tuning run (src/engine/train/tune.ts) and
// bit-identical to the default; and subgroup reductions, which order sums otherwise (results
// differ in the last bits), so a new run uses them only when asked (`train --subgroups`), never
// by tuning. Recorded in a checkpoint's trainer_state.json `kernels` and reused on resume. The
// engine reads them from GpuContext.kernels when it builds dispatches.
import { KernelVariantError } from '../errors.ts';

/** One matmul tiling: a bm×bn output tile per workgroup of tx×ty threads, K in steps of bk. */
export interface MatmulTile {
  bm: number;
  bn: number;
  bk: number;
  /** threads along a tile row (output columns) */
  tx: number;
  /** threads along a tile column (output rows) */
  ty: number;
  /** stage each operand four floats per load where its layout allows (else scalar loads) */
  vec4?: boolean;
  /**
   * The register-tiled kernel (shaders/matmul_reg.wgsl) instead of the workgroup-memory one: a
   * workgroup of tx invocations (ty = 1) owns bm rows and bn columns, each invocation all bm rows
   * of its bn/tx columns; bk = 8, the op(A) values one subgroup broadcast step covers.
   */
  reg?: boolean;
}

/**
 * Shape classes a tiling is chosen for: the transposes (n = as stored, t = transposed; `nn` the
 * linear layers' forward, `nt` their input gradient and the LM head's logits, `tn` the weight
 * gradients) and, with `-deep`, a reduction at least twice as long as either output side (mlp
 * c_proj's K = 4C), where fewer, longer-running workgroups want a different tile.
 */
export const MATMUL_CLASSES = ['nn', 'nn-deep', 'nt', 'nt-deep', 'tn', 'tn-deep', 'tt', 'tt-deep'] as const;
export type MatmulClass = (typeof MATMUL_CLASSES)[number];

export function matmulClass(M: number, N: number, K: number, transA = false, transB = false): MatmulClass {
  const t = `${transA ? 't' : 'n'}${transB ? 't' : 'n'}`;
  return (K >= 2 * Math.max(M, N) ? `${t}-deep` : t) as MatmulClass;
}

export interface KernelVariants {
  /** tiling per shape class; a class not named uses DEFAULT_TILE */
  matmul: Partial<Record<MatmulClass, MatmulTile>>;
  /** subgroup reductions (layer norm, cross-entropy, the gradient norm and loss sums, the decode softmax); needs the adapter's `subgroups` */
  subgroups: boolean;
}

/**
 * Whether a kernel with a subgroup form should build it: the variant is on. Throws
 * KernelVariantError when it is on and the device was created without the `subgroups` feature
 * (an adapter without it), naming the kernel, rather than compiling a shader that cannot run.
 */
export function useSubgroups(ctx: { kernels: KernelVariants; device: { features: { has(f: string): boolean } } }, label: string): boolean {
  if (!ctx.kernels.subgroups) return false;
  if (!ctx.device.features.has('subgroups')) {
    throw new KernelVariantError(`${label}: subgroup reductions are selected, and this device lacks the 'subgroups' feature. Turn the subgroups variant off (or use an adapter that has it).`);
  }
  return true;
}

/** The tiling every class uses without a tuned choice (see shaders/matmul.wgsl's header). */
export const DEFAULT_TILE: Readonly<MatmulTile> = Object.freeze({ bm: 64, bn: 64, bk: 32, tx: 8, ty: 8 });

export function defaultVariants(): KernelVariants {
  return { matmul: {}, subgroups: false };
}

/**
 * `64x64x32-8x8`: bm × bn × bk, then threads tx × ty, and `-v4` with vec4 loads or `-reg` for the
 * register-tiled kernel (`16x128x8-64x1-reg`): the form trainer_state.json and the tuning cache
 * record.
 */
export function tileName(t: MatmulTile): string {
  return `${t.bm}x${t.bn}x${t.bk}-${t.tx}x${t.ty}${t.vec4 ? '-v4' : ''}${t.reg ? '-reg' : ''}`;
}

export function parseTile(s: string): MatmulTile {
  const m = /^(\d+)x(\d+)x(\d+)-(\d+)x(\d+)(-v4|-reg)?$/.exec(s);
  if (!m) throw new KernelVariantError(`matmul tile '${s}' is not of the form BMxBNxBK-TXxTY[-v4|-reg] (e.g. ${tileName(DEFAULT_TILE)}).`);
  const t: MatmulTile = { bm: +m[1], bn: +m[2], bk: +m[3], tx: +m[4], ty: +m[5] };
  if (m[6] === '-v4') t.vec4 = true;
  if (m[6] === '-reg') t.reg = true;
  return t;
}

/** The op(A) values per broadcast step of a register tile: the unrolled steps of shaders/matmul_reg.wgsl. */
export const REG_BK = 8;

/** Outputs one invocation of a register tile may hold (its accumulators): beyond this the shader spills and slows. */
const REG_MAX_OUTPUTS = 64;

/** Limits a tiling must fit (GPUSupportedLimits has them all). */
export interface TileLimits {
  maxComputeWorkgroupStorageSize: number;
  maxComputeInvocationsPerWorkgroup: number;
  maxComputeWorkgroupSizeX: number;
  maxComputeWorkgroupSizeY: number;
}

/** Why `t` cannot run under `limits` (or is malformed), or null when it can. */
export function tileProblem(t: MatmulTile, limits: TileLimits): string | null {
  const { bm, bn, bk, tx, ty } = t;
  for (const [k, v] of Object.entries({ bm, bn, bk, tx, ty })) if (!Number.isInteger(v) || v < 1) return `${k} must be a positive integer, got ${v}`;
  if (t.reg) {
    if (t.vec4) return 'a register tile has no vec4 form';
    if (ty !== 1) return `a register tile is one row of threads (ty = 1), got ty = ${ty}`;
    if (bk !== REG_BK) return `a register tile steps K by ${REG_BK} (the subgroup broadcast steps of shaders/matmul_reg.wgsl), got bk = ${bk}`;
    if (bn % tx) return `the ${bn} columns must split evenly over ${tx} threads`;
    if (bm * (bn / tx) > REG_MAX_OUTPUTS) return `${bm}×${bn / tx} outputs per thread exceed the ${REG_MAX_OUTPUTS} a register tile holds`;
    if (tx > limits.maxComputeInvocationsPerWorkgroup || tx > limits.maxComputeWorkgroupSizeX) return `${tx} threads exceed the adapter's ${Math.min(limits.maxComputeInvocationsPerWorkgroup, limits.maxComputeWorkgroupSizeX)} per workgroup row`;
    return null;
  }
  if (bm % ty || bn % tx) return `the tile ${bm}×${bn} must split evenly over ${ty}×${tx} threads`;
  const threads = tx * ty;
  if ((bm * bk) % threads || (bn * bk) % threads) return `${threads} threads must stage the ${bm}×${bk} and ${bk}×${bn} slices in whole rounds`;
  if (threads > limits.maxComputeInvocationsPerWorkgroup) return `${threads} threads exceed the adapter's ${limits.maxComputeInvocationsPerWorkgroup} per workgroup`;
  if (tx > limits.maxComputeWorkgroupSizeX || ty > limits.maxComputeWorkgroupSizeY) return `a ${tx}×${ty} workgroup exceeds the adapter's ${limits.maxComputeWorkgroupSizeX}×${limits.maxComputeWorkgroupSizeY}`;
  const bytes = (bm + bn) * bk * 4;
  if (bytes > limits.maxComputeWorkgroupStorageSize) return `it needs ${bytes} bytes of workgroup memory; the device allows ${limits.maxComputeWorkgroupStorageSize}`;
  return null;
}

/** Whether the vec4 staging of an operand fits the tile's thread count (else that operand loads scalars). */
export function vec4Fits(t: MatmulTile, side: 'a' | 'b'): boolean {
  const threads = t.tx * t.ty;
  const rows = side === 'a' ? t.bm : t.bn;
  return rows % 4 === 0 && t.bk % 4 === 0 && ((rows * t.bk) / 4) % threads === 0;
}

/**
 * trainer_state.json's `kernels` (docs/checkpoint-format.md): the precision, and from this
 * engine the matmul tiling of every shape class and whether subgroup reductions ran. Other
 * writers add their own fields (the PyTorch continuation: torch version, device).
 */
export interface KernelsRecord {
  precision: string;
  matmul?: Partial<Record<MatmulClass, string>>;
  subgroups?: boolean;
  [field: string]: unknown;
}

/** The record of `v`: every class's tiling named, defaults included, so a resume needs no cache. */
export function kernelsRecord(v: KernelVariants, precision = 'f32'): KernelsRecord {
  const matmul: Partial<Record<MatmulClass, string>> = {};
  for (const cls of MATMUL_CLASSES) matmul[cls] = tileName(v.matmul[cls] ?? DEFAULT_TILE);
  return { precision, matmul, subgroups: v.subgroups };
}

/**
 * The variants a checkpoint recorded, for its resume: used as recorded whatever a tuning cache
 * now says. A record from before variants were recorded (no `matmul`) means the defaults, which
 * is what that engine ran. Throws KernelVariantError when this adapter cannot run a recorded
 * variant (a tile over its limits, subgroups it lacks), naming it: never a silent substitute.
 */
export function variantsFromRecord(r: KernelsRecord | undefined, limits: TileLimits, features: readonly string[]): KernelVariants {
  const v = defaultVariants();
  if (!r) return v;
  if (r.matmul !== undefined) {
    if (!r.matmul || typeof r.matmul !== 'object') throw new KernelVariantError(`the checkpoint's kernels.matmul is not an object of shape class → tile; found ${JSON.stringify(r.matmul)}.`);
    for (const [cls, name] of Object.entries(r.matmul)) {
      if (!(MATMUL_CLASSES as readonly string[]).includes(cls)) throw new KernelVariantError(`the checkpoint's kernels.matmul names an unknown shape class '${cls}' (known: ${MATMUL_CLASSES.join(', ')}).`);
      const tile = parseTile(String(name));
      const problem = tileProblem(tile, limits);
      if (problem) throw new KernelVariantError(`the checkpoint was trained with matmul tile ${name} for ${cls}, which this adapter cannot run: ${problem}. Resume it on an adapter that can.`);
      v.matmul[cls as MatmulClass] = tile;
    }
  }
  if (r.subgroups) {
    if (!features.includes('subgroups')) throw new KernelVariantError("the checkpoint was trained with subgroup reductions, and this adapter lacks the 'subgroups' feature; resuming without them would change the numerics. Resume it on an adapter with subgroups.");
    v.subgroups = true;
  }
  return v;
}
