// Float64 reference of GPT2LMHeadModel with LoRA weights (PEFT semantics, see
// src/engine/model/lora.ts): forward with cache, backward to every base parameter and every
// A and B, training steps on the LoRA factors only, and the merged weights. A test oracle only; the
// engine never calls it.
//
// For a targeted Conv1D layer (W (in, out), PEFT's lora.Linear with fan_in_fan_out=True):
//   y  = x·W + b + s·(xd·Aᵀ)·Bᵀ,  xd = lora_dropout(x),  A (r, in), B (out, r),  s = α/r (α/√r rsLoRA)
//   u  = xd·Aᵀ (N, r)
//   dB = s·dyᵀ·u (out, r);  g = s·dy·B (N, r);  dA = gᵀ·xd (r, in)
//   dx = dy·Wᵀ + dropout_backward(g·A)
// Merged weight: W + s·(B·A)ᵀ (peft get_delta_weight with transpose(fan_in_fan_out)).
//
// The LoRA dropout mask is the counter-based one of rng.ts with stream
// dropoutStream(step, micro, 1000 + 4·layer + module index) and the flat index into x (N, in).
import { ShapeError } from '../errors.ts';
import type { GPT2Config } from '../model/config.ts';
import { loraSpecs, loraTargets, type LoraConfig, type LoraTarget } from '../model/lora.ts';
import { paramSpecs } from '../model/params.ts';
import { cloneParams, refOptimize, type RefForwardOptions, type RefParams } from './gpt2.ts';
import { refMatmul } from './matmul.ts';
import {
  attentionBackward,
  attentionForward,
  crossEntropyBackward,
  crossEntropyForward,
  dropoutBackward,
  dropoutForward,
  encoderBackward,
  encoderForward,
  geluBackward,
  geluForward,
  layernormBackward,
  layernormForward,
  linearBackward,
  type DropoutSpec,
} from './ops.ts';
import { DROPOUT_SITE, dropoutStream } from '../random.ts';

type F64 = Float64Array;

/** The site of the LoRA input dropout of block `layer`, module `m` (0 c_attn, 1 attn.c_proj, 2 c_fc, 3 mlp.c_proj). */
export const LORA_SITE = (layer: number, m: number): number => 1000 + 4 * layer + m;

/** LoRA weights: the settings and A, B by engine name ('h.0.attn.c_attn.lora_A.weight'). */
export interface RefLora {
  config: LoraConfig;
  params: RefParams;
}

function scaling(c: LoraConfig): number {
  return c.rslora ? c.alpha / Math.sqrt(c.r) : c.alpha / c.r;
}

function get(params: RefParams, name: string): F64 {
  const t = params.get(name);
  if (!t) throw new ShapeError(`Missing parameter ${name}.`);
  return t;
}

function checkAll(config: GPT2Config, base: RefParams, lora: RefLora): void {
  for (const s of [...paramSpecs(config), ...loraSpecs(config, lora.config)]) {
    const t = (s.name.includes('.lora_') ? lora.params : base).get(s.name);
    if (!t) throw new ShapeError(`Missing parameter ${s.name} (${s.shape.join('×')}).`);
    if (t.length !== s.numel) throw new ShapeError(`Parameter ${s.name} has ${t.length} elements; it needs ${s.shape.join('×')} = ${s.numel}.`);
  }
}

function add(a: F64, b: F64): F64 {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] + b[i];
  return out;
}

function scaled(a: F64, s: number): F64 {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] * s;
  return out;
}

const maybeDrop = (x: F64, d: DropoutSpec | undefined): F64 => (d ? dropoutForward(x, d.p, d.seed, d.stream) : x);
const maybeDropBack = (dx: F64, d: DropoutSpec | undefined): F64 => (d ? dropoutBackward(dx, d.p, d.seed, d.stream) : dx);

interface LinCache {
  x: F64; // (N, in)
  /** LoRA: the dropped input and u = xd·Aᵀ (N, r) */
  xd?: F64;
  u?: F64;
  drop?: DropoutSpec;
}

