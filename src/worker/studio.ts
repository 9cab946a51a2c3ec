// The engine session behind the page, living in the Web Worker: it keeps the session's state (the
// GPU device, the loaded model — the copy that trains and the base copy kept for side-by-side
// samples and before/after evaluation —, the LoRA weights when LoRA trains, the tokenized corpus
// and the training run in progress) and routes every WorkerRequest to one call of the module of its
// concept, which answers with WorkerEvents: the self-test (selftest.ts), models (model-source.ts),
// corpora (corpus.ts), the memory estimate (estimate.ts), training (run.ts), saved and dropped runs
// (resume.ts, saved-runs.ts), samples, evaluation, exports and reset (model-tasks.ts), the Hub
// check and the download cache (io/hub.ts, io/cache.ts). Nothing here touches the DOM.
import { describeError } from '../engine/errors.ts';
import { GpuContext } from '../engine/gpu/context.ts';
import { GpuWeights } from '../engine/model/weights.ts';
import { memoryLimitsOf } from '../engine/train/memory.ts';
import { summarizeCache } from '../io/cache.ts';
import { loadCheckpoint } from '../io/checkpoint.ts';
import type { CorpusSplit } from '../io/corpus.ts';
import { checkHub } from '../io/hub.ts';
import type { RunStore } from '../io/run-store.ts';
import { loadDefaultTokenizer, sameTokenizer } from '../io/tokenizer.ts';
import { corpusInfo, loadCorpus, resplit, type Corpus } from './corpus.ts';
import { estimateRun } from './estimate.ts';
import { Evaluator } from './evaluation.ts';
import { browserCache, describeModel, openModelSource } from './model-source.ts';
import { evaluateNow, exportNow, generate, resetWeights, tryExport } from './model-tasks.ts';
import type { CorpusOptions, CorpusSource, ModelSource, TrainSettings, WorkerEvent, WorkerRequest } from './protocol.ts';
import { importDroppedRun, resumeSavedRun } from './resume.ts';
import { train, type GoBack } from './run.ts';
import { browserRunStore, requireRunStore, runInfo, runZip } from './saved-runs.ts';
import { matmulSelftest } from './selftest.ts';
import { tunePage } from './tune.ts';
import { StudioBusyError, type GpuModel, type LoadedModel, type RunHandle, type Session } from './session.ts';
import { torchProjectZip } from './torch-project.ts';

/** Options for tests: the device the session asks for (a lowered binding limit exercises range binding). */
export interface StudioOptions {
  maxStorageBufferBindingSize?: number;
  /** where runs are saved (default: the browser's origin private file system) */
  runStore?: () => Promise<RunStore | null>;
}

export class Studio implements Session {
  readonly post: (ev: WorkerEvent) => void;
  private readonly gpu: GPU | undefined;
  ctx: GpuContext | null = null;
  private ctxPromise: Promise<GpuContext> | null = null;
  model: LoadedModel | null = null;
  corpus: Corpus | null = null;
  run: RunHandle | null = null;
  private readonly options: StudioOptions;
  evaluator: Evaluator;
  loading: string | null = null;
  task: string | null = null;
  readonly runStore: () => Promise<RunStore | null>;

