// The one seam between the page and the engine: every message is a member of a discriminated
// union, so both sides switch on `type` with no casts. Messages hold plain data (and browser
// File/Blob objects, which structured cloning carries); GPU objects never cross. Types only:
// where a message carries what an engine or io module computes, its type is derived from that
// module's, and helpers are imported from the modules that own them.
import type { EvalResult as EngineEvalResult } from '../engine/eval/evaluate.ts';
import type { AdapterReport } from '../engine/gpu/context.ts';
import type { GPT2Config } from '../engine/model/config.ts';
import type { MemoryBreakdown as EngineMemory } from '../engine/train/memory.ts';
import type { CachedModelSummary, ClearFilter } from '../io/cache.ts';
import type { CorpusOptions as IoCorpusOptions, CorpusSplit, CorpusStats } from '../io/corpus.ts';
import type { HubReachability } from '../io/hub.ts';
import type { LocalFile } from '../io/local-files.ts';
import type { RunSummary } from '../io/run-store.ts';
import type { SelftestReport, SelftestShape } from './selftest.ts';
import type { SampleSettings, TrainSettings } from './settings.ts';

export type { AdapterReport, LocalFile, SampleSettings, TrainSettings };

export type ModelSource =
  | { kind: 'builtin' }
  | { kind: 'hub'; repo: string; revision: string; endpoint: string }
  /** files the user dropped or picked, with their paths inside what was dropped */
  | { kind: 'files'; files: LocalFile[] };

export type CorpusSource = { kind: 'sample' } | { kind: 'files'; files: File[] };

/** How documents are found in .jsonl and .csv files (the page's subset of io/corpus.ts's options). */
export type CorpusOptions = Required<Pick<IoCorpusOptions, 'jsonlField'>> & { csvColumn: string };

export interface DepthGroup {
  /** 0 embeddings, i + 1 block i, L + 1 ln_f */
  index: number;
  label: string;
  params: number;
}

export interface ModelInfo extends Pick<GPT2Config, 'vocabSize' | 'nPositions' | 'nEmbd' | 'nLayer' | 'nHead' | 'nInner' | 'activation'> {
  /** what the user sees: a repo id, a folder name, 'Built-in demo' */
  name: string;
  source: ModelSource['kind'];
  /** the config's residual dropout (the page's one dropout setting starts at it) */
  dropout: number;
  params: number;
  /** bottom (embeddings) first */
  groups: DepthGroup[];
  /** where the tokenizer came from */
  tokenizer: string;
  /** false for freshly initialized weights (the built-in demo) */
  pretrained: boolean;
}

export interface CorpusInfo
  extends Pick<CorpusStats, 'files' | 'documents' | 'characters' | 'bytes' | 'tokens'>,
    Pick<CorpusSplit, 'trainDocuments' | 'valDocuments' | 'trainWindows' | 'valWindows'> {
  name: string;
  trainTokens: number;
  valTokens: number;
  /** the split's context length (windows are counted at it) */
  contextLength: number;
  valFraction: number;
  /** how a single document was split, when it was */
  splitMessage?: string;
}

/** The engine's memory categories, plus the base-model copy the studio keeps. */
export interface MemoryBreakdown extends EngineMemory {
  /** a second copy of the weights kept for base-vs-fine-tuned samples and evaluation */
  baseCopy: number;
}

/** An evaluation as the page shows it: the engine's numbers, with BLEU beside them. */
export interface EvalResult extends Pick<EngineEvalResult, 'loss' | 'perplexity' | 'tokens' | 'windows'> {
  /** next-token top-1 accuracy in [0, 1]; null when not measured */
  accuracy: number | null;
  /** BLEU-4, 0–100; null when not measured */
  bleu: number | null;
}

/** A run saved in the browser (OPFS): the run store's summary of its latest checkpoint, with its id, time and size. */
export interface SavedRunInfo extends RunSummary {
  id: string;
  /** when it was saved (ms since the epoch) */
  saved: number;
  bytes: number;
}

export type RunState = 'idle' | 'starting' | 'running' | 'paused' | 'stopping' | 'finished' | 'stopped' | 'failed';

export type ExportFormat = 'hf-zip' | 'safetensors' | 'lora' | 'onnx-zip';

/** One runtime's greedy continuation in "Try the export". */
export interface TryRun {
  tokens: number[];
  text: string;
  tokensPerSec: number;
}

/** The ONNX export run in onnxruntime-web next to the engine, from the same prompt, greedily. */
export interface TryExportResult {
  prompt: string;
  /** the onnxruntime-web execution provider that ran it */
  provider: 'webgpu' | 'wasm';
  /** bytes of the float32 decoder_model_merged.onnx */
  onnxBytes: number;
  engine: TryRun;
  onnx: TryRun;
  /** index of the first new token where they differ, or null when they agree token for token */
  firstDifference: number | null;
}

