// A GPT-2 model from files the user dropped or picked (loose files or a folder): which files are
// the model (the folder holding config.json), its weights (model.safetensors, or the sharded set
// of model.safetensors.index.json, every shard checked present), its tokenizer files, and clear
// refusals for what cannot be loaded (PyTorch pickle weights only, several models at once, no
// config.json). The page collects the files (localFilesFromDrop / localFilesFromInput, which need
// the DOM) and posts them to the worker, which calls openLocalModel; File objects survive
// postMessage and are read in slices, so nothing is copied whole.
import { StudioError } from '../engine/errors.ts';
import { parseConfig, type GPT2Config } from '../engine/model/config.ts';
import { blobSource, type ByteSource } from './bytes.ts';
import {
  filesFromSources,
  MissingModelFileError,
  SAFE_WEIGHTS_INDEX_NAME,
  SAFE_WEIGHTS_NAME,
  UnsupportedCheckpointFormatError,
  type ModelFiles,
} from './checkpoint.ts';
import { CorruptCheckpointError } from './safetensors.ts';

/** The dropped files are not one model (several config.json in different folders …). */
export class AmbiguousModelFilesError extends StudioError {}

/** A file with its path relative to what was dropped ('gpt2/config.json'); postMessage-safe. */
export interface LocalFile {
  path: string;
  file: Blob;
}

export interface LocalModel {
  /** the folder's name, or 'dropped files' for loose files */
  name: string;
  config: GPT2Config;
  /** the model folder's files (weights, config, tokenizer …): for loadCheckpoint */
  files: ModelFiles;
  /** 'single' (model.safetensors) or 'sharded' (index + shards) */
  weights: 'single' | 'sharded';
  /** tokenizer files present (tokenizer.json …): for tokenizerFromModelFiles */
  tokenizerFiles: ByteSource[];
  generationConfig?: ByteSource;
  /** files that were not used, e.g. other folders' files, .DS_Store */
  ignored: string[];
}

const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'vocab.json', 'merges.txt', 'special_tokens_map.json'];
/** Files operating systems and archivers leave behind. */
const JUNK = /(^|\/)(\.DS_Store|Thumbs\.db|desktop\.ini|\._[^/]*)$|(^|\/)(__MACOSX|\.git)\//;
const PICKLE = /\.(bin|pt|pth|ckpt|pkl)$/;
const OTHER_FORMATS = /\.(h5|msgpack|onnx|gguf|ggml)$/;

function normalizePath(p: string): string {
  return p.replace(/\\/g, '/').replace(/^(\.\/)+/, '').replace(/^\/+/, '');
}

function dirName(p: string): string {
  const i = p.lastIndexOf('/');
  return i < 0 ? '' : p.slice(0, i);
}

function baseName(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}

function list(names: string[], max = 6): string {
  const shown = names.slice(0, max).map((n) => `'${n}'`).join(', ');
  return names.length > max ? `${shown} and ${names.length - max} more` : shown;
}

const HOW_TO_CONVERT =
  'Download model.safetensors from the model\'s Hub page instead (many repositories have it, or an open "Adding `safetensors` variant" pull request), ' +
  'or convert the folder with transformers: GPT2LMHeadModel.from_pretrained(folder).save_pretrained(out_folder, safe_serialization=True), then drop out_folder.';

/**
 * The model in a set of dropped files: the folder that holds config.json (exactly one), with
 * safetensors weights. Throws a named error saying what is wrong and what to do otherwise.
 */
