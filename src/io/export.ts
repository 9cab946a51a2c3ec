// A fine-tuned model as a Hugging Face model folder: config.json, model.safetensors (HF names with
// the `transformer.` prefix, the head tied to wte and so not stored, float32, `format: pt`),
// tokenizer.json, tokenizer_config.json, generation_config.json, and a model card (README.md)
// with the base model, the corpus, the training settings and the final metrics. The folder is
// described as a list of files whose bytes are produced only when written, so the page can
// stream it into a .zip (hfExportZip) and the CLI into a folder (node-export.ts) without the
// model ever being held twice; weights may be given as a function reading one tensor at a time
// (e.g. from the GPU).
//
// File contents follow what transformers' save_pretrained writes for GPT2LMHeadModel (config
// keys of GPT2Config, generation_config.json with bos/eos token ids and `_from_model_config`),
// and the Hub's model card metadata (YAML front matter: base_model, library_name, pipeline_tag,
// tags; https://huggingface.co/docs/hub/model-cards).
import { StudioError } from '../engine/errors.ts';
import { formatLoss, formatPerplexity } from '../engine/eval/metrics.ts';
import { configToJson, type GPT2Config } from '../engine/model/config.ts';
import { checkHostParams, countParams, groupName, paramSpecs, type HostParams } from '../engine/model/params.ts';
import type { TrainRunConfig } from '../engine/train/config.ts';
import { HF_PREFIX, SAFE_WEIGHTS_NAME } from './checkpoint.ts';
import type { CorpusStats } from './corpus.ts';
import { safetensorsStream, type StreamTensor } from './safetensors.ts';
import type { TokenizerFiles } from './tokenizer.ts';
import { zipReadableStream, zipSize, type ZipEntry } from './zip.ts';

/** What an export needs that is missing or inconsistent. */
export class ExportError extends StudioError {}

/** Reads one parameter (engine name, e.g. 'h.0.attn.c_attn.weight') as float32, when its turn comes. */
export type ParamReader = (name: string) => Float32Array | Promise<Float32Array>;

export interface CorpusSummary extends Partial<CorpusStats> {
  /** file names of the corpus (shown in the card) */
  names?: string[];
  trainTokens?: number;
  valTokens?: number;
  trainDocuments?: number;
  valDocuments?: number;
}

export interface FinalMetrics {
  /** optimizer steps done */
  steps?: number;
  /** training loss of the last step (or a mean over the last steps) */
  trainLoss?: number;
  /** mean validation loss */
  valLoss?: number;
  /** tokens trained on (B·T·accumulation per step, times steps) */
  tokensSeen?: number;
  /** seconds of training */
  seconds?: number;
  /** anything else to list, e.g. { 'val next-token accuracy': 0.41 } */
  extra?: Record<string, number | string>;
}

export interface ModelCardInfo {
  /** the folder / model name, e.g. 'gpt2-shakespeare' */
  name?: string;
  /** the model fine-tuned from: a Hub id ('openai-community/gpt2') or a description */
  baseModel?: string;
  corpus?: CorpusSummary;
  training?: TrainRunConfig;
  metrics?: FinalMetrics;
  /** when the export was made; default now */
  date?: Date;
}

export interface GenerationDefaults {
  maxNewTokens?: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  doSample?: boolean;
}

export interface ExportInput {
  config: GPT2Config;
  /** host parameters, or a reader called once per tensor as model.safetensors is written */
  params: HostParams | ParamReader;
  /** the tokenizer's files (HfTokenizer.files); without them the folder has no tokenizer */
  tokenizer?: TokenizerFiles;
  card?: ModelCardInfo;
  generation?: GenerationDefaults;
}

/** One file of the folder: its size is known up front, its bytes are produced when asked. */
export interface ExportFile {
  name: string;
  size: number;
  data: Uint8Array | (() => AsyncIterable<Uint8Array>);
}

const enc = new TextEncoder();
const json = (v: unknown) => enc.encode(`${JSON.stringify(v, null, 2)}\n`);

/** generation_config.json: token ids as save_pretrained derives them from the config, plus defaults given. */
export function generationConfigJson(config: GPT2Config, g: GenerationDefaults = {}): Record<string, unknown> {
  const out: Record<string, unknown> = { _from_model_config: true, bos_token_id: config.bosTokenId, eos_token_id: config.eosTokenId };
  if (g.doSample !== undefined) out.do_sample = g.doSample;
  if (g.maxNewTokens !== undefined) out.max_new_tokens = g.maxNewTokens;
  if (g.temperature !== undefined) out.temperature = g.temperature;
  if (g.topK !== undefined) out.top_k = g.topK;
  if (g.topP !== undefined) out.top_p = g.topP;
  return out;
}

