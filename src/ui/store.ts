// The page's state: zustand slices holding plain data. Everything the engine reports arrives as
// a WorkerEvent and is folded in by `reduce` (a pure function, so the projection is testable
// without a browser); the rest is what the user is editing (settings, frozen layers, sources).
import { create } from 'zustand';
import type { CachedModelSummary } from '../io/cache.ts';
import { DEFAULT_ENDPOINT as DEFAULT_HUB_ENDPOINT } from '../io/hub.ts';
import type { SelftestReport } from '../worker/selftest.ts';
import { DEFAULT_SAMPLE, DEFAULT_TRAIN, suggestedLr } from '../worker/settings.ts';
import type {
  AdapterReport,
  CorpusInfo,
  EvalResult,
  ExportFormat,
  TryExportResult,
  MemoryBreakdown,
  ModelInfo,
  ProgressTask,
  RequestType,
  RunState,
  SampleSettings,
  SavedRunInfo,
  TrainSettings,
  WorkerEvent,
} from '../worker/protocol.ts';

export type AdapterState =
  | { status: 'probing' }
  | { status: 'ready'; report: AdapterReport }
  | { status: 'unavailable'; reason: string };

/** The self-test's answer as the page keeps it (src/worker/selftest.ts). */
export type SelftestResult = Omit<SelftestReport, 'sample'>;

export type SelftestState = { status: 'idle' | 'running' } | { status: 'done'; result: SelftestResult } | { status: 'failed'; message: string };

/** The matmul tuning run (src/worker/tune.ts): its choice per shape class when done. */
export type TuneState = { status: 'idle' | 'running' } | { status: 'done'; lines: string[] } | { status: 'failed'; message: string };

export type ModelChoice = 'builtin' | 'hub' | 'files';

export interface ModelSlice {
  model: {
    status: 'none' | 'loading' | 'ready' | 'failed';
    info: ModelInfo | null;
    choice: ModelChoice;
    hub: { endpoint: string; repo: string; revision: string; reachable: boolean | null; detail: string };
    /** optimizer steps the fine-tuned weights have taken since load or reset */
    trainedSteps: number;
  };
}

export interface CorpusSlice {
  corpus: { status: 'none' | 'loading' | 'ready' | 'failed'; info: CorpusInfo | null; jsonlField: string; csvColumn: string };
}

export interface StepPoint {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokensPerSec: number;
}

export interface EvalPoint {
  step: number;
  loss: number;
  perplexity: number;
  accuracy: number | null;
}

export interface SampleEntry {
  id: number;
  step: number;
  prompt: string;
  seed: number;
  tuned: string;
  base: string | null;
  tokensPerSec: number;
}

/** A run paused at a non-finite step: what the page offers (go back to the save at a lower rate, or stop). */
export interface DivergedRun {
  step: number;
  lastGood: number;
  lr: number;
  message: string;
  save: { id: string; step: number } | null;
}

export interface RunSlice {
  run: {
    state: RunState;
    step: number;
    totalSteps: number;
    tokensPerSec: number;
    elapsedMs: number;
    etaMs: number;
    message: string;
    /** the run's series (cleared when a new run starts) */
    series: StepPoint[];
    evals: EvalPoint[];
    info: string[];
    /** set while the run is paused by a non-finite loss (the worker's `diverged` event) */
    diverged: DivergedRun | null;
  };
  memory: { estimate: MemoryBreakdown | null; estimateTrainable: number; estimateId: number; actual: MemoryBreakdown | null; actualTrainable: number };
}

export interface ResultsSlice {
  samples: SampleEntry[];
  evaluation: { before: EvalResult | null; after: EvalResult | null; afterStep: number };
  exports: { pending: ExportFormat | null; last: { format: ExportFormat; fileName: string; url: string; bytes: number } | null };
  /** "Try the export": the ONNX model in onnxruntime-web next to the engine */
  tryExport: { pending: boolean; result: TryExportResult | null };
}

export interface ProgressEntry {
  label: string;
  done: number;
  total: number;
  unit: 'bytes' | 'items';
}

export interface StudioError {
  id: number;
  name: string;
  message: string;
  request: RequestType | 'page';
}

