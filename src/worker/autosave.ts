// Saving the page's training run into the browser, and reading it back: a checkpoint in the
// format of docs/checkpoint-format.md (the files the command line writes, so a downloaded save
// resumes there too), plus what only the page needs, in the same store (io/run-store.ts):
//   studio_state.json (in the checkpoint folder)   the page's settings, layer switches, sample
//        settings, where the model came from, the corpus's description, and the events the page
//        showed (steps, evaluations, samples), so charts and samples come back as they were
//   corpus/tokens.u32, corpus/doc_starts.u32       the tokenized corpus (little-endian uint32),
//        so the same split is made again without the files the user dropped
//   model/<encoded path>                           the model files the user dropped (a reload
//        cannot reopen them); built-in and Hub models are fetched again (the Hub from its cache)
import type { KernelsRecord } from '../engine/gpu/variants.ts';
import { StudioError } from '../engine/errors.ts';
import type { LoraConfig } from '../engine/model/lora.ts';
import type { TrainRunConfig } from '../engine/train/config.ts';
import type { RunSnapshot } from '../engine/train/loop.ts';
import type { CorpusStats, TokenizedCorpus } from '../io/corpus.ts';
import type { RunFile, RunStore, RunSummary } from '../io/run-store.ts';
import { CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_VERSION, settingsOf, weightsFingerprint, weightsFingerprintBytes, type TrainerStateJson } from '../io/run-checkpoint.ts';
import type { GPT2Config } from '../engine/model/config.ts';
import { paramSpecs } from '../engine/model/params.ts';
import { Sha256 } from '../io/sha256.ts';
import type { LocalFile } from '../io/local-files.ts';
import type { CorpusOptions, EvalResult, ModelSource, SampleSettings, TrainSettings, WorkerEvent } from './protocol.ts';

/** A saved run the page cannot restore (not saved by the page, or damaged). */
export class SavedRunError extends StudioError {}

export const PAGE_STATE_NAME = 'studio_state.json';
const PAGE_STATE_FORMAT = 'webgpu-finetuning-studio/page-state';

export type SavedModelSource =
  | { kind: 'builtin' }
  | { kind: 'hub'; endpoint: string; repo: string; revision: string }
  /** the files are in the run's `model` assets, under their paths */
  | { kind: 'files'; paths: string[] };

/** What the page showed during the run, replayed when it is restored. */
export type ShownEvent = Extract<WorkerEvent, { type: 'step' | 'eval' | 'sample' | 'info' }>;

export interface PageState {
  format: typeof PAGE_STATE_FORMAT;
  version: 1;
  model: { name: string; source: SavedModelSource };
  corpus: { name: string; names: string[]; options: CorpusOptions; stats: CorpusStats };
  settings: TrainSettings;
  /** the groups the user froze when the checkpoint was taken */
  frozen: number[];
  sample: SampleSettings;
  events: ShownEvent[];
  /** the base model's validation metrics (the "before" of before/after), if measured */
  evalBefore: EvalResult | null;
}

/** Where a saved run's model comes from again: the Hub or the built-in model, or its dropped files (kept as assets). */
export function savedModelSource(source: ModelSource): SavedModelSource {
  switch (source.kind) {
    case 'files':
      return { kind: 'files', paths: source.files.map((f) => f.path) };
    case 'hub':
      return { kind: 'hub', endpoint: source.endpoint, repo: source.repo, revision: source.revision };
    case 'builtin':
      return { kind: 'builtin' };
  }
}

/** The log lines of the format (trainer_state.json's log_history) from what the page showed. */
export function logHistory(shown: readonly ShownEvent[]): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const ev of shown) {
    if (ev.type === 'step') out.push({ step: ev.step, loss: ev.loss, lr: ev.lr, grad_norm: ev.gradNorm });
    else if (ev.type === 'eval' && ev.phase !== 'before') out.push({ step: ev.step, eval_loss: ev.tuned.loss, eval_ppl: ev.tuned.perplexity, eval_acc: ev.tuned.accuracy });
    else if (ev.type === 'sample') out.push({ step: ev.step, sample: { prompt: ev.prompt, text: ev.tuned } });
  }
  return out;
}

