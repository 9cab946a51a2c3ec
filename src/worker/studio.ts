// The engine session behind the page, living in the Web Worker: it keeps the session's state (the
// GPU device, the loaded model — the copy that trains and the base copy kept for side-by-side
// samples and before/after evaluation —, the LoRA weights when LoRA trains, the tokenized corpus
// and the one training run) and routes every WorkerRequest to the module of its concept, answering
// with WorkerEvents: the self-test (selftest.ts), models (model-source.ts), corpora (corpus.ts),
// evaluation (evaluation.ts), samples (generation.ts), exports (exporter.ts), the Hub check and
// the download cache (io/hub.ts, io/cache.ts). Nothing here touches the DOM.
import { describeError, NonFiniteLossError, OutOfMemoryError, StudioError } from '../engine/errors.ts';
import type { EvalResult as EngineEval } from '../engine/eval/evaluate.ts';
import { ThroughputMeter } from '../engine/eval/metrics.ts';
import { GpuContext } from '../engine/gpu/context.ts';
import type { GPT2Config } from '../engine/model/config.ts';
import { initLoraParams, LoraWeights, type LoraConfig } from '../engine/model/lora.ts';
import { memoryLimitsOf } from '../engine/train/memory.ts';
import { GpuWeights } from '../engine/model/weights.ts';
import { groupLabel } from '../engine/train/groups.ts';
import type { TrainRunConfig } from '../engine/train/config.ts';
import { runTraining, type RunSnapshot } from '../engine/train/loop.ts';
import { RunSettingsError, toRunConfig } from '../engine/train/run-settings.ts';
import type { Trainer, TrainerState } from '../engine/train/trainer.ts';
import { summarizeCache } from '../io/cache.ts';
import { blobSource } from '../io/bytes.ts';
import { filesFromSources, loadCheckpoint } from '../io/checkpoint.ts';
import { checkpointFiles, readRunCheckpoint, tokensFingerprint, type TrainerStateJson } from '../io/run-checkpoint.ts';
import type { RunStore, RunSummary as SavedRunSummary } from '../io/run-store.ts';
import { Sha256 } from '../io/sha256.ts';
import { splitCorpus, type CorpusSplit } from '../io/corpus.ts';
import { checkHub } from '../io/hub.ts';
import { mergeLora } from '../io/peft.ts';
import { loadDefaultTokenizer, sameTokenizer, type Tokenizer } from '../io/tokenizer.ts';
import { corpusCard, corpusInfo, loadCorpus, resplit, type Corpus } from './corpus.ts';
import { estimateRun, explainOutOfMemory, loraConfigOf } from './estimate.ts';
import { Evaluator, pageEval, type EvalTarget } from './evaluation.ts';
import { exportFromGpu, runCard, type RunSummary } from './exporter.ts';
import { tryOnnxExport } from './onnx-try.ts';
import { browserCache, describeModel, openModelSource, type ModelFolder } from './model-source.ts';
import type { CorpusOptions, CorpusSource, EvalResult, ExportFormat, MemoryBreakdown, ModelInfo, ModelSource, RunState, SampleSettings, TrainSettings, WorkerEvent, WorkerRequest } from './protocol.ts';
import { RunControl } from './run-control.ts';
import { torchProjectZip } from './torch-project.ts';
import { browserRunStore, requireRunStore, runInfo, runZip } from './saved-runs.ts';
import { expandDrop, findCheckpoint, importedRun } from './import-run.ts';
import type { LocalFile } from '../io/local-files.ts';
import {
  baseFingerprint, corpusAssets, logHistory, modelAssets, pageStateFile, readCorpusAssets, readModelAssets, readPageState, RunSaver, SavedRunError,
  savedModelSource, trainerState, type PageState, type ShownEvent,
} from './autosave.ts';
import { matmulSelftest } from './selftest.ts';
import { hasErrors, runSteps, validateSample, validateTrain } from './settings.ts';

/** A request that cannot run now (a run in progress, nothing loaded yet); says what to do first. */
export class StudioBusyError extends StudioError {}

/** The run's settings do not validate; the message lists each problem. */
export class SettingsError extends StudioError {}

/** LoRA weights training on top of the fine-tuned copy, with their settings. */
interface LoraSession {
  config: LoraConfig;
  weights: LoraWeights;
}

interface GpuModel {
  ctx: GpuContext;
  /** the weights that train (with LoRA: the frozen base the LoRA weights sit on) */
  tuned: GpuWeights;
  /** the loaded weights, unchanged, for base-vs-fine-tuned comparisons */
  base: GpuWeights;
  lora: LoraSession | null;
}

interface Model {
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

/** A run continued from a saved checkpoint. */
interface ResumeInput {
  runId: string;
  optimizer: TrainerState;
  /** optimizer steps the checkpoint holds */
  step: number;
  events: ShownEvent[];
  fingerprints: TrainerStateJson['fingerprints'];
  evalBefore: EvalResult | null;
  savedAt: number;
  bytes: number;
}

function sameLora(a: LoraConfig, b: LoraConfig): boolean {
  return a.r === b.r && a.alpha === b.alpha && a.dropout === b.dropout && a.rslora === b.rslora && a.targets.join() === b.targets.join();
}

/** Options for tests: the device the session asks for (a lowered binding limit exercises range binding). */
export interface StudioOptions {
  maxStorageBufferBindingSize?: number;
  /** where runs are saved (default: the browser's origin private file system) */
  runStore?: () => Promise<RunStore | null>;
}

export class Studio {
  private readonly post: (ev: WorkerEvent) => void;
  private readonly gpu: GPU | undefined;
  private ctx: GpuContext | null = null;
  private ctxPromise: Promise<GpuContext> | null = null;
  private model: Model | null = null;
  private corpus: Corpus | null = null;
  private control: RunControl | null = null;
  private runStep = 0;
  private runTotal = 0;
  private readonly options: StudioOptions;
  private evaluator: Evaluator;
  /** a model or corpus load in progress */
  private loading: string | null = null;
  /** a generate, evaluate or export in progress (one at a time) */
  private task: string | null = null;
  /** the saving of the current (or last) run into the browser's storage */
  private autosave: RunSaver | null = null;
  /** the events the page shows of the current run (charts, samples, notes), saved with it */
  private shown: ShownEvent[] | null = null;
  private readonly runStore: () => Promise<RunStore | null>;

