// LoRA weights in PEFT's folder format, and merging them into the base weights.
//
// A PEFT adapter folder (peft PeftModel.save_pretrained) holds adapter_config.json (LoraConfig's
// fields) and adapter_model.safetensors with keys like
// `base_model.model.transformer.h.0.attn.c_attn.lora_A.weight` (r, in) and `…lora_B.weight`
// (out, r): get_peft_model_state_dict drops the adapter name ("default") from the keys. For
// GPT-2's Conv1D layers PEFT uses fan_in_fan_out = True and merges W + (B·A)ᵀ·s
// (lora.Linear.get_delta_weight), s = lora_alpha / r, or lora_alpha / √r with use_rslora.
// Browser-safe: bytes and ModelFiles in, bytes out; the CLI writes them to disk.
import { ShapeError, StudioError } from '../engine/errors.ts';
import type { GPT2Config } from '../engine/model/config.ts';
import { checkLoraConfig, loraScaling, loraTargets, LORA_MODULES, type LoraConfig } from '../engine/model/lora.ts';
import type { HostParams } from '../engine/model/params.ts';
import type { ModelFiles } from './checkpoint.ts';
import { parseSafetensorsHeader, readTensorF32, writeSafetensors, type WriteTensor } from './safetensors.ts';

/** A LoRA folder we cannot use: a missing file, a config PEFT would not write for GPT-2 LoRA, tensors that do not fit. */
export class LoraFormatError extends StudioError {}

export const PEFT_CONFIG_NAME = 'adapter_config.json';
export const PEFT_WEIGHTS_NAME = 'adapter_model.safetensors';
/** Key prefix of a GPT2LMHeadModel wrapped by PeftModelForCausalLM. */
export const PEFT_PREFIX = 'base_model.model.transformer.';
/** The prefix when the wrapped model was a bare GPT2Model. */
const PEFT_PREFIX_BARE = 'base_model.model.';
/** adapter_config.json is a few hundred bytes; refuse to parse something absurd. */
const MAX_CONFIG_BYTES = 1024 * 1024;

/**
 * adapter_config.json for `cfg`: the fields of peft's LoraConfig that decide how the adapter is
 * applied, with PEFT's values for the options this studio does not use.
 */
export function loraConfigJson(cfg: LoraConfig, baseModel: string): Record<string, unknown> {
  return {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: baseModel,
    r: cfg.r,
    lora_alpha: cfg.alpha,
    lora_dropout: cfg.dropout,
    target_modules: [...cfg.targets],
    fan_in_fan_out: true,
    bias: 'none',
    use_rslora: cfg.rslora,
    modules_to_save: null,
    init_lora_weights: true,
    layers_to_transform: null,
    layers_pattern: null,
    inference_mode: true,
    revision: null,
  };
}

/** The tensors of adapter_model.safetensors, in target order: A (r, in) then B (out, r). */
export function loraTensors(model: GPT2Config, cfg: LoraConfig, params: HostParams): WriteTensor[] {
  const out: WriteTensor[] = [];
  for (const t of loraTargets(model, cfg)) {
    for (const [name, shape] of [[t.a, [cfg.r, t.in]], [t.b, [t.out, cfg.r]]] as const) {
      const data = params.get(name);
      if (!data) throw new ShapeError(`Cannot export the adapter: tensor ${name} is missing.`);
      out.push({ name: PEFT_PREFIX + name, shape: [...shape], data });
    }
  }
  return out;
}

/** Both files of a LoRA folder. */
export function loraFiles(model: GPT2Config, cfg: LoraConfig, params: HostParams,
  baseModel: string): { [PEFT_CONFIG_NAME]: string; [PEFT_WEIGHTS_NAME]: Uint8Array } {
  return {
    [PEFT_CONFIG_NAME]: `${JSON.stringify(loraConfigJson(cfg, baseModel), null, 2)}\n`,
    [PEFT_WEIGHTS_NAME]: writeSafetensors(loraTensors(model, cfg, params)),
  };
}

function bad(file: string, problem: string): LoraFormatError {
  return new LoraFormatError(`${file}: ${problem}`);
}

/**
 * LoraConfig from a parsed adapter_config.json. Refuses what would change the function the
 * LoRA variant computes and that this studio does not implement (bias other than "none", DoRA,
 * per-layer rank or alpha patterns, layers_to_transform, modules_to_save). A string
 * target_modules is a regular expression PEFT matches against the whole module name (re.fullmatch);
 * it is resolved here to the matching module names.
 */
