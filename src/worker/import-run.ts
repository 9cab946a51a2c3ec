// A checkpoint the user drops on the page — a folder or a .zip, saved by the page or written by
// the command line — turned into a saved run the page can resume (worker/autosave.ts):
//   - a page download (`<name>/checkpoint-<step>/` with studio_state.json, and `<name>/studio/`)
//     comes back whole: its corpus token ids, dropped model files and page state are in it;
//   - a command-line checkpoint names its training data by path, which a browser cannot open: the
//     corpus loaded in the page is used when its token ids are the checkpoint's (the same
//     SHA-256 fingerprint; the page holds nothing out, as the CLI's `--data` does not), and the
//     checkpoint, itself a model folder, is the model (so "base" comparisons are with it).
// A folder of several `checkpoint-*` resumes the newest, as `train --resume` does.
import type { TokenizedCorpus } from '../io/corpus.ts';
import { splitCorpus } from '../io/corpus.ts';
import type { LocalFile } from '../io/local-files.ts';
import { checkTrainerStateJson, CHECKPOINT_DIR, tokensFingerprint, type TrainerStateJson } from '../io/run-checkpoint.ts';
import { blobChunks, type RunFile, type RunSummary } from '../io/run-store.ts';
import { Sha256 } from '../io/sha256.ts';
import { readZip } from '../io/unzip.ts';
import { corpusAssets, PAGE_STATE_NAME, readPageState, SavedRunError, type PageState, type ShownEvent } from './autosave.ts';
import type { CorpusOptions } from './protocol.ts';
import { DEFAULT_SAMPLE, DEFAULT_TRAIN, type TrainSettings } from './settings.ts';

/** The files of a drop, with a single .zip opened into its entries. */
export async function expandDrop(files: LocalFile[]): Promise<LocalFile[]> {
  if (files.length === 1 && /\.zip$/i.test(files[0].path)) {
    const entries = await readZip(files[0].file, files[0].path);
    return Promise.all(entries.map(async (e) => ({ path: e.name, file: await e.blob() })));
  }
  return files;
}

export interface FoundCheckpoint {
  /** the checkpoint folder's path in the drop ('' when the files were dropped loose) */
  dir: string;
  /** its files, by plain name */
  files: Map<string, Blob>;
  /** a page download's extras: studio/<group>/<name> beside the checkpoint folder */
  studio: Map<string, Map<string, Blob>>;
}

const parent = (p: string) => (p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '');
const base = (p: string) => p.slice(p.lastIndexOf('/') + 1);

/** The checkpoint in a drop: the folder holding trainer_state.json (the newest `checkpoint-<step>` of several). */
export function findCheckpoint(files: LocalFile[]): FoundCheckpoint {
  const states = files.filter((f) => base(f.path) === 'trainer_state.json').map((f) => parent(f.path));
  if (states.length === 0) {
    throw new SavedRunError('The drop holds no trainer_state.json, so it is not a checkpoint. Drop a checkpoint-<step> folder (or a folder of them, or a .zip of one) written by the studio or its command line.');
  }
  const step = (d: string) => Number(CHECKPOINT_DIR.exec(base(d))?.[1] ?? -1);
  const dir = states.length === 1 ? states[0] : [...states].sort((a, b) => step(b) - step(a))[0];
  if (states.length > 1 && step(dir) < 0) throw new SavedRunError(`The drop holds ${states.length} checkpoints that are not named checkpoint-<step>; drop one of them.`);
  const inDir = new Map(files.filter((f) => parent(f.path) === dir).map((f) => [base(f.path), f.file] as const));
  const studio = new Map<string, Map<string, Blob>>();
  const studioRoot = `${parent(dir) ? `${parent(dir)}/` : ''}studio/`;
  for (const f of files) {
    if (!f.path.startsWith(studioRoot)) continue;
    const rest = f.path.slice(studioRoot.length).split('/');
    if (rest.length !== 2) continue;
    if (!studio.has(rest[0])) studio.set(rest[0], new Map());
    studio.get(rest[0])!.set(rest[1], f.file);
  }
  return { dir, files: inDir, studio };
}