export function pageStateFile(ps: PageState): RunFile {
  return { name: PAGE_STATE_NAME, data: new TextEncoder().encode(JSON.stringify(ps)) };
}

export async function readPageState(blob: Blob | undefined): Promise<PageState | null> {
  if (!blob) return null;
  let j: Partial<PageState>;
  try {
    j = JSON.parse(await blob.text()) as Partial<PageState>;
  } catch (e) {
    throw new SavedRunError(`${PAGE_STATE_NAME} of the saved run is not valid JSON (${(e as Error).message}); delete the run or download it and resume it with the command line.`);
  }
  const complete = !!j.model && !!j.corpus && !!j.settings && Array.isArray(j.frozen) && !!j.sample && Array.isArray(j.events);
  if (j.format !== PAGE_STATE_FORMAT || j.version !== 1 || !complete) {
    throw new SavedRunError(`${PAGE_STATE_NAME} of the saved run is not one this page wrote (format ${JSON.stringify(j.format)}, version ${JSON.stringify(j.version)}).`);
  }
  return j as PageState;
}

function u32File(name: string, ids: ArrayLike<number>): RunFile {
  const out = new Uint8Array(ids.length * 4);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < ids.length; i++) dv.setUint32(4 * i, ids[i], true);
  return { name, data: out };
}

async function readU32(blob: Blob | undefined, what: string): Promise<Uint32Array> {
  if (!blob || blob.size % 4 !== 0) throw new SavedRunError(`The saved run's ${what} is missing or truncated; delete the run.`);
  const bytes = new DataView(await blob.arrayBuffer());
  const out = new Uint32Array(blob.size / 4);
  for (let i = 0; i < out.length; i++) out[i] = bytes.getUint32(4 * i, true);
  return out;
}

/** The tokenized corpus as the run's `corpus` assets. */
export function corpusAssets(c: TokenizedCorpus): RunFile[] {
  return [u32File('tokens.u32', c.tokens), u32File('doc_starts.u32', c.docStarts)];
}

/** The tokenized corpus back from the run's `corpus` assets (uint16 ids when the vocabulary fits, as the tokenizer stores them). */
export async function readCorpusAssets(files: Map<string, Blob> | undefined, stats: CorpusStats, vocabSize: number): Promise<TokenizedCorpus> {
  const ids = await readU32(files?.get('tokens.u32'), 'token ids (corpus/tokens.u32)');
  const docStarts = await readU32(files?.get('doc_starts.u32'), 'document starts (corpus/doc_starts.u32)');
  if (docStarts.length < 1 || docStarts[docStarts.length - 1] !== ids.length) throw new SavedRunError("The saved run's corpus files disagree (document starts do not end at the token count); delete the run.");
  return { tokens: vocabSize <= 65536 ? Uint16Array.from(ids) : ids, docStarts, stats };
}

/** Dropped model files as the run's `model` assets (paths encoded into plain file names). */
export function modelAssets(files: LocalFile[]): RunFile[] {
  return files.map((f) => ({ name: encodeURIComponent(f.path), data: async function* () {
    const bytes = new Uint8Array(await f.file.arrayBuffer());
    yield bytes;
  } }));
}

export function readModelAssets(files: Map<string, Blob> | undefined, paths: string[]): LocalFile[] {
  return paths.map((p) => {
    const b = files?.get(encodeURIComponent(p));
    if (!b) throw new SavedRunError(`The saved run lacks the model file ${p} that was dropped for it; delete the run.`);
    return { path: p, file: b };
  });
}

