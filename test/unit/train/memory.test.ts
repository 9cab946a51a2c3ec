// estimateMemory without a GPU (train/memory.ts): GPT-2 124M's figures from docs/ARCHITECTURE.md (0.5 GB
// parameters, 0.5 GB gradients, 1.0 GB Adam moments), frozen groups holding no gradient or
// state, a frozen prefix holding no saved activations, logits that do not grow with B·T·V, and
// LoRA. Equality with real allocations is test/gpu/memory.test.ts.
import { describe, expect, it } from 'vitest';
import { GPT2_SMALL } from '../../../src/engine/model/config.ts';
import { countLoraParams } from '../../../src/engine/model/lora.ts';
import { DEFAULT_LORA } from '../../../src/engine/train/run-settings.ts';
import { DEFAULT_MEMORY_LIMITS, describeMemory, estimateMemory } from '../../../src/engine/train/memory.ts';
import { countParams, paramSpecs } from '../../../src/engine/model/params.ts';

const c = GPT2_SMALL;
const P = countParams(c); // 124,439,808
const run = { batch: 1, seq: 128, gradAccum: 1 };
const padding = paramSpecs(c).length * DEFAULT_MEMORY_LIMITS.alignment;

describe('estimateMemory for GPT-2 124M', () => {
  it('full fine-tuning: parameters ≈ gradients ≈ 0.5 GB, Adam moments ≈ 1.0 GB', () => {
    const m = estimateMemory(c, { ...run, frozen: [] });
    expect(P).toBe(124_439_808);
    for (const bytes of [m.parameters, m.gradients]) {
      expect(bytes).toBeGreaterThanOrEqual(P * 4);
      expect(bytes).toBeLessThan(P * 4 + padding);
    }
    expect(m.optimizer).toBe(2 * m.gradients);
    expect(m.total).toBe(m.parameters + m.gradients + m.optimizer + m.activations + m.scratch);
    expect(describeMemory(m)).toMatch(/^parameters 474\.\d MiB, gradients 474\.\d MiB, optimizer 949\.\d MiB, activations [\d.]+ MiB, scratch [\d.]+ MiB; total 1\.\d\d GiB$/);
  });

  it('embeddings and 10 of 12 blocks frozen: gradients and moments only for blocks 10-11 and ln_f, activations of two blocks', () => {
    const full = estimateMemory(c, { ...run, frozen: [] });
    const m = estimateMemory(c, { ...run, frozen: [0, ...Array.from({ length: 10 }, (_, i) => i + 1)] });
    const trainable = paramSpecs(c).filter((s) => s.group >= 11).reduce((a, s) => a + s.numel, 0);
    expect(m.gradients).toBeGreaterThanOrEqual(trainable * 4);
    expect(m.gradients).toBeLessThan(trainable * 4 + padding);
    expect(m.parameters).toBe(full.parameters);
    // 12 blocks of saved activations become 2 (the frozen ten run in one shared scratch set).
    const perBlock = (full.activations - m.activations) / 10;
    expect(perBlock).toBeGreaterThan(0);
    expect(m.activations).toBeLessThan(full.activations / 3);
  });

  it('logits never take (B·T × V): B=4, T=1024 holds a chunk of at most 64 MiB, not 823 MB', () => {
    const small = estimateMemory(c, { batch: 1, seq: 64, gradAccum: 1, frozen: [] });
    const big = estimateMemory(c, { batch: 4, seq: 1024, gradAccum: 1, frozen: [] });
    const logitsFull = 4 * 1024 * c.vocabSize * 4;
    expect(logitsFull).toBeGreaterThan(800e6);
    // scratch grows with B·T·C (gradients of activations), but the logits part is capped
    const perToken = (big.scratch - small.scratch) / (4 * 1024 - 64);
    expect(perToken).toBeLessThan(c.vocabSize * 4);
    expect(big.scratch).toBeLessThan(logitsFull / 2);
  });

  it('LoRA: base parameters plus adapters; gradients and moments only for the adapters', () => {
    const lora = { ...DEFAULT_LORA, r: 8, targets: ['c_attn'] };
    const m = estimateMemory(c, { ...run, frozen: [], lora });
    const base = estimateMemory(c, { ...run, frozen: [] });
    const n = countLoraParams(c, lora);
    expect(n).toBe(12 * 8 * (768 + 2304));
    expect(m.parameters - base.parameters).toBeGreaterThanOrEqual(n * 4);
    expect(m.gradients).toBeGreaterThanOrEqual(n * 4);
    expect(m.gradients).toBeLessThan(n * 4 + 24 * 256);
  });

  it('a binding limit that splits wte changes nothing but the gradient-norm partials', () => {
    const a = estimateMemory(c, { ...run, frozen: [] });
    const b = estimateMemory(c, { ...run, frozen: [] }, { ...DEFAULT_MEMORY_LIMITS, maxBinding: 2 ** 30 });
    expect(a.parameters).toBe(b.parameters);
    expect(a.scratch - b.scratch).toBe(256 * 4); // one more range of wte's gradient: 256 more partial sums
  });
});

describe('estimateMemory with precision f16', () => {
  it('adds 2 bytes per matmul weight (wte and the four linear weights of each block); nothing else changes', () => {
    const f32 = estimateMemory(c, { ...run, frozen: [] });
    const f16 = estimateMemory(c, { ...run, frozen: [], precision: 'f16' });
    const copied = paramSpecs(c).filter((s) => s.name === 'wte.weight' || /\.(c_attn|c_proj|c_fc)\.weight$/.test(s.name));
    expect(copied).toHaveLength(1 + 4 * c.nLayer);
    const copies = copied.reduce((a, s) => a + s.numel, 0);
    expect(copies).toBe(50257 * 768 + 12 * 768 * 768 * 12); // wte + (3C² + C² + 4C² + 4C²) per block
    expect(f16.parameters - f32.parameters).toBeGreaterThanOrEqual(copies * 2);
    expect(f16.parameters - f32.parameters).toBeLessThan(copies * 2 + copied.length * DEFAULT_MEMORY_LIMITS.alignment);
    for (const k of ['gradients', 'optimizer', 'activations', 'scratch'] as const) expect(f16[k]).toBe(f32[k]);
    expect(f16.total).toBe(f32.total + f16.parameters - f32.parameters);
  });
});