export interface StatusSlice {
  adapter: AdapterState;
  /** models in the browser's download cache (null until listed) */
  cache: { persistent: boolean; models: CachedModelSummary[] } | null;
  selftest: SelftestState;
  tune: TuneState;
  progress: Partial<Record<ProgressTask, ProgressEntry>>;
  errors: StudioError[];
  deviceLost: string | null;
}

export interface SettingsSlice {
  train: TrainSettings;
  sample: SampleSettings;
  /** settings the user changed by hand (a model's suggestion never overrides them) */
  edited: Array<keyof TrainSettings>;
  /** frozen depth groups, ascending */
  frozen: number[];
  compareBase: boolean;
}

export interface SavedSlice {
  saved: {
    /** false when the browser gives no storage for runs; null until asked */
    available: boolean | null;
    runs: SavedRunInfo[];
    /** the current run's latest save in the browser */
    last: { id: string; step: number; at: number; bytes: number; seconds: number } | null;
    /** a run being zipped for download */
    downloading: string | null;
  };
}

export type StudioData = SavedSlice & ModelSlice & CorpusSlice & RunSlice & ResultsSlice & StatusSlice & SettingsSlice;

export interface StudioActions {
  apply(ev: WorkerEvent): void;
  setTrain(patch: Partial<TrainSettings>): void;
  setSample(patch: Partial<SampleSettings>): void;
  setFrozen(groups: number[]): void;
  toggleFrozen(group: number): void;
  setModelChoice(choice: ModelChoice): void;
  setHub(patch: Partial<ModelSlice['model']['hub']>): void;
  setCorpusOptions(patch: Partial<Pick<CorpusSlice['corpus'], 'jsonlField' | 'csvColumn'>>): void;
  setCompareBase(on: boolean): void;
  /** marks a request as started (optimistic status, cleared by the worker's answer) */
  started(what: 'model' | 'corpus' | 'selftest' | 'tune' | 'train' | 'export' | 'tryExport', format?: ExportFormat): void;
  nextEstimateId(): number;
  dismissError(id: number): void;
  pageError(name: string, message: string): void;
}

export type Studio = StudioData & StudioActions;

let nextId = 1;
let estimateSeq = 0;

export function initialData(): StudioData {
  return {
    adapter: { status: 'probing' },
    cache: null,
    selftest: { status: 'idle' },
    tune: { status: 'idle' },
    progress: {},
    errors: [],
    deviceLost: null,
    model: {
      status: 'none',
      info: null,
      choice: 'builtin',
      hub: { endpoint: DEFAULT_HUB_ENDPOINT, repo: 'openai-community/gpt2', revision: 'main', reachable: null, detail: '' },
      trainedSteps: 0,
    },
    corpus: { status: 'none', info: null, jsonlField: 'text', csvColumn: 'text' },
    run: { state: 'idle', step: 0, totalSteps: 0, tokensPerSec: 0, elapsedMs: 0, etaMs: 0, message: '', series: [], evals: [], info: [], diverged: null },
    memory: { estimate: null, estimateTrainable: 0, estimateId: 0, actual: null, actualTrainable: 0 },
    samples: [],
    evaluation: { before: null, after: null, afterStep: 0 },
    exports: { pending: null, last: null },
    tryExport: { pending: false, result: null },
    train: { ...DEFAULT_TRAIN, unfreeze: { ...DEFAULT_TRAIN.unfreeze }, lora: { ...DEFAULT_TRAIN.lora, targets: [...DEFAULT_TRAIN.lora.targets] } },
    sample: { ...DEFAULT_SAMPLE },
    edited: [],
    frozen: [],
    compareBase: true,
    saved: { available: null, runs: [], last: null, downloading: null },
  };
}

/** Steps the current run has taken since its last save in the browser (what a reload would lose). */
export function unsavedSteps(s: StudioData): number {
  const r = s.run;
  if (r.state === 'idle' || r.state === 'failed' || s.deviceLost) return 0;
  return Math.max(0, r.step - (s.saved.last?.step ?? 0));
}