  constructor(post: (ev: WorkerEvent) => void, gpu: GPU | undefined, options: StudioOptions = {}) {
    this.post = (ev) => {
      if (this.shown && (ev.type === 'step' || ev.type === 'eval' || ev.type === 'sample' || ev.type === 'info')) this.shown.push(ev);
      post(ev);
    };
    this.gpu = gpu;
    this.options = options;
    this.runStore = options.runStore ?? browserRunStore;
    this.evaluator = this.newEvaluator();
  }

  private newEvaluator(): Evaluator {
    return new Evaluator((label, done, total) => this.post({ type: 'progress', task: 'evaluate', label, done, total, unit: 'items' }));
  }

  async handle(req: WorkerRequest): Promise<void> {
    try {
      switch (req.type) {
        case 'probe':
          this.post({ type: 'adapter', report: (await this.context()).adapter });
          return;
        case 'selftest':
          this.post({ type: 'selftest', ...(await matmulSelftest(await this.context(), req)) });
          return;
        case 'hubCheck':
          this.post({ type: 'hub', ...(await checkHub(req.endpoint, req.repo)) });
          return;
        case 'loadModel':
          return await this.exclusive('model', () => this.loadModel(req.source));
        case 'loadCorpus':
          return await this.exclusive('corpus', () => this.loadCorpus(req.source, req.options, { valFraction: req.valFraction, seed: req.seed, contextLength: req.contextLength }));
        case 'estimate':
          return this.estimate(req.settings, req.frozen, req.id);
        case 'train':
          return await this.train(req.settings, new Set(req.frozen), req.sample);
        case 'pause':
          this.control?.pause();
          return;
        case 'resume':
          if (this.control?.paused) this.control.resume(new Set(req.frozen));
          return;
        case 'stop':
          if (this.control && !this.control.stopped) {
            this.setState('stopping');
            this.control.stop();
          }
          return;
        case 'generate':
          return await this.oneTask('generate', () => this.generate(req.sample, req.compare));
        case 'evaluate':
          return await this.oneTask('evaluate', () => this.evaluateNow(req.settings));
        case 'export':
          return await this.oneTask('export', () => this.exportNow(req.format));
        case 'tryExport':
          return await this.oneTask('export', () => this.tryExport(req.prompt, req.maxNewTokens));
        case 'resetWeights':
          return await this.oneTask('reset', () => this.resetWeights());
        case 'cacheList':
          return await this.postCache();
        case 'cacheClear': {
          const { cache } = await browserCache();
          await cache.clear(req.model);
          return await this.postCache();
        }
        case 'runResume':
          return await this.resumeRun(req.id, req.lrScale ?? 1);
        case 'runImport':
          return await this.importRun(req.files);
        case 'runsList':
          return await this.postRuns();
        case 'runDelete':
          if (this.control && this.autosave?.runId === req.id) throw new StudioBusyError('This run is training now: stop it before deleting its save.');
          await (await requireRunStore(this.runStore)).delete(req.id);
          return await this.postRuns();
        case 'runDownload':
          return await this.oneTask('download', async () => {
            const z = await runZip(await requireRunStore(this.runStore), req.id);
            this.post({ type: 'runZip', id: req.id, ...z });
          });
        case 'runTorchProject':
          return await this.oneTask('download', async () => {
            const z = await torchProjectZip(await requireRunStore(this.runStore), req.id);
            this.post({ type: 'runZip', id: req.id, ...z });
          });
        case 'loseDevice':
          (await this.context()).device.destroy();
          return;
      }
    } catch (e) {
      this.post({ type: 'error', ...describeError(e), request: req.type });
    }
  }

  // ---- device --------------------------------------------------------------------------------

  private context(): Promise<GpuContext> {
    if (this.ctx && !this.ctx.lost) return Promise.resolve(this.ctx);
    this.ctxPromise ??= GpuContext.create(this.gpu, 'high-performance', this.options).then(
      (ctx) => {
        this.ctx = ctx;
        ctx.onUncapturedError = (e) => this.post({ type: 'error', ...describeError(e), request: 'train' });
        void ctx.lostPromise.then((err) => this.onDeviceLost(ctx, err.message));
        return ctx;
      },
      (e: unknown) => {
        this.ctxPromise = null;
        throw e;
      },
    );
    return this.ctxPromise;
  }

