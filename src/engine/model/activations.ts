// The activation and activation-gradient buffers of one micro-batch (B, T), allocated once per
// (run shape, trainable set) and reused by every micro-batch and step. Each tensor is its own
// buffer, so no dispatch binds one buffer both read-only and writable (WebGPU's usage-scope rule).
//
// What is kept depends on what backward needs. Backward stops at the lowest trainable block, so
// the blocks below it (a frozen prefix) only have to produce their output: they all run forward
// into ONE shared set of scratch buffers instead of per-layer saved ones. Block i reads its input
// (the previous block's resid3, in the same shared set) before it writes resid3 as its last
// dispatch, so the set can be reused block after block. Without backward (evaluation) every
// block runs in the shared set.
//
// planActivations is the one description of these buffers: Activations allocates through it, and
// train/memory.ts counts bytes through it before anything exists on the GPU.
import { AdapterLimitError } from '../errors.ts';
import type { GpuContext } from '../gpu/context.ts';
import type { BufferRange } from '../gpu/dispatch.ts';
import { LAYERNORM_ROWS_PER_CHUNK } from '../kernels/layernorm.ts';
import type { GPT2Config } from './config.ts';

export interface LayerActivations<R = BufferRange> {
  ln1: R; // (B, T, C)
  ln1Mean: R; // (B, T)
  ln1Rstd: R; // (B, T)
  qkv: R; // (B, T, 3C)
  atty: R; // (B, T, C) attention output before c_proj
  lse: R; // (B, NH, T) row logsumexp of the attention scores
  attproj: R; // (B, T, C) c_proj output before dropout
  resid2: R; // (B, T, C) x + dropout(attproj)
  ln2: R; // (B, T, C)
  ln2Mean: R; // (B, T)
  ln2Rstd: R; // (B, T)
  fch: R; // (B, T, I) c_fc output, pre-GELU
  fchGelu: R; // (B, T, I)
  fcproj: R; // (B, T, C) MLP c_proj output before dropout
  resid3: R; // (B, T, C) block output
}

/** What the activation layout depends on besides the model and (B, T). */
export interface ActivationOptions {
  /** allocate activation gradients (training) */
  withBackward: boolean;
  /**
   * Blocks below this index run forward into the shared scratch set (nothing saved for them).
   * Default: 0 with backward (every block saved), L without.
   */
  firstSavedBlock?: number;
}

/** The device limits the layout depends on. */
export interface ActivationLimits {
  /** largest storage binding the engine may use (GpuContext.maxBinding) */
  maxBinding: number;
  maxComputeWorkgroupsPerDimension: number;
}

export type BufferKind = 'activations' | 'scratch';

/**
 * The first block whose activations backward needs, given the trainable depth groups
 * (0 embeddings, block i at i + 1, L + 1 ln_f): backward runs down to the lowest trainable group,
 * and the lowest block it visits reads its own saved activations. L when nothing below ln_f trains.
 */
export function firstSavedBlock(c: GPT2Config, trainableGroups: Iterable<number>): number {
  let low = Infinity;
  for (const g of trainableGroups) low = Math.min(low, g);
  if (!Number.isFinite(low)) return c.nLayer;
  return Math.min(c.nLayer, Math.max(0, low - 1));
}

/** Rows of the LM-head chunk: a multiple of 64 (so range offsets stay 256-byte aligned), logits ≤ 64 MiB and ≤ one binding. */
export function headChunkRows(rows: number, V: number, maxBinding: number): number {
  const cap = Math.min(64 * 2 ** 20, maxBinding);
  const byCap = Math.floor(cap / (V * 4) / 64) * 64;
  if (byCap < 64) {
    throw new AdapterLimitError(
      `The LM head computes 64 rows of ${V} logits at a time (${64 * V * 4} bytes), more than this adapter binds at once (${maxBinding} bytes). ` +
        'Use an adapter with a larger maxStorageBufferBindingSize or a model with a smaller vocabulary.',
    );
  }
  return Math.min(Math.ceil(rows / 64) * 64, byCap);
}

