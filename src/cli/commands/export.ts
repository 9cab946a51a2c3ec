// `export`: writes a model (a folder, a Hub id, or a checkpoint; a LoRA adapter folder or a
// checkpoint with an adapter is merged into its base first) in one of the formats of
// export-formats.ts. Everything is checked before a byte is written: the output folder (never
// an input, never a non-empty folder), then the model's config (a config the engine cannot
// reproduce is refused), then the weights; the export is written into a temporary sibling of
// --out and renamed into place when complete, so --out holds a whole export or nothing.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, realpath, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import type { GPT2Config } from '../../engine/model/config.ts';
import { loraScaling } from '../../engine/model/lora.ts';
import { loadCheckpoint } from '../../io/checkpoint.ts';
import { loadConfigFile, nodeDirFiles } from '../../io/node-model.ts';
import { PEFT_CONFIG_NAME, LoraFormatError, loadLora, mergeLora } from '../../io/peft.ts';
import { Args, UsageError, type CommandSpec } from '../args.ts';
import { EXPORT_FORMATS, ExportFormatUnavailableError, type ExportModel } from '../export-formats.ts';
import { resolveModelDir } from '../model-arg.ts';
import { tokenizerFor } from '../save-folder.ts';

export const exportSpec: CommandSpec = {
  name: 'export',
  summary: 'Export a model as a Hugging Face folder, an ONNX folder for transformers.js, or a PyTorch project.',
  usage: 'npm run cli -- export --model <dir|owner/name[@revision]> --format hf|onnx|torch --out <dir>',
  options: [
    { name: 'model', kind: 'string', meta: 'dir|id', help: 'model folder (config.json + model.safetensors), a checkpoint-<step> folder, a PEFT LoRA adapter folder (merged into its base model), or a Hub id owner/name[@revision]' },
    { name: 'format', kind: 'string', choices: Object.keys(EXPORT_FORMATS), help: Object.entries(EXPORT_FORMATS).map(([k, f]) => `${k} = ${f.summary}`).join('; ') },
    { name: 'out', kind: 'string', meta: 'dir', help: 'a new folder (or an empty one) for the export; never the model folder or inside it' },
    { name: 'endpoint', kind: 'string', optional: true, meta: 'url', help: 'Hub endpoint for a Hub id (default $HF_ENDPOINT or https://huggingface.co)' },
    { name: 'no-quantized', kind: 'flag', help: 'onnx: leave out the 8-bit onnx/decoder_model_merged_quantized.onnx (transformers.js then needs { quantized: false })' },
  ],
  notes: 'The export is written beside --out and moved into place when complete.',
};

/** --out cannot be used: it is an input, inside one, or holds files already. */
export class ExportPathError extends UsageError {}

async function real(p: string): Promise<string> {
  return realpath(p).catch(() => resolve(p));
}

function within(child: string, parent: string): boolean {
  return child === parent || child.startsWith(parent.endsWith(sep) ? parent : parent + sep);
}

/** Checks --out against the inputs; returns whether it exists (as an empty folder). */
async function checkOut(out: string, inputs: string[]): Promise<boolean> {
  const target = await real(out);
  for (const input of inputs) {
    const dir = await real(input);
    if (within(target, dir) || within(dir, target)) {
      throw new ExportPathError(`export: --out ${out} is ${target === dir ? 'the model folder itself' : within(target, dir) ? 'inside the model folder' : 'a folder that holds the model'} (${input}); the export never writes over or beside its input. Choose a new folder elsewhere.`);
    }
  }
  const st = await stat(out).catch(() => null);
  if (!st) return false;
  if (!st.isDirectory()) throw new ExportPathError(`export: --out ${out} is a file. Give a new folder name; nothing was written.`);
  const entries = await readdir(out);
  if (entries.length) throw new ExportPathError(`export: --out ${out} already holds ${entries.length} entr${entries.length === 1 ? 'y' : 'ies'} (${entries.slice(0, 3).join(', ')}…); the export does not mix with or replace files. Choose a new folder or empty it; nothing was written.`);
  return true;
}

async function exists(p: string): Promise<boolean> {
  return (await stat(p).catch(() => null)) !== null;
}