  private onDeviceLost(ctx: GpuContext, message: string): void {
    if (ctx !== this.ctx) return;
    this.ctx = null;
    this.ctxPromise = null;
    this.evaluator = this.newEvaluator(); // its generators' buffers died with the device
    const trained = (this.model?.trainedSteps ?? 0) > 0 || this.control !== null;
    if (this.model) {
      this.model.gpu = null;
      // The fine-tuned weights died with the device: nothing may describe them any more (an
      // export now holds the loaded weights, under their own name, with no training metrics).
      this.model.trainedSteps = 0;
      this.model.lastRun = null;
    }
    this.control?.stop(new StudioBusyError('The GPU device was lost.'));
    this.post({
      type: 'deviceLost',
      message: `${message} A new device is requested when you next train, sample, evaluate or export, and the model is uploaded to it again from the loaded files${trained ? '; fine-tuning that was not downloaded is lost' : ''}.`,
    });
  }

  /** The model on a working device, uploaded again after a lost device. */
  private async gpuModel(): Promise<GpuModel> {
    const m = this.model;
    if (!m) throw new StudioBusyError('No model is loaded. Load the built-in model, a Hub model or local files first.');
    if (m.gpu && !m.gpu.ctx.lost) return m.gpu;
    const ctx = await this.context();
    const params = await loadCheckpoint(m.folder.config, m.folder.files, (p) =>
      this.post({ type: 'progress', task: 'model', label: 'Uploading the weights to the GPU', done: p.loadedBytes, total: p.totalBytes, unit: 'bytes' }),
    );
    const { base, tuned } = await ctx.allocating(
      `two copies of ${m.folder.name}'s weights (the one that trains, and the original for comparisons)`,
      () => ({ base: new GpuWeights(ctx, m.folder.config, params), tuned: new GpuWeights(ctx, m.folder.config, params) }),
      (w) => {
        w.base.destroy();
        w.tuned.destroy();
      },
    );
    params.clear();
    m.gpu = { ctx, base, tuned, lora: null };
    m.trainedSteps = 0;
    return m.gpu;
  }

  private async postCache(): Promise<void> {
    const { cache, persistent } = await browserCache();
    this.post({ type: 'cache', persistent, models: summarizeCache(await cache.list()) });
  }

  private async postRuns(): Promise<void> {
    const store = await this.runStore();
    this.post({ type: 'runs', available: store !== null, runs: store ? (await store.list()).map(runInfo) : [] });
  }

  // ---- model and corpus ----------------------------------------------------------------------

  private async exclusive(what: string, f: () => Promise<void>): Promise<void> {
    if (this.control) throw new StudioBusyError(`A training run is in progress. Stop it before loading another ${what}.`);
    if (this.loading) throw new StudioBusyError(`The ${this.loading} is still loading; wait for it to finish.`);
    if (this.task) throw new StudioBusyError(`Wait for the ${this.task} to finish.`);
    this.loading = what;
    try {
      await f();
    } finally {
      this.loading = null;
    }
  }

  private async oneTask(what: string, f: () => Promise<void>): Promise<void> {
    if (this.task) throw new StudioBusyError(`Wait for the ${this.task} to finish.`);
    if (this.loading) throw new StudioBusyError(`The ${this.loading} is still loading; try again when it is ready.`);
    if (this.control && !this.control.waiting) throw new StudioBusyError(`Pause or stop the run first (${what} needs the weights to hold still).`);
    this.task = what;
    try {
      await f();
    } finally {
      this.task = null;
    }
  }

  private async loadModel(source: ModelSource): Promise<void> {
    const folder = await openModelSource(source, (label, done, total) =>
      this.post({ type: 'progress', task: 'model', label: `Downloading ${label}`, done, total, unit: 'bytes' }),
    );
    this.dropModel();
    this.model = { folder, info: describeModel(folder, source.kind), source, gpu: null, trainedSteps: 0, lastRun: null };
    this.evaluator.forgetBase();
    try {
      await this.gpuModel();
    } catch (e) {
      this.model = null;
      throw e;
    }
    this.post({ type: 'modelLoaded', model: this.model.info });
    // Token ids belong to a tokenizer: a corpus tokenized by another one is tokenized again.
    const c = this.corpus;
    if (c && !sameTokenizer(c.tokenizer, folder.tokenizer)) {
      this.post({ type: 'info', message: `${folder.name} has its own tokenizer: tokenizing ${c.name} again.` });
      const contextLength = Math.min(c.contextLength, folder.config.nPositions);
      await this.loadCorpus(c.source, c.options, { valFraction: c.valFraction, seed: c.seed, contextLength });
    }
  }

  private dropModel(): void {
    const gm = this.model?.gpu;
    this.evaluator.generators.destroy();
    this.evaluator = this.newEvaluator();
    if (gm) {
      gm.tuned.destroy();
      gm.base.destroy();
      gm.lora?.weights.destroy();
    }
    this.model = null;
  }

  private async tokenizer(): Promise<Tokenizer> {
    return this.model?.folder.tokenizer ?? (await loadDefaultTokenizer());
  }

  private async loadCorpus(source: CorpusSource, options: CorpusOptions, split: { valFraction: number; seed: number; contextLength: number }): Promise<void> {
    const tokenizer = await this.tokenizer();
    this.corpus = await loadCorpus(source, options, tokenizer, split, (this.corpus?.version ?? 0) + 1, (label, done, total) =>
      this.post({ type: 'progress', task: 'corpus', label, done, total, unit: 'bytes' }),
    );
    this.post({ type: 'corpusLoaded', corpus: corpusInfo(this.corpus) });
  }

  /** The split for a run: the one loaded, or a new one when the fraction, seed or T changed. */
  private splitFor(valFraction: number, seed: number, contextLength: number): CorpusSplit {
    const c = this.corpus!;
    if (resplit(c, { valFraction, seed, contextLength })) this.post({ type: 'corpusLoaded', corpus: corpusInfo(c) });
    return c.split;
  }