/** Floats of the LayerNorm backward scratch (kernels/layernorm.ts layernormScratchElements, from limits instead of a context). */
export function layernormScratchCount(N: number, C: number, maxWorkgroups: number): number {
  const rowsPerChunk = Math.max(LAYERNORM_ROWS_PER_CHUNK, Math.ceil(N / maxWorkgroups));
  return 2 * Math.ceil(N / rowsPerChunk) * C;
}

export interface ActivationSet<R> {
  encoded: R;
  layers: LayerActivations<R>[];
  lnf: R;
  lnfMean: R;
  lnfRstd: R;
  chunkRows: number;
  logits: R;
  losses: R;
  dresid: R;
  dA: R;
  dB: R;
  dqkv: R;
  dfch: R;
  dlnf: R;
  lnScratch: R;
  firstSavedBlock: number;
}

/**
 * Every buffer of one micro-batch, in allocation order, through `alloc(label, floats, kind)`.
 * Without backward the gradient fields alias `encoded` (nothing allocated for them).
 */
export function planActivations<R>(
  c: GPT2Config,
  B: number,
  T: number,
  opts: ActivationOptions,
  limits: ActivationLimits,
  alloc: (label: string, count: number, kind: BufferKind) => R,
): ActivationSet<R> {
  const N = B * T;
  const C = c.nEmbd;
  const I = c.nInner;
  const saved = Math.min(c.nLayer, Math.max(0, opts.withBackward ? (opts.firstSavedBlock ?? 0) : c.nLayer));
  const f = (label: string, count: number, kind: BufferKind = 'activations') => alloc(label, count, kind);
  const layer = (p: string, kind: BufferKind): LayerActivations<R> => ({
    ln1: f(p + 'ln1', N * C, kind), ln1Mean: f(p + 'ln1Mean', N, kind), ln1Rstd: f(p + 'ln1Rstd', N, kind),
    qkv: f(p + 'qkv', N * 3 * C, kind), atty: f(p + 'atty', N * C, kind), lse: f(p + 'lse', B * c.nHead * T, kind),
    attproj: f(p + 'attproj', N * C, kind), resid2: f(p + 'resid2', N * C, kind),
    ln2: f(p + 'ln2', N * C, kind), ln2Mean: f(p + 'ln2Mean', N, kind), ln2Rstd: f(p + 'ln2Rstd', N, kind),
    fch: f(p + 'fch', N * I, kind), fchGelu: f(p + 'fchGelu', N * I, kind),
    fcproj: f(p + 'fcproj', N * C, kind), resid3: f(p + 'resid3', N * C, kind),
  });
  const encoded = f('encoded', N * C);
  const layers: LayerActivations<R>[] = [];
  // One shared set serves every block below `saved` (allocated only when there is such a block).
  const shared = saved > 0 ? layer('prefix.', 'scratch') : null;
  for (let i = 0; i < c.nLayer; i++) layers.push(i < saved ? shared! : layer(`h${i}.`, 'activations'));
  const lnf = f('lnf', N * C);
  const lnfMean = f('lnfMean', N);
  const lnfRstd = f('lnfRstd', N);
  const chunkRows = headChunkRows(N, c.vocabSize, limits.maxBinding);
  const logits = f('logits', chunkRows * c.vocabSize, 'scratch');
  // Rounded up to whole chunks so every chunk's range stays inside the buffer.
  const losses = f('losses', Math.ceil(N / 64) * 64);
  const g = (label: string, count: number) => (opts.withBackward ? f(label, count, 'scratch') : encoded);
  return {
    encoded, layers, lnf, lnfMean, lnfRstd, chunkRows, logits, losses,
    dresid: g('dresid', N * C),
    dA: g('dA', N * C),
    dB: g('dB', N * C),
    dqkv: g('dqkv', N * 3 * C),
    dfch: g('dfch', N * I),
    dlnf: g('dlnf', Math.ceil(N / 64) * 64 * C),
    lnScratch: g('lnScratch', layernormScratchCount(N, C, limits.maxComputeWorkgroupsPerDimension)),
    firstSavedBlock: saved,
  };
}

