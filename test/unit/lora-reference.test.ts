// The float64 LoRA reference (src/engine/reference/lora.ts): B = 0 is the base model exactly;
// with dropout off it equals the base model with merged weights W + s·(B·A)ᵀ; its gradients of
// A, B and of base parameters below the adapters (the input gradient through the LoRA path,
// dropout included) agree with central finite differences; and it reproduces the PyTorch LoRA
// goldens (logits, loss, step-0 gradients, 5 clipped AdamW steps, merged weights).
import { describe, expect, it } from 'vitest';
import type { GPT2Config } from '../../src/engine/model/config.ts';
import { initLoraParams, loraSpecs, type LoraConfig } from '../../src/engine/model/lora.ts';
import { paramSpecs } from '../../src/engine/model/params.ts';
import { refForward, sequentialBatch, toF64Params, type RefParams } from '../../src/engine/reference/gpt2.ts';
import { refLoraBackward, refLoraForward, refLoraTrain, refMergeLora, type RefLora } from '../../src/engine/reference/lora.ts';
import { loadLoraGoldens, loraConfigOf, loraInit, loraTensor } from '../helpers/lora-goldens.ts';
import { randn, relErr, rng } from '../helpers/numeric.ts';
import { numericGrad } from './reference/fd.ts';

const tiny = (pdrop = 0): GPT2Config => ({
  vocabSize: 17, nPositions: 7, nEmbd: 12, nLayer: 2, nHead: 3, nInner: 20,
  layerNormEpsilon: 1e-5, activation: 'gelu_new', embdPdrop: pdrop, attnPdrop: pdrop, residPdrop: pdrop,
  bosTokenId: 16, eosTokenId: 16,
});
const B = 2, T = 5;

function randomBase(c: GPT2Config, seed: number): RefParams {
  const p: RefParams = new Map();
  for (const s of paramSpecs(c)) {
    const t = randn(s.numel, seed++, s.name.startsWith('w') ? 0.5 : 0.3);
    if (/ln_(1|2|f)\.weight$/.test(s.name)) for (let i = 0; i < t.length; i++) t[i] += 1;
    p.set(s.name, t);
  }
  return p;
}

function randomLora(c: GPT2Config, cfg: LoraConfig, seed: number): RefLora {
  return { config: cfg, params: new Map(loraSpecs(c, cfg).map((s, i) => [s.name, randn(s.numel, seed + i, 0.3)])) };
}

function tokens(n: number, V: number, seed: number): Int32Array {
  const r = rng(seed);
  return Int32Array.from({ length: n }, () => Math.floor(r() * V));
}

const ALL: LoraConfig = { r: 2, alpha: 3, dropout: 0, targets: ['c_attn', 'c_proj', 'c_fc'], rslora: false };

describe('refLoraForward', () => {
  const c = tiny();
  const base = randomBase(c, 1);
  const x = tokens(B * T, c.vocabSize, 2);
  const y = tokens(B * T, c.vocabSize, 3);

  it('with B = 0 (fresh adapters) is the base model exactly', () => {
    const fresh = { config: ALL, params: toF64Params(initLoraParams(c, ALL, 5)) };
    const got = refLoraForward(c, base, fresh, x, y, B, T);
    const want = refForward(c, base, x, y, B, T);
    expect([...got.logits]).toEqual([...want.logits]);
    expect(got.loss).toBe(want.loss);
  });

  for (const rslora of [false, true]) {
    it(`equals the base model with merged weights W + s·(B·A)ᵀ${rslora ? ' (rsLoRA: s = α/√r)' : ''}`, () => {
      const lora = randomLora(c, { ...ALL, rslora }, 10);
      const got = refLoraForward(c, base, lora, x, y, B, T);
      const merged = refForward(c, refMergeLora(c, base, lora), x, y, B, T);
      expect(relErr(got.logits, merged.logits)).toBeLessThan(1e-13);
      // and the adapters matter: not the base model
      expect(relErr(got.logits, refForward(c, base, x, y, B, T).logits)).toBeGreaterThan(1e-3);
    });
  }

  it('LoRA dropout acts only in training mode and only on the LoRA input', () => {
    const lora = randomLora(c, { ...ALL, dropout: 0.3 }, 20);
    const evalMode = refLoraForward(c, base, lora, x, y, B, T).loss;
    expect(evalMode).toBe(refLoraForward(c, base, { ...lora, config: ALL }, x, y, B, T).loss);
    const train = refLoraForward(c, base, lora, x, y, B, T, { dropout: true, seed: 3 }).loss;
    expect(train).not.toBe(evalMode);
    // B = 0: the LoRA path adds nothing, dropped or not
    const fresh = { config: { ...ALL, dropout: 0.3 }, params: toF64Params(initLoraParams(c, ALL, 5)) };
    expect(refLoraForward(c, base, fresh, x, y, B, T, { dropout: true, seed: 3 }).loss).toBe(refForward(c, base, x, y, B, T).loss);
  });
});

