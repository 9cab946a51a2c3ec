// Float64 reference of GPT2LMHeadModel training: forward with cache, backward to every
// parameter, and a loop of optimizer steps with the training semantics of docs/ARCHITECTURE.md
// (sequential windows, mean loss over all targets of a step incl. accumulation, global-norm
// clipping, torch AdamW with decay on ≥2-D tensors only, frozen depth groups, per-group lr).
// A test oracle only; the engine never calls it.
//
// Model (HF modeling_gpt2.py, pre-LayerNorm):
//   x = drop_embd(wte[tokens] + wpe[pos])
//   per block: x = x + drop_resid(c_proj(attn(ln_1(x))));  x = x + drop_resid(mlp_c_proj(gelu(c_fc(ln_2(x)))))
//   logits = ln_f(x) · wteᵀ   (tied LM head)
// Dropout masks come from the counter-based RNG in rng.ts, with the streams of dropoutStream().
import { NonFiniteLossError, ShapeError } from '../errors.ts';
import type { GPT2Config } from '../model/config.ts';
import { paramSpecs, type HostParams, type ParamSpec } from '../model/params.ts';
import { windowCount } from '../windows.ts';
import { refMatmul } from './matmul.ts';
import {
  adamwStep, attentionBackward, attentionForward, clipCoefficient, crossEntropyBackward,
  crossEntropyForward, dropoutBackward, dropoutForward, encoderBackward, encoderForward,
  geluBackward, geluForward, globalNorm, layernormBackward, layernormForward, linearBackward,
  type DropoutSpec,
} from './ops.ts';
import { DROPOUT_SITE, dropoutStream } from '../random.ts';

type F64 = Float64Array;

/** Parameters keyed by HF name without the `transformer.` prefix (see params.ts). */
export type RefParams = Map<string, F64>;

export function toF64Params(p: HostParams): RefParams {
  return new Map([...p].map(([k, v]) => [k, Float64Array.from(v)]));
}

export function toF32Params(p: RefParams): HostParams {
  return new Map([...p].map(([k, v]) => [k, Float32Array.from(v)]));
}

export function cloneParams(p: RefParams): RefParams {
  return new Map([...p].map(([k, v]) => [k, Float64Array.from(v)]));
}

function checkParams(config: GPT2Config, params: RefParams): void {
  for (const s of paramSpecs(config)) {
    const t = params.get(s.name);
    if (!t) throw new ShapeError(`Missing parameter ${s.name} (${s.shape.join('×')}); pass every tensor of the model.`);
    if (t.length !== s.numel) throw new ShapeError(`Parameter ${s.name} has ${t.length} elements; the config needs ${s.shape.join('×')} = ${s.numel}.`);
  }
}

function get(params: RefParams, name: string): F64 {
  const t = params.get(name);
  if (!t) throw new ShapeError(`Missing parameter ${name}.`);
  return t;
}

export interface RefForwardOptions {
  /** run seed of the dropout RNG (default 0) */
  seed?: number;
  /** 0-based optimizer step, part of the dropout stream id (default 0) */
  step?: number;
  /** gradient-accumulation micro-batch, part of the dropout stream id (default 0) */
  micro?: number;
  /** apply the config's dropout rates (training mode); default false (eval: no dropout) */
  dropout?: boolean;
}

interface LNCache { out: F64; mean: F64; rstd: F64 }

interface BlockCache {
  xIn: F64; //      (N, C) residual stream entering the block
  ln1: LNCache; //  (N, C)
  qkv: F64; //      (N, 3C)
  att: F64; //      (B, NH, T, T) probabilities before dropout
  attOut: F64; //   (N, C) heads concatenated, input of attn.c_proj
  xMid: F64; //     (N, C) residual stream after the attention half
  ln2: LNCache; //  (N, C)
  fc: F64; //       (N, I) c_fc output, GELU input
  act: F64; //      (N, I) GELU output, input of mlp.c_proj
}