function cell(v: unknown): string {
  return String(v).replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

function table(rows: Array<[string, unknown]>): string[] {
  const kept = rows.filter(([, v]) => v !== undefined && v !== null && v !== '');
  if (!kept.length) return [];
  return ['| | |', '| --- | --- |', ...kept.map(([k, v]) => `| ${cell(k)} | ${cell(v)} |`)];
}

// Metrics as the page writes them (engine/eval/metrics.ts): losses 4 decimals, perplexity 2, percentages 2.
const loss = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? undefined : formatLoss(x));
/** Any other metric: 4 significant digits, never a 17-digit float. */
const formatMetric = (v: number) => (Number.isFinite(v) ? String(Number(v.toPrecision(4))) : String(v));
const ppl = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? undefined : formatPerplexity(Math.exp(x)));
const int = (x: number | undefined) => (x === undefined ? undefined : x.toLocaleString('en-US'));

function scheduleText(t: TrainRunConfig): string {
  const s = t.schedule;
  if (s.kind === 'slanted') return `slanted triangular (cut_frac ${s.cutFrac}, ratio ${s.ratio})`;
  const parts: string[] = [s.kind];
  if (s.warmup) parts.push(`warmup ${s.warmup}${s.warmup < 1 ? ' of the steps' : ' steps'}`);
  if (s.kind !== 'constant' && s.minLrRatio) parts.push(`down to ${s.minLrRatio} of the peak`);
  return parts.join(', ');
}

/** The model card (README.md): Hub metadata, then what was trained, on what, and how well. */
export function modelCard(config: GPT2Config, info: ModelCardInfo = {}): string {
  const name = info.name ?? 'gpt2-finetuned';
  const base = info.baseModel;
  const hubBase = base !== undefined && /^[\w.-]+\/[\w.-]+$/.test(base);
  const lines: string[] = ['---'];
  // JSON strings are valid YAML scalars, so names with any character stay well-formed.
  if (hubBase) lines.push(`base_model: ${JSON.stringify(base)}`);
  lines.push('library_name: transformers', 'pipeline_tag: text-generation', 'tags:', '- gpt2', '- text-generation', '- webgpu-finetuning-studio', '---', '');
  lines.push(`# ${name}`, '');
  const params = countParams(config);
  lines.push(
    `A GPT-2 model (${params.toLocaleString('en-US')} parameters: ${config.nLayer} layers, ${config.nHead} heads, ` +
      `${config.nEmbd} channels, context ${config.nPositions}, vocabulary ${config.vocabSize}) fine-tuned` +
      `${base ? ` from ${hubBase ? `[${base}](https://huggingface.co/${base})` : `\`${base}\``}` : ''} with the WebGPU Fine-Tuning Studio, ` +
      'on the user\'s own GPU in the browser or the command line.',
    '',
  );

  const c = info.corpus;
  if (c) {
    lines.push('## Corpus', '');
    if (c.names?.length) lines.push(`Files: ${c.names.slice(0, 20).map((n) => `\`${cell(n)}\``).join(', ')}${c.names.length > 20 ? `, and ${c.names.length - 20} more` : ''}.`, '');
    lines.push(...table([
      ['documents', int(c.documents)],
      ['characters', int(c.characters)],
      ['bytes (UTF-8)', int(c.bytes)],
      ['tokens (with one end-of-text token per document)', int(c.tokens)],
      ['training tokens', int(c.trainTokens)],
      ['validation tokens', int(c.valTokens)],
      ['training / validation documents', c.trainDocuments !== undefined && c.valDocuments !== undefined ? `${c.trainDocuments} / ${c.valDocuments}` : undefined],
      [`windows of ${c.contextLength ?? 'T'} tokens`, int(c.windows)],
    ]), '');
  }

  const t = info.training;
  if (t) {
    const frozen = [...t.frozen].sort((a, b) => a - b).map((g) => groupName(config, g));
    lines.push('## Training', '');
    lines.push(...table([
      ['optimizer steps', int(t.steps)],
      ['batch (rows × tokens × accumulation)', `${t.batch} × ${t.seq} × ${t.gradAccum} = ${(t.batch * t.seq * t.gradAccum).toLocaleString('en-US')} tokens per step`],
      ['learning rate (peak, top group)', t.lr],
      ['schedule', scheduleText(t)],
      ['discriminative rate factor (lr / f^(L+1−depth))', t.lrDecay !== 1 ? t.lrDecay : undefined],
      ['gradual unfreezing', t.unfreeze ? `${t.unfreeze.start} groups open at first, one more every ${t.unfreeze.every} steps` : undefined],
      ['frozen', frozen.length ? frozen.join(', ') : 'nothing (full fine-tuning)'],
      ['optimizer', `AdamW (β1 ${t.beta1}, β2 ${t.beta2}, ε ${t.eps}, weight decay ${t.weightDecay} on matrices only)`],
      ['gradient clipping (global norm)', t.gradClip > 0 ? t.gradClip : 'off'],
      ['dropout (embeddings / attention / residual)', `${t.dropout.embd} / ${t.dropout.attn} / ${t.dropout.resid}`],
      ['window order', t.order],
      ['seed', t.seed],
    ]), '');
  }

  const m = info.metrics;
  if (m) {
    lines.push('## Results', '');
    lines.push(...table([
      ['optimizer steps', int(m.steps)],
      ['tokens trained on', int(m.tokensSeen)],
      ['training loss', loss(m.trainLoss)],
      ['training perplexity', ppl(m.trainLoss)],
      ['validation loss', loss(m.valLoss)],
      ['validation perplexity', ppl(m.valLoss)],
      ['training time', m.seconds === undefined || !Number.isFinite(m.seconds) ? undefined : `${m.seconds.toFixed(1)} s`],
      ...Object.entries(m.extra ?? {}).map(([k, v]): [string, unknown] => [k, typeof v === 'number' ? formatMetric(v) : v]),
    ]), '');
    lines.push(
      'Losses are the mean cross-entropy (nats) over every target token of a window of T + 1 tokens, so T targets per window; ' +
        'perplexity is exp(loss). transformers\' `labels=input_ids` scores T − 1 targets of a T-token block, so its numbers on the same text differ slightly.',
      '',
    );
  }

  lines.push(
    '## Use',
    '',
    '```python',
    'from transformers import AutoTokenizer, GPT2LMHeadModel',
    '',
    `model = GPT2LMHeadModel.from_pretrained("./${name}")`,
    `tokenizer = AutoTokenizer.from_pretrained("./${name}")`,
    'ids = tokenizer("Hello", return_tensors="pt").input_ids',
    'print(tokenizer.decode(model.generate(ids, max_new_tokens=40, do_sample=True)[0]))',
    '```',
    '',
    `The weights are float32 in \`${SAFE_WEIGHTS_NAME}\`; the LM head is tied to the token embeddings, as in GPT-2.`,
    '',
  );
  return lines.join('\n');
}

