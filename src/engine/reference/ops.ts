// Float64 forward and backward of every operation in GPT-2 training: embedding, LayerNorm,
// linear (Conv1D) backward, causal multi-head attention, GELU (tanh and erf forms), dropout,
// softmax cross-entropy, AdamW and gradient clipping. A test oracle only; the engine never
// calls it. Arrays are row-major Float64Array with the shapes noted on each signature; token
// ids and targets are Int32Array. Semantics follow Hugging Face GPT2LMHeadModel and torch
// (see docs/ARCHITECTURE.md, GPT-2 semantics); the backward formulas are the ones llm.c's train_gpt2.c uses.
import { ShapeError } from '../errors.ts';
import { refMatmul } from './matmul.ts';
import { dropoutKeep } from '../random.ts';

type F64 = Float64Array;

/** A dropout site: drop probability, run seed and the site's stream id (see rng.ts). */
export interface DropoutSpec {
  p: number;
  seed: number;
  stream: number;
}

function checkLen(what: string, a: ArrayLike<number>, n: number): void {
  if (a.length !== n) throw new ShapeError(`${what} has ${a.length} elements, expected ${n}; check the sizes passed with it.`);
}

function checkToken(id: number, V: number, where: string): void {
  if (!Number.isInteger(id) || id < 0 || id >= V) throw new ShapeError(`${where}: token id ${id} is outside the vocabulary [0, ${V}).`);
}

// ---------------------------------------------------------------------------------------------
// Embedding: out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:]

export function encoderForward(wte: F64 /*(V,C)*/, wpe: F64 /*(P,C)*/, tokens: Int32Array /*(B*T)*/, B: number, T: number, C: number): F64 /*(B,T,C)*/ {
  const V = wte.length / C;
  const P = wpe.length / C;
  if (T > P) throw new ShapeError(`Sequence length T=${T} exceeds the ${P} positions of wpe; use T ≤ ${P}.`);
  checkLen('tokens', tokens, B * T);
  const out = new Float64Array(B * T * C);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const id = tokens[b * T + t];
      checkToken(id, V, 'encoderForward');
      const o = (b * T + t) * C;
      for (let c = 0; c < C; c++) out[o + c] = wte[id * C + c] + wpe[t * C + c];
    }
  }
  return out;
}

export function encoderBackward(dout: F64 /*(B,T,C)*/, tokens: Int32Array, B: number, T: number, C: number, V: number,
  P: number): { dwte: F64 /*(V,C)*/; dwpe: F64 /*(P,C)*/ } {
  checkLen('dout', dout, B * T * C);
  const dwte = new Float64Array(V * C);
  const dwpe = new Float64Array(P * C);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const id = tokens[b * T + t];
      checkToken(id, V, 'encoderBackward');
      const o = (b * T + t) * C;
      for (let c = 0; c < C; c++) {
        dwte[id * C + c] += dout[o + c];
        dwpe[t * C + c] += dout[o + c];
      }
    }
  }
  return { dwte, dwpe };
}

// ---------------------------------------------------------------------------------------------
// LayerNorm over the last dimension, biased variance (torch.nn.LayerNorm).

export function layernormForward(x: F64 /*(N,C)*/, w: F64 /*(C)*/, b: F64 /*(C)*/, N: number, C: number,
  eps: number): { out: F64 /*(N,C)*/; mean: F64 /*(N)*/; rstd: F64 /*(N)*/ } {
  checkLen('layernorm x', x, N * C);
  const out = new Float64Array(N * C);
  const mean = new Float64Array(N);
  const rstd = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    const o = n * C;
    let m = 0;
    for (let c = 0; c < C; c++) m += x[o + c];
    m /= C;
    let v = 0;
    for (let c = 0; c < C; c++) v += (x[o + c] - m) ** 2;
    v /= C;
    const s = 1 / Math.sqrt(v + eps);
    for (let c = 0; c < C; c++) out[o + c] = (x[o + c] - m) * s * w[c] + b[c];
    mean[n] = m;
    rstd[n] = s;
  }
  return { out, mean, rstd };
}

