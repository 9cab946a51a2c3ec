// GPT-2's forward and backward passes as lists of prepared dispatches for one micro-batch,
// in the order llm.c's train_gpt2 runs them. Built once per (run shape, trainable set) and
// replayed every step (LoRA weights, model/lora.ts, splice in after each targeted linear
// layer; evaluation and generation add theirs through ForwardHooks / HeadHooks). Semantics:
// Hugging Face GPT2LMHeadModel (pre-LN blocks, causal attention, tied LM head),
// docs/ARCHITECTURE.md "GPT-2 semantics".
import type { GpuContext } from '../gpu/context.ts';
import { DROPOUT_SITE } from '../random.ts';
import type { BufferRange, Dispatch } from '../gpu/dispatch.ts';
import { attentionBackward, attentionForward } from '../kernels/attention.ts';
import { crossEntropy } from '../kernels/crossentropy.ts';
import { embeddingBackward, embeddingForward } from '../kernels/embedding.ts';
import { geluBackward, geluBackwardBias, geluForward } from '../kernels/gelu.ts';
import { layernormBackward, layernormForward } from '../kernels/layernorm.ts';
import { biasGrad, matmul } from '../kernels/matmul.ts';
import { residualBackward, residualLayernorm } from '../kernels/residual.ts';
import { rows, type Activations } from './activations.ts';
import type { TensorRange } from './arena.ts';
import { loraBackward, loraForward, type LoraActivations, type LoraWeights } from './lora.ts';
import type { GPT2Config } from './config.ts';
import type { GpuWeights } from './weights.ts';

export interface DropoutRates {
  embd: number;
  attn: number;
  resid: number;
}

export interface MicroInputs {
  /** (B·T) u32 token ids */
  tokens: BufferRange;
  /** (B·T) u32 next-token targets */
  targets: BufferRange;
  /** embedding-backward buckets (kernels/embedding.ts tokenBucketWords(B·T)) */
  buckets: BufferRange;
}

export interface GraphContext {
  ctx: GpuContext;
  config: GPT2Config;
  weights: GpuWeights;
  acts: Activations;
  /** micro-batch index within the optimizer step (dropout streams) */
  micro: number;
  dropout: DropoutRates;
  /** the Rng {seed, step} uniform */
  rng: GPUBuffer;
  /** gradient range of a trainable parameter, undefined when frozen */
  grad: (name: string) => BufferRange | undefined;
  /**
   * The gradient as bindable row ranges (model/arena.ts), for a tensor larger than one binding
   * (wte); absent means `grad` is bindable whole.
   */
  gradRanges?: (name: string) => TensorRange[] | undefined;
  /** LoRA weights (model/lora.ts) and their buffers for this (B, T); absent = no LoRA */
  lora?: { weights: LoraWeights; acts: LoraActivations };
}

/** The wte gradient in bindable row ranges (the same split as the wte parameter), undefined when frozen. */
function wteGradRanges(g: GraphContext): TensorRange[] | undefined {
  if (g.gradRanges) return g.gradRanges('wte.weight');
  const r = g.grad('wte.weight');
  return r && [{ ...r, row0: 0, rows: g.config.vocabSize }];
}

/**
 * Where a caller adds its own dispatches to the forward graph, instead of finding a place by a
 * dispatch's label: generation copies each block's keys and values to its cache right before
 * the block's attention (after c_attn and its LoRA update have written qkv).
 */
export interface ForwardHooks {
  /** block i's qkv (acts.layers[i].qkv) is complete; its attention runs next */
  beforeAttention?(block: number): Promise<Dispatch[]>;
}

/**
 * Hooks into the LM head: evaluation takes each chunk's argmax while its logits exist.
 * Rows [r0, r0 + n) of the batch are chunk k; acts.logits holds their (n, V) logits when the
 * head runs without backward (with backward they have become dlogits by then).
 */
export interface HeadHooks {
  afterChunkLoss?(chunk: number, r0: number, n: number): Promise<Dispatch[]>;
}

function drop(g: GraphContext, p: number, site: number) {
  return p > 0 ? { p, site, micro: g.micro, rng: g.rng } : undefined;
}