function weightTensors(config: GPT2Config, params: HostParams | ParamReader): StreamTensor[] {
  if (params instanceof Map) checkHostParams(config, params);
  return paramSpecs(config).map((s) => ({
    name: HF_PREFIX + s.name,
    shape: [...s.shape],
    data: params instanceof Map
      ? params.get(s.name)!
      : async () => {
        const d = await params(s.name);
        if (!(d instanceof Float32Array) || d.length !== s.numel) {
          throw new ExportError(`The parameter reader gave ${d instanceof Float32Array ? `${d.length} values` : 'no Float32Array'} for ${s.name}; it has ${s.numel} (${s.shape.join('×')}).`);
        }
        return d;
      },
  }));
}

/**
 * config.json, generation_config.json and, when given, the tokenizer files: what every exported
 * folder (Hugging Face, ONNX) starts with. A tokenizer with ids past the vocabulary is refused.
 */
export function modelMetadataFiles(config: GPT2Config, generation: GenerationDefaults | undefined, tokenizer: TokenizerFiles | undefined): ExportFile[] {
  const files: ExportFile[] = [];
  const add = (name: string, bytes: Uint8Array) => files.push({ name, size: bytes.length, data: bytes });
  add('config.json', json(configToJson(config)));
  add('generation_config.json', json(generationConfigJson(config, generation)));
  if (tokenizer) {
    const vocab = (tokenizer.tokenizerJson.model as { vocab?: Record<string, number> } | undefined)?.vocab;
    const maxId = vocab ? Math.max(-1, ...Object.values(vocab)) : -1;
    if (maxId >= config.vocabSize) {
      throw new ExportError(`The tokenizer has ids up to ${maxId} but the model's vocabulary has ${config.vocabSize}: they do not belong together. Export with the model's own tokenizer.`);
    }
    add('tokenizer.json', json(tokenizer.tokenizerJson));
    add('tokenizer_config.json', json(tokenizer.tokenizerConfig));
  }
  return files;
}

