// The built-in demo model: Hugging Face's GPT-2 initialization from a seed, deterministic bytes,
// and a folder the studio's own checkpoint loader reads back.
import { describe, expect, it } from 'vitest';
import { DEMO_CONFIG, demoModelFiles, hfInitParams } from '../../../scripts/make-demo-model.ts';
import { GPT2_SMALL, parseConfig } from '../../../src/engine/model/config.ts';
import { bytesSource } from '../../../src/io/bytes.ts';
import { filesFromSources, loadCheckpoint } from '../../../src/io/checkpoint.ts';

const SMALL = { ...GPT2_SMALL, vocabSize: 311, nPositions: 64, nEmbd: 48, nLayer: 3, nHead: 4, nInner: 192 };

function std(x: Float32Array): { mean: number; std: number } {
  let s = 0;
  for (const v of x) s += v;
  const mean = s / x.length;
  let q = 0;
  for (const v of x) q += (v - mean) ** 2;
  return { mean, std: Math.sqrt(q / x.length) };
}

describe('hfInitParams (HF GPT2PreTrainedModel._init_weights)', () => {
  const p = hfInitParams(SMALL, 7);

  it('draws embeddings and Conv1D weights from N(0, 0.02)', () => {
    for (const name of ['wte.weight', 'wpe.weight', 'h.0.attn.c_attn.weight', 'h.2.mlp.c_fc.weight']) {
      const s = std(p.get(name)!);
      expect(Math.abs(s.mean)).toBeLessThan(0.002);
      expect(s.std).toBeGreaterThan(0.0185);
      expect(s.std).toBeLessThan(0.0215);
    }
  });

  it('scales every c_proj weight by 1/sqrt(2·n_layer)', () => {
    const want = 0.02 / Math.sqrt(2 * SMALL.nLayer);
    for (const name of ['h.0.attn.c_proj.weight', 'h.1.mlp.c_proj.weight']) {
      const s = std(p.get(name)!);
      expect(s.std / want).toBeGreaterThan(0.93);
      expect(s.std / want).toBeLessThan(1.07);
    }
  });

  it('sets LayerNorm weights to 1 and every bias to 0', () => {
    for (const [name, t] of p) {
      if (/(ln_1|ln_2|ln_f)\.weight$/.test(name)) expect(t.every((v) => v === 1)).toBe(true);
      else if (name.endsWith('.bias')) expect(t.every((v) => v === 0)).toBe(true);
      else expect(t.some((v) => v !== 0)).toBe(true);
    }
  });

  it('is deterministic in the seed, with independent tensors', () => {
    const again = hfInitParams(SMALL, 7);
    const other = hfInitParams(SMALL, 8);
    expect(again.get('h.1.attn.c_attn.weight')).toEqual(p.get('h.1.attn.c_attn.weight'));
    expect(other.get('h.1.attn.c_attn.weight')).not.toEqual(p.get('h.1.attn.c_attn.weight'));
    expect(p.get('h.0.mlp.c_fc.weight')!.slice(0, 8)).not.toEqual(p.get('h.1.mlp.c_fc.weight')!.slice(0, 8));
  });
});

describe('demoModelFiles', () => {
  it('writes a GPT-2 folder that loads back bit for bit, with GPT-2\'s tokenizer', async () => {
    const files = await demoModelFiles(SMALL, 3);
    expect(Object.keys(files).sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    const config = parseConfig(JSON.parse(new TextDecoder().decode(files['config.json'])));
    expect(config).toEqual(SMALL);
    const loaded = await loadCheckpoint(config, filesFromSources([bytesSource(files['model.safetensors'], 'model.safetensors')]));
    const want = hfInitParams(SMALL, 3);
    for (const [name, t] of want) expect(loaded.get(name)).toEqual(t);
    const tok = JSON.parse(new TextDecoder().decode(files['tokenizer.json']));
    expect(Object.keys(tok.model.vocab)).toHaveLength(50257);
    const again = await demoModelFiles(SMALL, 3);
    expect(Buffer.compare(again['model.safetensors'], files['model.safetensors'])).toBe(0);
  });

  it('keeps the demo small enough to train on a software adapter, with GPT-2\'s vocabulary', () => {
    expect(DEMO_CONFIG.vocabSize).toBe(50257);
    expect(DEMO_CONFIG.nEmbd % DEMO_CONFIG.nHead).toBe(0);
    expect(DEMO_CONFIG.nEmbd * DEMO_CONFIG.nLayer).toBeLessThanOrEqual(64 * 4);
  });
});
