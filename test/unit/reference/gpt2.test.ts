// The float64 GPT-2 reference: refBackward against central finite differences of refForward's
// loss for every parameter (with and without dropout), and refTrain's semantics (windows,
// accumulation, clipping, freezing, per-group rates, fresh AdamW state on unfreezing).
import { describe, expect, it } from 'vitest';
import type { GPT2Config } from '../../../src/engine/model/config.ts';
import { paramSpecs } from '../../../src/engine/model/params.ts';
import {
  cloneParams, refBackward, refForward, refTrain, sequentialBatch, toF32Params, toF64Params,
  type RefParams,
} from '../../../src/engine/reference/gpt2.ts';
import { adamwStep, clipCoefficient, crossEntropyForward, globalNorm } from '../../../src/engine/reference/ops.ts';
import { ShapeError } from '../../../src/engine/errors.ts';
import { windowCount } from '../../../src/engine/windows.ts';
import { randn, relErr, rng } from '../../helpers/numeric.ts';
import { numericGrad } from './fd.ts';

// awkward sizes: nothing a power of two, MLP width not 4C
const B = 2, T = 5;
const tiny = (activation: 'gelu_new' | 'gelu', pdrop = 0): GPT2Config => ({
  vocabSize: 17, nPositions: 7, nEmbd: 12, nLayer: 2, nHead: 3, nInner: 20,
  layerNormEpsilon: 1e-5, activation, embdPdrop: pdrop, attnPdrop: pdrop, residPdrop: pdrop,
  bosTokenId: 16, eosTokenId: 16,
});

/** Random parameters large enough that every path (incl. LN and biases) carries gradient. */
function randomParams(c: GPT2Config, seed: number): RefParams {
  const p: RefParams = new Map();
  for (const s of paramSpecs(c)) {
    const isLnWeight = /ln_(1|2|f)\.weight$/.test(s.name);
    const t = randn(s.numel, seed++, s.name.startsWith('w') ? 0.5 : 0.3);
    if (isLnWeight) for (let i = 0; i < t.length; i++) t[i] += 1;
    p.set(s.name, t);
  }
  return p;
}

function randomTokens(n: number, V: number, seed: number): Int32Array {
  const r = rng(seed);
  return Int32Array.from({ length: n }, () => Math.floor(r() * V));
}

describe('refForward', () => {
  const c = tiny('gelu_new');
  const params = randomParams(c, 1);
  const tokens = randomTokens(B * T, c.vocabSize, 2);
  const targets = randomTokens(B * T, c.vocabSize, 3);

  it('loss is the mean cross-entropy of the logits; no targets gives no loss', () => {
    const f = refForward(c, params, tokens, targets, B, T);
    const ce = crossEntropyForward(f.logits, targets, B * T, c.vocabSize);
    expect(f.loss).toBeCloseTo(ce.losses.reduce((a, b) => a + b, 0) / (B * T), 14);
    const g = refForward(c, params, tokens, null, B, T);
    expect(g.loss).toBeNull();
    expect([...g.logits]).toEqual([...f.logits]);
  });

  it('is causal: changing the last token leaves earlier logits unchanged', () => {
    const a = refForward(c, params, tokens, null, B, T).logits;
    const t2 = Int32Array.from(tokens);
    t2[T - 1] = (t2[T - 1] + 1) % c.vocabSize;
    const b = refForward(c, params, t2, null, B, T).logits;
    const V = c.vocabSize;
    expect([...b.subarray(0, (T - 1) * V)]).toEqual([...a.subarray(0, (T - 1) * V)]);
    expect(relErr(b.subarray((T - 1) * V, T * V), a.subarray((T - 1) * V, T * V))).toBeGreaterThan(1e-3);
  });

  it('dropout is off unless asked for, and then depends on the step and micro-batch', () => {
    const cd = tiny('gelu_new', 0.2);
    const plain = refForward(cd, params, tokens, targets, B, T).loss!;
    expect(refForward(c, params, tokens, targets, B, T).loss).toBe(plain);
    const d0 = refForward(cd, params, tokens, targets, B, T, { dropout: true, seed: 1 }).loss!;
    const d0again = refForward(cd, params, tokens, targets, B, T, { dropout: true, seed: 1 }).loss!;
    const d1 = refForward(cd, params, tokens, targets, B, T, { dropout: true, seed: 1, step: 1 }).loss!;
    const dm = refForward(cd, params, tokens, targets, B, T, { dropout: true, seed: 1, micro: 1 }).loss!;
    expect(d0again).toBe(d0);
    expect(d0).not.toBe(plain);
    expect(d1).not.toBe(d0);
    expect(dm).not.toBe(d0);
  });

  it('refuses missing or mis-sized parameters and mis-sized token arrays', () => {
    const p = cloneParams(params);
    p.delete('h.1.ln_2.bias');
    expect(() => refForward(c, p, tokens, null, B, T)).toThrow(/Missing parameter h\.1\.ln_2\.bias/);
    p.set('h.1.ln_2.bias', new Float64Array(3));
    expect(() => refForward(c, p, tokens, null, B, T)).toThrow(ShapeError);
    expect(() => refForward(c, params, tokens.subarray(1), null, B, T)).toThrow(/expected B·T/);
  });
});