/** What refBackward needs from the forward pass. */
export interface RefCache {
  B: number;
  T: number;
  tokens: Int32Array; //  (B·T)
  targets: Int32Array | null; // (B·T)
  /** dropout sites of this pass; undefined where dropout is off */
  drop: { embd?: DropoutSpec; attn: Array<DropoutSpec | undefined>; attnResid: Array<DropoutSpec | undefined>; mlpResid: Array<DropoutSpec | undefined> };
  blocks: BlockCache[];
  xFinal: F64; //  (N, C) input of ln_f
  lnf: LNCache; // (N, C)
  probs: F64 | null; // (N, V) softmax of the logits, when targets were given
}

export interface RefForwardResult {
  logits: F64; //  (B, T, V)
  /** mean cross-entropy over the B·T targets, or null without targets */
  loss: number | null;
  /** per-position losses (B·T), or null without targets */
  losses: F64 | null;
  cache: RefCache;
}

function dropSpec(p: number, on: boolean, seed: number, step: number, micro: number, site: number): DropoutSpec | undefined {
  if (!on || p === 0) return undefined;
  return { p, seed, stream: dropoutStream(step, micro, site) };
}

function maybeDrop(x: F64, d: DropoutSpec | undefined): F64 {
  return d ? dropoutForward(x, d.p, d.seed, d.stream) : x;
}

function maybeDropBack(dx: F64, d: DropoutSpec | undefined): F64 {
  return d ? dropoutBackward(dx, d.p, d.seed, d.stream) : dx;
}

function add(a: F64, b: F64): F64 {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] + b[i];
  return out;
}

/** Forward pass of GPT2LMHeadModel on (B, T) tokens; with targets, also the mean loss. */
export function refForward(
  config: GPT2Config, params: RefParams, tokens: Int32Array, targets: Int32Array | null,
  B: number, T: number, opts: RefForwardOptions = {},
): RefForwardResult {
  checkParams(config, params);
  const C = config.nEmbd, V = config.vocabSize, NH = config.nHead, I = config.nInner, L = config.nLayer;
  const N = B * T;
  if (tokens.length !== N) throw new ShapeError(`tokens has ${tokens.length} ids, expected B·T = ${N}.`);
  if (targets && targets.length !== N) throw new ShapeError(`targets has ${targets.length} ids, expected B·T = ${N}.`);
  const eps = config.layerNormEpsilon;
  const on = opts.dropout === true;
  const seed = opts.seed ?? 0, step = opts.step ?? 0, micro = opts.micro ?? 0;
  const drop: RefCache['drop'] = {
    embd: dropSpec(config.embdPdrop, on, seed, step, micro, DROPOUT_SITE.embedding),
    attn: [], attnResid: [], mlpResid: [],
  };

  let x = maybeDrop(encoderForward(get(params, 'wte.weight'), get(params, 'wpe.weight'), tokens, B, T, C), drop.embd);
  const blocks: BlockCache[] = [];
  for (let l = 0; l < L; l++) {
    const p = (n: string) => get(params, `h.${l}.${n}`);
    const dAttn = dropSpec(config.attnPdrop, on, seed, step, micro, DROPOUT_SITE.attnProbs(l));
    const dAttnResid = dropSpec(config.residPdrop, on, seed, step, micro, DROPOUT_SITE.attnResid(l));
    const dMlpResid = dropSpec(config.residPdrop, on, seed, step, micro, DROPOUT_SITE.mlpResid(l));
    drop.attn.push(dAttn);
    drop.attnResid.push(dAttnResid);
    drop.mlpResid.push(dMlpResid);

    const xIn = x;
    const ln1 = layernormForward(xIn, p('ln_1.weight'), p('ln_1.bias'), N, C, eps);
    const qkv = refMatmul({ M: N, N: 3 * C, K: C, a: ln1.out, b: p('attn.c_attn.weight'), bias: p('attn.c_attn.bias') });
    const { out: attOut, att } = attentionForward(qkv, B, T, C, NH, dAttn);
    const proj = refMatmul({ M: N, N: C, K: C, a: attOut, b: p('attn.c_proj.weight'), bias: p('attn.c_proj.bias') });
    const xMid = add(xIn, maybeDrop(proj, dAttnResid));
    const ln2 = layernormForward(xMid, p('ln_2.weight'), p('ln_2.bias'), N, C, eps);
    const fc = refMatmul({ M: N, N: I, K: C, a: ln2.out, b: p('mlp.c_fc.weight'), bias: p('mlp.c_fc.bias') });
    const act = geluForward(fc, config.activation);
    const mlp = refMatmul({ M: N, N: C, K: I, a: act, b: p('mlp.c_proj.weight'), bias: p('mlp.c_proj.bias') });
    x = add(xMid, maybeDrop(mlp, dMlpResid));
    blocks.push({ xIn, ln1, qkv, att, attOut, xMid, ln2, fc, act });
  }
  const lnf = layernormForward(x, get(params, 'ln_f.weight'), get(params, 'ln_f.bias'), N, C, eps);
  // tied head: logits = ln_f(x) · wteᵀ
  const logits = refMatmul({ M: N, N: V, K: C, a: lnf.out, b: get(params, 'wte.weight'), transB: true });

  let loss: number | null = null;
  let losses: F64 | null = null;
  let probs: F64 | null = null;
  if (targets) {
    const ce = crossEntropyForward(logits, targets, N, V);
    losses = ce.losses;
    probs = ce.probs;
    loss = losses.reduce((a, b) => a + b, 0) / N;
  }
  return { logits, loss, losses, cache: { B, T, tokens, targets, drop, blocks, xFinal: x, lnf, probs } };
}

