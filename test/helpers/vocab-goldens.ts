// Loader of the real-vocabulary golden folders (test/goldens/gpt2-v50257-*) written by
// scripts/goldens/make_goldens.py: the config, the token stream, per-step numbers and the stored
// tensors; and the regeneration of their initial weights and sample indices from the same
// counter-based hash (lowbias32) the generator used, bit for bit.
import { readFileSync } from 'node:fs';
import { parseConfig, type GPT2Config } from '../../src/engine/model/config.ts';
import { paramSpecs, type HostParams } from '../../src/engine/model/params.ts';
import { hashU32 } from '../../src/engine/random.ts';
import { readSafetensors, type ReadTensor } from '../../src/io/safetensors.ts';

export interface VocabGolden {
  name: string;
  config: GPT2Config;
  tokens: Uint16Array;
  B: number;
  T: number;
  steps: number;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weight_decay: number;
  max_grad_norm: number;
  wte_rows: number[];
  first_micro_loss: number;
  losses: number[];
  grad_norms: number[];
  clipped_steps: number[];
  init: { seed: number; checks: Record<string, { sum: number; first: number[] }> };
  samples: { seed: number; count: number; large: string[] };
  stats: { grad: Record<string, { norm: number; sum: number }>; final: Record<string, { norm: number; sum: number }> };
  tensors: Map<string, ReadTensor>;
}

const ROOT = new URL('../goldens/', import.meta.url);

export function loadVocabGolden(name: string): VocabGolden {
  const read = (file: string) => new Uint8Array(readFileSync(new URL(`${name}/${file}`, ROOT)));
  const j = JSON.parse(new TextDecoder().decode(read('goldens.json')));
  const tb = read(j.tokens.file);
  const dv = new DataView(tb.buffer, tb.byteOffset, tb.byteLength);
  const tokens = Uint16Array.from({ length: j.tokens.count }, (_, i) => dv.getUint16(2 * i, true));
  return { ...j, name, config: parseConfig(j.config), tokens, tensors: readSafetensors(read('case.safetensors'), 'case.safetensors') };
}

export function vocabTensor(g: VocabGolden, name: string): Float32Array {
  const t = g.tensors.get(name);
  if (!t) throw new Error(`Golden ${g.name} has no tensor '${name}'; regenerate with scripts/goldens/make_goldens.py.`);
  return t.data;
}

/** lowbias32((seed + k·0x9E3779B9) mod 2^32): the key of tensor k. */
function tensorKey(seed: number, k: number): number {
  return hashU32((seed + k * 0x9e3779b9) % 2 ** 32);
}

/** (offset, std) of a parameter: HF's standard deviations (0.02, c_proj 0.02/√(2L)), LayerNorm near 1. */
function initScale(name: string, L: number): [number, number] {
  if (/(^|\.)ln_[12f]\.weight$/.test(name)) return [1, 0.1];
  if (/(^|\.)ln_[12f]\.bias$/.test(name)) return [0, 0.05];
  if (name.endsWith('.bias')) return [0, 0.02];
  if (name.endsWith('c_proj.weight')) return [0, 0.02 / Math.sqrt(2 * L)];
  return [0, 0.02];
}

/** The generator's initial weights: offset + (2u − 1)·std·√3 with u from the hash, rounded to float32. */
export function vocabInit(g: VocabGolden): HostParams {
  const out: HostParams = new Map();
  paramSpecs(g.config).forEach((s, k) => {
    const key = tensorKey(g.init.seed, k);
    const [offset, std] = initScale(s.name, g.config.nLayer);
    const w = std * Math.sqrt(3);
    const t = new Float32Array(s.numel);
    for (let i = 0; i < s.numel; i++) {
      const u = (hashU32((key ^ i) >>> 0) >>> 8) * 2 ** -24 + 2 ** -25;
      t[i] = offset + (2 * u - 1) * w;
    }
    out.set(s.name, t);
  });
  return out;
}

/** The `count` sampled element indices of tensor k (layout order) of `numel` elements. */
export function sampleIndices(g: VocabGolden, k: number, numel: number, count = g.samples.count): Uint32Array {
  const key = tensorKey(g.samples.seed, k);
  return Uint32Array.from({ length: count }, (_, j) => hashU32((key ^ j) >>> 0) % numel);
}

export function pick(t: ArrayLike<number>, idx: ArrayLike<number>): Float64Array {
  return Float64Array.from({ length: idx.length }, (_, j) => t[idx[j]]);
}