export interface StateInput {
  snap: Pick<RunSnapshot, 'step' | 'rowsRead' | 'userFrozen'>;
  dropoutStep: number;
  cfg: TrainRunConfig;
  lora: LoraConfig | null;
  evalEvery: number;
  windows: number;
  modelName: string;
  corpusNames: string[];
  fingerprints: TrainerStateJson['fingerprints'];
  log: Array<Record<string, unknown>>;
  /** the kernel variants in use (engine/gpu/variants.ts kernelsRecord) */
  kernels: KernelsRecord;
}

/** trainer_state.json of the page's run at a snapshot (writer "page"; data paths are the dropped files' names). */
export function trainerState(i: StateInput): TrainerStateJson {
  const settings = settingsOf({ ...i.cfg, frozen: new Set(i.snap.userFrozen) }, i.lora, i.evalEvery);
  return {
    format: CHECKPOINT_FORMAT,
    format_version: CHECKPOINT_FORMAT_VERSION,
    step: i.snap.step,
    total_steps: i.cfg.steps,
    rows_read: i.snap.rowsRead,
    windows: i.windows,
    dropout_step: i.dropoutStep,
    settings,
    model: { source: i.modelName, dir: '' },
    data: { train: i.corpusNames, eval: [] },
    fingerprints: i.fingerprints,
    kernels: i.kernels,
    log_history: i.log,
    created: new Date().toISOString(),
    writer: 'page',
  };
}

/**
 * When a run is saved: every `intervalMs` of training (0: only at pause, stop and finish), and
 * at the boundaries its host asks for. Holds the run's id in the store and whether the assets
 * (corpus, dropped model files) were written yet.
 */
export class RunSaver {
  readonly runId: string;
  readonly store: RunStore;
  readonly intervalMs: number;
  private readonly now: () => number;
  private lastAt: number;
  assetsSaved: boolean;

  constructor(store: RunStore, intervalMs: number, runId?: string, now: () => number = () => Date.now()) {
    this.store = store;
    this.intervalMs = intervalMs;
    this.runId = runId ?? store.newRunId();
    this.assetsSaved = runId !== undefined;
    this.now = now;
    this.lastAt = now();
  }

  /** Whether the interval has passed since the run started or was last saved. */
  due(): boolean {
    return this.intervalMs > 0 && this.now() - this.lastAt >= this.intervalMs;
  }

  /** Writes one save; the assets only with the first. Returns its size and time. */
  async save(summary: RunSummary, checkpoint: RunFile[], assets: () => Record<string, RunFile[]>): Promise<{ bytes: number; ms: number; at: number }> {
    const t0 = this.now();
    await this.store.save(this.runId, { summary, checkpoint, ...(this.assetsSaved ? {} : { assets: assets() }) });
    this.assetsSaved = true;
    const at = this.now();
    this.lastAt = at;
    const r = (await this.store.list()).find((x) => x.id === this.runId);
    return { bytes: r?.bytes ?? 0, ms: at - t0, at };
  }
}

/**
 * The format's base_weights fingerprint (io/run-checkpoint.ts), through WebCrypto's native,
 * off-thread SHA-256 when the hashed bytes fit one buffer of at most 1 GiB (GPT-2 124M: 498 MB),
 * else the incremental TypeScript hasher: crypto.subtle.digest takes a whole message at once,
 * and is many times faster than hashing in JavaScript, which would stall training for seconds.
 */
export async function baseFingerprint(config: GPT2Config, read: (name: string) => Promise<Float32Array>): Promise<string> {
  const subtle = globalThis.crypto?.subtle;
  const enc = new TextEncoder();
  const total = paramSpecs(config).reduce((a, s) => a + enc.encode(`transformer.${s.name}`).length + 1 + 4 * s.numel, 0);
  if (!subtle || total > 2 ** 30) return weightsFingerprint(config, read, new Sha256());
  const all = new Uint8Array(total);
  let o = 0;
  for await (const b of weightsFingerprintBytes(config, read)) {
    all.set(b, o);
    o += b.length;
  }
  const digest = new Uint8Array(await subtle.digest('SHA-256', all));
  return `sha256:${Array.from(digest, (x) => x.toString(16).padStart(2, '0')).join('')}`;
}