export interface RefBackwardOptions {
  /**
   * d(total loss)/d(per-position loss): 1/(B·T) for the mean over this batch (default);
   * 1/(B·T·M) when M accumulated micro-batches share one mean.
   */
  lossScale?: number;
}

/**
 * Gradients of the loss of a refForward (called with targets) with respect to every parameter,
 * keyed by HF name. wte.weight receives both the embedding and the tied-head contribution.
 */
export function refBackward(config: GPT2Config, params: RefParams, cache: RefCache, opts: RefBackwardOptions = {}): RefParams {
  const { B, T, targets, probs, drop } = cache;
  if (!targets || !probs) throw new ShapeError('refBackward needs a forward pass that was given targets.');
  const C = config.nEmbd, V = config.vocabSize, NH = config.nHead, I = config.nInner, L = config.nLayer, P = config.nPositions;
  const N = B * T;
  const grads: RefParams = new Map();
  const scale = opts.lossScale ?? 1 / N;

  const dlogits = crossEntropyBackward(probs, targets, N, V, scale); // (N, V)
  const wte = get(params, 'wte.weight');
  // logits = lnf · wteᵀ: dlnf = dlogits · wte; dwte(head) = dlogitsᵀ · lnf
  const dlnf = refMatmul({ M: N, N: C, K: V, a: dlogits, b: wte });
  const dwteHead = refMatmul({ M: V, N: C, K: N, a: dlogits, b: cache.lnf.out, transA: true });
  const lnfB = layernormBackward(dlnf, cache.xFinal, get(params, 'ln_f.weight'), cache.lnf.mean, cache.lnf.rstd, N, C);
  grads.set('ln_f.weight', lnfB.dw);
  grads.set('ln_f.bias', lnfB.db);
  let dx = lnfB.dx; // (N, C) gradient of the residual stream

  for (let l = L - 1; l >= 0; l--) {
    const pre = `h.${l}.`;
    const p = (n: string) => get(params, pre + n);
    const c = cache.blocks[l];
    // MLP half: x = xMid + drop(mlp)
    const dmlp = maybeDropBack(dx, drop.mlpResid[l]);
    const mp = linearBackward(dmlp, c.act, p('mlp.c_proj.weight'), N, I, C);
    const dfc = geluBackward(c.fc, mp.dx, config.activation);
    const fc = linearBackward(dfc, c.ln2.out, p('mlp.c_fc.weight'), N, C, I);
    const ln2 = layernormBackward(fc.dx, c.xMid, p('ln_2.weight'), c.ln2.mean, c.ln2.rstd, N, C);
    const dxMid = add(dx, ln2.dx);
    // attention half: xMid = xIn + drop(proj)
    const dproj = maybeDropBack(dxMid, drop.attnResid[l]);
    const ap = linearBackward(dproj, c.attOut, p('attn.c_proj.weight'), N, C, C);
    const dqkv = attentionBackward(ap.dx, c.qkv, c.att, B, T, C, NH, drop.attn[l]);
    const qkv = linearBackward(dqkv, c.ln1.out, p('attn.c_attn.weight'), N, C, 3 * C);
    const ln1 = layernormBackward(qkv.dx, c.xIn, p('ln_1.weight'), c.ln1.mean, c.ln1.rstd, N, C);
    dx = add(dxMid, ln1.dx);

    grads.set(pre + 'ln_1.weight', ln1.dw);
    grads.set(pre + 'ln_1.bias', ln1.db);
    grads.set(pre + 'attn.c_attn.weight', qkv.dw);
    grads.set(pre + 'attn.c_attn.bias', qkv.db);
    grads.set(pre + 'attn.c_proj.weight', ap.dw);
    grads.set(pre + 'attn.c_proj.bias', ap.db);
    grads.set(pre + 'ln_2.weight', ln2.dw);
    grads.set(pre + 'ln_2.bias', ln2.db);
    grads.set(pre + 'mlp.c_fc.weight', fc.dw);
    grads.set(pre + 'mlp.c_fc.bias', fc.db);
    grads.set(pre + 'mlp.c_proj.weight', mp.dw);
    grads.set(pre + 'mlp.c_proj.bias', mp.db);
  }
  const enc = encoderBackward(maybeDropBack(dx, drop.embd), cache.tokens, B, T, C, V, P);
  grads.set('wte.weight', add(enc.dwte, dwteHead));
  grads.set('wpe.weight', enc.dwpe);
  // the fixed order of paramSpecs, so iteration order is the same everywhere
  return new Map(paramSpecs(config).map((s) => [s.name, grads.get(s.name)!]));
}