function runFiles(files: Map<string, Blob>): RunFile[] {
  return [...files].map(([name, blob]) => ({ name, data: () => blobChunks(blob) }));
}

async function readTrainerState(files: Map<string, Blob>): Promise<TrainerStateJson> {
  const b = files.get('trainer_state.json')!;
  let j: unknown;
  try {
    j = JSON.parse(await b.text());
  } catch (e) {
    throw new SavedRunError(`trainer_state.json is not valid JSON (${(e as Error).message}).`);
  }
  return checkTrainerStateJson(j);
}

/** The page's settings for a command-line checkpoint; what the page cannot express is refused by name. */
function pageSettingsOf(st: TrainerStateJson): TrainSettings {
  const s = st.settings;
  const d = s.dropout;
  if (d.embd !== d.attn || d.attn !== d.resid) {
    throw new SavedRunError(`The checkpoint trains with dropout embd ${d.embd}, attn ${d.attn}, resid ${d.resid}; the page sets one rate for all three. Resume it with the command line (train --resume).`);
  }
  const kind = s.schedule.kind === 'stlr' ? 'slanted' : s.schedule.kind;
  const targets = (s.lora?.targets ?? DEFAULT_TRAIN.lora.targets) as TrainSettings['lora']['targets'];
  if (s.lora?.rslora) throw new SavedRunError('The checkpoint trains rsLoRA, which the page does not offer. Resume it with the command line (train --resume).');
  return {
    ...DEFAULT_TRAIN,
    lr: s.lr, schedule: kind, warmup: s.schedule.warmup, minLrRatio: s.schedule.min_lr_ratio, cutFrac: s.schedule.cut_frac, stlrRatio: s.schedule.ratio,
    lengthUnit: 'steps', steps: st.total_steps, batch: s.batch, seq: s.seq, gradAccum: s.grad_accum, weightDecay: s.weight_decay, gradClip: s.grad_clip,
    beta1: s.beta1, beta2: s.beta2, eps: s.eps, dropout: d.embd, seed: s.seed, order: s.order,
    // The run continues in the precision it trained in (an f16 checkpoint resumes in f16).
    precision: s.precision,
    // And with the reductions it trained with (the resume takes them from `kernels` in any case).
    subgroups: st.kernels?.subgroups === true,
    // The command line's --data is all training data: nothing is held out of it.
    valFraction: 0, evalEvery: s.eval_every, sampleEvery: 0, lrDecay: s.lr_decay,
    unfreeze: s.unfreeze ? { enabled: true, start: s.unfreeze.start, every: s.unfreeze.every } : { ...DEFAULT_TRAIN.unfreeze, enabled: false },
    lora: s.lora
      ? { enabled: true, r: s.lora.r, alpha: s.lora.alpha, dropout: s.lora.dropout, targets: [...targets] }
      : { ...DEFAULT_TRAIN.lora, enabled: false },
  };
}

/** The chart points of a checkpoint's log. */
function eventsOf(st: TrainerStateJson): ShownEvent[] {
  const out: ShownEvent[] = [];
  for (const l of st.log_history) {
    const step = Number(l.step);
    if (typeof l.loss === 'number') {
      out.push({ type: 'step', step, totalSteps: st.total_steps, loss: l.loss, lr: Number(l.lr ?? 0), gradNorm: Number(l.grad_norm ?? 0), tokensPerSec: 0, elapsedMs: 0, etaMs: 0 });
    } else if (typeof l.eval_loss === 'number') {
      const r = { loss: l.eval_loss, perplexity: Number(l.eval_ppl ?? Math.exp(l.eval_loss)), accuracy: typeof l.eval_acc === 'number' ? l.eval_acc : null, bleu: null, tokens: 0, windows: 0 };
      out.push({ type: 'eval', phase: 'during', step, tuned: r, base: null });
    }
  }
  return out;
}