export function parseLoraConfig(model: GPT2Config, json: unknown, file = PEFT_CONFIG_NAME): { config: LoraConfig; baseModel: string | null } {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw bad(file, 'is not a JSON object.');
  const j = json as Record<string, unknown>;
  if (j.peft_type !== 'LORA') throw bad(file, `peft_type is ${JSON.stringify(j.peft_type)}; only LoRA weights ("LORA") can be loaded.`);
  if (j.task_type !== undefined && j.task_type !== null && j.task_type !== 'CAUSAL_LM') {
    throw bad(file, `task_type is ${JSON.stringify(j.task_type)}; GPT-2 language-model LoRA weights are "CAUSAL_LM".`);
  }
  const r = j.r ?? 8;
  if (typeof r !== 'number' || !Number.isInteger(r) || r < 1) throw bad(file, `r must be a positive integer, got ${JSON.stringify(j.r)}.`);
  const alpha = j.lora_alpha ?? 8;
  if (typeof alpha !== 'number' || !(alpha > 0)) throw bad(file, `lora_alpha must be a positive number, got ${JSON.stringify(j.lora_alpha)}.`);
  const dropout = j.lora_dropout ?? 0;
  if (typeof dropout !== 'number' || !(dropout >= 0 && dropout < 1)) throw bad(file, `lora_dropout must be in [0, 1), got ${JSON.stringify(j.lora_dropout)}.`);
  const rslora = j.use_rslora ?? false;
  if (typeof rslora !== 'boolean') throw bad(file, `use_rslora must be true or false, got ${JSON.stringify(j.use_rslora)}.`);
  const refuse = (cond: boolean, what: string) => {
    if (cond) throw bad(file, `${what} is not supported; the studio applies plain LoRA (bias "none") and will not load it approximately.`);
  };
  refuse((j.bias ?? 'none') !== 'none', `bias ${JSON.stringify(j.bias)}`);
  refuse(j.use_dora === true, 'use_dora (DoRA)');
  const nonEmpty = (v: unknown) => v !== undefined && v !== null && !(Array.isArray(v) && v.length === 0) && !(typeof v === 'object' && !Array.isArray(v) && Object.keys(v as object).length === 0);
  refuse(nonEmpty(j.rank_pattern), 'rank_pattern');
  refuse(nonEmpty(j.alpha_pattern), 'alpha_pattern');
  refuse(nonEmpty(j.layers_to_transform), 'layers_to_transform');
  refuse(nonEmpty(j.modules_to_save), 'modules_to_save');
  let targets: string[];
  const tm = j.target_modules;
  if (Array.isArray(tm) && tm.length && tm.every((t) => typeof t === 'string' && t !== '')) {
    targets = tm as string[];
  } else if (typeof tm === 'string' && tm !== '') {
    let re: RegExp;
    try {
      re = new RegExp(`^(?:${tm})$`);
    } catch (e) {
      throw bad(file, `target_modules ${JSON.stringify(tm)} is not a regular expression this studio can read (${(e as Error).message}).`);
    }
    targets = [];
    for (let i = 0; i < model.nLayer; i++) for (const m of LORA_MODULES) if (re.test(`transformer.h.${i}.${m}`)) targets.push(`transformer.h.${i}.${m}`);
    if (!targets.length) throw bad(file, `target_modules ${JSON.stringify(tm)} matches no c_attn, c_proj or c_fc layer of this GPT-2.`);
  } else {
    throw bad(file, `target_modules must be a non-empty list of module names (or a regular expression), got ${JSON.stringify(tm)}.`);
  }
  const config: LoraConfig = { r, alpha, dropout, targets, rslora };
  try {
    checkLoraConfig(model, config);
    loraTargets(model, config);
  } catch (e) {
    throw bad(file, (e as Error).message);
  }
  const base = j.base_model_name_or_path;
  return { config, baseModel: typeof base === 'string' ? base : null };
}

/**
 * Reads a LoRA folder (adapter_config.json + adapter_model.safetensors, F32/F16/BF16) for
 * `model`: exactly the A and B of every targeted layer, with PEFT's shapes.
 */