export function layernormBackward(dout: F64 /*(N,C)*/, x: F64 /*(N,C)*/, w: F64 /*(C)*/, mean: F64 /*(N)*/, rstd: F64 /*(N)*/, N: number,
  C: number): { dx: F64; dw: F64; db: F64 } {
  const dx = new Float64Array(N * C);
  const dw = new Float64Array(C);
  const db = new Float64Array(C);
  for (let n = 0; n < N; n++) {
    const o = n * C;
    // With xhat = (x − mean)·rstd and g = dout·w:
    // dx = rstd · (g − mean(g) − xhat · mean(g · xhat))
    let gMean = 0;
    let gxMean = 0;
    for (let c = 0; c < C; c++) {
      const xhat = (x[o + c] - mean[n]) * rstd[n];
      const g = dout[o + c] * w[c];
      gMean += g;
      gxMean += g * xhat;
      dw[c] += dout[o + c] * xhat;
      db[c] += dout[o + c];
    }
    gMean /= C;
    gxMean /= C;
    for (let c = 0; c < C; c++) {
      const xhat = (x[o + c] - mean[n]) * rstd[n];
      dx[o + c] = rstd[n] * (dout[o + c] * w[c] - gMean - xhat * gxMean);
    }
  }
  return { dx, dw, db };
}

// ---------------------------------------------------------------------------------------------
// Linear (HF Conv1D, weight stored (in, out)): forward is refMatmul(x, w) + bias.

export function linearBackward(dout: F64 /*(N,OC)*/, x: F64 /*(N,IC)*/, w: F64 /*(IC,OC)*/, N: number, IC: number,
  OC: number): { dx: F64 /*(N,IC)*/; dw: F64 /*(IC,OC)*/; db: F64 /*(OC)*/ } {
  checkLen('linear dout', dout, N * OC);
  checkLen('linear x', x, N * IC);
  checkLen('linear w', w, IC * OC);
  const dx = refMatmul({ M: N, N: IC, K: OC, a: dout, b: w, transB: true }); // dout · Wᵀ
  const dw = refMatmul({ M: IC, N: OC, K: N, a: x, b: dout, transA: true }); // xᵀ · dout
  const db = new Float64Array(OC);
  for (let n = 0; n < N; n++) for (let o = 0; o < OC; o++) db[o] += dout[n * OC + o];
  return { dx, dw, db };
}

// ---------------------------------------------------------------------------------------------
// Causal self-attention on the c_attn output. q, k, v are the three consecutive C-wide blocks
// of each row; head h is the slice [h·hs, (h+1)·hs) of each (HF GPT2Attention._split_heads).
// Probabilities are softmax(q·kᵀ / sqrt(hs)) over keys j ≤ i; attention dropout (HF
// attn_dropout) acts on them after the softmax and before ·V, at index ((b·NH + h)·T + i)·T + j.

function dropScale(d: DropoutSpec | undefined, index: number): number {
  if (!d || d.p === 0) return 1;
  return dropoutKeep(d.seed, d.stream, index, d.p) ? 1 / (1 - d.p) : 0;
}

export function attentionForward(qkv: F64 /*(B,T,3C)*/, B: number, T: number, C: number, NH: number,
  dropout?: DropoutSpec): { out: F64 /*(B,T,C)*/; att: F64 /*(B,NH,T,T) softmax probs before dropout*/ } {
  checkLen('attention qkv', qkv, B * T * 3 * C);
  if (C % NH !== 0) throw new ShapeError(`C=${C} is not divisible by NH=${NH}.`);
  const hs = C / NH;
  const scale = 1 / Math.sqrt(hs);
  const out = new Float64Array(B * T * C);
  const att = new Float64Array(B * NH * T * T);
  const C3 = 3 * C;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      for (let i = 0; i < T; i++) {
        const q = (b * T + i) * C3 + h * hs;
        const row = ((b * NH + h) * T + i) * T;
        let max = -Infinity;
        for (let j = 0; j <= i; j++) {
          const k = (b * T + j) * C3 + C + h * hs;
          let s = 0;
          for (let d = 0; d < hs; d++) s += qkv[q + d] * qkv[k + d];
          s *= scale;
          att[row + j] = s;
          if (s > max) max = s;
        }
        let sum = 0;
        for (let j = 0; j <= i; j++) {
          const e = Math.exp(att[row + j] - max);
          att[row + j] = e;
          sum += e;
        }
        for (let j = 0; j <= i; j++) att[row + j] /= sum;
        // masked keys j > i keep probability 0
        const o = (b * T + i) * C + h * hs;
        for (let j = 0; j <= i; j++) {
          const a = att[row + j] * dropScale(dropout, row + j);
          if (a === 0) continue;
          const v = (b * T + j) * C3 + 2 * C + h * hs;
          for (let d = 0; d < hs; d++) out[o + d] += a * qkv[v + d];
        }
      }
    }
  }
  return { out, att };
}