  // ---- estimate ------------------------------------------------------------------------------

  private estimate(settings: TrainSettings, frozen: number[], id: number): void {
    const m = this.model;
    if (!m) return;
    const e = estimateRun(m.folder.config, settings, new Set(frozen), this.ctx ? memoryLimitsOf(this.ctx) : undefined);
    this.post({ type: 'estimate', id, memory: e.memory, trainableParams: e.trainableParams });
  }

  // ---- training ------------------------------------------------------------------------------

  private setState(state: RunState, message?: string): void {
    this.post({ type: 'runState', state, step: this.runStep, totalSteps: this.runTotal, ...(message ? { message } : {}) });
  }

  private async train(settings: TrainSettings, frozen: Set<number>, sample: SampleSettings, resume?: ResumeInput): Promise<void> {
    if (this.control) throw new StudioBusyError('A run is already in progress. Stop it before starting another.');
    if (this.loading) throw new StudioBusyError(`The ${this.loading} is still loading; start when it is ready.`);
    if (this.task) throw new StudioBusyError(`Wait for the ${this.task} to finish before starting a run.`);
    const m = this.model;
    if (!m) throw new StudioBusyError('No model is loaded. Load the built-in model, a Hub model or local files first.');
    if (!this.corpus) throw new StudioBusyError('No corpus is loaded. Use the sample corpus or drop text files first.');
    const config = m.folder.config;
    const split = this.splitFor(settings.valFraction, settings.seed, settings.seq);
    const errors = {
      ...validateTrain(settings, { nPositions: config.nPositions, nLayer: config.nLayer, trainTokens: split.train.length }),
      ...validateSample(sample, { nPositions: config.nPositions }),
    };
    if (hasErrors(errors)) throw new SettingsError(`Fix the settings first: ${Object.values(errors).join(' ')}`);

    const control = new RunControl();
    this.control = control;
    this.runStep = resume?.step ?? 0;
    this.runTotal = runSteps(settings, split.train.length);
    const hasVal = split.valWindows > 0;
    const cfg: TrainRunConfig = {
      ...this.runConfig(settings, config, frozen, this.runTotal),
      evaluation: hasVal ? { every: settings.evalEvery, tokens: split.val } : null,
    };
    this.setState('starting');
    // What the page shows of this run is kept, to be saved with it (and replayed on resume).
    const shown: ShownEvent[] = [];
    this.shown = shown;
    if (resume) {
      for (const ev of resume.events) this.post(ev);
      this.post({ type: 'saved', id: resume.runId, step: resume.step, at: resume.savedAt, bytes: resume.bytes, seconds: 0 });
    }
    const store = await this.runStore();
    const saver = store ? new RunSaver(store, settings.autosaveMinutes * 60_000, resume?.runId) : null;
    this.autosave = saver;
    let lastCheckpoint = resume?.step ?? -1;
    const t0 = performance.now();
    let lastLoss = NaN;
    let finalEval: EngineEval | null = null;
    try {
      const gm = await this.gpuModel();
      const lora = await this.prepareLora(gm, settings);
      const target: EvalTarget = { ctx: gm.ctx, weights: gm.tuned, lora: lora?.weights ?? null, tokenizer: m.folder.tokenizer };

      if (resume) {
        if (resume.evalBefore) this.evaluator.restoreBase(resume.evalBefore, this.corpus.version, settings.seq);
      } else {
        if (hasVal) {
          const before = await this.evaluator.base(this.baseTarget(gm), split.val, settings, this.corpus.version);
          this.post({ type: 'eval', phase: 'before', step: 0, tuned: before, base: null });
        }
        await this.postSample(gm, sample, 0, m.trainedSteps > 0);
      }
      // The weights this run starts from, hashed once (the format's base_weights): the loaded
      // weights' hash is kept with the model (the base copy never changes); weights already
      // fine-tuned before this run are hashed as the run starts.
      const reader = (w: GpuWeights) => (name: string) => w.read(name);
      let fingerprints: TrainerStateJson['fingerprints'] | null = resume?.fingerprints ?? null;
      if (saver && !resume && m.trainedSteps > 0) {
        const base = await baseFingerprint(config, reader(gm.tuned));
        fingerprints = { base_weights: base, train_tokens: tokensFingerprint(split.train, new Sha256()) };
      }
      const fingerprintsNow = async (): Promise<TrainerStateJson['fingerprints']> => {
        if (!fingerprints) {
          m.baseFingerprint ??= await baseFingerprint(config, reader(gm.base));
          fingerprints = { base_weights: m.baseFingerprint, train_tokens: tokensFingerprint(split.train, new Sha256()) };
        }
        return fingerprints;
      };
      /** an interval save still being written while the run trains on */
      let writing: Promise<void> = Promise.resolve();
      const saveAt = async (snap: RunSnapshot, state: SavedRunSummary['state']) => {
        // Nothing to save on a lost device (its buffers are gone): the last save stands.
        if (!saver || snap.step === lastCheckpoint || gm.ctx.lost) return;
        await writing; // one save at a time
        // An interval save copies the weights and moments to memory at this boundary, and is
        // written while the next steps run, so training waits only for the copy. A save at
        // pause, stop or finish is written before the run goes on: the user may close the tab.
        const background = snap.reason === 'interval' && !control.paused;
        const t = performance.now();
        try {
          const files = await this.checkpointFilesOf(gm, lora, snap, cfg, settings, sample, split.train.length, await fingerprintsNow(), shown, background);
          lastCheckpoint = snap.step;
          const write = saver.save(this.summaryOf(snap.step, state), files, () => this.assetsOf()).then(
            (saved) => this.post({ type: 'saved', id: saver.runId, step: snap.step, at: saved.at, bytes: saved.bytes, seconds: (performance.now() - t) / 1000 }),
            // A failed save never ends the run: the previous save stays whole, and the user is told.
            (e: unknown) => this.post({ type: 'error', ...describeError(e), request: 'train' }),
          );
          if (background) writing = write;
          else await write;
        } catch (e) {
          this.post({ type: 'error', ...describeError(e), request: 'train' });
        }
        clock = performance.now();
      };

      const tokensPerStep = settings.batch * settings.seq * settings.gradAccum;
      // Speed and time left count training only: the clock restarts after pauses, evaluations and samples.
      const meter = new ThroughputMeter();
      let clock = performance.now();
      let trainer: Trainer | null = null;
      /** the frozen set changed: report the trainer's memory once it has rebuilt (at the next step) */
      let memoryChanged = false;
      this.setState('running');
      await runTraining(gm.ctx, gm.tuned, split.train, cfg, {
        signal: control.abort.signal,
        // Saved every N minutes, and before a requested pause takes effect.
        checkpointAt: () => !!saver && (saver.due() || control.paused),
        onCheckpoint: (snap) => saveAt(snap, snap.reason === 'end' ? 'finished' : snap.reason === 'stopped' ? 'stopped' : snap.reason === 'non-finite' ? 'failed' : control.paused ? 'paused' : 'running'),
        onInfo: (message) => this.post({ type: 'info', message }),
        onTrainer: (t) => {
          trainer = t;
          this.postMemory(t, gm);
        },
        onStep: (log) => {
          const now = performance.now();
          meter.add(tokensPerStep, now - clock);
          clock = now;
          this.runStep = log.step;
          lastLoss = log.loss;
          if (memoryChanged && trainer) {
            memoryChanged = false;
            this.postMemory(trainer, gm);
          }
          this.post({
            type: 'step', step: log.step, totalSteps: this.runTotal, loss: log.loss, lr: log.lr, gradNorm: log.grad_norm,
            tokensPerSec: meter.recent, elapsedMs: meter.elapsedMs, etaMs: meter.etaMs((this.runTotal - log.step) * tokensPerStep),
          });
        },
        onEval: (log, result) => {
          if (log.step === this.runTotal) finalEval = result;
          else this.post({ type: 'eval', phase: 'during', step: log.step, tuned: pageEval(result, null), base: null });
          clock = performance.now();
        },
        beforeStep: async (s, settle) => {
          const changed = await control.boundary(settle, () => this.setState('paused'), () => {
            this.setState('running');
            clock = performance.now();
          });
          if (changed) {
            memoryChanged = true;
            this.post({ type: 'info', message: `Step ${s + 1}: frozen groups now ${[...changed].sort((a, b) => a - b).map((g) => groupLabel(config.nLayer, g)).join(', ') || 'none'}.` });
          }
          if (settings.sampleEvery > 0 && s > 0 && s % settings.sampleEvery === 0 && !control.stopped) {
            await settle();
            await this.postSample(gm, sample, s, false);
            clock = performance.now();
          }
          return changed;
        },
      }, lora?.weights, resume ? { state: resume.optimizer } : undefined).finally(() => writing);
      m.trainedSteps += this.runStep;
      m.lastRun = { cfg, trainLoss: lastLoss, seconds: (performance.now() - t0) / 1000, tokens: this.runStep * tokensPerStep };
      if (control.stopped) {
        this.setState('stopped', `Stopped after ${this.runStep} of ${this.runTotal} steps.`);
        return;
      }
      if (hasVal && finalEval) {
        const fe: EngineEval = finalEval;
        const bleu = await this.evaluator.bleu(target, split.val, 'Scoring BLEU of the fine-tuned model');
        m.lastRun = { ...m.lastRun, valLoss: fe.loss, valAccuracy: fe.accuracy };
        this.post({ type: 'eval', phase: 'after', step: this.runStep, tuned: pageEval(fe, bleu), base: this.evaluator.baseResult });
      }
      await this.postSample(gm, sample, this.runStep, true);
      // The final evaluation and sample came after the last save: add them to it.
      if (saver && lastCheckpoint === this.runStep) {
        await this.updateSavedState(saver, settings, sample, shown).catch((e: unknown) => this.post({ type: 'error', ...describeError(e), request: 'train' }));
      }
      this.setState('finished', `Finished ${this.runTotal} steps in ${((performance.now() - t0) / 1000).toFixed(1)} s.`);
    } catch (e) {
      if (this.model === m && m.gpu) m.trainedSteps += this.runStep;
      const lost = control.stopped && control.abort.signal.reason instanceof StudioBusyError;
      const err = e instanceof OutOfMemoryError && this.model ? explainOutOfMemory(e, this.model.folder.config, settings, frozen, this.ctx)
        : e instanceof NonFiniteLossError && saver && lastCheckpoint >= 0
          ? new NonFiniteLossError(`${e.message} The run is saved at step ${lastCheckpoint}: go back to it with half the learning rate (Saved runs).`)
          : e;
      this.setState(lost ? 'stopped' : 'failed', describeError(err).message);
      if (!lost) throw err;
    } finally {
      this.control = null;
      this.shown = null;
    }
  }

