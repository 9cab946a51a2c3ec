// Float64 reference ops: known values, and every backward against central finite differences
// of its forward on random inputs at awkward sizes (B=2, T=5, C=12, NH=3, V=17).
import { describe, expect, it } from 'vitest';
import {
  adamwStep, attentionBackward, attentionForward, clipCoefficient, crossEntropyBackward,
  crossEntropyForward, dropoutBackward, dropoutForward, encoderBackward, encoderForward, erf,
  geluBackward, geluForward, globalNorm, layernormBackward, layernormForward, linearBackward,
} from '../../../src/engine/reference/ops.ts';
import { refMatmul } from '../../../src/engine/reference/matmul.ts';
import { dropoutKeep } from '../../../src/engine/random.ts';
import { ShapeError } from '../../../src/engine/errors.ts';
import { randn, relErr } from '../../helpers/numeric.ts';
import { dot, numericGrad } from './fd.ts';

const B = 2, T = 5, C = 12, NH = 3, V = 17, P = 7;
const N = B * T;
const FD_TOL = 1e-6;

function tokens(n: number, vocab: number, seed: number): Int32Array {
  const r = randn(n, seed);
  return Int32Array.from(r, (x) => Math.floor(Math.abs(x * 1000)) % vocab);
}

describe('reference ops: known values', () => {
  it('erf matches Python math.erf to 1e-15', () => {
    const cases: Array<[number, number]> = [
      [0.1, 0.1124629160182849], [0.5, 0.5204998778130465], [1, 0.8427007929497149],
      [2, 0.9953222650189527], [3, 0.9999779095030014], [4.5, 0.9999999998033839],
      [-1.3, -0.9340079449406524], [0, 0], [7, 1],
    ];
    for (const [x, e] of cases) expect(Math.abs(erf(x) - e)).toBeLessThan(1e-15);
  });

  it('gelu_new and gelu at x = 1 and x = −2.5 (values from Python math)', () => {
    const x = Float64Array.of(1, -2.5);
    const n = geluForward(x, 'gelu_new');
    const e = geluForward(x, 'gelu');
    expect(n[0]).toBeCloseTo(0.8411919906082768, 15);
    expect(n[1]).toBeCloseTo(-0.015084266089998577, 15);
    expect(e[0]).toBeCloseTo(0.8413447460685429, 15);
    expect(e[1]).toBeCloseTo(-0.015524163314440398, 15);
  });

  it('encoder adds the token row and the position row', () => {
    const wte = Float64Array.of(1, 2, 10, 20, 100, 200); // (V=3, C=2)
    const wpe = Float64Array.of(0.5, 0.25, 0.125, 0.0625); // (P=2, C=2)
    const out = encoderForward(wte, wpe, Int32Array.of(2, 0), 1, 2, 2);
    expect([...out]).toEqual([100.5, 200.25, 1.125, 2.0625]);
    expect(() => encoderForward(wte, wpe, Int32Array.of(3, 0), 1, 2, 2)).toThrow(ShapeError);
    expect(() => encoderForward(wte, wpe, Int32Array.of(0, 0, 0), 1, 3, 2)).toThrow(/exceeds the 2 positions/);
  });

  it('layernorm output has mean b and standard deviation |w| (up to eps)', () => {
    const x = randn(N * C, 1, 3);
    const w = new Float64Array(C).fill(2);
    const b = new Float64Array(C).fill(0.5);
    const { out, mean } = layernormForward(x, w, b, N, C, 0);
    for (let n = 0; n < N; n++) {
      let m = 0, v = 0;
      for (let c = 0; c < C; c++) m += out[n * C + c] / C;
      for (let c = 0; c < C; c++) v += (out[n * C + c] - m) ** 2 / C;
      expect(m).toBeCloseTo(0.5, 12);
      expect(Math.sqrt(v)).toBeCloseTo(2, 12);
      let xm = 0;
      for (let c = 0; c < C; c++) xm += x[n * C + c] / C;
      expect(mean[n]).toBeCloseTo(xm, 14);
    }
  });

  it('attention: the first query sees only itself (out = v₀), probabilities are causal and sum to 1', () => {
    const qkv = randn(B * T * 3 * C, 2);
    const { out, att } = attentionForward(qkv, B, T, C, NH);
    for (let b = 0; b < B; b++) for (let c = 0; c < C; c++) expect(out[b * T * C + c]).toBeCloseTo(qkv[b * T * 3 * C + 2 * C + c], 14);
    for (let r = 0; r < B * NH * T; r++) {
      const i = r % T;
      let s = 0;
      for (let j = 0; j < T; j++) {
        if (j > i) expect(att[r * T + j]).toBe(0);
        s += att[r * T + j];
      }
      expect(s).toBeCloseTo(1, 14);
    }
  });

  it('attention matches a direct per-head computation (scale 1/√hs, head h = slice h·hs of q, k, v)', () => {
    const qkv = randn(B * T * 3 * C, 3);
    const { out } = attentionForward(qkv, B, T, C, NH);
    const hs = C / NH;
    const b = 1, h = 2, i = 3;
    const q = (t: number, d: number) => qkv[(b * T + t) * 3 * C + h * hs + d];
    const k = (t: number, d: number) => qkv[(b * T + t) * 3 * C + C + h * hs + d];
    const v = (t: number, d: number) => qkv[(b * T + t) * 3 * C + 2 * C + h * hs + d];
    const s = [];
    for (let j = 0; j <= i; j++) {
      let x = 0;
      for (let d = 0; d < hs; d++) x += q(i, d) * k(j, d);
      s.push(Math.exp(x / Math.sqrt(hs)));
    }
    const z = s.reduce((a, c) => a + c, 0);
    for (let d = 0; d < hs; d++) {
      let e = 0;
      for (let j = 0; j <= i; j++) e += (s[j] / z) * v(j, d);
      expect(out[(b * T + i) * C + h * hs + d]).toBeCloseTo(e, 13);
    }
  });

  it('cross-entropy of equal logits is log V; backward is (probs − onehot)·scale', () => {
    const logits = new Float64Array(2 * V).fill(3);
    const targets = Int32Array.of(4, 16);
    const { losses, probs } = crossEntropyForward(logits, targets, 2, V);
    expect(losses[0]).toBeCloseTo(Math.log(V), 14);
    expect(losses[1]).toBeCloseTo(Math.log(V), 14);
    const d = crossEntropyBackward(probs, targets, 2, V, 0.5);
    expect(d[4]).toBeCloseTo((1 / V - 1) * 0.5, 15);
    expect(d[5]).toBeCloseTo(0.5 / V, 15);
    expect(d[V + 16]).toBeCloseTo((1 / V - 1) * 0.5, 15);
    expect(() => crossEntropyForward(logits, Int32Array.of(4, V), 2, V)).toThrow(ShapeError);
  });

  it('dropout zeroes exactly the elements the RNG drops and scales the rest by 1/(1−p)', () => {
    const x = randn(1000, 4);
    const p = 0.3;
    const y = dropoutForward(x, p, 9, 21);
    let dropped = 0;
    for (let i = 0; i < x.length; i++) {
      // Relative to the value: x·(1/0.7) and x/0.7 may differ in the last bit.
      if (dropoutKeep(9, 21, i, p)) expect(Math.abs(y[i] - x[i] / 0.7)).toBeLessThanOrEqual(4e-16 * Math.abs(x[i] / 0.7));
      else { expect(Math.abs(y[i])).toBe(0); dropped++; }
    }
    expect(dropped).toBeGreaterThan(200);
    expect(dropped).toBeLessThan(400);
    expect([...dropoutForward(x, 0, 9, 21)]).toEqual([...x]);
  });
});