// ---------------------------------------------------------------------------------------------
// Training loop

export interface RefTrainOptions {
  config: GPT2Config;
  /** initial parameters; not modified */
  params: RefParams;
  /** the token stream; window w is inputs tokens[w·T, w·T+T), targets one position later */
  tokens: ArrayLike<number>;
  /** rows per micro-batch */
  B: number;
  T: number;
  /** optimizer steps */
  steps: number;
  /** micro-batches per optimizer step (default 1) */
  gradAccum?: number;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** decoupled weight decay, applied to tensors with two or more dimensions only */
  weightDecay: number;
  /** clip_grad_norm_ max norm; 0 turns clipping off */
  maxGradNorm: number;
  /** depth groups frozen at a 0-based step (embeddings 0, block i at i+1, ln_f at L+1); default none */
  frozen?: Set<number> | ((step: number) => Set<number>);
  /** lr multiplier at a 0-based step (a schedule); default 1 */
  schedule?: (step: number) => number;
  /** lr multiplier of a depth group (discriminative rates); default 1 */
  groupLrMultiplier?: (group: number) => number;
  /** apply the config's dropout rates (default false) */
  dropout?: boolean;
  seed?: number;
}

export interface RefStepLog {
  /** mean loss over all B·T·gradAccum targets of the step */
  loss: number;
  /** global norm of the trainable gradients before clipping */
  gradNorm: number;
  /** base learning rate of the step (schedule applied, before group multipliers) */
  lr: number;
}

export interface RefTrainResult {
  log: RefStepLog[];
  params: RefParams;
}

interface AdamState { m: F64; v: F64; step: number }

/** Inputs and targets (B·T each) of the micro-batch whose first row is the `row`-th row read since the start. */
export function sequentialBatch(tokens: ArrayLike<number>, B: number, T: number, row: number): { inputs: Int32Array; targets: Int32Array } {
  const W = windowCount(tokens.length, T);
  if (W < 1) throw new ShapeError(`The token stream has ${tokens.length} ids: too short for one window of T+1 = ${T + 1}; use a longer corpus or a smaller T.`);
  const inputs = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    const w = (row + b) % W;
    for (let t = 0; t < T; t++) {
      inputs[b * T + t] = tokens[w * T + t];
      targets[b * T + t] = tokens[w * T + t + 1];
    }
  }
  return { inputs, targets };
}

/** The optimizer-side options shared by every float64 training loop. */
export interface RefOptimizeOptions {
  tokens: ArrayLike<number>;
  B: number;
  T: number;
  steps: number;
  gradAccum?: number;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  maxGradNorm: number;
  schedule?: (step: number) => number;
  groupLrMultiplier?: (group: number) => number;
}