  private summaryOf(step: number, state: SavedRunSummary['state']): SavedRunSummary {
    return { model: this.model!.folder.name, corpus: this.corpus!.name, step, totalSteps: this.runTotal, state };
  }

  private pageState(settings: TrainSettings, sample: SampleSettings, frozen: number[], shown: ShownEvent[]): PageState {
    const m = this.model!;
    const c = this.corpus!;
    return {
      format: 'webgpu-finetuning-studio/page-state', version: 1,
      model: { name: m.folder.name, source: savedModelSource(m.source) },
      corpus: { name: c.name, names: c.names, options: c.options, stats: c.tokenized.stats },
      settings, frozen, sample, events: shown, evalBefore: this.evaluator.baseResult,
    };
  }

  /** The run's assets, written with its first save: the tokenized corpus, and dropped model files. */
  private assetsOf(): Record<string, ReturnType<typeof corpusAssets>> {
    const m = this.model!;
    return { corpus: corpusAssets(this.corpus!.tokenized), ...(m.source.kind === 'files' ? { model: modelAssets(m.source.files) } : {}) };
  }

  private async checkpointFilesOf(
    gm: GpuModel, lora: LoraSession | null, snap: RunSnapshot, cfg: TrainRunConfig, settings: TrainSettings, sample: SampleSettings,
    trainTokens: number, fingerprints: TrainerStateJson['fingerprints'], shown: ShownEvent[], snapshotWeights = false,
  ) {
    const m = this.model!;
    const optimizer = await snap.exportState();
    const state = trainerState({
      snap, dropoutStep: optimizer.stepIndex, cfg, lora: lora?.config ?? null, evalEvery: settings.evalEvery,
      windows: Math.floor((trainTokens - 1) / cfg.seq), modelName: m.folder.baseModel, corpusNames: this.corpus!.names, fingerprints,
      log: logHistory(shown),
    });
    const files = checkpointFiles({
      config: m.folder.config,
      // Read while the file is written, unless the run goes on meanwhile: then copied now.
      params: snapshotWeights ? await gm.tuned.download() : (name: string) => gm.tuned.read(name),
      lora: lora ? { config: lora.config, params: await lora.weights.download(), baseModel: m.folder.baseModel } : null,
      optimizer,
      state,
      tokenizer: m.folder.tokenizer.files,
    });
    const frozenNow = [...snap.userFrozen].sort((a, b) => a - b);
    return [...files.map((f) => ({ name: f.name, data: f.data })), pageStateFile(this.pageState(settings, sample, frozenNow, shown))];
  }

