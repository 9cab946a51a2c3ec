// Loader of the PyTorch LoRA goldens in test/goldens/lora-tiny/ (scripts/goldens/make_lora_goldens.py):
// the tiny GPT-2 and token stream of gpt2-tiny, and per case the LoRA settings, per-step numbers
// and the tensors init.<name>, grad.<name>, final.<name> (engine names of A and B), logits and
// merged.<weight> (first case only).
import { readFileSync } from 'node:fs';
import type { LoraConfig } from '../../src/engine/model/lora.ts';
import type { HostParams } from '../../src/engine/model/params.ts';
import { readSafetensors, type ReadTensor } from '../../src/io/safetensors.ts';
import { loadGoldens, type Goldens } from './goldens.ts';

export interface LoraGoldenCase {
  name: string;
  r: number;
  lora_alpha: number;
  lora_dropout: number;
  use_rslora: boolean;
  target_modules: string[];
  scaling: number;
  /** adapted layers, e.g. 'h.0.attn.c_attn' */
  adapted: string[];
  B: number;
  T: number;
  grad_accum: number;
  steps: number;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weight_decay: number;
  max_grad_norm: number;
  first_micro_loss: number;
  losses: number[];
  grad_norms: number[];
  clipped_steps: number[];
  tensors: Map<string, ReadTensor>;
}

export interface LoraGoldens {
  base: Goldens;
  cases: LoraGoldenCase[];
}

const DIR = new URL('../goldens/lora-tiny/', import.meta.url);

export function loadLoraGoldens(): LoraGoldens {
  const index = JSON.parse(readFileSync(new URL('goldens.json', DIR), 'utf8')) as {
    model_dir: string;
    cases: Array<Omit<LoraGoldenCase, 'tensors'> & { file: string }>;
  };
  if (index.model_dir !== '../gpt2-tiny/model') throw new Error(`lora-tiny/goldens.json names model ${index.model_dir}; the loader expects ../gpt2-tiny/model.`);
  const cases = index.cases.map((c) => ({ ...c, tensors: readSafetensors(new Uint8Array(readFileSync(new URL(c.file, DIR))), c.file) }));
  return { base: loadGoldens('gpt2-tiny'), cases };
}

export function loraConfigOf(c: LoraGoldenCase): LoraConfig {
  return { r: c.r, alpha: c.lora_alpha, dropout: c.lora_dropout, targets: c.target_modules, rslora: c.use_rslora };
}

export function loraTensor(c: LoraGoldenCase, name: string): Float32Array {
  const t = c.tensors.get(name);
  if (!t) throw new Error(`LoRA golden case '${c.name}' has no tensor '${name}'; regenerate with scripts/goldens/make_lora_goldens.py.`);
  return t.data;
}

/** A and B before training, by engine name. */
export function loraInit(c: LoraGoldenCase): HostParams {
  const out: HostParams = new Map();
  for (const [k, t] of c.tensors) if (k.startsWith('init.')) out.set(k.slice('init.'.length), t.data);
  return out;
}