  constructor(post: (ev: WorkerEvent) => void, gpu: GPU | undefined, options: StudioOptions = {}) {
    this.post = (ev) => {
      this.run?.record(ev);
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
        case 'tune':
          this.post({ type: 'tuned', lines: await tunePage(this, await this.context()) });
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
          return await this.training(() => train(this, req.settings, new Set(req.frozen), req.sample));
        case 'pause':
          return this.run?.pause();
        case 'resume':
          return this.run?.resume(new Set(req.frozen));
        case 'stop':
          return this.run?.stop();
        case 'divergedBack':
          if (!this.run) throw new StudioBusyError('No run is paused after a non-finite loss.');
          return this.run.goBack(req.lrScale);
        case 'generate':
          return await this.oneTask('generate', () => generate(this, req.sample, req.compare));
        case 'evaluate':
          return await this.oneTask('evaluate', () => evaluateNow(this, req.settings));
        case 'export':
          return await this.oneTask('export', () => exportNow(this, req.format));
        case 'tryExport':
          return await this.oneTask('export', () => tryExport(this, req.prompt, req.maxNewTokens));
        case 'resetWeights':
          return await this.oneTask('reset', () => resetWeights(this));
        case 'cacheList':
          return await this.postCache();
        case 'cacheClear': {
          const { cache } = await browserCache();
          await cache.clear(req.model);
          return await this.postCache();
        }
        case 'runResume':
          return await this.training(() => resumeSavedRun(this, req.id, req.lrScale ?? 1));
        case 'runImport':
          return await this.training(() => importDroppedRun(this, req.files));
        case 'runsList':
          return await this.postRuns();
        case 'runDelete':
          if (this.run && this.run.runId === req.id) throw new StudioBusyError('This run is training now: stop it before deleting its save.');
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
        case 'poisonWeights': {
          if (this.run && !this.run.waiting) throw new StudioBusyError('Pause the run first: its weights must hold still to be changed.');
          const w = (await this.gpuModel()).tuned;
          const t = await w.read('ln_f.weight');
          t[0] = Number.NaN;
          w.upload('ln_f.weight', t);
          this.post({ type: 'info', message: 'Debug: ln_f.weight[0] is now NaN, so the next training step\'s loss is non-finite.' });
          return;
        }
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
    const trained = (this.model?.trainedSteps ?? 0) > 0 || this.run !== null;
    if (this.model) {
      this.model.gpu = null;
      // The fine-tuned weights died with the device: nothing may describe them any more (an
      // export now holds the loaded weights, under their own name, with no training metrics).
      this.model.trainedSteps = 0;
      this.model.lastRun = null;
    }
    this.run?.deviceLost();
    this.post({
      type: 'deviceLost',
      message: `${message} A new device is requested when you next train, sample, evaluate or export, and the model is uploaded to it again from the loaded files${trained ? '; fine-tuning that was not downloaded is lost' : ''}.`,
    });
  }

  async gpuModel(): Promise<GpuModel> {
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

  async postRuns(): Promise<void> {
    const store = await this.runStore();
    this.post({ type: 'runs', available: store !== null, runs: store ? (await store.list()).map(runInfo) : [] });
  }

  // ---- model and corpus ----------------------------------------------------------------------

  /**
   * A training request to its end: a run paused by a non-finite loss whose user chose to go back
   * ends, and its last save is resumed at the lower rate (as runResume would), until a run ends otherwise.
   */
  private async training(start: () => Promise<GoBack | null>): Promise<void> {
    for (let next = await start(); next; ) next = await resumeSavedRun(this, next.id, next.factor, next.lr);
  }

  private async exclusive(what: string, f: () => Promise<void>): Promise<void> {
    if (this.run) throw new StudioBusyError(`A training run is in progress. Stop it before loading another ${what}.`);
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
    if (this.run && !this.run.waiting) throw new StudioBusyError(`Pause or stop the run first (${what} needs the weights to hold still).`);
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

  dropModel(): void {
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

  private async loadCorpus(source: CorpusSource, options: CorpusOptions, split: { valFraction: number; seed: number; contextLength: number }): Promise<void> {
    const tokenizer = this.model?.folder.tokenizer ?? (await loadDefaultTokenizer());
    this.corpus = await loadCorpus(source, options, tokenizer, split, (this.corpus?.version ?? 0) + 1, (label, done, total) =>
      this.post({ type: 'progress', task: 'corpus', label, done, total, unit: 'bytes' }),
    );
    this.post({ type: 'corpusLoaded', corpus: corpusInfo(this.corpus) });
  }

  splitFor(valFraction: number, seed: number, contextLength: number): CorpusSplit {
    const c = this.corpus!;
    if (resplit(c, { valFraction, seed, contextLength })) this.post({ type: 'corpusLoaded', corpus: corpusInfo(c) });
    return c.split;
  }

  private estimate(settings: TrainSettings, frozen: number[], id: number): void {
    const m = this.model;
    if (!m) return;
    const e = estimateRun(m.folder.config, settings, new Set(frozen), this.ctx ? memoryLimitsOf(this.ctx) : undefined);
    this.post({ type: 'estimate', id, memory: e.memory, trainableParams: e.trainableParams });
  }
}