  /** After the final evaluation and sample: the last save's page state and log get them too. */
  private async updateSavedState(saver: RunSaver, settings: TrainSettings, sample: SampleSettings, shown: ShownEvent[]): Promise<void> {
    const r = await saver.store.open(saver.runId);
    const ps = await readPageState(r.checkpoint.get('studio_state.json'));
    const st = JSON.parse(await r.checkpoint.get('trainer_state.json')!.text()) as TrainerStateJson;
    st.log_history = logHistory(shown);
    await saver.store.updateCheckpointFile(saver.runId, { name: 'trainer_state.json', data: new TextEncoder().encode(`${JSON.stringify(st, null, 2)}\n`) });
    await saver.store.updateCheckpointFile(saver.runId, pageStateFile(this.pageState(settings, sample, ps?.frozen ?? [], shown)), this.summaryOf(this.runStep, 'finished'));
  }

  /** Keeps a dropped checkpoint as a saved run, then resumes it. */
  private async importRun(files: LocalFile[]): Promise<void> {
    if (this.control) throw new StudioBusyError('A run is in progress. Stop it before resuming a dropped checkpoint.');
    const store = await requireRunStore(this.runStore);
    const found = findCheckpoint(await expandDrop(files));
    const c = this.corpus;
    const run = await importedRun(found, c ? { name: c.name, names: c.names, options: c.options, tokenized: c.tokenized } : null);
    const id = store.newRunId();
    await store.save(id, run);
    await this.postRuns();
    await this.resumeRun(id, 1);
  }

