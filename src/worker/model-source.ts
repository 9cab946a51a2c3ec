// Finds the files of a GPT-2 model for the worker: the built-in demo served with the page, a
// Hugging Face Hub repository (io/hub.ts: a mirror or a local server in the Hub's URL layout works
// too; downloads are cached in the browser's origin private file system), or files the user
// dropped (io/local-files.ts). Files are read back in slices; nothing is held twice.
import { describeError, StudioError } from '../engine/errors.ts';
import { type GPT2Config, parseConfig } from '../engine/model/config.ts';
import { paramSpecs } from '../engine/model/params.ts';
import { groupLabel } from '../engine/train/groups.ts';
import { blobSource, type ByteSource } from '../io/bytes.ts';
import { openBrowserCache, type ModelCache } from '../io/cache.ts';
import { filesFromSources, MissingModelFileError, type ModelFiles } from '../io/checkpoint.ts';
import { loadHubModel, type DownloadProgress } from '../io/hub.ts';
import { openLocalModel } from '../io/local-files.ts';
import { type HfTokenizer, tokenizerFromModelFiles } from '../io/tokenizer.ts';
import type { ModelInfo, ModelSource } from './protocol.ts';

/** The built-in model's files could not be fetched from this site. */
export class BuiltinModelError extends StudioError {}

export interface ModelFolder {
  /** what the page shows */
  name: string;
  /** written as the base model in exports (a Hub id where there is one) */
  baseModel: string;
  pretrained: boolean;
  config: GPT2Config;
  files: ModelFiles;
  tokenizer: HfTokenizer;
  tokenizerSource: string;
}

export type BytesProgress = (label: string, done: number, total: number) => void;

/** The built-in model's folder under the site (public/models/demo-gpt2, made by scripts/make-demo-model.ts). */
const BUILTIN_MODEL = {
  path: 'models/demo-gpt2/',
  name: 'Built-in demo GPT-2',
  /** what exports name as their base model: a description, since the demo is no Hub repository */
  base: "the studio's built-in demo GPT-2 (randomly initialized)",
};
const BUILTIN_FILES = ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'];

/** Where the page is served from (Vite's base URL), seen from the worker. */
export function siteBase(): string {
  const base = import.meta.env?.BASE_URL ?? '/';
  return new URL(base, self.location.href).href;
}

/** Fetches a file of this site into a Blob, with byte progress. */
export async function fetchSiteFile(url: string, label: string, onProgress: BytesProgress): Promise<Blob> {
  let res: Response;
  try {
    res = await fetch(url);
  } catch (e) {
    throw new BuiltinModelError(`Could not fetch ${url} (${describeError(e).message}). Reload the page; if the studio's server stopped, start it again (npm start).`);
  }
  if (!res.ok) {
    throw new BuiltinModelError(`${url} answered HTTP ${res.status}. The site was built without its generated files: run \`npm run gen\` (npm start does) and reload.`);
  }
  const total = Number(res.headers.get('content-length') ?? 0) || 0;
  if (!res.body) return res.blob();
  const reader = res.body.getReader();
  const chunks: Uint8Array<ArrayBuffer>[] = [];
  let done = 0;
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    chunks.push(r.value);
    done += r.value.byteLength;
    onProgress(label, done, Math.max(total, done));
  }
  return new Blob(chunks);
}

async function readConfig(src: ByteSource): Promise<GPT2Config> {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(await src.read(0, src.size)));
  } catch (e) {
    throw new MissingModelFileError(`${src.name} is not valid JSON (${describeError(e).message}).`);
  }
  return parseConfig(json);
}

async function withTokenizer(base: Omit<ModelFolder, 'tokenizer' | 'tokenizerSource'>, tokenizerFiles: ByteSource[]): Promise<ModelFolder> {
  const { tokenizer, source } = await tokenizerFromModelFiles(tokenizerFiles);
  return { ...base, tokenizer, tokenizerSource: source === 'default' ? "GPT-2's (the model has no tokenizer files)" : source };
}

let cache: Promise<{ cache: ModelCache; persistent: boolean }> | null = null;

/** The browser's download cache (OPFS when available, else memory), opened once. */
export function browserCache(): Promise<{ cache: ModelCache; persistent: boolean }> {
  cache ??= openBrowserCache();
  return cache;
}

/** The model folder of `source`, downloaded or read as needed. */
export async function openModelSource(source: ModelSource, onProgress: BytesProgress): Promise<ModelFolder> {
  switch (source.kind) {
    case 'builtin': {
      const root = siteBase() + BUILTIN_MODEL.path;
      const sources: ByteSource[] = [];
      for (const f of BUILTIN_FILES) sources.push(blobSource(await fetchSiteFile(root + f, f, onProgress), f));
      const config = await readConfig(sources[0]);
      return withTokenizer(
        { name: BUILTIN_MODEL.name, baseModel: BUILTIN_MODEL.base, pretrained: false, config, files: filesFromSources(sources) },
        sources.filter((s) => s.name.startsWith('tokenizer')),
      );
    }
    case 'hub': {
      const { cache: c } = await browserCache();
      const m = await loadHubModel(`${source.repo.trim()}@${source.revision.trim() || 'main'}`, c, {
        endpoint: source.endpoint,
        onProgress: (p: DownloadProgress) => onProgress(`${p.file}${p.cached ? ' (cached)' : ''}`, p.bytes, p.total ?? p.bytes),
      });
      const name = m.ref.revision === 'main' ? m.ref.repo : `${m.ref.repo}@${m.ref.revision}`;
      return withTokenizer({ name, baseModel: m.ref.repo, pretrained: true, config: m.config, files: m.files }, m.tokenizerFiles);
    }
    case 'files': {
      const m = await openLocalModel(source.files);
      return withTokenizer({ name: m.name, baseModel: m.name, pretrained: true, config: m.config, files: m.files }, m.tokenizerFiles);
    }
  }
}

/** What the page shows of a loaded model: its shape, parameter counts per depth group, and where it came from. */
export function describeModel(folder: ModelFolder, source: ModelSource['kind']): ModelInfo {
  const c = folder.config;
  const specs = paramSpecs(c);
  return {
    name: folder.name,
    source,
    vocabSize: c.vocabSize,
    nPositions: c.nPositions,
    nEmbd: c.nEmbd,
    nLayer: c.nLayer,
    nHead: c.nHead,
    nInner: c.nInner,
    activation: c.activation,
    dropout: c.residPdrop,
    params: specs.reduce((a, s) => a + s.numel, 0),
    groups: Array.from({ length: c.nLayer + 2 }, (_, g) => ({
      index: g,
      label: groupLabel(c.nLayer, g),
      params: specs.filter((s) => s.group === g).reduce((a, s) => a + s.numel, 0),
    })),
    tokenizer: folder.tokenizerSource,
    pretrained: folder.pretrained,
  };
}