/** Keeps series readable and the page light on very long runs: at most this many points. */
export const MAX_POINTS = 2000;

function pushCapped<T>(list: T[], item: T): T[] {
  const next = [...list, item];
  // Thin the older half when full, so the whole run stays visible at lower resolution.
  if (next.length > MAX_POINTS) return [...next.slice(0, MAX_POINTS / 2).filter((_, i) => i % 2 === 0), ...next.slice(MAX_POINTS / 2)];
  return next;
}

function withoutProgress(p: StatusSlice['progress'], task: ProgressTask): StatusSlice['progress'] {
  const next = { ...p };
  delete next[task];
  return next;
}

/** The state after one worker event: the UI is a projection of these. */
export function reduce(s: StudioData, ev: WorkerEvent): Partial<StudioData> {
  switch (ev.type) {
    case 'adapter':
      return { adapter: { status: 'ready', report: ev.report } };
    case 'selftest':
      return { selftest: { status: 'done', result: { M: ev.M, N: ev.N, K: ev.K, maxAbsError: ev.maxAbsError, ms: ev.ms } } };
    case 'tuned':
      return { tune: { status: 'done', lines: ev.lines } };
    case 'hub':
      // Asked only once the user chose the Hub; the answer never changes the model choice.
      return { model: { ...s.model, hub: { ...s.model.hub, reachable: ev.reachable, detail: ev.detail } } };
    case 'progress':
      if (ev.done >= ev.total && ev.total > 0 && (ev.task === 'generate' || ev.task === 'evaluate')) return { progress: withoutProgress(s.progress, ev.task) };
      return { progress: { ...s.progress, [ev.task]: { label: ev.label, done: ev.done, total: ev.total, unit: ev.unit } } };
    case 'modelLoaded': {
      const fresh = s.model.info?.name !== ev.model.name || s.model.status !== 'ready';
      const train = { ...s.train };
      if (!s.edited.includes('lr')) train.lr = suggestedLr(ev.model.pretrained);
      if (!s.edited.includes('seq')) train.seq = Math.min(train.seq, ev.model.nPositions);
      if (!s.edited.includes('dropout')) train.dropout = ev.model.dropout;
      return {
        model: { ...s.model, status: 'ready', info: ev.model, trainedSteps: 0 },
        progress: withoutProgress(s.progress, 'model'),
        train,
        frozen: fresh ? [] : s.frozen.filter((g) => g < ev.model.groups.length),
        deviceLost: null,
        evaluation: { before: null, after: null, afterStep: 0 },
        memory: { ...s.memory, actual: null },
        ...(fresh ? { samples: [] } : {}),
      };
    }
    case 'corpusLoaded':
      return { corpus: { ...s.corpus, status: 'ready', info: ev.corpus }, progress: withoutProgress(s.progress, 'corpus') };
    case 'runState': {
      const starting = ev.state === 'starting';
      const run = {
        ...s.run,
        state: ev.state,
        step: ev.step,
        totalSteps: ev.totalSteps,
        message: ev.message ?? (starting ? '' : s.run.message),
        // The choice after a non-finite loss is offered only while the run waits for it.
        diverged: ev.state === 'paused' ? s.run.diverged : null,
        ...(starting ? { series: [], evals: [], info: [], tokensPerSec: 0, elapsedMs: 0, etaMs: 0 } : {}),
      };
      const done = ev.state === 'finished' || ev.state === 'stopped' || ev.state === 'failed';
      return {
        run,
        // A run going again on a new device ends the lost-device notice.
        ...(ev.state === 'running' ? { deviceLost: null } : {}),
        // Steps of a run that ended with its device lost were lost with it.
        ...(done && !s.deviceLost ? { model: { ...s.model, trainedSteps: s.model.trainedSteps + ev.step } } : {}),
        ...(starting ? { memory: { ...s.memory, actual: null }, saved: { ...s.saved, last: null } } : {}),
      };
    }
    case 'step':
      return {
        run: {
          ...s.run,
          step: ev.step,
          totalSteps: ev.totalSteps,
          tokensPerSec: ev.tokensPerSec,
          elapsedMs: ev.elapsedMs,
          etaMs: ev.etaMs,
          series: pushCapped(s.run.series, { step: ev.step, loss: ev.loss, lr: ev.lr, gradNorm: ev.gradNorm, tokensPerSec: ev.tokensPerSec }),
        },
      };
    case 'estimate':
      if (ev.id < s.memory.estimateId) return {};
      return { memory: { ...s.memory, estimate: ev.memory, estimateTrainable: ev.trainableParams, estimateId: ev.id } };
    case 'memory':
      return { memory: { ...s.memory, actual: ev.memory, actualTrainable: ev.trainableParams } };
    case 'eval': {
      const point: EvalPoint = { step: ev.step, loss: ev.tuned.loss, perplexity: ev.tuned.perplexity, accuracy: ev.tuned.accuracy };
      const evals = s.run.state === 'idle' && ev.phase !== 'during' ? s.run.evals : [...s.run.evals.filter((e) => e.step !== ev.step), point].sort((a, b) => a.step - b.step);
      const evaluation = ev.phase === 'before'
        ? { before: ev.tuned, after: null, afterStep: 0 }
        : ev.phase === 'after'
          ? { before: ev.base ?? s.evaluation.before, after: ev.tuned, afterStep: ev.step }
          : s.evaluation;
      return { run: { ...s.run, evals }, evaluation, progress: withoutProgress(s.progress, 'evaluate') };
    }
    case 'sample':
      return {
        samples: [
          { id: nextId++, step: ev.step, prompt: ev.prompt, seed: ev.seed, tuned: ev.tuned, base: ev.base, tokensPerSec: ev.tokensPerSec },
          ...s.samples,
        ].slice(0, 100),
        progress: withoutProgress(s.progress, 'generate'),
      };
    case 'info':
      return { run: { ...s.run, info: [...s.run.info, ev.message].slice(-50) } };
    case 'diverged':
      return { run: { ...s.run, diverged: { step: ev.step, lastGood: ev.lastGood, lr: ev.lr, message: ev.message, save: ev.save } } };
    case 'exported':
      // The object URL is made by the page (ExportPanel) where it can also be revoked.
      return { exports: { pending: null, last: s.exports.last }, progress: withoutProgress(s.progress, 'export') };
    case 'tryExport':
      return { tryExport: { pending: false, result: ev.result }, progress: withoutProgress(s.progress, 'export') };
    case 'cache':
      return { cache: { persistent: ev.persistent, models: ev.models } };
    case 'runs':
      return { saved: { ...s.saved, available: ev.available, runs: ev.runs } };
    case 'saved':
      return { saved: { ...s.saved, last: { id: ev.id, step: ev.step, at: ev.at, bytes: ev.bytes, seconds: ev.seconds } } };
    case 'runZip':
      return { saved: { ...s.saved, downloading: null } };
    case 'restored':
      // The saved run's settings win over what was on the page: they are what it trained with.
      return {
        train: { ...ev.settings, unfreeze: { ...ev.settings.unfreeze }, lora: { ...ev.settings.lora, targets: [...ev.settings.lora.targets] } },
        sample: { ...ev.sample },
        frozen: [...ev.frozen].sort((a, b) => a - b),
        edited: [...new Set([...s.edited, 'lr', 'seq', 'dropout'] as Array<keyof TrainSettings>)],
        saved: { ...s.saved, last: null },
      };
    case 'deviceLost':
      return {
        deviceLost: ev.message,
        // The fine-tuned weights were on the lost device.
        model: { ...s.model, trainedSteps: 0 },
        run: s.run.state === 'running' || s.run.state === 'paused' || s.run.state === 'starting' ? { ...s.run, state: 'stopped', message: ev.message } : s.run,
        progress: {},
      };
    case 'error': {
      const err: StudioError = { id: nextId++, name: ev.name, message: ev.message, request: ev.request };
      // A failed probe has its own notice (no WebGPU: why, and where it works), not a second one.
      const patch: Partial<StudioData> = ev.request === 'probe' ? {} : { errors: [...s.errors.filter((e) => e.message !== ev.message), err].slice(-5) };
      switch (ev.request) {
        case 'probe':
          patch.adapter = { status: 'unavailable', reason: ev.message };
          break;
        case 'selftest':
          patch.selftest = { status: 'failed', message: ev.message };
          break;
        case 'tune':
          patch.tune = { status: 'failed', message: ev.message };
          break;
        case 'loadModel':
          patch.model = { ...s.model, status: s.model.info ? 'ready' : 'failed' };
          patch.progress = withoutProgress(s.progress, 'model');
          break;
        case 'loadCorpus':
          patch.corpus = { ...s.corpus, status: s.corpus.info ? 'ready' : 'failed' };
          patch.progress = withoutProgress(s.progress, 'corpus');
          break;
        case 'export':
          patch.exports = { ...s.exports, pending: null };
          patch.progress = withoutProgress(s.progress, 'export');
          break;
        case 'tryExport':
          patch.tryExport = { ...s.tryExport, pending: false };
          patch.progress = withoutProgress(s.progress, 'export');
          break;
        case 'generate':
          patch.progress = withoutProgress(s.progress, 'generate');
          break;
        case 'evaluate':
          patch.progress = withoutProgress(s.progress, 'evaluate');
          break;
        case 'runDownload':
        case 'runTorchProject':
          patch.saved = { ...s.saved, downloading: null };
          break;
        case 'train':
          if (s.run.state === 'starting') patch.run = { ...s.run, state: 'failed', message: ev.message };
          break;
        default:
          break;
      }
      return patch;
    }
  }
}