interface BlockCache {
  xIn: F64;
  ln1: { out: F64; mean: F64; rstd: F64 };
  qkv: F64;
  att: F64;
  xMid: F64;
  ln2: { out: F64; mean: F64; rstd: F64 };
  fc: F64;
  lin: Record<'attn.c_attn' | 'attn.c_proj' | 'mlp.c_fc' | 'mlp.c_proj', LinCache>;
  drop: { attn?: DropoutSpec; attnResid?: DropoutSpec; mlpResid?: DropoutSpec };
}

export interface RefLoraCache {
  B: number;
  T: number;
  tokens: Int32Array;
  targets: Int32Array;
  embd?: DropoutSpec;
  blocks: BlockCache[];
  xFinal: F64;
  lnf: { out: F64; mean: F64; rstd: F64 };
  probs: F64;
}

export interface RefLoraForwardResult {
  logits: F64; // (B, T, V)
  loss: number;
  cache: RefLoraCache;
}

/**
 * Forward of the LoRA-wrapped model on (B, T) tokens with targets. With opts.dropout, the
 * config's dropout rates and the LoRA dropout apply (training mode).
 */
export function refLoraForward(
  config: GPT2Config, base: RefParams, lora: RefLora, tokens: Int32Array, targets: Int32Array, B: number, T: number, opts: RefForwardOptions = {},
): RefLoraForwardResult {
  checkAll(config, base, lora);
  const C = config.nEmbd, V = config.vocabSize, NH = config.nHead, I = config.nInner, L = config.nLayer;
  const N = B * T;
  if (tokens.length !== N || targets.length !== N) throw new ShapeError(`tokens and targets need B·T = ${N} ids each.`);
  const on = opts.dropout === true;
  const seed = opts.seed ?? 0, step = opts.step ?? 0, micro = opts.micro ?? 0;
  const spec = (p: number, site: number): DropoutSpec | undefined => (on && p > 0 ? { p, seed, stream: dropoutStream(step, micro, site) } : undefined);
  const s = scaling(lora.config);
  const byName = new Map<string, LoraTarget>(loraTargets(config, lora.config).map((t) => [t.name, t]));

  const lin = (name: string, x: F64, IC: number, OC: number, cache: Partial<BlockCache['lin']>, key: keyof BlockCache['lin']): F64 => {
    let y = refMatmul({ M: N, N: OC, K: IC, a: x, b: get(base, `${name}.weight`), bias: get(base, `${name}.bias`) });
    const t = byName.get(name);
    const c: LinCache = { x };
    if (t) {
      const r = lora.config.r;
      c.drop = spec(lora.config.dropout, LORA_SITE(t.layer, t.moduleIndex));
      c.xd = maybeDrop(x, c.drop);
      c.u = refMatmul({ M: N, N: r, K: IC, a: c.xd, b: get(lora.params, t.a), transB: true });
      y = add(y, scaled(refMatmul({ M: N, N: OC, K: r, a: c.u, b: get(lora.params, t.b), transB: true }), s));
    }
    cache[key] = c;
    return y;
  };

  const embd = spec(config.embdPdrop, DROPOUT_SITE.embedding);
  let x = maybeDrop(encoderForward(get(base, 'wte.weight'), get(base, 'wpe.weight'), tokens, B, T, C), embd);
  const blocks: BlockCache[] = [];
  for (let l = 0; l < L; l++) {
    const pre = `h.${l}.`;
    const p = (n: string) => get(base, pre + n);
    const drop = {
      attn: spec(config.attnPdrop, DROPOUT_SITE.attnProbs(l)),
      attnResid: spec(config.residPdrop, DROPOUT_SITE.attnResid(l)),
      mlpResid: spec(config.residPdrop, DROPOUT_SITE.mlpResid(l)),
    };
    const lc: Partial<BlockCache['lin']> = {};
    const xIn = x;
    const ln1 = layernormForward(xIn, p('ln_1.weight'), p('ln_1.bias'), N, C, config.layerNormEpsilon);
    const qkv = lin(pre + 'attn.c_attn', ln1.out, C, 3 * C, lc, 'attn.c_attn');
    const { out: attOut, att } = attentionForward(qkv, B, T, C, NH, drop.attn);
    const proj = lin(pre + 'attn.c_proj', attOut, C, C, lc, 'attn.c_proj');
    const xMid = add(xIn, maybeDrop(proj, drop.attnResid));
    const ln2 = layernormForward(xMid, p('ln_2.weight'), p('ln_2.bias'), N, C, config.layerNormEpsilon);
    const fc = lin(pre + 'mlp.c_fc', ln2.out, C, I, lc, 'mlp.c_fc');
    const act = geluForward(fc, config.activation);
    const mlp = lin(pre + 'mlp.c_proj', act, I, C, lc, 'mlp.c_proj');
    x = add(xMid, maybeDrop(mlp, drop.mlpResid));
    blocks.push({ xIn, ln1, qkv, att, xMid, ln2, fc, lin: lc as BlockCache['lin'], drop });
  }
  const lnf = layernormForward(x, get(base, 'ln_f.weight'), get(base, 'ln_f.bias'), N, C, config.layerNormEpsilon);
  const logits = refMatmul({ M: N, N: V, K: C, a: lnf.out, b: get(base, 'wte.weight'), transB: true });
  const ce = crossEntropyForward(logits, targets, N, V);
  const loss = ce.losses.reduce((a, b) => a + b, 0) / N;
  return { logits, loss, cache: { B, T, tokens, targets, embd, blocks, xFinal: x, lnf, probs: ce.probs } };
}