describe('refLoraBackward against finite differences', () => {
  for (const pdrop of [0, 0.2]) {
    it(`every element of every A and B, and base parameters under the adapters (dropout ${pdrop}, LoRA dropout ${pdrop ? 0.3 : 0})`, () => {
      const c = tiny(pdrop);
      const cfg: LoraConfig = { ...ALL, dropout: pdrop ? 0.3 : 0, rslora: pdrop > 0 };
      const base = randomBase(c, 31);
      const lora = randomLora(c, cfg, 40);
      const x = tokens(B * T, c.vocabSize, 4);
      const y = tokens(B * T, c.vocabSize, 5);
      const opts = { dropout: true, seed: 9, step: 2, micro: 1 };
      const loss = () => refLoraForward(c, base, lora, x, y, B, T, opts).loss;
      const f = refLoraForward(c, base, lora, x, y, B, T, opts);
      const g = refLoraBackward(c, base, lora, f.cache);
      for (const s of loraSpecs(c, cfg)) {
        const num = numericGrad(lora.params.get(s.name)!, loss);
        expect(relErr(g.lora.get(s.name)!, num), s.name).toBeLessThan(1e-6);
      }
      // Gradients below LoRA layers flow through dx of the adapted layers.
      for (const name of ['h.0.ln_1.weight', 'h.0.attn.c_attn.weight', 'h.0.ln_2.bias', 'wpe.weight']) {
        const num = numericGrad(base.get(name)!, loss);
        expect(relErr(g.base.get(name)!, num), name).toBeLessThan(1e-6);
      }
    });
  }

  it('the LoRA input-gradient term is needed: without it the base gradients below disagree', () => {
    // Sanity of the test above: zeroing A changes the base gradient under the adapters.
    const c = tiny();
    const base = randomBase(c, 31);
    const lora = randomLora(c, ALL, 40);
    const x = tokens(B * T, c.vocabSize, 4);
    const y = tokens(B * T, c.vocabSize, 5);
    const withA = refLoraBackward(c, base, lora, refLoraForward(c, base, lora, x, y, B, T).cache).base.get('h.0.ln_1.weight')!;
    const noLora = { config: ALL, params: new Map([...lora.params].map(([k, v]) => [k, k.includes('lora_B') ? new Float64Array(v.length) : v])) };
    const without = refLoraBackward(c, base, noLora, refLoraForward(c, base, noLora, x, y, B, T).cache).base.get('h.0.ln_1.weight')!;
    expect(relErr(without, withA)).toBeGreaterThan(1e-3);
  });
});

describe('the reference against the PyTorch LoRA goldens', () => {
  const G = loadLoraGoldens();
  const base = toF64Params(G.base.params);
  for (const gc of G.cases) {
    it(`case '${gc.name}' (r=${gc.r}, alpha=${gc.lora_alpha}${gc.use_rslora ? ', rsLoRA' : ''}, targets ${gc.target_modules}, accumulation ${gc.grad_accum})`, () => {
      const cfg = loraConfigOf(gc);
      const config = G.base.config;
      const lora: RefLora = { config: cfg, params: toF64Params(loraInit(gc)) };
      expect([...lora.params.keys()].sort()).toEqual(loraSpecs(config, cfg).map((s) => s.name).sort());
      const { inputs, targets } = sequentialBatch(G.base.tokens, gc.B, gc.T, 0);
      const f = refLoraForward(config, base, lora, inputs, targets, gc.B, gc.T);
      expect(Math.abs(f.loss - gc.first_micro_loss) / gc.first_micro_loss).toBeLessThan(1e-12);
      if (gc.tensors.has('logits')) expect(relErr(f.logits, loraTensor(gc, 'logits'))).toBeLessThan(1e-7);

      const run = refLoraTrain({
        config, base, lora, tokens: G.base.tokens, B: gc.B, T: gc.T, steps: gc.steps, gradAccum: gc.grad_accum,
        lr: gc.lr, beta1: gc.beta1, beta2: gc.beta2, eps: gc.eps, weightDecay: gc.weight_decay, maxGradNorm: gc.max_grad_norm,
      });
      for (const s of loraSpecs(config, cfg)) {
        expect(relErr(run.firstGrads.get(s.name)!, loraTensor(gc, `grad.${s.name}`)), `grad ${s.name}`).toBeLessThan(1e-6);
        expect(relErr(run.lora.get(s.name)!, loraTensor(gc, `final.${s.name}`)), `final ${s.name}`).toBeLessThan(1e-6);
      }
      run.log.forEach((l, s) => {
        expect(Math.abs(l.loss - gc.losses[s]) / gc.losses[s], `loss ${s}`).toBeLessThan(1e-10);
        expect(Math.abs(l.gradNorm - gc.grad_norms[s]) / gc.grad_norms[s], `norm ${s}`).toBeLessThan(1e-9);
      });
      // the goldens exercise clipping on some steps and not on others
      expect(gc.clipped_steps.length).toBeGreaterThan(0);
      expect(gc.clipped_steps.length).toBeLessThan(gc.steps);

      for (const [k, t] of gc.tensors) {
        if (!k.startsWith('merged.')) continue;
        const merged = refMergeLora(config, base, { config: cfg, params: toF64Params(new Map([...gc.tensors].filter(([n]) => n.startsWith('final.')).map(([n, v]) => [n.slice(6), v.data]))) });
        expect(relErr(merged.get(k.slice('merged.'.length))!, t.data), k).toBeLessThan(1e-7);
      }
    });
  }
});