export function attentionBackward(dout: F64 /*(B,T,C)*/, qkv: F64 /*(B,T,3C)*/, att: F64 /*(B,NH,T,T)*/, B: number, T: number, C: number, NH: number,
  dropout?: DropoutSpec): F64 /* dqkv (B,T,3C) */ {
  checkLen('attention dout', dout, B * T * C);
  checkLen('attention att', att, B * NH * T * T);
  const hs = C / NH;
  const scale = 1 / Math.sqrt(hs);
  const C3 = 3 * C;
  const dqkv = new Float64Array(B * T * C3);
  const datt = new Float64Array(T);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      for (let i = 0; i < T; i++) {
        const row = ((b * NH + h) * T + i) * T;
        const o = (b * T + i) * C + h * hs;
        // out_i = Σ_j a'_ij v_j with a' = att · mask/(1−p): dv_j += a'_ij dout_i, da_ij = mask/(1−p) · dout_i·v_j
        for (let j = 0; j <= i; j++) {
          const v = (b * T + j) * C3 + 2 * C + h * hs;
          const ds = dropScale(dropout, row + j);
          const a = att[row + j] * ds;
          let s = 0;
          for (let d = 0; d < hs; d++) {
            s += dout[o + d] * qkv[v + d];
            dqkv[v + d] += a * dout[o + d];
          }
          datt[j] = s * ds;
        }
        // softmax backward: dpre_ij = a_ij (da_ij − Σ_k a_ik da_ik)
        let dot = 0;
        for (let j = 0; j <= i; j++) dot += att[row + j] * datt[j];
        const q = (b * T + i) * C3 + h * hs;
        for (let j = 0; j <= i; j++) {
          const dpre = att[row + j] * (datt[j] - dot) * scale;
          const k = (b * T + j) * C3 + C + h * hs;
          for (let d = 0; d < hs; d++) {
            dqkv[q + d] += dpre * qkv[k + d];
            dqkv[k + d] += dpre * qkv[q + d];
          }
        }
      }
    }
  }
  return dqkv;
}

// ---------------------------------------------------------------------------------------------
// GELU. gelu_new (HF NewGELUActivation): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
// gelu (torch.nn.functional.gelu, exact): 0.5·x·(1 + erf(x/√2)).

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const GELU_A = 0.044715;

/**
 * erf(x) in float64, to ~1e-15 absolute.
 * Abramowitz & Stegun 7.1.6: erf(x) = (2/√π)·e^(−x²)·Σ_{n≥0} 2ⁿ·x^(2n+1) / (1·3·5···(2n+1)).
 * Every term has the sign of x, so the sum has no cancellation; beyond |x| = 6, 1 − erf(|x|) < 3e-17
 * and the result is ±1 to double precision.
 */
export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const ax = Math.abs(x);
  if (ax >= 6) return x > 0 ? 1 : -1;
  const x2 = ax * ax;
  let term = ax; // n = 0
  let sum = ax;
  for (let n = 1; n < 200; n++) {
    term *= (2 * x2) / (2 * n + 1);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  const r = (2 / Math.sqrt(Math.PI)) * Math.exp(-x2) * sum;
  return x < 0 ? -r : r;
}

export function geluForward(x: F64, kind: 'gelu_new' | 'gelu'): F64 {
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    out[i] = kind === 'gelu_new'
      ? 0.5 * v * (1 + Math.tanh(SQRT_2_OVER_PI * (v + GELU_A * v * v * v)))
      : 0.5 * v * (1 + erf(v / Math.SQRT2));
  }
  return out;
}

export function geluBackward(x: F64, dout: F64, kind: 'gelu_new' | 'gelu'): F64 {
  checkLen('gelu dout', dout, x.length);
  const dx = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    let g: number;
    if (kind === 'gelu_new') {
      const th = Math.tanh(SQRT_2_OVER_PI * (v + GELU_A * v * v * v));
      g = 0.5 * (1 + th) + 0.5 * v * (1 - th * th) * SQRT_2_OVER_PI * (1 + 3 * GELU_A * v * v);
    } else {
      // d/dx: Φ(x) + x·φ(x), φ the standard normal density
      g = 0.5 * (1 + erf(v / Math.SQRT2)) + (v * Math.exp(-0.5 * v * v)) / Math.sqrt(2 * Math.PI);
    }
    dx[i] = g * dout[i];
  }
  return dx;
}

