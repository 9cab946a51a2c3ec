// GPT-2 checkpoints in the Hugging Face layout: finding the weight files of a model folder
// (model.safetensors, or shards listed by model.safetensors.index.json), mapping their tensor names
// to the engine's parameter names, checking every shape against the config, and streaming the
// tensors in one at a time; and the list of tensors to write back.
//
// Naming facts (transformers' GPT2LMHeadModel, modeling_gpt2.py): parameters live under
// `transformer.` (GPT2Model saved alone has no prefix); `h.{i}.attn.bias` and
// `h.{i}.attn.masked_bias` are causal-mask buffers, not parameters, that older versions saved;
// `lm_head.weight` is tied to `wte.weight` and usually left out (safetensors stores shared
// tensors once). from_pretrained prefers model.safetensors over the sharded index, and so do we.
import { ShapeError, StudioError } from '../engine/errors.ts';
import type { GPT2Config } from '../engine/model/config.ts';
import { checkHostParams, paramSpecs, type HostParams } from '../engine/model/params.ts';
import type { ByteSource } from './bytes.ts';
import {
  CorruptCheckpointError,
  parseSafetensorsHeader,
  readTensorF32,
  UnsupportedDtypeError,
  type SafetensorsHeader,
  type TensorInfo,
  type WriteTensor,
} from './safetensors.ts';

/** A file the model needs is not there (no weights, a shard listed in the index, config.json). */
export class MissingModelFileError extends StudioError {}

/** Weights in a format we do not read (PyTorch pickle .bin, TensorFlow, Flax, a LoRA weights alone). */
export class UnsupportedCheckpointFormatError extends StudioError {}

/** The checkpoint's tensors are not those of the configured GPT-2 (missing or unexpected names). */
export class CheckpointMismatchError extends StudioError {}

/** The checkpoint has an LM head different from wte; the engine ties them, as GPT-2 does. */
export class UntiedHeadError extends StudioError {}

/** The files of a model folder, by name (e.g. 'config.json', 'model.safetensors'). */
export interface ModelFiles {
  get(name: string): ByteSource | undefined;
  names(): string[];
}

export interface LoadProgress {
  /** engine name of the tensor just read */
  tensor: string;
  /** file it came from */
  file: string;
  /** tensors read so far, of `count` */
  done: number;
  count: number;
  /** bytes read so far, of `totalBytes` (as stored, before conversion to float32) */
  loadedBytes: number;
  totalBytes: number;
}

export const SAFE_WEIGHTS_NAME = 'model.safetensors';
export const SAFE_WEIGHTS_INDEX_NAME = 'model.safetensors.index.json';
export const HF_PREFIX = 'transformer.';
const LM_HEAD = 'lm_head.weight';
/** The causal-mask buffers, and nothing else: `h.0.attn.c_attn.bias` is a real parameter. */
const MASK_BUFFER = /^h\.\d+\.attn\.(bias|masked_bias)$/;
/** An index file is a few kB to a few MB; refuse to read something absurd into memory. */
const MAX_INDEX_BYTES = 64 * 1024 * 1024;

const HOW_TO_GET_SAFETENSORS =
  'Use a safetensors checkpoint instead: on the Hugging Face Hub, many models have one (or an open ' +
  '"Adding `safetensors` variant" pull request under refs/pr/N, made by the Hub\'s conversion bot); ' +
  'or convert it yourself with transformers: ' +
  'GPT2LMHeadModel.from_pretrained(dir).save_pretrained(out_dir, safe_serialization=True).';

/** A ModelFiles over a list of sources, keyed by each source's name. */
export function filesFromSources(sources: ByteSource[]): ModelFiles {
  const map = new Map(sources.map((s) => [s.name, s]));
  return { get: (n) => map.get(n), names: () => [...map.keys()] };
}

function baseName(name: string): string {
  return name.slice(name.lastIndexOf('/') + 1);
}

/** Finds a file by exact name, or by base name when a dropped folder kept its path. */
function lookup(files: ModelFiles, name: string): ByteSource | undefined {
  const exact = files.get(name);
  if (exact) return exact;
  const hits = files.names().filter((n) => baseName(n) === baseName(name));
  return hits.length === 1 ? files.get(hits[0]) : undefined;
}

