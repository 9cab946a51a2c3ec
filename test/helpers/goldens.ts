// Loader of the PyTorch golden files in test/goldens/<name>/ written by
// scripts/goldens/make_goldens.py: the checkpoint (config.json + model.safetensors, HF names
// with the `transformer.` prefix), the uint16 token stream, and per training case the
// hyperparameters, per-step numbers (goldens.json) and tensors (<case>.safetensors).
import { readFileSync } from 'node:fs';
import { parseConfig, type GPT2Config } from '../../src/engine/model/config.ts';
import type { HostParams } from '../../src/engine/model/params.ts';
import { readSafetensors, type ReadTensor } from '../../src/io/safetensors.ts';

export interface GoldenCase {
  name: string;
  /** rows per micro-batch */
  B: number;
  T: number;
  grad_accum: number;
  /** depth groups frozen for the whole run (0 embeddings, block i at i+1, L+1 ln_f) */
  frozen_groups: number[];
  steps: number;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weight_decay: number;
  max_grad_norm: number;
  /** mean loss of the first micro-batch of step 0 */
  first_micro_loss: number;
  /** mean loss over all targets of each step */
  losses: number[];
  /** global gradient norm of each step before clipping */
  grad_norms: number[];
  /** steps on which clipping scaled the gradients */
  clipped_steps: number[];
  /** 'logits' (B,T,V) of the first micro-batch, 'grad.<name>' of step 0 (trainable only), 'final.<name>' */
  tensors: Map<string, ReadTensor>;
}

export interface Goldens {
  config: GPT2Config;
  /** initial parameters, HF names without the `transformer.` prefix */
  params: HostParams;
  /** the token stream of train.bin */
  tokens: Uint16Array;
  cases: GoldenCase[];
}

const ROOT = new URL('../goldens/', import.meta.url);

function read(name: string, file: string): Uint8Array {
  return new Uint8Array(readFileSync(new URL(`${name}/${file}`, ROOT)));
}

export function loadGoldens(name = 'gpt2-tiny'): Goldens {
  const text = (file: string) => new TextDecoder().decode(read(name, file));
  const index = JSON.parse(text('goldens.json')) as {
    model_dir: string;
    tokens: { file: string; count: number };
    cases: Array<Omit<GoldenCase, 'tensors'> & { file: string }>;
  };
  const config = parseConfig(JSON.parse(text(`${index.model_dir}/config.json`)));
  const params: HostParams = new Map();
  for (const [k, t] of readSafetensors(read(name, `${index.model_dir}/model.safetensors`), 'model.safetensors')) {
    params.set(k.replace(/^transformer\./, ''), t.data);
  }
  const tb = read(name, index.tokens.file);
  if (tb.byteLength !== 2 * index.tokens.count) {
    throw new Error(`${index.tokens.file}: ${tb.byteLength} bytes, goldens.json says ${index.tokens.count} uint16 ids; regenerate the goldens.`);
  }
  // little-endian uint16, read through a DataView so the host's byte order does not matter
  const dv = new DataView(tb.buffer, tb.byteOffset, tb.byteLength);
  const tokens = Uint16Array.from({ length: index.tokens.count }, (_, i) => dv.getUint16(2 * i, true));
  const cases = index.cases.map((c) => ({ ...c, tensors: readSafetensors(read(name, c.file), c.file) }));
  return { config, params, tokens, cases };
}

/** The tensor `name` of a case, or a clear failure naming what is missing. */
export function goldenTensor(c: GoldenCase, name: string): Float32Array {
  const t = c.tensors.get(name);
  if (!t) throw new Error(`Golden case '${c.name}' has no tensor '${name}'; regenerate with scripts/goldens/make_goldens.py.`);
  return t.data;
}