  /** Opens a saved run and trains on from its checkpoint (see the `runResume` request). */
  private async resumeRun(id: string, lrScale: number): Promise<void> {
    if (this.control) throw new StudioBusyError('A run is in progress. Stop it before resuming a saved one.');
    if (this.loading || this.task) throw new StudioBusyError(`Wait for the ${this.loading ?? this.task} to finish.`);
    if (!(lrScale > 0 && Number.isFinite(lrScale))) throw new SettingsError(`The learning-rate factor must be a number above 0, got ${lrScale}.`);
    const store = await requireRunStore(this.runStore);
    const saved = (await store.list()).find((r) => r.id === id);
    const r = await store.open(id);
    const ps = await readPageState(r.checkpoint.get('studio_state.json'));
    if (!ps) throw new SavedRunError('This saved run has no page state (studio_state.json): it was not saved by the page. Resume it with the command line (train --resume).');
    this.loading = 'saved run';
    let ck: Awaited<ReturnType<typeof readRunCheckpoint>>;
    try {
      this.post({ type: 'progress', task: 'model', label: 'Reading the saved run', done: 0, total: 1, unit: 'items' });
      ck = await readRunCheckpoint(filesFromSources([...r.checkpoint].map(([n, b]) => blobSource(b, n))));
      // The model as it was loaded (the original weights, for comparisons), then the corpus.
      const source: ModelSource = ps.model.source.kind === 'files' ? { kind: 'files', files: readModelAssets(r.assets.model, ps.model.source.paths) } : ps.model.source;
      const folder = await openModelSource(source, (label, done, total) => this.post({ type: 'progress', task: 'model', label: `Downloading ${label}`, done, total, unit: 'bytes' }));
      this.dropModel();
      const baseFingerprint = ck.state.fingerprints.base_weights;
      this.model = { folder, info: describeModel(folder, source.kind), source, gpu: null, trainedSteps: 0, lastRun: null, baseFingerprint };
      this.evaluator.forgetBase();
      const tokenized = await readCorpusAssets(r.assets.corpus, ps.corpus.stats, folder.config.vocabSize);
      const s = ps.settings;
      const split = splitCorpus(tokenized, { valFraction: s.valFraction, seed: s.seed, contextLength: s.seq });
      if (tokensFingerprint(split.train, new Sha256()) !== ck.state.fingerprints.train_tokens) {
        throw new SavedRunError('The saved corpus does not give the training tokens the checkpoint was trained on (their fingerprints differ); the save is damaged. Delete it, or resume the downloaded checkpoint with the command line and the original data.');
      }
      this.corpus = {
        source: { kind: 'files', files: [] }, options: ps.corpus.options, name: ps.corpus.name, names: ps.corpus.names, tokenized, tokenizer: folder.tokenizer,
        split, valFraction: s.valFraction, seed: s.seed, contextLength: s.seq, version: (this.corpus?.version ?? 0) + 1,
      };
      const gm = await this.gpuModel();
      for (const [name, t] of ck.params) gm.tuned.upload(name, t);
      if (ck.lora) gm.lora = { config: ck.lora.config, weights: new LoraWeights(gm.ctx, folder.config, ck.lora.config, ck.lora.params) };
      ck.params.clear();
    } finally {
      this.post({ type: 'progress', task: 'model', label: 'Reading the saved run', done: 1, total: 1, unit: 'items' });
      this.loading = null;
    }
    this.post({ type: 'modelLoaded', model: this.model.info });
    this.post({ type: 'corpusLoaded', corpus: corpusInfo(this.corpus) });
    const settings = { ...ps.settings, lr: ps.settings.lr * lrScale };
    this.post({ type: 'restored', id, settings, frozen: ck.state.settings.frozen, sample: ps.sample });
    if (lrScale !== 1) this.post({ type: 'info', message: `Resuming at step ${ck.state.step} with the learning rate × ${lrScale} (${settings.lr.toPrecision(3)}).` });
    await this.train(settings, new Set(ck.state.settings.frozen), ps.sample, {
      runId: id, optimizer: ck.optimizer, step: ck.state.step, events: ps.events, fingerprints: ck.state.fingerprints, evalBefore: ps.evalBefore,
      savedAt: r.manifest.saved, bytes: saved?.bytes ?? 0,
    });
  }

  /** The LoRA weights the run trains (kept when the LoRA settings did not change), or null for full fine-tuning. */
  private async prepareLora(gm: GpuModel, s: TrainSettings): Promise<LoraSession | null> {
    const want = loraConfigOf(s);
    const have = gm.lora;
    if (want && have && sameLora(want, have.config)) return have;
    if (have) {
      // Continue from what LoRA learned: merge it into the weights, then drop it.
      const cfg = have.config;
      const merged = mergeLora(gm.tuned.config, await gm.tuned.download(), cfg, await have.weights.download());
      for (const [name, t] of merged) gm.tuned.upload(name, t);
      this.evaluator.generators.forget(have.weights);
      have.weights.destroy();
      gm.lora = null;
      this.post({ type: 'info', message: `The previous LoRA weights (r = ${cfg.r}) were merged into the model before this run.` });
    }
    if (!want) return null;
    gm.lora = { config: want, weights: new LoraWeights(gm.ctx, gm.tuned.config, want, initLoraParams(gm.tuned.config, want, s.seed)) };
    return gm.lora;
  }

  private runConfig(s: TrainSettings, config: GPT2Config, frozen: Set<number>, steps: number): TrainRunConfig {
    try {
      return toRunConfig(s, config, { frozen, steps });
    } catch (e) {
      // The Layers panel is where a frozen set is fixed.
      if (e instanceof RunSettingsError) throw new SettingsError(`${e.message} The Layers panel sets which layers train.`);
      throw e;
    }
  }

  private postMemory(t: Trainer, gm: GpuModel): void {
    const m = t.memory();
    const baseCopy = gm.base.bytes;
    const memory: MemoryBreakdown = { ...m, baseCopy, total: m.parameters + m.gradients + m.optimizer + m.activations + m.scratch + baseCopy };
    this.post({ type: 'memory', memory, trainableParams: t.trainableParams });
  }

  // ---- evaluation and samples ----------------------------------------------------------------

  private baseTarget(gm: GpuModel): EvalTarget {
    return { ctx: gm.ctx, weights: gm.base, lora: null, tokenizer: this.model!.folder.tokenizer };
  }

  private tunedTarget(gm: GpuModel): EvalTarget {
    return { ctx: gm.ctx, weights: gm.tuned, lora: gm.lora?.weights ?? null, tokenizer: this.model!.folder.tokenizer };
  }

  private async postSample(gm: GpuModel, s: SampleSettings, step: number, compare: boolean): Promise<void> {
    const gens = this.evaluator.generators;
    const tuned = this.tunedTarget(gm);
    const t = await gens.sample(gm.ctx, tuned.weights, tuned.lora, tuned.tokenizer, s);
    const base = compare ? (await gens.sample(gm.ctx, gm.base, null, tuned.tokenizer, s)).text : null;
    this.post({ type: 'sample', step, prompt: s.prompt, seed: s.seed, tuned: t.text, base, tokensPerSec: t.tokensPerSec });
  }