/**
 * Embedding through ln_f: fills acts.encoded … acts.lnf. Each residual add runs fused with the
 * LayerNorm that reads its result (kernels/residual.ts residualLayernorm, bit-identical to the
 * two kernels): resid2 with the block's ln_2, resid3 with the next block's ln_1, the last
 * block's resid3 with ln_f; only block 0's ln_1 (after the embedding) runs alone.
 */
export async function buildForward(g: GraphContext, inp: MicroInputs, hooks: ForwardHooks = {}): Promise<Dispatch[]> {
  const { ctx, config: c, weights: w, acts: a } = g;
  const { B, T } = a;
  const N = B * T;
  const C = c.nEmbd;
  const I = c.nInner;
  const out: Dispatch[] = [];
  const embDrop = drop(g, g.dropout.embd, DROPOUT_SITE.embedding);
  // One dispatch per bindable range of wte; each writes the positions of its own tokens.
  for (const [k, wte] of w.ranges('wte.weight').entries()) {
    out.push(await embeddingForward(ctx, {
      label: `embed${k}`, B, T, C, V: c.vocabSize, P: c.nPositions,
      tokens: inp.tokens, wte, wteRows: { start: wte.row0, count: wte.rows }, wpe: w.range('wpe.weight'), out: a.encoded,
      dropout: embDrop && { p: embDrop.p, micro: embDrop.micro, rng: embDrop.rng },
    }));
  }
  const eps = c.layerNormEpsilon;
  // The LayerNorm after block i's output: block i + 1's ln_1, or ln_f after the last block.
  const nextNorm = (i: number) => {
    if (i + 1 < c.nLayer) {
      const L = a.layers[i + 1];
      return { weight: w.range(`h.${i + 1}.ln_1.weight`), bias: w.range(`h.${i + 1}.ln_1.bias`), ln: L.ln1, mean: L.ln1Mean, rstd: L.ln1Rstd };
    }
    return { weight: w.range('ln_f.weight'), bias: w.range('ln_f.bias'), ln: a.lnf, mean: a.lnfMean, rstd: a.lnfRstd };
  };
  if (c.nLayer > 0) {
    const L = a.layers[0];
    out.push(await layernormForward(ctx, {
      label: 'h0.ln1', N, C, eps, x: a.encoded, weight: w.range('h.0.ln_1.weight'), bias: w.range('h.0.ln_1.bias'), out: L.ln1, mean: L.ln1Mean, rstd: L.ln1Rstd,
    }));
  }
  for (let i = 0; i < c.nLayer; i++) {
    const L = a.layers[i];
    const p = (n: string) => w.range(`h.${i}.${n}`);
    // The weight a matmul reads: the master, or its f16 copy under precision f16 (model/weights.ts).
    const mw = (n: string) => {
      const m = w.matmulWeight(`h.${i}.${n}`);
      return { b: m.range, bF16: m.f16 };
    };
    const x = a.blockInput(i);
    out.push(await matmul(ctx, { label: `h${i}.c_attn`, M: N, N: 3 * C, K: C, a: L.ln1, ...mw('attn.c_attn.weight'), bias: p('attn.c_attn.bias'), out: L.qkv }));
    out.push(...await loraForward(g, `h.${i}.attn.c_attn`, N, L.ln1, L.qkv));
    if (hooks.beforeAttention) out.push(...await hooks.beforeAttention(i));
    out.push(await attentionForward(ctx, { label: `h${i}.attn`, B, T, C, NH: c.nHead, qkv: L.qkv, out: L.atty, lse: L.lse, dropout: drop(g, g.dropout.attn, DROPOUT_SITE.attnProbs(i)) }));
    out.push(await matmul(ctx, { label: `h${i}.attn.c_proj`, M: N, N: C, K: C, a: L.atty, ...mw('attn.c_proj.weight'), bias: p('attn.c_proj.bias'), out: L.attproj }));
    out.push(...await loraForward(g, `h.${i}.attn.c_proj`, N, L.atty, L.attproj));
    out.push(await residualLayernorm(ctx, {
      label: `h${i}.resid2+ln2`, N, C, eps, a: x, b: L.attproj, out: L.resid2, dropout: drop(g, g.dropout.resid, DROPOUT_SITE.attnResid(i)),
      weight: p('ln_2.weight'), bias: p('ln_2.bias'), ln: L.ln2, mean: L.ln2Mean, rstd: L.ln2Rstd,
    }));
    const fc = { label: `h${i}.c_fc`, M: N, N: I, K: C, a: L.ln2, ...mw('mlp.c_fc.weight'), bias: p('mlp.c_fc.bias'), out: L.fch };
    if (g.lora?.weights.target(`h.${i}.mlp.c_fc`)) {
      // LoRA adds its product into c_fc's output after the matmul: GELU comes after that.
      out.push(await matmul(ctx, fc));
      out.push(...await loraForward(g, `h.${i}.mlp.c_fc`, N, L.ln2, L.fch));
      out.push(await geluForward(ctx, { label: `h${i}.gelu`, n: N * I, kind: c.activation, x: L.fch, out: L.fchGelu }));
    } else {
      // c_fc's epilogue writes its output (kept for GELU's backward) and GELU of it, as geluForward would.
      out.push(await matmul(ctx, { ...fc, label: `h${i}.c_fc+gelu`, gelu: { kind: c.activation, out: L.fchGelu } }));
    }
    out.push(await matmul(ctx, { label: `h${i}.mlp.c_proj`, M: N, N: C, K: I, a: L.fchGelu, ...mw('mlp.c_proj.weight'), bias: p('mlp.c_proj.bias'), out: L.fcproj }));
    out.push(...await loraForward(g, `h.${i}.mlp.c_proj`, N, L.fchGelu, L.fcproj));
    out.push(await residualLayernorm(ctx, {
      label: `h${i}.resid3+${i + 1 < c.nLayer ? `h${i + 1}.ln1` : 'ln_f'}`, N, C, eps, a: L.resid2, b: L.fcproj, out: L.resid3,
      dropout: drop(g, g.dropout.resid, DROPOUT_SITE.mlpResid(i)), ...nextNorm(i),
    }));
  }
  if (c.nLayer === 0) {
    out.push(await layernormForward(ctx, {
      label: 'ln_f', N, C, eps, x: a.encoded, weight: w.range('ln_f.weight'), bias: w.range('ln_f.bias'), out: a.lnf, mean: a.lnfMean, rstd: a.lnfRstd,
    }));
  }
  return out;
}