describe('refBackward against finite differences of the loss', () => {
  const cases = [
    { name: 'gelu_new, no dropout', c: tiny('gelu_new'), dropout: false },
    { name: 'gelu (erf), dropout 0.2 on every site', c: tiny('gelu', 0.2), dropout: true },
  ];
  for (const { name, c, dropout } of cases) {
    it(name, () => {
      const params = randomParams(c, 10);
      const tokens = randomTokens(B * T, c.vocabSize, 11);
      tokens[1] = tokens[7]; // a repeated token: its wte row accumulates
      const targets = randomTokens(B * T, c.vocabSize, 12);
      const opts = { dropout, seed: 5, step: 3, micro: 1 };
      const f = refForward(c, params, tokens, targets, B, T, opts);
      const grads = refBackward(c, params, f.cache);
      const loss = () => refForward(c, params, tokens, targets, B, T, opts).loss!;
      let worst = 0;
      for (const s of paramSpecs(c)) {
        const g = grads.get(s.name)!;
        expect(g.length, s.name).toBe(s.numel);
        const num = numericGrad(params.get(s.name)!, loss, 1e-5);
        const e = relErr(g, num);
        worst = Math.max(worst, e);
        expect(e, s.name).toBeLessThan(1e-6);
        expect(globalNorm([g]), s.name).toBeGreaterThan(0);
      }
      // rows of wpe beyond T carry no gradient
      const wpe = grads.get('wpe.weight')!;
      for (let i = T * c.nEmbd; i < wpe.length; i++) expect(wpe[i]).toBe(0);
      expect(worst).toBeGreaterThan(0);
    });
  }

  it('lossScale scales every gradient', () => {
    const c = tiny('gelu_new');
    const params = randomParams(c, 20);
    const f = refForward(c, params, randomTokens(B * T, 17, 21), randomTokens(B * T, 17, 22), B, T);
    const g1 = refBackward(c, params, f.cache);
    const g2 = refBackward(c, params, f.cache, { lossScale: 0.5 / (B * T) });
    for (const [n, g] of g1) expect(relErr(g2.get(n)!.map((x) => 2 * x), g), n).toBeLessThan(1e-14);
    expect(() => refBackward(c, params, refForward(c, params, randomTokens(B * T, 17, 21), null, B, T).cache)).toThrow(/targets/);
  });
});

describe('parameter copies', () => {
  it('clone is deep; float32 and float64 conversions round-trip float32 values', () => {
    const p: RefParams = new Map([['a', Float64Array.of(0.1, -2.5)]]);
    const q = cloneParams(p);
    q.get('a')![0] = 7;
    expect(p.get('a')![0]).toBe(0.1);
    const f32 = toF32Params(p);
    expect(f32.get('a')).toBeInstanceOf(Float32Array);
    expect(f32.get('a')![0]).toBe(Math.fround(0.1));
    expect([...toF64Params(f32).get('a')!]).toEqual([Math.fround(0.1), -2.5]);
  });
});

describe('sequential windows', () => {
  it('row j reads window j mod W with targets shifted by one', () => {
    const tokens = Array.from({ length: 17 }, (_, i) => 100 + i); // W = ⌊16/5⌋ = 3
    expect(windowCount(tokens.length, 5)).toBe(3);
    const { inputs, targets } = sequentialBatch(tokens, 2, 5, 2); // windows 2 and 0
    expect([...inputs]).toEqual([110, 111, 112, 113, 114, 100, 101, 102, 103, 104]);
    expect([...targets]).toEqual([111, 112, 113, 114, 115, 101, 102, 103, 104, 105]);
    expect(() => sequentialBatch([1, 2, 3], 1, 5, 0)).toThrow(/too short/);
  });
});