export async function openLocalModel(input: ReadonlyArray<LocalFile | ByteSource>): Promise<LocalModel> {
  const all = input.map((f) => {
    const path = normalizePath('path' in f ? f.path : f.name);
    const source: ByteSource = 'file' in f ? blobSource(f.file, path) : { size: f.size, name: path, read: (o, n) => f.read(o, n) };
    return { path, source };
  });
  const ignored: string[] = [];
  const files = all.filter((f) => {
    const junk = JUNK.test(f.path) || f.path === '';
    if (junk) ignored.push(f.path);
    return !junk;
  });
  if (files.length === 0) throw new MissingModelFileError('No files were given. Drop a model folder (config.json + model.safetensors), or its files.');

  const configs = files.filter((f) => baseName(f.path) === 'config.json');
  // A config.json with weights beside it wins over one in, say, an onnx/ subfolder.
  const withWeights = configs.filter((c) => files.some((f) => dirName(f.path) === dirName(c.path) && f.path.endsWith('.safetensors')));
  const candidates = withWeights.length ? withWeights : configs;
  if (candidates.length > 1) {
    throw new AmbiguousModelFilesError(
      `The files hold ${candidates.length} models (config.json in ${list(candidates.map((c) => dirName(c.path) || '(top level)'))}). Drop one model folder at a time.`,
    );
  }
  if (candidates.length === 0) {
    const names = files.map((f) => f.path);
    if (names.some((n) => n.endsWith('.safetensors'))) {
      throw new MissingModelFileError(`There is no config.json among the files (${list(names)}). Add the config.json that belongs to these weights: it gives the model's shape.`);
    }
    if (names.some((n) => PICKLE.test(n))) {
      throw new UnsupportedCheckpointFormatError(`The files (${list(names)}) hold no config.json and only PyTorch pickle weights, which are not read. ${HOW_TO_CONVERT}`);
    }
    throw new MissingModelFileError(`There is no config.json among the files (${list(names)}), so they are not a Hugging Face model. Drop a model folder: config.json + model.safetensors (+ tokenizer files).`);
  }

  const configFile = candidates[0];
  const folder = dirName(configFile.path);
  const mine = files.filter((f) => dirName(f.path) === folder);
  for (const f of files) if (dirName(f.path) !== folder) ignored.push(f.path);
  const byName = new Map(mine.map((f) => [baseName(f.path), f.source]));

  let weights: LocalModel['weights'];
  if (byName.has(SAFE_WEIGHTS_NAME)) {
    weights = 'single';
  } else if (byName.has(SAFE_WEIGHTS_INDEX_NAME)) {
    weights = 'sharded';
    const shards = await shardNames(byName.get(SAFE_WEIGHTS_INDEX_NAME)!);
    const missing = shards.filter((s) => !byName.has(baseName(s)));
    if (missing.length) {
      throw new MissingModelFileError(`${SAFE_WEIGHTS_INDEX_NAME} lists shard${missing.length > 1 ? 's' : ''} ${list(missing)}, which ${missing.length > 1 ? 'are' : 'is'} not among the dropped files. Drop every shard with the index.`);
    }
  } else {
    const names = [...byName.keys()];
    const single = names.filter((n) => n.endsWith('.safetensors') && n !== 'adapter_model.safetensors');
    if (single.length === 1) weights = 'single';
    else if (single.length > 1) {
      throw new MissingModelFileError(`Found several safetensors files (${list(single)}) but no ${SAFE_WEIGHTS_INDEX_NAME} saying which tensors each holds. Add the index file, or drop a single ${SAFE_WEIGHTS_NAME}.`);
    } else if (names.some((n) => PICKLE.test(n))) {
      throw new UnsupportedCheckpointFormatError(
        `This model has only PyTorch pickle weights (${list(names.filter((n) => PICKLE.test(n)))}); they are not read, because unpickling can run arbitrary code and needs PyTorch. ${HOW_TO_CONVERT}`,
      );
    } else if (names.some((n) => OTHER_FORMATS.test(n))) {
      throw new UnsupportedCheckpointFormatError(`This model's weights are in a format that is not read (${list(names.filter((n) => OTHER_FORMATS.test(n)))}). ${HOW_TO_CONVERT}`);
    } else if (names.includes('adapter_model.safetensors')) {
      throw new UnsupportedCheckpointFormatError('adapter_model.safetensors is a LoRA adapter, not a full model. Load its base model (base_model_name_or_path in adapter_config.json) first.');
    } else {
      throw new MissingModelFileError(`The folder${folder ? ` ${folder}` : ''} has config.json but no weights (${SAFE_WEIGHTS_NAME}, or ${SAFE_WEIGHTS_INDEX_NAME} with its shards). Add them.`);
    }
  }

  const config = parseConfig(await readJson(configFile.source, configFile.path, 'Check that it is the model\'s config.json.'));
  const sources = mine.map((f) => f.source);
  const generationConfig = byName.get('generation_config.json');
  return {
    name: folder ? baseName(folder) : 'dropped files',
    config,
    files: filesFromSources(sources),
    weights,
    tokenizerFiles: TOKENIZER_FILES.map((n) => byName.get(n)).filter((s): s is ByteSource => s !== undefined),
    ...(generationConfig ? { generationConfig } : {}),
    ignored,
  };
}