function listNames(names: string[], max = 8): string {
  const shown = names.slice(0, max).map((n) => `'${n}'`).join(', ');
  return names.length > max ? `${shown} and ${names.length - max} more` : shown;
}

interface WeightFiles {
  sources: ByteSource[];
  /** from the index, if sharded: stored tensor name → shard file name */
  weightMap?: Map<string, string>;
  index?: string;
}

async function readIndex(src: ByteSource): Promise<Map<string, string>> {
  if (src.size > MAX_INDEX_BYTES) throw new CorruptCheckpointError(`${src.name} is ${src.size} bytes, far too large for a shard index.`);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(await src.read(0, src.size)));
  } catch (e) {
    throw new CorruptCheckpointError(`${src.name} is not valid UTF-8 JSON (${(e as Error).message}). Download the model's index file again.`);
  }
  const wm = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof wm !== 'object' || wm === null || Array.isArray(wm)) {
    throw new CorruptCheckpointError(`${src.name} has no "weight_map" object mapping tensor names to shard files. Download the model's index file again.`);
  }
  const out = new Map<string, string>();
  for (const [k, v] of Object.entries(wm)) {
    if (typeof v !== 'string' || v === '') throw new CorruptCheckpointError(`${src.name}: the weight_map entry for '${k}' is ${JSON.stringify(v)}, not a shard file name.`);
    out.set(k, v);
  }
  return out;
}

/** Which files hold the weights, following from_pretrained's preference order. */
async function findWeightFiles(files: ModelFiles): Promise<WeightFiles> {
  const single = lookup(files, SAFE_WEIGHTS_NAME);
  if (single) return { sources: [single] };
  const indexSrc = lookup(files, SAFE_WEIGHTS_INDEX_NAME);
  if (indexSrc) {
    const weightMap = await readIndex(indexSrc);
    const shardNames = [...new Set(weightMap.values())];
    const sources: ByteSource[] = [];
    const missing: string[] = [];
    for (const s of shardNames) {
      const src = lookup(files, s);
      if (src) sources.push(src);
      else missing.push(s);
    }
    if (missing.length) {
      throw new MissingModelFileError(
        `${indexSrc.name} lists shard${missing.length > 1 ? 's' : ''} ${listNames(missing)} but the model files do not include ${missing.length > 1 ? 'them' : 'it'}. Provide every shard file next to the index.`,
      );
    }
    return { sources, weightMap, index: indexSrc.name };
  }
  const names = files.names();
  const others = names.filter((n) => n.endsWith('.safetensors') && baseName(n) !== 'adapter_model.safetensors');
  if (others.length === 1) return { sources: [files.get(others[0])!] };
  if (others.length > 1) {
    throw new MissingModelFileError(
      `Found several safetensors files (${listNames(others)}) but no ${SAFE_WEIGHTS_INDEX_NAME} saying which tensors each holds. Provide the index file, or a single ${SAFE_WEIGHTS_NAME}.`,
    );
  }
  const pickle = names.filter((n) => /\.(bin|pt|pth|ckpt|pkl)$/.test(n) || baseName(n) === 'pytorch_model.bin.index.json');
  if (pickle.length) {
    throw new UnsupportedCheckpointFormatError(
      `The model has only PyTorch pickle weights (${listNames(pickle)}); .bin/.pt checkpoints are not read, because unpickling can run arbitrary code and needs PyTorch. ${HOW_TO_GET_SAFETENSORS}`,
    );
  }
  const other = names.filter((n) => /(\.h5|\.msgpack|\.onnx|\.gguf)$/.test(n));
  if (other.length) {
    throw new UnsupportedCheckpointFormatError(`The model has only ${listNames(other)}, which are not read. ${HOW_TO_GET_SAFETENSORS}`);
  }
  if (names.some((n) => baseName(n) === 'adapter_model.safetensors')) {
    throw new UnsupportedCheckpointFormatError(
      'adapter_model.safetensors is a LoRA adapter, not a full model. Load its base model (base_model_name_or_path in adapter_config.json) and apply the adapter to it.',
    );
  }
  throw new MissingModelFileError(
    `No ${SAFE_WEIGHTS_NAME} (or ${SAFE_WEIGHTS_INDEX_NAME} with its shards) among the model files${names.length ? ` (${listNames(names)})` : ''}. Provide the model's weights in safetensors format.`,
  );
}