/**
 * Gradients of the forward's loss (scaled by lossScale per position; default 1/(B·T)) with
 * respect to every base parameter (`base`) and every A and B (`lora`).
 */
export function refLoraBackward(
  config: GPT2Config, base: RefParams, lora: RefLora, cache: RefLoraCache, opts: { lossScale?: number } = {},
): { base: RefParams; lora: RefParams } {
  const { B, T } = cache;
  const C = config.nEmbd, V = config.vocabSize, NH = config.nHead, I = config.nInner, L = config.nLayer, P = config.nPositions;
  const N = B * T;
  const s = scaling(lora.config);
  const r = lora.config.r;
  const byName = new Map<string, LoraTarget>(loraTargets(config, lora.config).map((t) => [t.name, t]));
  const gb: RefParams = new Map();
  const gl: RefParams = new Map();

  const linBack = (name: string, dy: F64, c: LinCache, IC: number, OC: number): F64 => {
    const base_ = linearBackward(dy, c.x, get(base, `${name}.weight`), N, IC, OC);
    gb.set(`${name}.weight`, base_.dw);
    gb.set(`${name}.bias`, base_.db);
    const t = byName.get(name);
    if (!t) return base_.dx;
    const A = get(lora.params, t.a);
    const Bm = get(lora.params, t.b);
    gl.set(t.b, scaled(refMatmul({ M: OC, N: r, K: N, a: dy, b: c.u!, transA: true }), s));
    const g = scaled(refMatmul({ M: N, N: r, K: OC, a: dy, b: Bm }), s);
    gl.set(t.a, refMatmul({ M: r, N: IC, K: N, a: g, b: c.xd!, transA: true }));
    return add(base_.dx, maybeDropBack(refMatmul({ M: N, N: IC, K: r, a: g, b: A }), c.drop));
  };

  const dlogits = crossEntropyBackward(cache.probs, cache.targets, N, V, opts.lossScale ?? 1 / N);
  const wte = get(base, 'wte.weight');
  const dlnf = refMatmul({ M: N, N: C, K: V, a: dlogits, b: wte });
  const dwteHead = refMatmul({ M: V, N: C, K: N, a: dlogits, b: cache.lnf.out, transA: true });
  const lnfB = layernormBackward(dlnf, cache.xFinal, get(base, 'ln_f.weight'), cache.lnf.mean, cache.lnf.rstd, N, C);
  gb.set('ln_f.weight', lnfB.dw);
  gb.set('ln_f.bias', lnfB.db);
  let dx = lnfB.dx;
  for (let l = L - 1; l >= 0; l--) {
    const pre = `h.${l}.`;
    const p = (n: string) => get(base, pre + n);
    const c = cache.blocks[l];
    const dmlp = maybeDropBack(dx, c.drop.mlpResid);
    const dact = linBack(pre + 'mlp.c_proj', dmlp, c.lin['mlp.c_proj'], I, C);
    const dfc = geluBackward(c.fc, dact, config.activation);
    const dln2 = linBack(pre + 'mlp.c_fc', dfc, c.lin['mlp.c_fc'], C, I);
    const ln2 = layernormBackward(dln2, c.xMid, p('ln_2.weight'), c.ln2.mean, c.ln2.rstd, N, C);
    const dxMid = add(dx, ln2.dx);
    const dproj = maybeDropBack(dxMid, c.drop.attnResid);
    const datt = linBack(pre + 'attn.c_proj', dproj, c.lin['attn.c_proj'], C, C);
    const dqkv = attentionBackward(datt, c.qkv, c.att, B, T, C, NH, c.drop.attn);
    const dln1 = linBack(pre + 'attn.c_attn', dqkv, c.lin['attn.c_attn'], C, 3 * C);
    const ln1 = layernormBackward(dln1, c.xIn, p('ln_1.weight'), c.ln1.mean, c.ln1.rstd, N, C);
    dx = add(dxMid, ln1.dx);
    gb.set(pre + 'ln_1.weight', ln1.dw);
    gb.set(pre + 'ln_1.bias', ln1.db);
    gb.set(pre + 'ln_2.weight', ln2.dw);
    gb.set(pre + 'ln_2.bias', ln2.db);
  }
  const enc = encoderBackward(maybeDropBack(dx, cache.embd), cache.tokens, B, T, C, V, P);
  gb.set('wte.weight', add(enc.dwte, dwteHead));
  gb.set('wpe.weight', enc.dwpe);
  return {
    base: new Map(paramSpecs(config).map((sp) => [sp.name, gb.get(sp.name)!])),
    lora: new Map(loraSpecs(config, lora.config).map((sp) => [sp.name, gl.get(sp.name)!])),
  };
}