/** Page → worker. */
export type WorkerRequest =
  | { type: 'probe' }
  | ({ type: 'selftest' } & SelftestShape)
  /** times matmul tilings on this adapter and keeps the fastest for later runs (worker/tune.ts) */
  | { type: 'tune' }
  /** asked only when the user chooses the Hub: nothing leaves the page's origin before */
  | { type: 'hubCheck'; endpoint: string; repo: string }
  | { type: 'loadModel'; source: ModelSource }
  | { type: 'loadCorpus'; source: CorpusSource; options: CorpusOptions; valFraction: number; seed: number; contextLength: number }
  /** the memory a run with these settings would take, before it starts (answered by `estimate`) */
  | { type: 'estimate'; settings: TrainSettings; frozen: number[]; id: number }
  | { type: 'train'; settings: TrainSettings; frozen: number[]; sample: SampleSettings }
  | { type: 'pause' }
  /** resumes a paused run with the frozen groups as they are now (changes made while paused apply from the next step) */
  | { type: 'resume'; frozen: number[] }
  | { type: 'stop' }
  /**
   * For a run paused by a non-finite loss (`diverged`): go back to the run's last save and train
   * on from there with the learning rate × `lrScale` (0 < lrScale; `stop` ends the run instead).
   */
  | { type: 'divergedBack'; lrScale: number }
  | { type: 'generate'; sample: SampleSettings; compare: boolean }
  /** evaluates on the validation split at the settings' sequence length and batch */
  | { type: 'evaluate'; settings: TrainSettings }
  | { type: 'export'; format: ExportFormat }
  /** runs the ONNX export in onnxruntime-web next to the engine (answered by `tryExport`) */
  | { type: 'tryExport'; prompt: string; maxNewTokens: number }
  | { type: 'cacheList' }
  /** removes one model's downloads from the cache, or all of them */
  | { type: 'cacheClear'; model?: Required<ClearFilter> }
  /** puts the fine-tuned weights back to the loaded model's */
  | { type: 'resetWeights' }
  /** the runs saved in the browser (answered by `runs`) */
  | { type: 'runsList' }
  | { type: 'runDelete'; id: string }
  /**
   * Continues a saved run where its checkpoint left it: the model, corpus, settings, layers,
   * charts, samples and evaluation come back (as `modelLoaded`, `corpusLoaded`, `restored` and the
   * run's events), then it trains on. `lrScale` (e.g. 0.5 after a non-finite loss) multiplies the
   * learning rate from there on; without it the run continues exactly as if never interrupted.
   */
  | { type: 'runResume'; id: string; lrScale?: number }
  /** a dropped checkpoint folder or .zip (saved by the page or by the command line), kept as a saved run and resumed */
  | { type: 'runImport'; files: LocalFile[] }
  /** the saved run as a .zip: checkpoint-<step>/ (loads with from_pretrained, resumes in the CLI) and studio/ (the page's extras) */
  | { type: 'runDownload'; id: string }
  /** the saved run as a PyTorch project .zip that continues it under torchrun (train.py, checkpoint/, data/, README.md); answered with runZip */
  | { type: 'runTorchProject'; id: string }
  /** destroys the GPU device as a driver reset would (to try recovery; the page offers it with ?debug) */
  | { type: 'loseDevice' }
  /**
   * writes NaN into one weight of the fine-tuned model (ln_f.weight[0]), so the next step's loss is
   * non-finite (to try the pause after a non-finite loss; the page offers it with ?debug, to a paused run)
   */
  | { type: 'poisonWeights' };

export type RequestType = WorkerRequest['type'];

export type ProgressTask = 'model' | 'corpus' | 'evaluate' | 'export' | 'generate';

/** Worker → page. */
export type WorkerEvent =
  | { type: 'adapter'; report: AdapterReport }
  | ({ type: 'selftest' } & SelftestReport)
  /** the tuning run's choice per shape class, as lines to show */
  | { type: 'tuned'; lines: string[] }
  | ({ type: 'hub' } & HubReachability)
  | { type: 'progress'; task: ProgressTask; label: string; done: number; total: number; unit: 'bytes' | 'items' }
  | { type: 'modelLoaded'; model: ModelInfo }
  | { type: 'corpusLoaded'; corpus: CorpusInfo }
  | { type: 'runState'; state: RunState; step: number; totalSteps: number; message?: string }
  /**
   * The run is paused at `step`, whose loss or gradient was NaN or infinite: its update (and that
   * of any step queued behind it) was not applied, so the weights are those after `lastGood`
   * steps. Nothing was saved over the run's last save, `save` (null when none exists yet). The
   * page offers `divergedBack` (go back to the save at a lower rate) or `stop`.
   */
  | { type: 'diverged'; step: number; lastGood: number; lr: number; message: string; save: { id: string; step: number } | null }
  | {
      type: 'step';
      step: number;
      totalSteps: number;
      loss: number;
      lr: number;
      gradNorm: number;
      tokensPerSec: number;
      elapsedMs: number;
      etaMs: number;
    }
  /** `id` echoes the request, so the page keeps only the answer to its latest question */
  | { type: 'estimate'; id: number; memory: MemoryBreakdown; trainableParams: number }
  /** what the running trainer actually allocated */
  | { type: 'memory'; memory: MemoryBreakdown; trainableParams: number }
  | { type: 'eval'; phase: 'before' | 'during' | 'after'; step: number; tuned: EvalResult; base: EvalResult | null }
  | { type: 'sample'; step: number; prompt: string; seed: number; tuned: string; base: string | null; tokensPerSec: number }
  | { type: 'info'; message: string }
  | { type: 'exported'; format: ExportFormat; fileName: string; blob: Blob }
  | { type: 'tryExport'; result: TryExportResult }
  /** the download cache: one entry per model repository and revision */
  | { type: 'cache'; persistent: boolean; models: CachedModelSummary[] }
  | { type: 'deviceLost'; message: string }
  | { type: 'runs'; runs: SavedRunInfo[]; available: boolean }
  /** a saved run's settings, as the page should show them again */
  | { type: 'restored'; id: string; settings: TrainSettings; frozen: number[]; sample: SampleSettings }
  /** a checkpoint of the current run reached the browser's storage */
  | { type: 'saved'; id: string; step: number; at: number; bytes: number; seconds: number }
  | { type: 'runZip'; id: string; fileName: string; blob: Blob }
  | { type: 'error'; name: string; message: string; request: RequestType };