  private async generate(sample: SampleSettings, compare: boolean): Promise<void> {
    const m = this.model;
    if (!m) throw new StudioBusyError('Load a model before sampling.');
    const errors = validateSample(sample, { nPositions: m.folder.config.nPositions });
    if (hasErrors(errors)) throw new SettingsError(`Fix the sample settings: ${Object.values(errors).join(' ')}`);
    const gm = await this.gpuModel();
    const step = m.trainedSteps + (this.control ? this.runStep : 0);
    this.post({ type: 'progress', task: 'generate', label: 'Generating', done: 0, total: 1, unit: 'items' });
    await this.postSample(gm, sample, step, compare && step > 0);
  }

  private async evaluateNow(settings: TrainSettings): Promise<void> {
    const m = this.model;
    const c = this.corpus;
    if (!m || !c) throw new StudioBusyError('Load a model and a corpus before evaluating.');
    const gm = await this.gpuModel();
    const seq = Math.min(settings.seq, m.folder.config.nPositions);
    const split = this.splitFor(settings.valFraction, settings.seed, seq);
    if (split.valWindows < 1) throw new StudioBusyError('The validation split is empty: raise the validation fraction in the Data panel (or add text) and evaluate again.');
    const s = { seq, batch: settings.batch };
    const before = await this.evaluator.base(this.baseTarget(gm), split.val, s, c.version);
    const steps = m.trainedSteps + (this.control ? this.runStep : 0);
    if (steps === 0) {
      this.post({ type: 'eval', phase: 'before', step: 0, tuned: before, base: null });
      return;
    }
    this.post({ type: 'eval', phase: 'after', step: steps, tuned: await this.evaluator.tuned(this.tunedTarget(gm), split.val, s), base: before });
  }

  // ---- export and reset ----------------------------------------------------------------------

  private async exportNow(format: ExportFormat): Promise<void> {
    const m = this.model;
    if (!m) throw new StudioBusyError('Load a model (and fine-tune it) before exporting.');
    const gm = await this.gpuModel();
    // Only weights that trained are labelled fine-tuned, and only their own run's metrics are reported.
    const tuned = m.trainedSteps > 0;
    const out = await exportFromGpu(format, {
      weights: gm.tuned,
      lora: gm.lora,
      tokenizer: m.folder.tokenizer.files,
      card: {
        name: `${m.folder.name.split('/').pop()}${tuned ? '-finetuned' : ''}`,
        baseModel: m.folder.baseModel,
        ...(this.corpus && tuned ? { corpus: corpusCard(this.corpus) } : {}),
        ...runCard(tuned ? m.lastRun : null, m.trainedSteps),
      },
      onProgress: (done, total) => this.post({ type: 'progress', task: 'export', label: 'Writing the download', done, total, unit: 'bytes' }),
    });
    this.post({ type: 'exported', format, fileName: out.fileName, blob: out.blob });
  }

  /**
   * The fine-tuned model as the ONNX export writes it, run by onnxruntime-web in this worker
   * (WebGPU where the browser has it, else WASM) next to the engine, greedily from one prompt.
   */
  private async tryExport(prompt: string, maxNewTokens: number): Promise<void> {
    const m = this.model;
    if (!m) throw new StudioBusyError('Load a model (and fine-tune it) before trying the export.');
    const gm = await this.gpuModel();
    const config = gm.tuned.config;
    const tokenizer = m.folder.tokenizer;
    const encoded = tokenizer.encode(prompt);
    // An empty prompt starts from BOS, as generate() does.
    const ids = encoded.length ? encoded : [config.bosTokenId];
    const maxNew = Math.min(maxNewTokens, config.nPositions - ids.length);
    if (!(maxNew >= 1)) {
      throw new SettingsError(`The prompt is ${ids.length} tokens; the model's context is ${config.nPositions}, so no token is left to generate. Shorten the prompt.`);
    }
    const lora = gm.lora;
    const params = lora ? mergeLora(config, await gm.tuned.download(), lora.config, await lora.weights.download()) : (name: string) => gm.tuned.read(name);
    this.post({ type: 'progress', task: 'export', label: 'Building the ONNX model and starting onnxruntime-web', done: 0, total: 0, unit: 'items' });
    const webgpu = typeof navigator !== 'undefined' && 'gpu' in navigator && !!navigator.gpu;
    const generator = await this.evaluator.generators.get(gm.ctx, gm.tuned, lora?.weights ?? null);
    this.post({ type: 'tryExport', result: await tryOnnxExport({ config, params, webgpu, generator, tokenizer, prompt, ids, maxNew }) });
  }

  private async resetWeights(): Promise<void> {
    if (this.control) throw new StudioBusyError('Stop the run before resetting the weights.');
    const m = this.model;
    if (!m) return;
    const gm = await this.gpuModel();
    gm.tuned.copyFrom(gm.base);
    if (gm.lora) {
      this.evaluator.generators.forget(gm.lora.weights);
      gm.lora.weights.destroy();
      gm.lora = null;
    }
    await gm.ctx.device.queue.onSubmittedWorkDone();
    m.trainedSteps = 0;
    m.lastRun = null;
    this.post({ type: 'info', message: 'The fine-tuned weights were reset to the loaded model.' });
    this.post({ type: 'modelLoaded', model: m.info });
  }
}
