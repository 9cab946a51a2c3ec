// The engine session behind the page, living in the Web Worker: it owns the GPU device, the
// loaded model (the copy that trains, and the base copy kept for side-by-side samples and
// before/after evaluation), the LoRA adapter when one trains, the tokenized corpus and the one
// training run, and answers every WorkerRequest with WorkerEvents. Nothing here touches the DOM.
import { OutOfMemoryError, StudioError } from '../engine/errors.ts';
import { bleuEval, DEFAULT_BLEU_EVAL, type BleuEvalOptions } from '../engine/eval/bleu-eval.ts';
import { evaluate, type EvalResult as EngineEval } from '../engine/eval/evaluate.ts';
import { GpuContext } from '../engine/gpu/context.ts';
import { run } from '../engine/gpu/dispatch.ts';
import { matmul } from '../engine/kernels/matmul.ts';
import type { GPT2Config } from '../engine/model/config.ts';
import { initLoraParams, LoraWeights, type LoraConfig } from '../engine/model/lora.ts';
import { describeMemory, formatBytes, memoryLimitsOf } from '../engine/model/memory.ts';
import { paramSpecs, type HostParams } from '../engine/model/params.ts';
import { GpuWeights } from '../engine/model/weights.ts';
import { groupLabel } from '../engine/train/groups.ts';
import { runTraining, type TrainRunConfig } from '../engine/train/loop.ts';
import { RunSettingsError, toRunConfig } from '../engine/train/run-settings.ts';
import type { Trainer } from '../engine/train/trainer.ts';
import { loadCheckpoint } from '../io/checkpoint.ts';
import { splitCorpus, tokenizeCorpus, type CorpusSplit, type TokenizedCorpus } from '../io/corpus.ts';
import { mergeLora } from '../io/peft.ts';
import { loadDefaultTokenizer, type Tokenizer } from '../io/tokenizer.ts';
import type { NamedFile } from '../io/utf8.ts';
import { estimateRun, loraConfigOf } from './estimate.ts';
import { exportFile } from './exporter.ts';
import { Generators } from './generation.ts';
import { browserCache, fetchSiteFile, openModelSource, siteBase, type ModelFolder } from './model-source.ts';
import {
  describeError,
  type CorpusInfo,
  type CorpusOptions,
  type CorpusSource,
  type EvalResult,
  type ExportFormat,
  type MemoryBreakdown,
  type ModelInfo,
  type ModelSource,
  type RunState,
  type SampleSettings,
  type TrainSettings,
  type WorkerEvent,
  type WorkerRequest,
} from './protocol.ts';
import { RunControl } from './run-control.ts';
import { browserRunStore, requireRunStore, runInfo, runZip } from './saved-runs.ts';
import { blobSource } from '../io/bytes.ts';
import { hasErrors, runSteps, validateSample, validateTrain } from './settings.ts';

/** A request that cannot run now (a run in progress, nothing loaded yet); says what to do first. */
export class StudioBusyError extends StudioError {}

/** The run's settings do not validate; the message lists each problem. */
export class SettingsError extends StudioError {}

/** The sample corpus shipped with the page, a public-domain excerpt (public/samples/). */
export const SAMPLE_CORPUS = { file: 'samples/tiny-shakespeare.txt', name: 'Tiny Shakespeare (excerpt, public domain)' };

/** BLEU on the page: fewer prompts than the CLI's default, so before/after stays quick. */
export const PAGE_BLEU: BleuEvalOptions = { ...DEFAULT_BLEU_EVAL, prompts: 20 };

interface Adapter {
  config: LoraConfig;
  weights: LoraWeights;
}

interface GpuModel {
  ctx: GpuContext;
  /** the weights that train (with LoRA: the frozen base the adapter sits on) */
  tuned: GpuWeights;
  /** the loaded weights, unchanged, for base-vs-fine-tuned comparisons */
  base: GpuWeights;
  lora: Adapter | null;
}

interface Model {
  folder: ModelFolder;
  info: ModelInfo;
  /** null after a lost device until the model is uploaded again */
  gpu: GpuModel | null;
  /** optimizer steps applied since the model was loaded or reset */
  trainedSteps: number;
  /** the last run's settings and results, for the model card */
  lastRun: { cfg: TrainRunConfig; trainLoss: number; valLoss?: number; valAccuracy?: number; seconds: number; tokens: number } | null;
}