/** Bytes GpuContext.createBuffer allocates for `count` floats. */
export function bufferBytes(count: number): number {
  return Math.max(16, Math.ceil(Math.max(4, count * 4) / 16) * 16);
}

export class Activations {
  readonly B: number;
  readonly T: number;
  readonly encoded: BufferRange; // (B, T, C) embedding output after dropout
  /** per block; blocks below firstSavedBlock share one scratch set */
  readonly layers: LayerActivations[];
  readonly lnf: BufferRange; // (B, T, C)
  readonly lnfMean: BufferRange; // (B, T)
  readonly lnfRstd: BufferRange; // (B, T)
  readonly chunkRows: number;
  readonly logits: BufferRange; // (chunkRows, V), dlogits in place
  readonly losses: BufferRange; // (B, T)
  // gradients
  readonly dresid: BufferRange; // (B, T, C) gradient of the residual stream
  readonly dA: BufferRange; // (B, T, C) branch-output gradient (after dropout backward)
  readonly dB: BufferRange; // (B, T, C) gradient into a LayerNorm output / attention output
  readonly dqkv: BufferRange; // (B, T, 3C)
  readonly dfch: BufferRange; // (B, T, I)
  readonly dlnf: BufferRange; // (B, T, C)
  readonly lnScratch: BufferRange;
  /** blocks below this one ran forward into the shared scratch set */
  readonly firstSavedBlock: number;
  readonly withBackward: boolean;
  /** bytes of saved forward activations and of scratch (shared prefix set, logits chunk, gradients) */
  readonly bytes: { activations: number; scratch: number };
  private readonly buffers: GPUBuffer[] = [];

  constructor(ctx: GpuContext, c: GPT2Config, B: number, T: number, withBackward: boolean, opts: { firstSavedBlock?: number } = {}) {
    this.B = B;
    this.T = T;
    this.withBackward = withBackward;
    const bytes = { activations: 0, scratch: 0 };
    const limits = { maxBinding: ctx.maxBinding, maxComputeWorkgroupsPerDimension: ctx.limits.maxComputeWorkgroupsPerDimension };
    const set = planActivations(c, B, T, { withBackward, firstSavedBlock: opts.firstSavedBlock }, limits, (label, count, kind) => {
      const size = Math.max(4, count * 4);
      const buffer = ctx.createBuffer(size, label);
      this.buffers.push(buffer);
      bytes[kind] += buffer.size;
      return { buffer, offset: 0, size };
    });
    this.encoded = set.encoded;
    this.layers = set.layers;
    this.lnf = set.lnf;
    this.lnfMean = set.lnfMean;
    this.lnfRstd = set.lnfRstd;
    this.chunkRows = set.chunkRows;
    this.logits = set.logits;
    this.losses = set.losses;
    this.dresid = set.dresid;
    this.dA = set.dA;
    this.dB = set.dB;
    this.dqkv = set.dqkv;
    this.dfch = set.dfch;
    this.dlnf = set.dlnf;
    this.lnScratch = set.lnScratch;
    this.firstSavedBlock = set.firstSavedBlock;
    this.bytes = bytes;
  }

  /** The input of block i: the embedding output for block 0, else the previous block's output. */
  blockInput(i: number): BufferRange {
    return i === 0 ? this.encoded : this.layers[i - 1].resid3;
  }

  destroy(): void {
    for (const b of this.buffers) b.destroy();
  }
}

/** A sub-range of `r` in float32 elements [start, start + count). */
export function rows(r: BufferRange, start: number, count: number): BufferRange {
  return { buffer: r.buffer, offset: r.offset + start * 4, size: count * 4 };
}