// ---------------------------------------------------------------------------------------------
// Inverted dropout with the counter-based mask of rng.ts; index = flat element index.

export function dropoutForward(x: F64, p: number, seed: number, stream: number): F64 {
  const d = { p, seed, stream };
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] * dropScale(d, i);
  return out;
}

export function dropoutBackward(dout: F64, p: number, seed: number, stream: number): F64 {
  // y = x · s_i with the same s_i, so dx = dout · s_i
  return dropoutForward(dout, p, seed, stream);
}

// ---------------------------------------------------------------------------------------------
// Softmax cross-entropy per row: loss_n = logsumexp(logits_n) − logits_n[target_n].

export function crossEntropyForward(logits: F64 /*(N,V)*/, targets: Int32Array /*(N)*/, N: number, V: number): { losses: F64 /*(N)*/; probs: F64 /*(N,V)*/ } {
  checkLen('logits', logits, N * V);
  checkLen('targets', targets, N);
  const losses = new Float64Array(N);
  const probs = new Float64Array(N * V);
  for (let n = 0; n < N; n++) {
    const o = n * V;
    checkToken(targets[n], V, 'crossEntropyForward target');
    let max = -Infinity;
    for (let v = 0; v < V; v++) if (logits[o + v] > max) max = logits[o + v];
    let sum = 0;
    for (let v = 0; v < V; v++) {
      const e = Math.exp(logits[o + v] - max);
      probs[o + v] = e;
      sum += e;
    }
    for (let v = 0; v < V; v++) probs[o + v] /= sum;
    losses[n] = Math.log(sum) + max - logits[o + targets[n]];
  }
  return { losses, probs };
}

export function crossEntropyBackward(probs: F64 /*(N,V)*/, targets: Int32Array /*(N)*/, N: number, V: number, scale: number): F64 /* dlogits (N,V) */ {
  const d = new Float64Array(N * V);
  for (let n = 0; n < N; n++) {
    const o = n * V;
    for (let v = 0; v < V; v++) d[o + v] = probs[o + v] * scale;
    d[o + targets[n]] -= scale;
  }
  return d;
}

// ---------------------------------------------------------------------------------------------
// AdamW exactly as torch.optim.AdamW (torch 1.13, single-tensor path, amsgrad off):
//   p ← p·(1 − lr·wd); m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²;
//   p ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + eps)

export interface AdamWHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based step count of this parameter */
  step: number;
}

export function adamwStep(p: F64, g: F64, m: F64, v: F64, h: AdamWHyper): void {
  checkLen('adamw grad', g, p.length);
  checkLen('adamw m', m, p.length);
  checkLen('adamw v', v, p.length);
  if (!(h.step >= 1)) throw new ShapeError(`AdamW step count must be ≥ 1 (it is 1-based), got ${h.step}.`);
  const bc1 = 1 - h.beta1 ** h.step;
  const bc2Sqrt = Math.sqrt(1 - h.beta2 ** h.step);
  const stepSize = h.lr / bc1;
  const decay = 1 - h.lr * h.weightDecay;
  for (let i = 0; i < p.length; i++) {
    p[i] *= decay;
    m[i] = m[i] * h.beta1 + (1 - h.beta1) * g[i];
    v[i] = v[i] * h.beta2 + (1 - h.beta2) * g[i] * g[i];
    const denom = Math.sqrt(v[i]) / bc2Sqrt + h.eps;
    p[i] -= stepSize * (m[i] / denom);
  }
}

// ---------------------------------------------------------------------------------------------
// Gradient clipping as torch.nn.utils.clip_grad_norm_ (torch 1.13): the gradients are multiplied
// by min(1, maxNorm / (totalNorm + 1e-6)).

export function clipCoefficient(totalNorm: number, maxNorm: number): number {
  if (maxNorm === 0) return 1; // 0 = clipping off
  return Math.min(1, maxNorm / (totalNorm + 1e-6));
}

/** L2 norm over all elements of all tensors (torch's total_norm with norm_type 2). */
export function globalNorm(grads: F64[]): number {
  let s = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) s += g[i] * g[i];
  return Math.sqrt(s);
}