/**
 * The files of the Hugging Face folder, in the order they are written: the small ones first, so
 * a reader of a partial download already has the config and tokenizer.
 */
export function hfFolderFiles(input: ExportInput): ExportFile[] {
  const { config } = input;
  const files = modelMetadataFiles(config, input.generation, input.tokenizer);
  const add = (name: string, bytes: Uint8Array) => files.push({ name, size: bytes.length, data: bytes });
  add('README.md', enc.encode(modelCard(config, input.card)));
  const weights = safetensorsStream(weightTensors(config, input.params));
  files.push({ name: SAFE_WEIGHTS_NAME, size: weights.totalBytes, data: () => weights });
  return files;
}

/** A file name made safe for a folder inside a zip: letters, digits, '.', '-', '_'. */
export function safeFolderName(name: string): string {
  return name.replace(/[^\w.-]+/g, '-').replace(/^[-.]+|-+$/g, '').slice(0, 100) || 'model';
}

export interface ZipExportOptions {
  /** folder inside the archive (default: the card's name, or 'gpt2-finetuned'); '' for none */
  folder?: string;
  signal?: AbortSignal;
  /** bytes of the archive written so far, of its exact size */
  onProgress?: (p: { bytes: number; total: number; file: string }) => void;
}

export interface ZipExport {
  /** the archive, produced as it is read */
  stream: ReadableStream<Uint8Array>;
  /** its exact size in bytes */
  size: number;
  /** a download name, e.g. 'gpt2-finetuned.zip' */
  filename: string;
}

/** The folder as a streamed .zip (stored entries; ZIP64 past 4 GiB), with its size known up front. */
export function hfExportZip(input: ExportInput, opts: ZipExportOptions = {}): ZipExport {
  const name = safeFolderName(input.card?.name ?? 'gpt2-finetuned');
  const folder = opts.folder ?? name;
  const prefix = folder === '' ? '' : `${safeFolderName(folder)}/`;
  const modified = input.card?.date ?? new Date();
  const entries: ZipEntry[] = hfFolderFiles(input).map((f) => ({ name: prefix + f.name, size: f.size, data: f.data, modified }));
  const size = zipSize(entries);
  const stream = zipReadableStream(entries, {
    signal: opts.signal,
    onProgress: (p) => opts.onProgress?.({ bytes: p.bytes, total: size, file: p.entry.slice(prefix.length) }),
  });
  return { stream, size, filename: `${name}.zip` };
}

/**
 * The zip as a Blob the page can offer for download, written to a temporary file in the origin
 * private file system when the browser has it (so the archive lives on disk, not in memory), else
 * gathered as Blob parts (which browsers may keep in memory: a model's size).
 */
export async function hfExportZipBlob(input: ExportInput, opts: ZipExportOptions = {}): Promise<{ blob: Blob; filename: string; size: number }> {
  const z = hfExportZip(input, opts);
  const storage = (globalThis as { navigator?: { storage?: StorageManager } }).navigator?.storage;
  if (storage && typeof storage.getDirectory === 'function') {
    try {
      const root = await storage.getDirectory();
      const dir = await root.getDirectoryHandle('studio-exports', { create: true });
      // One export at a time is kept: earlier ones were downloaded or abandoned.
      for await (const [n] of (dir as unknown as { entries(): AsyncIterable<[string, unknown]> }).entries()) {
        if (n !== z.filename) await dir.removeEntry(n).catch(() => {});
      }
      const handle = await dir.getFileHandle(z.filename, { create: true });
      const writable = await handle.createWritable();
      await z.stream.pipeTo(writable as unknown as WritableStream<Uint8Array>);
      return { blob: await handle.getFile(), filename: z.filename, size: z.size };
    } catch (e) {
      if ((e as { name?: string })?.name === 'AbortError' || opts.signal?.aborted) throw e;
      if ((e as { name?: string })?.name === 'QuotaExceededError') {
        throw new ExportError(`The browser's storage is full: the ${Math.round(z.size / 1e6)} MB archive does not fit. Clear cached models you no longer need and export again.`);
      }
      throw e;
    }
  }
  const parts: Uint8Array<ArrayBuffer>[] = [];
  const reader = z.stream.getReader();
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    parts.push(r.value as Uint8Array<ArrayBuffer>);
  }
  return { blob: new Blob(parts, { type: 'application/zip' }), filename: z.filename, size: z.size };
}