describe('reference ops: backward against finite differences', () => {
  it('encoder', () => {
    const wte = randn(V * C, 10);
    const wpe = randn(P * C, 11);
    const tok = tokens(N, V, 12);
    tok[0] = tok[3]; // a repeated token accumulates
    const w = randn(N * C, 13);
    const { dwte, dwpe } = encoderBackward(w, tok, B, T, C, V, P);
    const L = () => dot(w, encoderForward(wte, wpe, tok, B, T, C));
    expect(relErr(dwte, numericGrad(wte, L))).toBeLessThan(FD_TOL);
    expect(relErr(dwpe, numericGrad(wpe, L))).toBeLessThan(FD_TOL);
    // positions ≥ T get no gradient
    for (let i = T * C; i < P * C; i++) expect(dwpe[i]).toBe(0);
  });

  it('layernorm (x, weight, bias)', () => {
    const x = randn(N * C, 20, 2);
    const lw = randn(C, 21);
    const lb = randn(C, 22);
    const w = randn(N * C, 23);
    const eps = 1e-5;
    const f = layernormForward(x, lw, lb, N, C, eps);
    const { dx, dw, db } = layernormBackward(w, x, lw, f.mean, f.rstd, N, C);
    const L = () => dot(w, layernormForward(x, lw, lb, N, C, eps).out);
    expect(relErr(dx, numericGrad(x, L))).toBeLessThan(FD_TOL);
    expect(relErr(dw, numericGrad(lw, L))).toBeLessThan(FD_TOL);
    expect(relErr(db, numericGrad(lb, L))).toBeLessThan(FD_TOL);
  });

  it('linear (x, weight, bias) with forward refMatmul + bias', () => {
    const IC = 12, OC = 19;
    const x = randn(N * IC, 30);
    const wt = randn(IC * OC, 31);
    const bias = randn(OC, 32);
    const w = randn(N * OC, 33);
    const { dx, dw, db } = linearBackward(w, x, wt, N, IC, OC);
    const L = () => dot(w, refMatmul({ M: N, N: OC, K: IC, a: x, b: wt, bias }));
    expect(relErr(dx, numericGrad(x, L))).toBeLessThan(FD_TOL);
    expect(relErr(dw, numericGrad(wt, L))).toBeLessThan(FD_TOL);
    expect(relErr(db, numericGrad(bias, L))).toBeLessThan(FD_TOL);
  });

  it.each([
    ['without dropout', undefined],
    ['with attention dropout p=0.25', { p: 0.25, seed: 5, stream: 77 }],
  ])('attention %s', (_name, drop) => {
    const qkv = randn(B * T * 3 * C, 40);
    const w = randn(B * T * C, 41);
    const f = attentionForward(qkv, B, T, C, NH, drop);
    const dqkv = attentionBackward(w, qkv, f.att, B, T, C, NH, drop);
    const L = () => dot(w, attentionForward(qkv, B, T, C, NH, drop).out);
    expect(relErr(dqkv, numericGrad(qkv, L))).toBeLessThan(FD_TOL);
  });

  it('attention dropout changes the output (the mask is applied) and matches a manual mask', () => {
    const qkv = randn(B * T * 3 * C, 42);
    const drop = { p: 0.5, seed: 3, stream: 8 };
    const plain = attentionForward(qkv, B, T, C, NH);
    const dropped = attentionForward(qkv, B, T, C, NH, drop);
    expect([...dropped.att]).toEqual([...plain.att]); // probabilities are returned before dropout
    expect(relErr(dropped.out, plain.out)).toBeGreaterThan(0.1);
    // query 0 of (b=0, h=0) sees only key 0: out = keep ? v₀/(1−p) : 0
    const keep = dropoutKeep(3, 8, 0, 0.5);
    expect(dropped.out[0]).toBeCloseTo(keep ? qkv[2 * C] * 2 : 0, 14);
  });

  it.each(['gelu_new', 'gelu'] as const)('%s', (kind) => {
    const x = randn(N * C, 50, 2.5);
    const w = randn(N * C, 51);
    const dx = geluBackward(x, w, kind);
    const L = () => dot(w, geluForward(x, kind));
    expect(relErr(dx, numericGrad(x, L))).toBeLessThan(FD_TOL);
  });

  it('dropout', () => {
    const x = randn(N * C, 60);
    const w = randn(N * C, 61);
    const dx = dropoutBackward(w, 0.4, 123, 456);
    const L = () => dot(w, dropoutForward(x, 0.4, 123, 456));
    expect(relErr(dx, numericGrad(x, L))).toBeLessThan(FD_TOL);
  });

  it('cross-entropy (mean over rows, scale 1/N)', () => {
    const logits = randn(N * V, 70, 2);
    const targets = tokens(N, V, 71);
    const { probs } = crossEntropyForward(logits, targets, N, V);
    const d = crossEntropyBackward(probs, targets, N, V, 1 / N);
    const L = () => crossEntropyForward(logits, targets, N, V).losses.reduce((a, b) => a + b, 0) / N;
    expect(relErr(d, numericGrad(logits, L))).toBeLessThan(FD_TOL);
  });
});