describe('refTrain', () => {
  const c = tiny('gelu_new');
  const init = randomParams(c, 30);
  const tokens = randomTokens(60, c.vocabSize, 31); // W = 11 windows of T=5
  const base = {
    config: c, params: init, tokens, B, T, steps: 3,
    lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, maxGradNorm: 1,
  };

  it('step 0 logs the forward loss and the gradient norm before clipping, and performs a clipped AdamW step', () => {
    const eps = 1e-3; // large eps: the step then depends on the gradient scale, so clipping shows
    const r = refTrain({ ...base, steps: 1, eps, maxGradNorm: 0.05 });
    const { inputs, targets } = sequentialBatch(tokens, B, T, 0);
    const f = refForward(c, init, inputs, targets, B, T);
    const g = refBackward(c, init, f.cache);
    const norm = globalNorm([...g.values()]);
    expect(r.log[0].loss).toBeCloseTo(f.loss!, 13);
    expect(r.log[0].gradNorm).toBeCloseTo(norm, 13);
    expect(norm).toBeGreaterThan(0.05); // clipping active
    const k = clipCoefficient(norm, 0.05);
    for (const s of paramSpecs(c)) {
      const p = Float64Array.from(init.get(s.name)!);
      adamwStep(p, g.get(s.name)!.map((x) => x * k), new Float64Array(s.numel), new Float64Array(s.numel),
        { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps, weightDecay: s.decay ? 0.1 : 0, step: 1 });
      expect(relErr(r.params.get(s.name)!, p), s.name).toBeLessThan(1e-13);
    }
    const unclipped = refTrain({ ...base, steps: 1, eps, maxGradNorm: 0 });
    expect(relErr(unclipped.params.get('h.0.attn.c_attn.weight')!, r.params.get('h.0.attn.c_attn.weight')!)).toBeGreaterThan(1e-6);
  });

  it('does not modify the initial parameters and lowers the loss', () => {
    const before = cloneParams(init);
    const r = refTrain({ ...base, steps: 8, tokens: tokens.subarray(0, 11) /* W = 2: the same windows again */ });
    for (const [n, p] of init) expect([...p]).toEqual([...before.get(n)!]);
    expect(r.log).toHaveLength(8);
    expect(r.log[7].loss).toBeLessThan(r.log[1].loss);
  });

  it('accumulating two micro-batches of B=1 equals one batch of B=2', () => {
    const a = refTrain({ ...base, B: 2 });
    const b = refTrain({ ...base, B: 1, gradAccum: 2 });
    for (let s = 0; s < 3; s++) {
      expect(b.log[s].loss).toBeCloseTo(a.log[s].loss, 13);
      expect(b.log[s].gradNorm).toBeCloseTo(a.log[s].gradNorm, 13);
    }
    for (const [n, p] of a.params) expect(relErr(b.params.get(n)!, p), n).toBeLessThan(1e-11);
  });

  it('frozen groups are unchanged bit for bit and excluded from the gradient norm', () => {
    const frozen = new Set([0, 1]); // embeddings and block 0
    const r = refTrain({ ...base, frozen });
    for (const s of paramSpecs(c)) {
      const same = [...r.params.get(s.name)!].every((x, i) => x === init.get(s.name)![i]);
      expect(same, s.name).toBe(frozen.has(s.group));
    }
    const { inputs, targets } = sequentialBatch(tokens, B, T, 0);
    const g = refBackward(c, init, refForward(c, init, inputs, targets, B, T).cache);
    const trainableNorm = globalNorm(paramSpecs(c).filter((s) => !frozen.has(s.group)).map((s) => g.get(s.name)!));
    expect(r.log[0].gradNorm).toBeCloseTo(trainableNorm, 13);
    expect(trainableNorm).toBeLessThan(globalNorm([...g.values()]));
  });

  it('a group unfrozen at step 2 starts fresh AdamW state: its first update is ±lr per element', () => {
    const r = refTrain({ ...base, lr: 1e-3, frozen: (s) => (s < 2 ? new Set([3]) : new Set()) }); // ln_f is group L+1 = 3
    const before = refTrain({ ...base, lr: 1e-3, steps: 2, frozen: new Set([3]) });
    for (const n of ['ln_f.weight', 'ln_f.bias']) {
      expect([...before.params.get(n)!]).toEqual([...init.get(n)!]);
      // no decay on 1-D tensors; step 1 with m = (1−β1)g, v = (1−β2)g²: Δp = −lr·g/(|g| + eps·…) ≈ ∓lr
      const d = r.params.get(n)!.map((x, i) => x - init.get(n)![i]);
      for (const x of d) expect(Math.abs(Math.abs(x) - 1e-3)).toBeLessThan(1e-7);
    }
  });

  it('schedule and group multipliers scale the rate; a zero multiplier keeps a group fixed', () => {
    const r = refTrain({ ...base, schedule: (s) => 1 / (s + 1), groupLrMultiplier: (g) => (g === 2 ? 0 : 1) });
    expect(r.log.map((l) => l.lr)).toEqual([1e-2 * 1, 1e-2 * (1 / 2), 1e-2 * (1 / 3)]);
    for (const s of paramSpecs(c)) {
      const same = [...r.params.get(s.name)!].every((x, i) => x === init.get(s.name)![i]);
      expect(same, s.name).toBe(s.group === 2);
    }
  });

  it('dropout in training draws a different mask every step and micro-batch', () => {
    const cd = tiny('gelu_new', 0.2);
    const plain = refTrain({ ...base, config: cd, steps: 1 });
    const d = refTrain({ ...base, config: cd, steps: 1, dropout: true, seed: 4 });
    const d2 = refTrain({ ...base, config: cd, steps: 1, dropout: true, seed: 4 });
    expect(d.log[0].loss).not.toBe(plain.log[0].loss);
    expect(d2.log[0].loss).toBe(d.log[0].loss);
  });

  it('refuses a bad accumulation count and reports a non-finite loss', () => {
    expect(() => refTrain({ ...base, gradAccum: 0 })).toThrow(/gradAccum/);
    const bad = cloneParams(init);
    bad.get('ln_f.bias')![0] = NaN;
    expect(() => refTrain({ ...base, params: bad })).toThrow(/Step 0/);
  });
});