/**
 * The tied LM head and softmax cross-entropy, in row chunks so (B·T × V) logits never exist at
 * once. Writes acts.losses. With `backward`, each chunk's logits become dlogits in place
 * (scaled by `lossScale`), then dlnf = dlogits·wte and, when embeddings train, dwte += dlogitsᵀ·lnf.
 * When wte is bound in row ranges [v0, v0 + nv), each range gives the logits' column block
 * [v0, v0 + nv) (leading dimension V), dlnf is the sum over ranges of block·wte_range (the first
 * writes, the others add, in range order), and each dwte range takes its own column block.
 */
export async function buildHead(g: GraphContext, targets: BufferRange, backward: boolean, lossScale: number, hooks: HeadHooks = {}): Promise<Dispatch[]> {
  const { ctx, config: c, weights: w, acts: a } = g;
  const N = a.B * a.T;
  const C = c.nEmbd;
  const V = c.vocabSize;
  // The LM head reads wte as a matmul weight: its f16 copy under precision f16 (which may split
  // into other row ranges than the master); dwte follows the gradient's own ranges.
  const { ranges: wte, f16: bF16 } = w.matmulRanges('wte.weight');
  const dwte = backward ? wteGradRanges(g) : undefined;
  const out: Dispatch[] = [];
  for (let r0 = 0, k = 0; r0 < N; r0 += a.chunkRows, k++) {
    const n = Math.min(a.chunkRows, N - r0);
    const logits = rows(a.logits, 0, n * V); // (n, V)
    const lnf = rows(a.lnf, r0 * C, n * C); // (n, C)
    // The column block [v0, v0 + nv) of the (n, V) logits: offset v0 floats, rows V apart.
    const block = (v0: number, nv: number) => rows(logits, v0, (n - 1) * V + nv);
    for (const [j, wr] of wte.entries()) {
      out.push(await matmul(ctx, { label: `head${k}.logits${j}`, M: n, N: wr.rows, K: C, a: lnf, b: wr, bF16, out: block(wr.row0, wr.rows), ldc: V, transB: true }));
    }
    out.push(await crossEntropy(ctx, { label: `head${k}.ce`, N: n, V, targets: rows(targets, r0, n), logits, losses: rows(a.losses, r0, n), scale: lossScale, writeGrad: backward }));
    if (hooks.afterChunkLoss) out.push(...await hooks.afterChunkLoss(k, r0, n));
    if (!backward) continue;
    for (const [j, wr] of wte.entries()) {
      out.push(await matmul(ctx, {
        label: `head${k}.dlnf${j}`, M: n, N: C, K: wr.rows, a: block(wr.row0, wr.rows), lda: V, b: wr, bF16, out: rows(a.dlnf, r0 * C, n * C), accumulate: j > 0,
      }));
    }
    for (const [j, dr] of (dwte ?? []).entries()) {
      out.push(await matmul(ctx, {
        label: `head${k}.dwte${j}`, M: dr.rows, N: C, K: n, a: block(dr.row0, dr.rows), lda: V, b: lnf, out: dr, transA: true, accumulate: true,
      }));
    }
  }
  return out;
}

