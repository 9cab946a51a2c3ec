// The train command's LoRA options (PEFT semantics, src/engine/model/lora.ts) and the export of
// a LoRA run: a PEFT LoRA folder, the merged full weights, or both.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { StudioError } from '../engine/errors.ts';
import type { GPT2Config } from '../engine/model/config.ts';
import { countLoraParams, LoraConfigError, loraScaling, loraTargets, type LoraConfig } from '../engine/model/lora.ts';
import { countParams, type HostParams } from '../engine/model/params.ts';
import { DEFAULT_LORA } from '../engine/train/run-settings.ts';
import { saveModelDir } from '../io/node-model.ts';
import { PEFT_CONFIG_NAME, PEFT_WEIGHTS_NAME, loraFiles, mergeLora } from '../io/peft.ts';
import { UsageError, type Args, type OptionSpec } from './args.ts';

export type LoraExport = 'adapter' | 'merged' | 'both';

/** The LoRA result could not be written where --out points. */
export class LoraExportError extends StudioError {}

export const LORA_OPTIONS: OptionSpec[] = [
  { name: 'lora-r', kind: 'int', optional: true, meta: 'r', help: 'train LoRA weights of rank r instead of the full model (PEFT semantics: base weights frozen, only A and B train)' },
  { name: 'lora-alpha', kind: 'float', optional: true, help: `LoRA alpha: the update is scaled by alpha/r (default ${DEFAULT_LORA.alpha}, PEFT's)` },
  { name: 'lora-dropout', kind: 'float', optional: true, help: `dropout on the LoRA input only (default ${DEFAULT_LORA.dropout})` },
  { name: 'lora-targets', kind: 'list', optional: true, meta: 'list', help: `layers to adapt, matched by suffix as PEFT does: c_attn, c_proj (attention and MLP), c_fc, or e.g. attn.c_proj (default ${DEFAULT_LORA.targets.join(',')})` },
  { name: 'lora-rslora', kind: 'flag', help: 'rank-stabilised LoRA: scale by alpha/√r' },
  {
    name: 'lora-export', kind: 'string', optional: true, choices: ['adapter', 'merged', 'both'],
    help: 'what --out receives after LoRA training: adapter = adapter_config.json + adapter_model.safetensors (PEFT); merged = config.json + model.safetensors with W + (B·A)ᵀ·alpha/r; both = merged in --out and the adapter in --out/adapter (default adapter)',
  },
];

/** The LoRA settings of a train command line, checked against the model, or null when --lora-r is absent (full fine-tuning). */
export function parseLoraArgs(a: Args, model: GPT2Config): { config: LoraConfig; exportAs: LoraExport } | null {
  if (!a.has('lora-r')) {
    const stray = ['lora-alpha', 'lora-dropout', 'lora-targets', 'lora-export'].filter((n) => a.has(n));
    if (a.flag('lora-rslora')) stray.push('lora-rslora');
    if (stray.length) throw new UsageError(`train: ${stray.map((n) => `--${n}`).join(', ')} need --lora-r (the LoRA rank) to turn LoRA on.`);
    return null;
  }
  const r = a.num('lora-r');
  if (r < 1) throw new UsageError(`train: --lora-r must be at least 1, got ${r}.`);
  const alpha = a.optNum('lora-alpha') ?? DEFAULT_LORA.alpha;
  if (!(alpha > 0)) throw new UsageError(`train: --lora-alpha must be positive, got ${alpha}.`);
  const dropout = a.optNum('lora-dropout') ?? DEFAULT_LORA.dropout;
  if (!(dropout >= 0 && dropout < 1)) throw new UsageError(`train: --lora-dropout must be in [0, 1), got ${dropout}.`);
  // `--lora-targets a,b` and `--lora-targets a b` both arrive here; split what came joined.
  const targets = a.list('lora-targets').flatMap((t) => t.split(',')).map((t) => t.trim()).filter(Boolean);
  const config: LoraConfig = { r, alpha, dropout, targets: targets.length ? targets : [...DEFAULT_LORA.targets], rslora: a.flag('lora-rslora') };
  try {
    loraTargets(model, config);
  } catch (e) {
    if (e instanceof LoraConfigError) throw new UsageError(`train: ${e.message}`);
    throw e;
  }
  return { config, exportAs: (a.optStr('lora-export') ?? 'adapter') as LoraExport };
}

/** One line describing the LoRA setup for the training log. */
export function describeLora(model: GPT2Config, cfg: LoraConfig): string {
  const n = countLoraParams(model, cfg);
  const total = countParams(model);
  const layers = loraTargets(model, cfg).length;
  return (
    `LoRA: r=${cfg.r} alpha=${cfg.alpha} scaling=${loraScaling(cfg).toPrecision(4)}${cfg.rslora ? ' (rsLoRA)' : ''} dropout=${cfg.dropout}, ` +
    `targets ${cfg.targets.join(',')} → ${layers} layers; trainable ${n} of ${total + n} parameters (${((100 * n) / (total + n)).toFixed(3)}%), base frozen`
  );
}

/**
 * Writes a LoRA run's result under `outDir` (see the lora-export option) and returns the paths
 * written. `baseModel` goes into adapter_config.json's base_model_name_or_path (PEFT stores the
 * name or path the base model was loaded from). `saveMerged` writes the merged model folder and
 * returns its file names (default: config.json + model.safetensors only).
 */
export async function exportLora(
  outDir: string, exportAs: LoraExport, model: GPT2Config, base: HostParams, cfg: LoraConfig, lora: HostParams, baseModel: string,
  saveMerged: (dir: string, params: HostParams) => Promise<string[]> = async (dir, params) => {
    await saveModelDir(dir, model, params);
    return ['config.json', 'model.safetensors'];
  },
): Promise<string[]> {
  const written: string[] = [];
  if (exportAs === 'merged' || exportAs === 'both') {
    for (const f of await saveMerged(outDir, mergeLora(model, base, cfg, lora))) written.push(join(outDir, f));
  }
  if (exportAs === 'adapter' || exportAs === 'both') {
    const dir = exportAs === 'both' ? join(outDir, 'adapter') : outDir;
    try {
      await mkdir(dir, { recursive: true });
    } catch (e) {
      throw new LoraExportError(`Cannot create the adapter folder ${dir}: ${(e as Error).message}. Choose another --out.`);
    }
    const files = loraFiles(model, cfg, lora, baseModel);
    await writeFile(join(dir, PEFT_WEIGHTS_NAME), files[PEFT_WEIGHTS_NAME]);
    await writeFile(join(dir, PEFT_CONFIG_NAME), files[PEFT_CONFIG_NAME]);
    written.push(join(dir, PEFT_CONFIG_NAME), join(dir, PEFT_WEIGHTS_NAME));
  }
  return written;
}