async function readJson(src: ByteSource, what: string, hint: string): Promise<unknown> {
  if (src.size > 64 * 1024 * 1024) throw new CorruptCheckpointError(`${what} is ${src.size} bytes, far too large for a JSON file. ${hint}`);
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(await src.read(0, src.size)));
  } catch (e) {
    throw new CorruptCheckpointError(`${what} is not valid UTF-8 JSON (${(e as Error).message}). ${hint}`);
  }
}

async function shardNames(index: ByteSource): Promise<string[]> {
  const json = await readJson(index, index.name, 'Use the index file that came with the shards.');
  const wm = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof wm !== 'object' || wm === null || Array.isArray(wm)) {
    throw new CorruptCheckpointError(`${index.name} has no "weight_map" object mapping tensor names to shard files. Use the index file that came with the shards.`);
  }
  return [...new Set(Object.values(wm as Record<string, unknown>).map(String))].sort();
}

// ---- collecting files in the page (DOM) -------------------------------------------------------

/** Files from an <input type="file" multiple webkitdirectory>: their paths inside the folder. */
export function localFilesFromInput(files: ArrayLike<File>): LocalFile[] {
  return Array.from(files, (f) => ({ path: (f as File & { webkitRelativePath?: string }).webkitRelativePath || f.name, file: f }));
}

/** The subset of the File and Directory Entries API a drop uses (https://wicg.github.io/entries-api/). */
interface Entry {
  isFile: boolean;
  isDirectory: boolean;
  name: string;
  fullPath: string;
}
interface FileEntry extends Entry {
  file(ok: (f: File) => void, fail: (e: unknown) => void): void;
}
interface DirectoryEntry extends Entry {
  createReader(): { readEntries(ok: (entries: Entry[]) => void, fail: (e: unknown) => void): void };
}

/** Most entries a dropped folder may hold: a model folder has a handful of files. */
const MAX_DROPPED_FILES = 10_000;

/**
 * The files of a drop, with folders walked. Call it from the drop event handler itself: the
 * DataTransfer's items can only be read during the event (the walk may then continue).
 */
export async function localFilesFromDrop(dt: Pick<DataTransfer, 'items' | 'files'>): Promise<LocalFile[]> {
  const entries: Entry[] = [];
  for (const item of Array.from(dt.items ?? [])) {
    if (item.kind !== 'file') continue;
    const entry = (item as DataTransferItem & { webkitGetAsEntry?: () => Entry | null }).webkitGetAsEntry?.();
    if (entry) entries.push(entry);
  }
  if (entries.length === 0) return localFilesFromInput(dt.files);
  const out: LocalFile[] = [];
  const walk = async (e: Entry): Promise<void> => {
    if (out.length >= MAX_DROPPED_FILES) {
      throw new AmbiguousModelFilesError(`The drop holds more than ${MAX_DROPPED_FILES} files. Drop the model folder itself, not a folder that contains it among many others.`);
    }
    if (e.isFile) {
      const file = await new Promise<File>((ok, fail) => (e as FileEntry).file(ok, fail));
      out.push({ path: e.fullPath.replace(/^\/+/, ''), file });
    } else if (e.isDirectory) {
      const reader = (e as DirectoryEntry).createReader();
      // readEntries returns the folder in batches (Chrome: 100 at a time) until an empty one.
      for (;;) {
        const batch = await new Promise<Entry[]>((ok, fail) => reader.readEntries(ok, fail));
        if (batch.length === 0) break;
        for (const child of batch) await walk(child);
      }
    }
  };
  for (const e of entries) await walk(e);
  return out;
}