interface Located {
  src: ByteSource;
  header: SafetensorsHeader;
  info: TensorInfo;
}

function shapeStr(s: number[]): string {
  return `[${s.join(', ')}]`;
}

function sameShape(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function configSummary(c: GPT2Config): string {
  return `vocab_size ${c.vocabSize}, n_positions ${c.nPositions}, n_embd ${c.nEmbd}, n_layer ${c.nLayer}, n_inner ${c.nInner}`;
}

/**
 * Reads a GPT-2 checkpoint into host float32 arrays keyed by engine name (paramSpecs order),
 * reading one tensor at a time so the model is never held twice. Throws before reading any data
 * if names, shapes or dtypes do not fit `config`.
 */
export async function loadCheckpoint(
  config: GPT2Config,
  files: ModelFiles,
  onProgress?: (p: LoadProgress) => void,
): Promise<HostParams> {
  const { sources, weightMap, index } = await findWeightFiles(files);
  const specs = paramSpecs(config);
  const expected = new Map(specs.map((s) => [s.name, s]));
  const found = new Map<string, Located>();
  const storedAs = new Map<string, string>();
  let lmHead: Located | undefined;
  const unknown: string[] = [];
  const allStored = new Set<string>();

  for (const src of sources) {
    const header = await parseSafetensorsHeader(src, { allowOtherDtypes: true });
    for (const info of header.tensors.values()) {
      const stored = info.name;
      allStored.add(stored);
      if (weightMap && weightMap.get(stored) !== undefined && baseName(weightMap.get(stored)!) !== baseName(src.name)) {
        throw new CorruptCheckpointError(`${index} says '${stored}' is in ${weightMap.get(stored)}, but it is in ${src.name}. The index and the shards do not belong together.`);
      }
      const name = stored.startsWith(HF_PREFIX) ? stored.slice(HF_PREFIX.length) : stored;
      if (MASK_BUFFER.test(name)) continue;
      if (stored === LM_HEAD) {
        lmHead = { src, header, info };
        continue;
      }
      if (!expected.has(name)) {
        unknown.push(stored);
        continue;
      }
      const prev = storedAs.get(name);
      if (prev !== undefined) {
        throw new CorruptCheckpointError(`The checkpoint holds '${name}' twice (as '${prev}' and as '${stored}'${sources.length > 1 ? `, in ${found.get(name)!.src.name} and ${src.name}` : ''}). Remove one of them.`);
      }
      storedAs.set(name, stored);
      found.set(name, { src, header, info });
    }
  }
  if (weightMap) {
    const listedButAbsent = [...weightMap.keys()].filter((k) => !allStored.has(k));
    if (listedButAbsent.length) {
      throw new CorruptCheckpointError(`${index} lists ${listNames(listedButAbsent)} but no shard holds ${listedButAbsent.length > 1 ? 'them' : 'it'}. The index and the shards do not belong together.`);
    }
  }

  const missing = specs.filter((s) => !found.has(s.name)).map((s) => HF_PREFIX + s.name);
  if (missing.length || unknown.length) {
    const parts: string[] = [];
    if (missing.length) parts.push(`${missing.length} tensor${missing.length > 1 ? 's are' : ' is'} missing (${listNames(missing)})`);
    if (unknown.length) parts.push(`${unknown.length} unexpected tensor${unknown.length > 1 ? 's' : ''} (${listNames(unknown)})`);
    throw new CheckpointMismatchError(
      `The checkpoint does not match a GPT-2 with ${configSummary(config)}: ${parts.join('; ')}. ` +
        'Check that config.json belongs to these weights and that they are a GPT-2 (GPT2LMHeadModel) checkpoint.',
    );
  }

  // Shapes and dtypes, all checked before any data is read.
  const bad: string[] = [];
  for (const s of specs) {
    const { info, src } = found.get(s.name)!;
    if (!sameShape(info.shape, s.shape)) {
      // Conv1D weights stored the nn.Linear way, (out, in): a common conversion mistake.
      const transposed = /\.(c_attn|c_proj|c_fc)\.weight$/.test(s.name) && sameShape(info.shape, [s.shape[1], s.shape[0]]);
      bad.push(
        `'${info.name}' in ${src.name} has shape ${shapeStr(info.shape)} but the config needs ${shapeStr(s.shape)}` +
          (transposed ? ' (it is stored transposed, as nn.Linear (out, in); GPT-2 checkpoints store Conv1D weights as (in, out))' : ''),
      );
    }
  }
  if (lmHead && !sameShape(lmHead.info.shape, [config.vocabSize, config.nEmbd])) {
    bad.push(`'${LM_HEAD}' in ${lmHead.src.name} has shape ${shapeStr(lmHead.info.shape)} but the config needs ${shapeStr([config.vocabSize, config.nEmbd])}`);
  }
  if (bad.length) {
    throw new ShapeError(
      `${bad.length} tensor${bad.length > 1 ? 's do' : ' does'} not fit the config (${configSummary(config)}): ${bad.slice(0, 5).join('; ')}${bad.length > 5 ? `; and ${bad.length - 5} more` : ''}. Check that config.json belongs to these weights.`,
    );
  }
  for (const l of [...found.values(), ...(lmHead ? [lmHead] : [])]) {
    if (!['F32', 'F16', 'BF16'].includes(l.info.dtype)) {
      throw new UnsupportedDtypeError(
        `${l.src.name}: tensor '${l.info.name}' is stored as ${l.info.dtype}; only F32, F16 and BF16 tensors are supported. Convert the checkpoint to float32, float16 or bfloat16.`,
      );
    }
  }

  // Read file by file in data order, so each file is read front to back.
  const order = [...found.entries()].sort(
    ([, a], [, b]) => sources.indexOf(a.src) - sources.indexOf(b.src) || a.info.begin - b.info.begin,
  );
  const count = order.length + (lmHead ? 1 : 0);
  const totalBytes = order.reduce((a, [, l]) => a + l.info.end - l.info.begin, 0) + (lmHead ? lmHead.info.end - lmHead.info.begin : 0);
  let loadedBytes = 0;
  let done = 0;
  const loaded = new Map<string, Float32Array>();
  for (const [name, l] of order) {
    loaded.set(name, await readTensorF32(l.src, l.header, l.info.name));
    loadedBytes += l.info.end - l.info.begin;
    onProgress?.({ tensor: name, file: l.src.name, done: ++done, count, loadedBytes, totalBytes });
  }
  if (lmHead) {
    const head = await readTensorF32(lmHead.src, lmHead.header, LM_HEAD);
    const wte = loaded.get('wte.weight')!;
    const i = firstDifference(head, wte);
    if (i >= 0) {
      throw new UntiedHeadError(
        `${lmHead.src.name}: lm_head.weight differs from wte.weight (first at element ${i}: ${head[i]} vs ${wte[i]}). ` +
          'The studio ties the LM head to the token embeddings, as GPT-2 does, so checkpoints with a separate LM head are not supported.',
      );
    }
    loadedBytes += lmHead.info.end - lmHead.info.begin;
    onProgress?.({ tensor: LM_HEAD, file: lmHead.src.name, done: ++done, count, loadedBytes, totalBytes });
  }
  // Return in paramSpecs order (the order the rest of the engine lays parameters out in).
  return new Map(specs.map((s) => [s.name, loaded.get(s.name)!]));
}

/** Index of the first element where a and b differ as numbers (NaN equals NaN), or −1. */
function firstDifference(a: Float32Array, b: Float32Array): number {
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return i;
  }
  return -1;
}

/**
 * The tensors of a checkpoint to write, in paramSpecs order: HF names with the `transformer.`
 * prefix (as GPT2LMHeadModel.save_pretrained writes them), the tied head left out, float32.
 */
export function checkpointTensors(config: GPT2Config, params: HostParams): WriteTensor[] {
  checkHostParams(config, params);
  return paramSpecs(config).map((s) => ({ name: HF_PREFIX + s.name, shape: [...s.shape], data: params.get(s.name)! }));
}
