// scripts/make-random-model.ts: Hugging Face's GPT-2 initialization (N(0, 0.02), c_proj
// N(0, 0.02/√(2L)), biases 0, LayerNorm 1/0), deterministic in the seed, and random token files.
import { describe, expect, it } from 'vitest';
import { GPT2_SMALL } from '../../../src/engine/model/config.ts';
import { checkHostParams } from '../../../src/engine/model/params.ts';
import { randomGpt2Params, randomTokens } from '../../../scripts/make-random-model.ts';

const config = { ...GPT2_SMALL, vocabSize: 1000, nEmbd: 128, nInner: 512, nLayer: 3, nHead: 4, nPositions: 64 };

function moments(t: Float32Array): { mean: number; std: number } {
  let s = 0;
  let s2 = 0;
  for (const x of t) {
    s += x;
    s2 += x * x;
  }
  const mean = s / t.length;
  return { mean, std: Math.sqrt(s2 / t.length - mean * mean) };
}

describe('randomGpt2Params', () => {
  const p = randomGpt2Params(config, 7);

  it('holds every tensor of the config', () => {
    expect(() => checkHostParams(config, p)).not.toThrow();
  });

  it('draws weights as HF _init_weights does', () => {
    for (const [name, t] of p) {
      if (/(^|\.)ln_[12f]\.weight$/.test(name)) expect(t.every((x) => x === 1), name).toBe(true);
      else if (name.endsWith('.bias')) expect(t.every((x) => x === 0), name).toBe(true);
      else {
        const want = name.endsWith('c_proj.weight') ? 0.02 / Math.sqrt(2 * config.nLayer) : 0.02;
        const m = moments(t);
        expect(Math.abs(m.mean), name).toBeLessThan(4 * want / Math.sqrt(t.length));
        expect(Math.abs(m.std / want - 1), name).toBeLessThan(0.05);
      }
    }
  });

  it('is deterministic in the seed, and tensors get different streams', () => {
    const q = randomGpt2Params(config, 7);
    const r = randomGpt2Params(config, 8);
    expect(Buffer.from(q.get('wte.weight')!.buffer).equals(Buffer.from(p.get('wte.weight')!.buffer))).toBe(true);
    expect(r.get('wte.weight')![0]).not.toBe(p.get('wte.weight')![0]);
    expect(p.get('h.0.attn.c_attn.weight')![0]).not.toBe(p.get('h.1.attn.c_attn.weight')![0]);
  });

  it('random tokens stay inside the vocabulary and cover it', () => {
    const t = randomTokens(20000, 1000, 3);
    expect(Math.max(...t)).toBe(999);
    expect(Math.min(...t)).toBe(0);
    expect(() => randomTokens(10, 70000, 1)).toThrow(/uint16/);
  });
});
