// The worker session's state as the modules that act on it see it: the loaded model (its files,
// where it came from, its two copies on the GPU and the LoRA weights), the corpus, the run in
// progress and the device. studio.ts holds this state and routes requests; run.ts, resume.ts and
// model-tasks.ts act on it through the Session interface, so none of them imports studio.ts.
import { StudioError } from '../engine/errors.ts';
import type { GpuContext } from '../engine/gpu/context.ts';
import type { LoraConfig, LoraWeights } from '../engine/model/lora.ts';
import type { GpuWeights } from '../engine/model/weights.ts';
import type { CorpusSplit } from '../io/corpus.ts';
import type { RunStore } from '../io/run-store.ts';
import type { Corpus } from './corpus.ts';
import type { Evaluator } from './evaluation.ts';
import type { RunSummary } from './exporter.ts';
import type { ModelFolder } from './model-source.ts';
import type { ModelInfo, ModelSource, WorkerEvent } from './protocol.ts';

/** A request that cannot run now (a run in progress, nothing loaded yet); says what to do first. */
export class StudioBusyError extends StudioError {}

/** The run's settings do not validate; the message lists each problem. */
export class SettingsError extends StudioError {}

/** LoRA weights training on top of the fine-tuned copy, with their settings. */
export interface LoraSession {
  config: LoraConfig;
  weights: LoraWeights;
}

export interface GpuModel {
  ctx: GpuContext;
  /** the weights that train (with LoRA: the frozen base the LoRA weights sit on) */
  tuned: GpuWeights;
  /** the loaded weights, unchanged, for base-vs-fine-tuned comparisons */
  base: GpuWeights;
  lora: LoraSession | null;
}

export interface LoadedModel {
  folder: ModelFolder;
  info: ModelInfo;
  /** where it came from, so a saved run can open it again */
  source: ModelSource;
  /** SHA-256 of the loaded weights as the checkpoint format hashes them (computed at the first save) */
  baseFingerprint?: string;
  /** null after a lost device until the model is uploaded again */
  gpu: GpuModel | null;
  /** optimizer steps applied since the model was loaded or reset */
  trainedSteps: number;
  /** the last run's settings and results, for the model card */
  lastRun: RunSummary | null;
}

/** The training run in progress, as the session routes requests to it (run.ts implements it). */
export interface RunHandle {
  /** optimizer steps the run has taken (counted from the start of training, a resumed run's included) */
  readonly step: number;
  /** true while the run waits at a step boundary (paused): the weights hold still */
  readonly waiting: boolean;
  /** the saved run it writes to, when runs are saved */
  readonly runId: string | undefined;
  pause(): void;
  /** continues a paused run with the user's frozen groups */
  resume(frozen: ReadonlySet<number>): void;
  stop(): void;
  /** for a run paused by a non-finite loss: go back to its last save with the learning rate × lrScale */
  goBack(lrScale: number): void;
  /** the device died: the run ends as stopped, not failed */
  deviceLost(): void;
  /** keeps an event the page shows (steps, evaluations, samples, notes), to save with the run */
  record(ev: WorkerEvent): void;
}

export interface Session {
  /** sends an event to the page (the run in progress records what the page shows) */
  post(ev: WorkerEvent): void;
  model: LoadedModel | null;
  corpus: Corpus | null;
  run: RunHandle | null;
  /** a model, corpus or saved-run load in progress */
  loading: string | null;
  /** a generate, evaluate or export in progress (one at a time) */
  readonly task: string | null;
  /** the device, when one is open */
  readonly ctx: GpuContext | null;
  /** evaluation and sampling (replaced when the model or the device changes) */
  readonly evaluator: Evaluator;
  /** where runs are saved, or null where the browser has no storage for them */
  runStore(): Promise<RunStore | null>;
  /** the model on a working device, uploaded again after a lost device */
  gpuModel(): Promise<GpuModel>;
  /** frees the loaded model's GPU copies and forgets it */
  dropModel(): void;
  /** the split for a run: the one loaded, or a new one when the fraction, seed or T changed */
  splitFor(valFraction: number, seed: number, contextLength: number): CorpusSplit;
  /** tells the page which runs are saved */
  postRuns(): Promise<void>;
}

/** Optimizer steps the fine-tuned weights hold now: earlier runs' and the current run's. */
export function stepsNow(s: Session): number {
  return (s.model?.trainedSteps ?? 0) + (s.run ? s.run.step : 0);
}