interface Corpus {
  source: CorpusSource;
  options: CorpusOptions;
  name: string;
  names: string[];
  tokenized: TokenizedCorpus;
  /** the tokenizer that made the ids */
  tokenizer: Tokenizer;
  split: CorpusSplit;
  valFraction: number;
  seed: number;
  contextLength: number;
  /** changes whenever the split does (cached evaluations are keyed by it) */
  version: number;
}

/** A short text whose ids tell two tokenizers apart (a corpus is tokenized again when they differ). */
const TOKENIZER_PROBE = 'Hello, world! <|endoftext|> naïve 東京 1234  \n\tend';

function sameTokenizer(a: Tokenizer, b: Tokenizer): boolean {
  if (a === b) return true;
  if (a.vocabSize !== b.vocabSize || a.eosId !== b.eosId) return false;
  const x = a.encode(TOKENIZER_PROBE);
  const y = b.encode(TOKENIZER_PROBE);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

function describeModel(folder: ModelFolder, source: ModelSource['kind']): ModelInfo {
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

function sameLora(a: LoraConfig, b: LoraConfig): boolean {
  return a.r === b.r && a.alpha === b.alpha && a.dropout === b.dropout && a.rslora === b.rslora && a.targets.join() === b.targets.join();
}

function toPage(r: EngineEval, bleu: number | null): EvalResult {
  return { loss: r.loss, perplexity: r.perplexity, accuracy: r.accuracy, bleu, tokens: r.tokens, windows: r.windows };
}

function copyWeights(ctx: GpuContext, from: GpuWeights, to: GpuWeights): void {
  const enc = ctx.device.createCommandEncoder({ label: 'weights.copy' });
  from.arena.buffers.forEach((b, i) => enc.copyBufferToBuffer(b, 0, to.arena.buffers[i], 0, b.size));
  ctx.device.queue.submit([enc.finish()]);
}

async function readParams(ctx: GpuContext, w: GpuWeights): Promise<HostParams> {
  const out: HostParams = new Map();
  for (const s of w.specs) {
    const r = w.range(s.name);
    out.set(s.name, await ctx.readF32(r.buffer, r.offset, s.numel));
  }
  return out;
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
  private generators = new Generators();
  /** a model or corpus load in progress */
  private loading: string | null = null;
  /** a generate, evaluate or export in progress (one at a time) */
  private task: string | null = null;
  /** the base model's validation metrics, for the split and length they were measured at */
  private evalBefore: { key: string; result: EvalResult } | null = null;
  /** the saving of the current (or last) run into the browser's storage */
  private autosave: { runId: string } | null = null;

  constructor(post: (ev: WorkerEvent) => void, gpu: GPU | undefined) {
    this.post = post;
    this.gpu = gpu;
  }

  async handle(req: WorkerRequest): Promise<void> {
    try {
      switch (req.type) {
        case 'probe':
          this.post({ type: 'adapter', report: (await this.context()).adapter });
          return;
        case 'selftest':
          return await this.selftest(req);
        case 'hubCheck':
          return await this.hubCheck(req.endpoint, req.repo);
        case 'loadModel':
          return await this.exclusive('model', () => this.loadModel(req.source));
        case 'loadCorpus':
          return await this.exclusive('corpus', () => this.loadCorpus(req.source, req.options, req.valFraction, req.seed, req.contextLength));
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
        case 'resetWeights':
          return await this.oneTask('reset', () => this.resetWeights());
        case 'cacheList':
          return await this.postCache();
        case 'cacheClear': {
          const { cache } = await browserCache();
          await cache.clear(req.model);
          return await this.postCache();
        }
        case 'runsList':
          return await this.postRuns();
        case 'runDelete':
          if (this.control && this.autosave?.runId === req.id) throw new StudioBusyError('This run is training now: stop it before deleting its save.');
          await (await requireRunStore()).delete(req.id);
          return await this.postRuns();
        case 'runDownload':
          return await this.oneTask('download', async () => {
            const z = await runZip(await requireRunStore(), req.id);
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
    this.ctxPromise ??= GpuContext.create(this.gpu).then(
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
    this.generators = new Generators(); // their buffers died with the device
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

  private async selftest(req: Extract<WorkerRequest, { type: 'selftest' }>): Promise<void> {
    const ctx = await this.context();
    const { M, N, K } = req;
    let s = req.seed >>> 0;
    const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
    const a = Float32Array.from({ length: M * K }, rand);
    const b = Float32Array.from({ length: K * N }, rand);
    const t0 = performance.now();
    const ra = { buffer: ctx.createBuffer(a.byteLength, 'a', a), offset: 0, size: a.byteLength };
    const rb = { buffer: ctx.createBuffer(b.byteLength, 'b', b), offset: 0, size: b.byteLength };
    const rc = { buffer: ctx.createBuffer(M * N * 4, 'c', new Float32Array(M * N).fill(NaN)), offset: 0, size: M * N * 4 };
    await run(ctx, [await matmul(ctx, { label: 'selftest', M, N, K, a: ra, b: rb, out: rc })]);
    const c = await ctx.readF32(rc.buffer, 0, M * N);
    const ms = performance.now() - t0;
    let maxAbsError = 0;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let ref = 0;
        for (let k = 0; k < K; k++) ref += a[m * K + k] * b[k * N + n];
        const d = Math.abs(c[m * N + n] - ref);
        maxAbsError = Number.isNaN(d) ? Infinity : Math.max(maxAbsError, d);
      }
    }
    for (const r of [ra, rb, rc]) r.buffer.destroy();
    this.post({ type: 'selftest', M, N, K, maxAbsError, ms, sample: Array.from(c.slice(0, 4)) });
  }

  private async hubCheck(endpoint: string, repo: string): Promise<void> {
    const url = `${endpoint.replace(/\/+$/, '')}/${repo}/resolve/main/config.json`;
    try {
      const res = await fetch(url, { method: 'HEAD', signal: AbortSignal.timeout(5000) });
      this.post({ type: 'hub', endpoint, reachable: res.ok, detail: res.ok ? `${endpoint} is reachable` : `${url} answered HTTP ${res.status}` });
    } catch (e) {
      this.post({ type: 'hub', endpoint, reachable: false, detail: `${endpoint} is not reachable (${describeError(e).message})` });
    }
  }

  private async postCache(): Promise<void> {
    const { cache, persistent } = await browserCache();
    const byModel = new Map<string, { endpoint: string; repo: string; revision: string; files: number; bytes: number; complete: boolean }>();
    for (const e of await cache.list()) {
      const k = `${e.endpoint} ${e.repo} ${e.revision}`;
      const m = byModel.get(k) ?? { endpoint: e.endpoint, repo: e.repo, revision: e.revision, files: 0, bytes: 0, complete: true };
      m.files++;
      m.bytes += e.size;
      m.complete &&= e.complete;
      byModel.set(k, m);
    }
    this.post({ type: 'cache', persistent, models: [...byModel.values()] });
  }

  private async postRuns(): Promise<void> {
    const store = await browserRunStore();
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
    this.model = { folder, info: describeModel(folder, source.kind), gpu: null, trainedSteps: 0, lastRun: null };
    this.evalBefore = null;
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
      await this.loadCorpus(c.source, c.options, c.valFraction, c.seed, Math.min(c.contextLength, folder.config.nPositions));
    }
  }

  private dropModel(): void {
    const gm = this.model?.gpu;
    this.generators.destroy();
    this.generators = new Generators();
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

  private async corpusFiles(source: CorpusSource): Promise<{ files: NamedFile[]; name: string; names: string[] }> {
    if (source.kind === 'files') {
      if (source.files.length === 0) throw new StudioBusyError('No corpus files were given. Drop .txt, .md, .jsonl or .csv files.');
      const names = source.files.map((f) => f.name);
      // Read in slices, so a corpus of hundreds of MB is never held whole (tokenizeCorpus streams it).
      return { files: source.files.map((f) => blobSource(f, f.name)), name: names.length === 1 ? names[0] : `${names.length} files`, names };
    }
    const file = SAMPLE_CORPUS.file.split('/').pop()!;
    const blob = await fetchSiteFile(siteBase() + SAMPLE_CORPUS.file, 'the sample corpus', () => {});
    return { files: [blobSource(blob, file)], name: SAMPLE_CORPUS.name, names: [file] };
  }

  private async loadCorpus(source: CorpusSource, options: CorpusOptions, valFraction: number, seed: number, contextLength: number): Promise<void> {
    const tokenizer = await this.tokenizer();
    const { files, name, names } = await this.corpusFiles(source);
    const tokenized = await tokenizeCorpus(files, tokenizer, { jsonlField: options.jsonlField || 'text', csvColumn: options.csvColumn || 'text', contextLength }, (done, total) =>
      this.post({ type: 'progress', task: 'corpus', label: `Tokenizing ${name}`, done, total, unit: 'bytes' }),
    );
    const split = splitCorpus(tokenized, { valFraction, seed, contextLength });
    this.corpus = { source, options, name, names, tokenized, tokenizer, split, valFraction, seed, contextLength, version: (this.corpus?.version ?? 0) + 1 };
    this.post({ type: 'corpusLoaded', corpus: this.corpusInfo() });
  }

  /** The split for a run: the one loaded, or a new one when the fraction, seed or T changed. */
  private splitFor(valFraction: number, seed: number, T: number): CorpusSplit {
    const c = this.corpus!;
    if (c.valFraction !== valFraction || c.seed !== seed || c.contextLength !== T) {
      c.split = splitCorpus(c.tokenized, { valFraction, seed, contextLength: T });
      Object.assign(c, { valFraction, seed, contextLength: T, version: c.version + 1 });
      this.post({ type: 'corpusLoaded', corpus: this.corpusInfo() });
    }
    return c.split;
  }

  private corpusInfo(): CorpusInfo {
    const c = this.corpus!;
    const s = c.tokenized.stats;
    return {
      name: c.name, files: s.files, documents: s.documents, characters: s.characters, bytes: s.bytes, tokens: s.tokens,
      trainTokens: c.split.train.length, valTokens: c.split.val.length,
      trainDocuments: c.split.trainDocuments, valDocuments: c.split.valDocuments,
      contextLength: c.contextLength, trainWindows: c.split.trainWindows, valWindows: c.split.valWindows, valFraction: c.valFraction,
      ...(c.split.message ? { splitMessage: c.split.message } : {}),
    };
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

  private async train(settings: TrainSettings, frozen: Set<number>, sample: SampleSettings): Promise<void> {
    if (this.control) throw new StudioBusyError('A run is already in progress. Stop it before starting another.');
    if (this.loading) throw new StudioBusyError(`The ${this.loading} is still loading; start when it is ready.`);
    if (this.task) throw new StudioBusyError(`Wait for the ${this.task} to finish before starting a run.`);
    const m = this.model;
    if (!m) throw new StudioBusyError('No model is loaded. Load the built-in model, a Hub model or local files first.');
    if (!this.corpus) throw new StudioBusyError('No corpus is loaded. Use the sample corpus or drop text files first.');
    const config = m.folder.config;
    const split = this.splitFor(settings.valFraction, settings.seed, settings.seq);
    const errors = { ...validateTrain(settings, { nPositions: config.nPositions, nLayer: config.nLayer, trainTokens: split.train.length }), ...validateSample(sample, { nPositions: config.nPositions }) };
    if (hasErrors(errors)) throw new SettingsError(`Fix the settings first: ${Object.values(errors).join(' ')}`);

    const control = new RunControl();
    this.control = control;
    this.runStep = 0;
    this.runTotal = runSteps(settings, split.train.length);
    const hasVal = split.valWindows > 0;
    const cfg: TrainRunConfig = { ...this.runConfig(settings, config, frozen, this.runTotal), evaluation: hasVal ? { every: settings.evalEvery, tokens: split.val } : null };
    this.setState('starting');
    const t0 = performance.now();
    let lastLoss = NaN;
    let finalEval: EngineEval | null = null;
    try {
      const gm = await this.gpuModel();
      const adapter = await this.prepareAdapter(gm, settings);
      const tokenizer = m.folder.tokenizer;

      if (hasVal) {
        const before = await this.baseEval(gm, split.val, settings);
        this.post({ type: 'eval', phase: 'before', step: 0, tuned: before, base: null });
      }
      await this.postSample(gm, sample, 0, m.trainedSteps > 0);

      const tokensPerStep = settings.batch * settings.seq * settings.gradAccum;
      let clock = performance.now(); // start of the current timed stretch (restarted after pauses, evaluations, samples)
      let timedSteps = 0;
      let timedMs = 0;
      let trainer: Trainer | null = null;
      /** the frozen set changed: report the trainer's memory once it has rebuilt (at the next step) */
      let memoryChanged = false;
      this.setState('running');
      await runTraining(gm.ctx, gm.tuned, split.train, cfg, {
        signal: control.abort.signal,
        onInfo: (message) => this.post({ type: 'info', message }),
        onTrainer: (t) => {
          trainer = t;
          this.postMemory(t, gm);
        },
        onStep: (log) => {
          const now = performance.now();
          timedMs += now - clock;
          timedSteps++;
          clock = now;
          this.runStep = log.step;
          lastLoss = log.loss;
          if (memoryChanged && trainer) {
            memoryChanged = false;
            this.postMemory(trainer, gm);
          }
          const msPerStep = timedMs / Math.max(1, timedSteps);
          this.post({
            type: 'step', step: log.step, totalSteps: this.runTotal, loss: log.loss, lr: log.lr, gradNorm: log.grad_norm,
            tokensPerSec: (tokensPerStep * 1000) / Math.max(msPerStep, 1e-3), elapsedMs: timedMs, etaMs: msPerStep * (this.runTotal - log.step),
          });
        },
        onEval: (log, result) => {
          if (log.step === this.runTotal) finalEval = result;
          else this.post({ type: 'eval', phase: 'during', step: log.step, tuned: toPage(result, null), base: null });
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
      }, adapter?.weights);
      m.trainedSteps += this.runStep;
      m.lastRun = { cfg, trainLoss: lastLoss, seconds: (performance.now() - t0) / 1000, tokens: this.runStep * tokensPerStep };
      if (control.stopped) {
        this.setState('stopped', `Stopped after ${this.runStep} of ${this.runTotal} steps.`);
        return;
      }
      if (hasVal && finalEval) {
        const fe: EngineEval = finalEval;
        const bleu = await this.bleu(gm, gm.tuned, adapter?.weights ?? null, split.val, tokenizer, 'Scoring BLEU of the fine-tuned model');
        m.lastRun = { ...m.lastRun, valLoss: fe.loss, valAccuracy: fe.accuracy };
        this.post({ type: 'eval', phase: 'after', step: this.runStep, tuned: toPage(fe, bleu), base: this.evalBefore?.result ?? null });
      }
      await this.postSample(gm, sample, this.runStep, true);
      this.setState('finished', `Finished ${this.runTotal} steps in ${((performance.now() - t0) / 1000).toFixed(1)} s.`);
    } catch (e) {
      if (this.model === m && m.gpu) m.trainedSteps += this.runStep;
      const lost = control.stopped && control.abort.signal.reason instanceof StudioBusyError;
      const err = e instanceof OutOfMemoryError ? this.explainOom(e, settings, frozen) : e;
      this.setState(lost ? 'stopped' : 'failed', describeError(err).message);
      if (!lost) throw err;
    } finally {
      this.control = null;
    }
  }

  /** An allocation that did not fit, with the run's estimate, the adapter's limits and what to change. */
  private explainOom(e: OutOfMemoryError, s: TrainSettings, frozen: ReadonlySet<number>): OutOfMemoryError {
    const m = this.model;
    if (!m) return e;
    const est = estimateRun(m.folder.config, s, frozen, this.ctx ? memoryLimitsOf(this.ctx) : undefined);
    const lim = this.ctx?.limits;
    const mb = formatBytes;
    const parts = [
      `The GPU ran out of memory while allocating ${e.what || 'the run\'s buffers'}.`,
      `This run needs about ${mb(est.memory.total)}: ${describeMemory(est.memory)}, plus ${mb(est.memory.baseCopy)} for the original weights kept for comparisons.`,
      lim ? `This adapter allows buffers of up to ${mb(lim.maxBufferSize)} and bindings of up to ${mb(lim.maxStorageBufferBindingSize)}; WebGPU does not tell a page how much memory the GPU has in all, and other tabs and programs share it.` : '',
      `To fit: lower the batch size (now ${s.batch}) or the sequence length (now ${s.seq}), freeze more layers in the Layers panel (frozen layers need no gradients or Adam moments)${s.lora.enabled ? ', or a lower LoRA rank' : ', or turn on LoRA (only small adapters train)'}.`,
      'The model and the corpus stay loaded: change the settings and press Train again.',
    ];
    return new OutOfMemoryError(parts.filter(Boolean).join(' '), e.what);
  }

  /** The LoRA adapter the run trains (kept when its settings did not change), or null for full fine-tuning. */
  private async prepareAdapter(gm: GpuModel, s: TrainSettings): Promise<Adapter | null> {
    const want = loraConfigOf(s);
    const have = gm.lora;
    if (want && have && sameLora(want, have.config)) return have;
    if (have) {
      // Continue from what the adapter learned: merge it into the weights, then drop it.
      const cfg = have.config;
      const merged = mergeLora(gm.tuned.config, await readParams(gm.ctx, gm.tuned), cfg, await have.weights.download());
      for (const [name, t] of merged) gm.tuned.upload(name, t);
      this.generators.forget(have.weights);
      have.weights.destroy();
      gm.lora = null;
      this.post({ type: 'info', message: `The previous LoRA adapter (r = ${cfg.r}) was merged into the weights before this run.` });
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
    const memory: MemoryBreakdown = { ...m, baseCopy: gm.base.bytes, total: 0 };
    memory.total = m.parameters + m.gradients + m.optimizer + m.activations + m.scratch + memory.baseCopy;
    this.post({ type: 'memory', memory, trainableParams: t.trainableParams });
  }

  // ---- evaluation and samples ----------------------------------------------------------------

  private progress(task: 'evaluate' | 'generate', label: string) {
    return (done: number, total: number) => this.post({ type: 'progress', task, label, done, total, unit: 'items' });
  }

  /** BLEU-4 of greedy continuations of validation prompts, or null when the split is too short for one. */
  private async bleu(gm: GpuModel, w: GpuWeights, lora: LoraWeights | null, val: ArrayLike<number>, tokenizer: Tokenizer, label: string): Promise<number | null> {
    const half = Math.floor(w.config.nPositions / 2);
    const opts = { ...PAGE_BLEU, promptTokens: Math.min(PAGE_BLEU.promptTokens, half), continuationTokens: Math.min(PAGE_BLEU.continuationTokens, half) };
    if (val.length < opts.promptTokens + opts.continuationTokens) return null;
    const gen = await this.generators.get(gm.ctx, w, lora);
    const r = await bleuEval(gen, val, (ids) => tokenizer.decode(ids), opts, { onProgress: this.progress('evaluate', label) });
    return r.score;
  }

  /** The base model's metrics on the validation split at the settings' length (measured once per split and length). */
  private async baseEval(gm: GpuModel, val: ArrayLike<number>, s: Pick<TrainSettings, 'seq' | 'batch'>): Promise<EvalResult> {
    const key = `${this.corpus?.version}:${s.seq}`;
    if (this.evalBefore?.key === key) return this.evalBefore.result;
    const r = await evaluate(gm.ctx, gm.base, val, { batch: s.batch, seq: s.seq, onProgress: (p) => this.progress('evaluate', 'Evaluating the base model')(p.windowsDone, p.windows) });
    const bleu = await this.bleu(gm, gm.base, null, val, this.model!.folder.tokenizer, 'Scoring BLEU of the base model');
    this.evalBefore = { key, result: toPage(r, bleu) };
    return this.evalBefore.result;
  }

  private async postSample(gm: GpuModel, s: SampleSettings, step: number, compare: boolean): Promise<void> {
    const tokenizer = this.model!.folder.tokenizer;
    const lora = gm.lora?.weights ?? null;
    const tuned = await this.generators.sample(gm.ctx, gm.tuned, lora, tokenizer, s);
    const base = compare ? (await this.generators.sample(gm.ctx, gm.base, null, tokenizer, s)).text : null;
    this.post({ type: 'sample', step, prompt: s.prompt, seed: s.seed, tuned: tuned.text, base, tokensPerSec: tuned.tokensPerSec });
  }

  private async generate(sample: SampleSettings, compare: boolean): Promise<void> {
    const m = this.model;
    if (!m) throw new StudioBusyError('Load a model before sampling.');
    const errors = validateSample(sample, { nPositions: m.folder.config.nPositions });
    if (hasErrors(errors)) throw new SettingsError(`Fix the sample settings: ${Object.values(errors).join(' ')}`);
    const gm = await this.gpuModel();
    const step = m.trainedSteps + (this.control ? this.runStep : 0);
    this.progress('generate', 'Generating')(0, 1);
    await this.postSample(gm, sample, step, compare && step > 0);
  }

  private async evaluateNow(settings: TrainSettings): Promise<void> {
    const m = this.model;
    if (!m || !this.corpus) throw new StudioBusyError('Load a model and a corpus before evaluating.');
    const gm = await this.gpuModel();
    const seq = Math.min(settings.seq, m.folder.config.nPositions);
    const split = this.splitFor(settings.valFraction, settings.seed, seq);
    if (split.valWindows < 1) throw new StudioBusyError('The validation split is empty: raise the validation fraction in the Data panel (or add text) and evaluate again.');
    const s = { seq, batch: settings.batch };
    const before = await this.baseEval(gm, split.val, s);
    const steps = m.trainedSteps + (this.control ? this.runStep : 0);
    if (steps === 0) {
      this.post({ type: 'eval', phase: 'before', step: 0, tuned: before, base: null });
      return;
    }
    const lora = gm.lora?.weights;
    const r = await evaluate(gm.ctx, gm.tuned, split.val, { ...s, lora, onProgress: (p) => this.progress('evaluate', 'Evaluating the fine-tuned model')(p.windowsDone, p.windows) });
    const bleu = await this.bleu(gm, gm.tuned, lora ?? null, split.val, m.folder.tokenizer, 'Scoring BLEU of the fine-tuned model');
    this.post({ type: 'eval', phase: 'after', step: steps, tuned: toPage(r, bleu), base: before });
  }

  // ---- export and reset ----------------------------------------------------------------------

  private async exportNow(format: ExportFormat): Promise<void> {
    const m = this.model;
    if (!m) throw new StudioBusyError('Load a model (and fine-tune it) before exporting.');
    const gm = await this.gpuModel();
    const config = m.folder.config;
    const lora = gm.lora;
    // With an adapter, the full-weight exports hold the merged model (W + (B·A)ᵀ·α/r), as PEFT's merge_and_unload.
    const params = lora && format !== 'lora'
      ? mergeLora(config, await readParams(gm.ctx, gm.tuned), lora.config, await lora.weights.download())
      : (name: string) => {
          const r = gm.tuned.range(name);
          return gm.ctx.readF32(r.buffer, r.offset, r.size / 4);
        };
    const c = this.corpus;
    // Only weights that trained are labelled fine-tuned, and only their own run's metrics are reported.
    const tuned = m.trainedSteps > 0;
    const run = tuned ? m.lastRun : null;
    const out = await exportFile(format, {
      config,
      params,
      lora: lora ? { config: lora.config, params: () => lora.weights.download() } : null,
      tokenizer: m.folder.tokenizer.files,
      card: {
        name: `${m.folder.name.split('/').pop()}${tuned ? '-finetuned' : ''}`,
        baseModel: m.folder.baseModel,
        ...(c && tuned ? { corpus: { ...c.tokenized.stats, names: c.names, trainTokens: c.split.train.length, valTokens: c.split.val.length, trainDocuments: c.split.trainDocuments, valDocuments: c.split.valDocuments } } : {}),
        ...(run ? { training: run.cfg, metrics: { steps: m.trainedSteps, trainLoss: run.trainLoss, valLoss: run.valLoss, tokensSeen: run.tokens, seconds: run.seconds, ...(run.valAccuracy !== undefined ? { extra: { 'val next-token accuracy': run.valAccuracy } } : {}) } } : {}),
      },
      onProgress: (done, total) => this.post({ type: 'progress', task: 'export', label: 'Writing the download', done, total, unit: 'bytes' }),
    });
    this.post({ type: 'exported', format, fileName: out.fileName, blob: out.blob });
  }

  private async resetWeights(): Promise<void> {
    if (this.control) throw new StudioBusyError('Stop the run before resetting the weights.');
    const m = this.model;
    if (!m) return;
    const gm = await this.gpuModel();
    copyWeights(gm.ctx, gm.base, gm.tuned);
    if (gm.lora) {
      this.generators.forget(gm.lora.weights);
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