const MODEL_FILES = /^(config\.json|model\.safetensors|generation_config\.json|tokenizer\.json|tokenizer_config\.json|vocab\.json|merges\.txt|adapter_config\.json|adapter_model\.safetensors)$/;

export interface ImportedRun {
  summary: RunSummary;
  checkpoint: RunFile[];
  assets: Record<string, RunFile[]>;
}

/**
 * A dropped checkpoint as a saved run. `loaded`: the corpus in the page now (a command-line
 * checkpoint needs it, checked against its fingerprint).
 */
export interface LoadedCorpus {
  name: string;
  names: string[];
  options: CorpusOptions;
  tokenized: TokenizedCorpus;
}

export async function importedRun(found: FoundCheckpoint, loaded: LoadedCorpus | null): Promise<ImportedRun> {
  const st = await readTrainerState(found.files);
  const ps = await readPageState(found.files.get(PAGE_STATE_NAME));
  const state: RunSummary['state'] = st.step >= st.total_steps ? 'finished' : 'stopped';
  if (ps) {
    const corpus = found.studio.get('corpus');
    if (!corpus) throw new SavedRunError('The saved run lacks its studio/corpus folder (the corpus token ids). Drop the whole folder or .zip the page downloaded.');
    const assets: Record<string, RunFile[]> = { corpus: runFiles(corpus) };
    const model = found.studio.get('model');
    if (model) assets.model = runFiles(model);
    const summary = { model: ps.model.name, corpus: ps.corpus.name, step: st.step, totalSteps: st.total_steps, state };
    return { summary, checkpoint: runFiles(found.files), assets };
  }
  // Written by the command line: the corpus must be the one loaded in the page.
  const names = st.data.train.map(base).join(', ');
  if (!loaded) throw new SavedRunError(`This checkpoint trained on ${names}. Load that data in the Data panel first (it is checked against the checkpoint's fingerprint), then drop the checkpoint again.`);
  const settings = pageSettingsOf(st);
  const split = splitCorpus(loaded.tokenized, { valFraction: 0, seed: settings.seed, contextLength: settings.seq });
  if (tokensFingerprint(split.train, new Sha256()) !== st.fingerprints.train_tokens) {
    throw new SavedRunError(
      `The corpus loaded in the page (${loaded.name}) is not the data this checkpoint trained on (${names}): their token fingerprints differ. ` +
        'Load the same files, in the same order, then drop the checkpoint again.',
    );
  }
  const modelFiles = [...found.files].filter(([n]) => MODEL_FILES.test(n));
  const dir = found.dir || `checkpoint-${st.step}`;
  const page: PageState = {
    format: 'webgpu-finetuning-studio/page-state', version: 1,
    model: { name: `${st.model.source || base(dir)} (${base(dir)})`, source: { kind: 'files', paths: modelFiles.map(([n]) => `${base(dir)}/${n}`) } },
    corpus: { name: loaded.name, names: loaded.names, options: loaded.options, stats: loaded.tokenized.stats },
    settings, frozen: [...st.settings.frozen], sample: { ...DEFAULT_SAMPLE }, events: eventsOf(st), evalBefore: null,
  };
  const checkpoint = [...runFiles(found.files), { name: PAGE_STATE_NAME, data: new TextEncoder().encode(JSON.stringify(page)) }];
  const model = modelFiles.map(([n, b]) => ({ name: encodeURIComponent(`${base(dir)}/${n}`), data: () => blobChunks(b) }));
  return {
    summary: { model: page.model.name, corpus: loaded.name, step: st.step, totalSteps: st.total_steps, state },
    checkpoint,
    assets: { corpus: corpusAssets(loaded.tokenized), model },
  };
}