describe('reference ops: optimizer', () => {
  it('AdamW reproduces two hand-computed torch.optim.AdamW steps', () => {
    // lr 0.1, betas (0.9, 0.999), eps 1e-8, weight decay 0.01; values computed step by step in
    // Python from the torch 1.13 update: p·(1 − lr·wd), moments, bias corrections with the step.
    const p = Float64Array.of(1, -2);
    const m = new Float64Array(2);
    const v = new Float64Array(2);
    const h = { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 1 };
    adamwStep(p, Float64Array.of(0.5, -0.25), m, v, h);
    expect(p[0]).toBeCloseTo(0.899000002, 15);
    expect(p[1]).toBeCloseTo(-1.8980000039999998, 15);
    expect(m[0]).toBeCloseTo(0.05, 15);
    expect(v[1]).toBeCloseTo(6.25e-5, 17);
    adamwStep(p, Float64Array.of(-0.3, 0.1), m, v, { ...h, step: 2 });
    expect(p[0]).toBeCloseTo(0.8789511989397751, 14);
    expect(p[1]).toBeCloseTo(-1.8615414210202803, 14);
    expect(() => adamwStep(p, Float64Array.of(0, 0), m, v, { ...h, step: 0 })).toThrow(/1-based/);
  });

  it('AdamW without decay and with a zero gradient leaves the parameter unchanged', () => {
    const p = Float64Array.of(3);
    adamwStep(p, Float64Array.of(0), new Float64Array(1), new Float64Array(1), { lr: 1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1 });
    expect(p[0]).toBe(3);
  });

  it('clip coefficient is min(1, max/(norm + 1e-6)); max 0 turns clipping off', () => {
    expect(clipCoefficient(4, 1)).toBeCloseTo(1 / (4 + 1e-6), 16);
    expect(clipCoefficient(0.5, 1)).toBe(1);
    expect(clipCoefficient(1, 1)).toBe(1 / (1 + 1e-6));
    expect(clipCoefficient(1e9, 0)).toBe(1);
  });

  it('global norm is the L2 norm over all tensors', () => {
    expect(globalNorm([Float64Array.of(3), Float64Array.of(0, 4)])).toBe(5);
    expect(globalNorm([])).toBe(0);
  });
});