/** The model to export: config checked first, then weights, with a LoRA adapter merged in. */
async function loadExportModel(
  modelArg: string, modelDir: string, endpoint: string | undefined, log: (l: string) => void,
): Promise<{ model: ExportModel; inputs: string[] }> {
  const inputs = [modelDir];
  const hasConfig = await exists(join(modelDir, 'config.json'));
  const hasAdapter = await exists(join(modelDir, PEFT_CONFIG_NAME));
  let baseDir = modelDir;
  if (!hasConfig) {
    if (!hasAdapter) throw new UsageError(`export: ${modelDir} has no config.json: it is not a model folder. Give a folder with config.json + model.safetensors, a checkpoint, a LoRA adapter folder, or a Hub id.`);
    // A LoRA folder alone (train --lora-export adapter): its base model is named inside.
    let base: unknown;
    try {
      base = JSON.parse(await readFile(join(modelDir, PEFT_CONFIG_NAME), 'utf8')).base_model_name_or_path;
    } catch (e) {
      throw new LoraFormatError(`${join(modelDir, PEFT_CONFIG_NAME)} is not valid JSON (${(e as Error).message}).`);
    }
    if (typeof base !== 'string' || base === '') {
      throw new LoraFormatError(`${join(modelDir, PEFT_CONFIG_NAME)} names no base_model_name_or_path, so the adapter cannot be merged. Copy the adapter files into the base model's folder and export that.`);
    }
    log(`LoRA adapter over ${base}`);
    baseDir = await resolveModelDir(base, { endpoint, weights: true, log });
    inputs.push(baseDir);
  }
  const config: GPT2Config = await loadConfigFile(join(baseDir, 'config.json'));
  return {
    inputs,
    model: {
      config,
      // weights are read later, after --out is checked against every input
      params: new Map(),
      modelArg,
      modelDir: baseDir,
      ...(hasAdapter ? { lora: 'pending' } : {}),
    },
  };
}

export async function runExport(a: Args, out: (line: string) => void): Promise<void> {
  const format = EXPORT_FORMATS[a.str('format')];
  if (format.unavailable || !(format.write || format.fromCheckpoint)) throw new ExportFormatUnavailableError(format.unavailable ?? `export --format ${a.str('format')} is not available.`);
  const outDir = a.str('out');
  const modelArg = a.str('model');
  if (format.fromCheckpoint) {
    // A training checkpoint exported whole (its weights, optimizer state, settings and data).
    const ckDir = resolve(modelArg);
    if (!(await exists(join(ckDir, 'trainer_state.json')))) {
      throw new UsageError(`export --format ${a.str('format')}: --model ${modelArg} is not a training checkpoint (no trainer_state.json). Give a checkpoint-<step> folder written by train --save-every, the page, or train.py.`);
    }
    const outExists = await checkOut(outDir, [ckDir]);
    await moveIntoPlace(outDir, outExists, (tmp) => format.fromCheckpoint!(ckDir, tmp, out), a.str('format'), out);
    return;
  }
  if (!format.write) throw new ExportFormatUnavailableError(`export --format ${a.str('format')} is not available.`);
  const write = format.write;
  if (await exists(outDir)) await checkOut(outDir, [await resolveModelDirIfLocal(modelArg)]);
  const modelDir = await resolveModelDir(modelArg, { endpoint: a.optStr('endpoint'), weights: true, log: out });
  const { model, inputs } = await loadExportModel(modelArg, modelDir, a.optStr('endpoint'), out);
  const outExists = await checkOut(outDir, inputs);

  // Weights, then the adapter merged in.
  model.params = await loadCheckpoint(model.config, await nodeDirFiles(model.modelDir));
  if (model.lora) {
    const adapter = await loadLora(model.config, await nodeDirFiles(modelDir));
    model.params = mergeLora(model.config, model.params, adapter.config, adapter.params);
    model.lora = `r=${adapter.config.r}, alpha=${adapter.config.alpha}, scaling ${loraScaling(adapter.config).toPrecision(4)}, ${adapter.config.targets.join(',')}`;
    out(`merged the LoRA adapter of ${modelDir} (${model.lora})`);
  }
  // A LoRA folder alone has no tokenizer: its base model's is the model's.
  const tokDir = (await exists(join(modelDir, 'tokenizer.json'))) || (await exists(join(modelDir, 'vocab.json'))) ? modelDir : model.modelDir;
  model.tokenizer = await tokenizerFor(tokDir, model.config, out);
  if (!model.tokenizer) out('note: the export has no tokenizer files (the model has none that fits its vocabulary); transformers.js needs a tokenizer.json beside config.json to encode text.');

  await moveIntoPlace(outDir, outExists, (tmp) => write(tmp, model, { quantized: !a.flag('no-quantized') }, out), a.str('format'), out);
}

/** Writes an export into a temporary sibling of --out and renames it into place when complete. */
async function moveIntoPlace(
  outDir: string, outExists: boolean, fill: (tmp: string) => Promise<string[]>, format: string, out: (line: string) => void,
): Promise<void> {
  const parent = dirname(resolve(outDir));
  await mkdir(parent, { recursive: true });
  const tmp = join(parent, `.${basename(outDir)}.tmp-${randomBytes(4).toString('hex')}`);
  await mkdir(tmp);
  let files: string[];
  try {
    files = await fill(tmp);
    if (outExists) await rmdir(outDir); // empty, checked above
    await rename(tmp, outDir);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  const sizes = await Promise.all(files.map(async (f) => `${f} (${((await stat(join(outDir, f))).size / 1e6).toFixed(2)} MB)`));
  out(`exported ${format} to ${outDir}: ${sizes.join(', ')}`);
}

/** The local folder --model names, for the early --out check (a Hub id is checked after download). */
async function resolveModelDirIfLocal(arg: string): Promise<string> {
  return (await stat(arg).catch(() => null))?.isDirectory() ? arg : resolve(arg);
}