/** Base weights with every LoRA update merged: W + s·(B·A)ᵀ on each target; the others are copies. */
export function refMergeLora(config: GPT2Config, base: RefParams, lora: RefLora): RefParams {
  const out = cloneParams(base);
  const s = scaling(lora.config);
  for (const t of loraTargets(config, lora.config)) {
    // (B·A)ᵀ = Aᵀ·Bᵀ: (in, r)·(r, out)
    const delta = refMatmul({ M: t.in, N: t.out, K: lora.config.r, a: get(lora.params, t.a), b: get(lora.params, t.b), transA: true, transB: true });
    const w = out.get(`${t.name}.weight`)!;
    for (let i = 0; i < w.length; i++) w[i] += s * delta[i];
  }
  return out;
}

export interface RefLoraTrainOptions {
  config: GPT2Config;
  base: RefParams;
  /** initial LoRA factors; not modified */
  lora: RefLora;
  tokens: ArrayLike<number>;
  B: number;
  T: number;
  steps: number;
  gradAccum?: number;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** decoupled weight decay; A and B are 2-D, so both decay */
  weightDecay: number;
  maxGradNorm: number;
  /** depth groups whose LoRA factors are frozen at a 0-based step; default none */
  frozen?: (step: number) => Set<number>;
  schedule?: (step: number) => number;
  groupLrMultiplier?: (group: number) => number;
  dropout?: boolean;
  seed?: number;
}

export interface RefLoraTrainResult {
  log: Array<{ loss: number; gradNorm: number; lr: number }>;
  /** A and B after the steps */
  lora: RefParams;
  /** step-0 gradients of the trainable LoRA factors (before clipping) */
  firstGrads: RefParams;
}

/** Steps of the training semantics (docs/ARCHITECTURE.md) in float64 with only the LoRA factors training. */
export function refLoraTrain(o: RefLoraTrainOptions): RefLoraTrainResult {
  const { config, B, T } = o;
  const lora: RefLora = { config: o.lora.config, params: cloneParams(o.lora.params) };
  const frozenAt = (s: number): Set<number> => (o.frozen ? o.frozen(s) : new Set<number>());
  const { log, firstGrads } = refOptimize(o, loraSpecs(config, o.lora.config), lora.params, frozenAt, (inputs, targets, step, micro, lossScale) => {
    const f = refLoraForward(config, o.base, lora, inputs, targets, B, T, { seed: o.seed, step, micro, dropout: o.dropout });
    return { loss: f.loss, grads: refLoraBackward(config, o.base, lora, f.cache, { lossScale }).lora };
  });
  return { log, lora: lora.params, firstGrads };
}
