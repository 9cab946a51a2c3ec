// The activation and activation-gradient buffers of one micro-batch (B, T), allocated once per
// run shape and reused by every micro-batch and step. Each tensor is its own buffer, so no
// dispatch binds one buffer both read-only and writable (WebGPU's usage-scope rule).
import type { GpuContext } from '../gpu/context.ts';
import type { BufferRange } from '../gpu/dispatch.ts';
import { layernormScratchElements } from '../kernels/layernorm.ts';
import type { GPT2Config } from './config.ts';

export interface LayerActivations {
  ln1: BufferRange; // (B, T, C)
  ln1Mean: BufferRange; // (B, T)
  ln1Rstd: BufferRange; // (B, T)
  qkv: BufferRange; // (B, T, 3C)
  atty: BufferRange; // (B, T, C) attention output before c_proj
  lse: BufferRange; // (B, NH, T) row logsumexp of the attention scores
  attproj: BufferRange; // (B, T, C) c_proj output before dropout
  resid2: BufferRange; // (B, T, C) x + dropout(attproj)
  ln2: BufferRange; // (B, T, C)
  ln2Mean: BufferRange; // (B, T)
  ln2Rstd: BufferRange; // (B, T)
  fch: BufferRange; // (B, T, I) c_fc output, pre-GELU
  fchGelu: BufferRange; // (B, T, I)
  fcproj: BufferRange; // (B, T, C) MLP c_proj output before dropout
  resid3: BufferRange; // (B, T, C) block output
}

/** Rows of the LM-head chunk: a multiple of 64 (so range offsets stay 256-byte aligned), logits ≤ 64 MiB. */
export function headChunkRows(rows: number, V: number, maxBinding: number): number {
  const cap = Math.min(64 * 2 ** 20, maxBinding);
  const byCap = Math.max(64, Math.floor(cap / (V * 4) / 64) * 64);
  return Math.min(Math.ceil(rows / 64) * 64, byCap);
}

export class Activations {
  readonly B: number;
  readonly T: number;
  readonly encoded: BufferRange; // (B, T, C) embedding output after dropout
  readonly layers: LayerActivations[] = [];
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
  /** bytes of forward activations and of backward scratch */
  readonly bytes: { activations: number; scratch: number };
  private readonly buffers: GPUBuffer[] = [];

  constructor(ctx: GpuContext, c: GPT2Config, B: number, T: number, withBackward: boolean) {
    this.B = B;
    this.T = T;
    const N = B * T;
    const C = c.nEmbd;
    let act = 0;
    let scratch = 0;
    const f = (label: string, count: number, kind: 'act' | 'scratch' = 'act'): BufferRange => {
      const size = Math.max(4, count * 4);
      const buffer = ctx.createBuffer(size, label);
      this.buffers.push(buffer);
      if (kind === 'act') act += buffer.size;
      else scratch += buffer.size;
      return { buffer, offset: 0, size };
    };
    this.encoded = f('encoded', N * C);
    for (let i = 0; i < c.nLayer; i++) {
      const p = `h${i}.`;
      this.layers.push({
        ln1: f(p + 'ln1', N * C), ln1Mean: f(p + 'ln1Mean', N), ln1Rstd: f(p + 'ln1Rstd', N),
        qkv: f(p + 'qkv', N * 3 * C), atty: f(p + 'atty', N * C), lse: f(p + 'lse', B * c.nHead * T),
        attproj: f(p + 'attproj', N * C), resid2: f(p + 'resid2', N * C),
        ln2: f(p + 'ln2', N * C), ln2Mean: f(p + 'ln2Mean', N), ln2Rstd: f(p + 'ln2Rstd', N),
        fch: f(p + 'fch', N * c.nInner), fchGelu: f(p + 'fchGelu', N * c.nInner),
        fcproj: f(p + 'fcproj', N * C), resid3: f(p + 'resid3', N * C),
      });
    }
    this.lnf = f('lnf', N * C);
    this.lnfMean = f('lnfMean', N);
    this.lnfRstd = f('lnfRstd', N);
    this.chunkRows = headChunkRows(N, c.vocabSize, ctx.limits.maxStorageBufferBindingSize);
    this.logits = f('logits', this.chunkRows * c.vocabSize, 'scratch');
    // Rounded up to whole chunks so every chunk's range stays inside the buffer.
    this.losses = f('losses', Math.ceil(N / 64) * 64);
    const g = (label: string, count: number) => (withBackward ? f(label, count, 'scratch') : this.encoded);
    this.dresid = g('dresid', N * C);
    this.dA = g('dA', N * C);
    this.dB = g('dB', N * C);
    this.dqkv = g('dqkv', N * 3 * C);
    this.dfch = g('dfch', N * c.nInner);
    this.dlnf = g('dlnf', Math.ceil(N / 64) * 64 * C);
    this.lnScratch = g('lnScratch', layernormScratchElements(N, C, ctx));
    this.bytes = { activations: act, scratch };
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