export const useStudio = create<Studio>()((set) => ({
  ...initialData(),
  apply: (ev) => set((s) => reduce(s, ev)),
  setTrain: (patch) =>
    set((s) => ({
      train: { ...s.train, ...patch },
      edited: [...new Set([...s.edited, ...(Object.keys(patch) as Array<keyof TrainSettings>)])],
    })),
  setSample: (patch) => set((s) => ({ sample: { ...s.sample, ...patch } })),
  setFrozen: (groups) => set({ frozen: [...new Set(groups)].sort((a, b) => a - b) }),
  toggleFrozen: (g) => set((s) => ({ frozen: s.frozen.includes(g) ? s.frozen.filter((x) => x !== g) : [...s.frozen, g].sort((a, b) => a - b) })),
  setModelChoice: (choice) => set((s) => ({ model: { ...s.model, choice } })),
  setHub: (patch) => set((s) => ({ model: { ...s.model, hub: { ...s.model.hub, ...patch } } })),
  setCorpusOptions: (patch) => set((s) => ({ corpus: { ...s.corpus, ...patch } })),
  setCompareBase: (on) => set({ compareBase: on }),
  started: (what, format) =>
    set((s) => {
      switch (what) {
        case 'model':
          return { model: { ...s.model, status: 'loading' }, progress: { ...s.progress, model: { label: 'Starting', done: 0, total: 0, unit: 'bytes' } } };
        case 'corpus':
          return { corpus: { ...s.corpus, status: 'loading' }, progress: { ...s.progress, corpus: { label: 'Reading', done: 0, total: 0, unit: 'bytes' } } };
        case 'selftest':
          return { selftest: { status: 'running' } };
        case 'tune':
          return { tune: { status: 'running' } };
        case 'train':
          return { run: { ...s.run, state: 'starting', message: '' } };
        case 'export':
          return { exports: { ...s.exports, pending: format ?? null } };
        case 'tryExport':
          return { tryExport: { pending: true, result: null } };
      }
    }),
  nextEstimateId: () => ++estimateSeq,
  dismissError: (id) => set((s) => ({ errors: s.errors.filter((e) => e.id !== id) })),
  pageError: (name, message) => set((s) => ({ errors: [...s.errors, { id: nextId++, name, message, request: 'page' as const }].slice(-5) })),
}));

/** Records a finished download (the object URL made by the page). */
export function setLastExport(last: ResultsSlice['exports']['last']): void {
  const prev = useStudio.getState().exports.last;
  if (prev && prev.url !== last?.url) URL.revokeObjectURL(prev.url);
  useStudio.setState((s) => ({ exports: { ...s.exports, last } }));
}