export async function loadLora(model: GPT2Config, files: ModelFiles): Promise<{ config: LoraConfig; params: HostParams; baseModel: string | null }> {
  const cfgSrc = files.get(PEFT_CONFIG_NAME);
  const wSrc = files.get(PEFT_WEIGHTS_NAME);
  if (!cfgSrc || !wSrc) {
    const missing = [cfgSrc ? null : PEFT_CONFIG_NAME, wSrc ? null : PEFT_WEIGHTS_NAME].filter(Boolean).join(' and ');
    throw new LoraFormatError(
      `The adapter folder lacks ${missing}. A PEFT LoRA adapter is the two files adapter_config.json and adapter_model.safetensors (PeftModel.save_pretrained with safe_serialization; adapter_model.bin is not read).`,
    );
  }
  if (cfgSrc.size > MAX_CONFIG_BYTES) throw bad(PEFT_CONFIG_NAME, `is ${cfgSrc.size} bytes, far too large for a LoRA config.`);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(await cfgSrc.read(0, cfgSrc.size)));
  } catch (e) {
    throw bad(PEFT_CONFIG_NAME, `is not valid UTF-8 JSON (${(e as Error).message}).`);
  }
  const { config, baseModel } = parseLoraConfig(model, json);
  const header = await parseSafetensorsHeader(wSrc);
  const stored = [...header.tensors.keys()];
  const prefix = stored.every((k) => k.startsWith(PEFT_PREFIX)) ? PEFT_PREFIX : PEFT_PREFIX_BARE;
  const params: HostParams = new Map();
  const expected = new Set<string>();
  for (const t of loraTargets(model, config)) {
    for (const [name, shape] of [[t.a, [config.r, t.in]], [t.b, [t.out, config.r]]] as const) {
      const key = prefix + name;
      expected.add(key);
      const info = header.tensors.get(key);
      if (!info) throw bad(PEFT_WEIGHTS_NAME, `has no tensor '${PEFT_PREFIX + name}' although adapter_config.json targets ${t.name} with r = ${config.r}.`);
      if (info.shape.length !== 2 || info.shape[0] !== shape[0] || info.shape[1] !== shape[1]) {
        throw bad(PEFT_WEIGHTS_NAME, `tensor '${key}' has shape [${info.shape.join(', ')}]; r = ${config.r} on ${t.name} needs [${shape.join(', ')}] (PEFT: lora_A (r, in), lora_B (out, r)). Were these LoRA weights made for another model size?`);
      }
      params.set(name, await readTensorF32(wSrc, header, key));
    }
  }
  const extra = stored.filter((k) => !expected.has(k));
  if (extra.length) {
    throw bad(PEFT_WEIGHTS_NAME, `holds tensors adapter_config.json does not explain: ${extra.slice(0, 4).map((k) => `'${k}'`).join(', ')}${extra.length > 4 ? ` and ${extra.length - 4} more` : ''}.`);
  }
  return { config, params, baseModel };
}

/**
 * The base weights with every LoRA update merged: W + (B·A)ᵀ·s on each targeted Conv1D weight
 * (summed in float64, rounded once to float32); every other tensor is shared, not copied.
 */
export function mergeLora(model: GPT2Config, base: HostParams, cfg: LoraConfig, params: HostParams): HostParams {
  const out: HostParams = new Map(base);
  const s = loraScaling(cfg);
  const r = cfg.r;
  for (const t of loraTargets(model, cfg)) {
    const W = base.get(`${t.name}.weight`);
    const A = params.get(t.a);
    const B = params.get(t.b);
    if (!W || W.length !== t.in * t.out) throw new ShapeError(`Cannot merge into ${t.name}.weight: the base tensor is missing or not ${t.in}×${t.out}.`);
    if (!A || A.length !== r * t.in || !B || B.length !== t.out * r) throw new ShapeError(`Cannot merge ${t.name}: its lora_A/lora_B are missing or not ${r}×${t.in} and ${t.out}×${r}.`);
    const merged = new Float32Array(W.length);
    const acc = new Float64Array(t.out);
    for (let i = 0; i < t.in; i++) {
      acc.fill(0);
      // W'[i, o] = W[i, o] + s·Σ_k A[k, i]·B[o, k]
      for (let k = 0; k < r; k++) {
        const a = A[k * t.in + i];
        if (a === 0) continue;
        for (let o = 0; o < t.out; o++) acc[o] += a * B[o * r + k];
      }
      for (let o = 0; o < t.out; o++) merged[i * t.out + o] = W[i * t.out + o] + s * acc[o];
    }
    out.set(`${t.name}.weight`, merged);
  }
  return out;
}