/**
 * The training semantics (docs/ARCHITECTURE.md) in float64 over any set of tensors: sequential windows, the mean
 * loss over every target of the step (micro-batches accumulated), clip_grad_norm_ over the
 * trainable gradients, torch.optim.AdamW with a per-tensor step count and fresh state on a
 * tensor's first update. `microStep` returns one micro-batch's mean loss and gradients scaled by
 * `lossScale`; `params` is updated in place. Returns the log and the step-0 gradients.
 */
export function refOptimize(
  o: RefOptimizeOptions,
  specs: readonly ParamSpec[],
  params: RefParams,
  frozenAt: (step: number) => Set<number>,
  microStep: (inputs: Int32Array, targets: Int32Array, step: number, micro: number, lossScale: number) => { loss: number; grads: RefParams },
): { log: RefStepLog[]; firstGrads: RefParams } {
  const { B, T } = o;
  const M = o.gradAccum ?? 1;
  if (!(Number.isInteger(M) && M >= 1 && M <= 64)) throw new ShapeError(`gradAccum must be an integer in 1 … 64, got ${M}.`);
  const state = new Map<string, AdamState>();
  const log: RefStepLog[] = [];
  let firstGrads: RefParams = new Map();
  for (let s = 0; s < o.steps; s++) {
    const frozen = frozenAt(s);
    const trainable = specs.filter((p) => !frozen.has(p.group));
    const acc = new Map<string, F64>(trainable.map((p) => [p.name, new Float64Array(p.numel)]));
    let loss = 0;
    for (let m = 0; m < M; m++) {
      const { inputs, targets } = sequentialBatch(o.tokens, B, T, (s * M + m) * B);
      const r = microStep(inputs, targets, s, m, 1 / (B * T * M));
      loss += r.loss / M;
      for (const [name, a] of acc) {
        const gi = r.grads.get(name)!;
        for (let i = 0; i < a.length; i++) a[i] += gi[i];
      }
    }
    if (s === 0) firstGrads = cloneParams(acc);
    const gradNorm = globalNorm([...acc.values()]);
    if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
      throw new NonFiniteLossError(`Step ${s}: loss ${loss}, gradient norm ${gradNorm}. Lower the learning rate or check the data.`);
    }
    const clip = clipCoefficient(gradNorm, o.maxGradNorm);
    const lr = o.lr * (o.schedule ? o.schedule(s) : 1);
    for (const p of trainable) {
      const g = acc.get(p.name)!;
      // torch multiplies every gradient by the clamped coefficient, 1 included
      if (o.maxGradNorm !== 0) for (let i = 0; i < g.length; i++) g[i] *= clip;
      let st = state.get(p.name);
      if (!st) {
        // first update of this parameter: fresh state, as torch creates it lazily
        st = { m: new Float64Array(p.numel), v: new Float64Array(p.numel), step: 0 };
        state.set(p.name, st);
      }
      st.step++;
      adamwStep(params.get(p.name)!, g, st.m, st.v, {
        lr: lr * (o.groupLrMultiplier ? o.groupLrMultiplier(p.group) : 1),
        beta1: o.beta1, beta2: o.beta2, eps: o.eps,
        weightDecay: p.decay ? o.weightDecay : 0,
        step: st.step,
      });
    }
    log.push({ loss, gradNorm, lr });
  }
  return { log, firstGrads };
}

/** Runs `steps` optimizer steps of the training semantics (docs/ARCHITECTURE.md) in float64. */
export function refTrain(o: RefTrainOptions): RefTrainResult {
  const { config, B, T } = o;
  checkParams(config, o.params);
  const params = cloneParams(o.params);
  const frozenAt = (s: number): Set<number> => (typeof o.frozen === 'function' ? o.frozen(s) : o.frozen ?? new Set());
  const { log } = refOptimize(o, paramSpecs(config), params, frozenAt, (inputs, targets, step, micro, lossScale) => {
    const f = refForward(config, params, inputs, targets, B, T, { seed: o.seed, step, micro, dropout: o.dropout });
    return { loss: f.loss!, grads: refBackward(config, params, f.cache, { lossScale }) };
  });
  return { log, params };
}