/** Lowest depth group with a trainable parameter; backward stops there. */
function lowestTrainableGroup(g: GraphContext): number {
  let low = Infinity;
  for (const s of g.weights.specs) if (g.grad(s.name)) low = Math.min(low, s.group);
  for (const s of g.lora?.weights.specs ?? []) if (g.grad(s.name)) low = Math.min(low, s.group);
  return low;
}

/**
 * Backward from dlnf (written by buildHead) to the lowest trainable group. All parameter
 * gradients accumulate (+=): the trainer zeroes the gradient arena once per optimizer step, so
 * micro-batches and the tied wte's two contributions add up.
 */
export async function buildBackward(g: GraphContext, inp: MicroInputs): Promise<Dispatch[]> {
  const { ctx, config: c, weights: w, acts: a } = g;
  const { B, T } = a;
  const N = B * T;
  const C = c.nEmbd;
  const I = c.nInner;
  const low = lowestTrainableGroup(g);
  const out: Dispatch[] = [];
  if (!Number.isFinite(low)) return out;

  const lnfW = g.grad('ln_f.weight');
  out.push(...await layernormBackward(ctx, {
    label: 'ln_f.bwd', N, C, dout: a.dlnf, x: a.blockInput(c.nLayer), weight: w.range('ln_f.weight'), mean: a.lnfMean, rstd: a.lnfRstd,
    dx: a.dresid, dweight: lnfW, dbias: g.grad('ln_f.bias'), accumulateParams: true, scratch: a.lnScratch,
  }));

  // Linear layer backward: dW += xᵀ·dy, db += Σ dy (when trainable), dx = dy·Wᵀ (when wanted).
  // A LoRA update on the layer first writes its own dx term; the base dx then adds to it.
  // `biasDone`: the bias gradient was already taken (fused into the GELU backward).
  const linear = async (label: string, name: string, x: BufferRange, dy: BufferRange, dx: BufferRange | null, IC: number, OC: number, biasDone = false) => {
    const dW = g.grad(`${name}.weight`);
    const db = biasDone ? undefined : g.grad(`${name}.bias`);
    const lora = await loraBackward(g, name, N, x, dy, dx);
    out.push(...lora.dispatches);
    if (dW) out.push(await matmul(ctx, { label: `${label}.dW`, M: IC, N: OC, K: N, a: x, b: dy, out: dW, transA: true, accumulate: true }));
    if (db) out.push(await biasGrad(ctx, { label: `${label}.db`, M: N, N: OC, dout: dy, dbias: db, accumulate: true }));
    if (dx) {
      const W = w.matmulWeight(`${name}.weight`);
      out.push(await matmul(ctx, { label: `${label}.dx`, M: N, N: IC, K: OC, a: dy, b: W.range, bF16: W.f16, out: dx, transB: true, accumulate: lora.wroteDx }));
    }
  };

  // The gradient of a residual branch's output: dropout_backward(dresid) in dA; without resid
  // dropout that is dresid itself, which the branch's backward then reads in place (nothing
  // writes dresid until the LayerNorm backward after it), saving a copy per branch.
  const branchGrad = async (label: string, site: number): Promise<BufferRange> => {
    const spec = drop(g, g.dropout.resid, site);
    if (!spec) return a.dresid;
    out.push(await residualBackward(ctx, { label, n: N * C, dout: a.dresid, db: a.dA, dropout: spec }));
    return a.dA;
  };

  for (let i = c.nLayer - 1; i >= 0 && i + 1 >= low; i--) {
    const L = a.layers[i];
    const pre = `h.${i}.`;
    const lastNeeded = i + 1 === low; // nothing below this block trains
    // MLP branch: resid3 = resid2 + dropout(c_proj(gelu(c_fc(ln2(resid2)))))
    await linear(`h${i}.mlp.c_proj`, pre + 'mlp.c_proj', L.fchGelu, await branchGrad(`h${i}.resid3.bwd`, DROPOUT_SITE.mlpResid(i)), a.dfch, I, C);
    // GELU's backward fused with c_fc's bias gradient when that bias trains (one pass over dfch).
    const fcBias = g.grad(pre + 'mlp.c_fc.bias');
    if (fcBias) {
      out.push(await geluBackwardBias(ctx, { label: `h${i}.gelu.bwd+c_fc.db`, M: N, N: I, kind: c.activation, x: L.fch, grad: a.dfch, dbias: fcBias, accumulate: true }));
    } else {
      out.push(await geluBackward(ctx, { label: `h${i}.gelu.bwd`, n: N * I, kind: c.activation, x: L.fch, dout: a.dfch }));
    }
    await linear(`h${i}.c_fc`, pre + 'mlp.c_fc', L.ln2, a.dfch, a.dB, C, I, !!fcBias);
    out.push(...await layernormBackward(ctx, {
      label: `h${i}.ln2.bwd`, N, C, dout: a.dB, x: L.resid2, weight: w.range(pre + 'ln_2.weight'), mean: L.ln2Mean, rstd: L.ln2Rstd,
      dx: a.dresid, accumulateDx: true, dweight: g.grad(pre + 'ln_2.weight'), dbias: g.grad(pre + 'ln_2.bias'), accumulateParams: true, scratch: a.lnScratch,
    }));
    // Attention branch: resid2 = x + dropout(c_proj(attn(c_attn(ln1(x)))))
    await linear(`h${i}.attn.c_proj`, pre + 'attn.c_proj', L.atty, await branchGrad(`h${i}.resid2.bwd`, DROPOUT_SITE.attnResid(i)), a.dB, C, C);
    out.push(...await attentionBackward(ctx, {
      label: `h${i}.attn.bwd`, B, T, C, NH: c.nHead, dout: a.dB, qkv: L.qkv, out: L.atty, lse: L.lse, dqkv: a.dqkv,
      dropout: drop(g, g.dropout.attn, DROPOUT_SITE.attnProbs(i)),
    }));
    await linear(`h${i}.c_attn`, pre + 'attn.c_attn', L.ln1, a.dqkv, a.dB, C, 3 * C);
    const ln1W = g.grad(pre + 'ln_1.weight');
    if (!lastNeeded || ln1W) {
      out.push(...await layernormBackward(ctx, {
        label: `h${i}.ln1.bwd`, N, C, dout: a.dB, x: a.blockInput(i), weight: w.range(pre + 'ln_1.weight'), mean: L.ln1Mean, rstd: L.ln1Rstd,
        dx: a.dresid, accumulateDx: true, dweight: ln1W, dbias: g.grad(pre + 'ln_1.bias'), accumulateParams: true, scratch: a.lnScratch,
      }));
    }
  }

  if (low === 0) {
    const embDrop = drop(g, g.dropout.embd, DROPOUT_SITE.embedding);
    // dwpe once, then the dwte gather once per bindable range of dwte (each gathers its own tokens).
    const dwte = wteGradRanges(g) ?? [];
    const dwpe = g.grad('wpe.weight');
    for (let k = 0; k < Math.max(1, dwte.length); k++) {
      const dr = dwte[k] as TensorRange | undefined;
      if (!dr && !(k === 0 && dwpe)) continue;
      out.push(...await embeddingBackward(ctx, {
        label: `embed.bwd${k}`, B, T, C, V: c.vocabSize, P: c.nPositions, dout: a.dresid, buckets: inp.buckets,
        dwte: dr, dwteRows: dr && { start: dr.row0, count: dr.rows }, accumulateWte: true,
        dwpe: k === 0 ? dwpe : undefined, accumulateWpe: true,
        dropout: embDrop && { p: embDrop.p, micro: embDrop.micro, rng: embDrop.rng },
      }));
    }
  }
  return out;
}
