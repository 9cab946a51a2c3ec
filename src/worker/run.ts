// One training run of the page, from its settings to its end: validates the settings against the
// model and corpus, maps them to the engine's run config (engine/train/run-settings.ts), sets up
// or keeps the LoRA weights, measures the base model and samples it before the first step, drives
// the engine's run loop (engine/train/loop.ts), and reports every step, evaluation, sample and
// state change as WorkerEvents. Pause, resume and stop go through RunControl at step boundaries;
// a lost device ends the run as stopped. The run saves itself into the browser (autosave.ts):
// every N minutes while it trains (written in the background after a copy of the weights), and
// before a pause, a stop or the end takes effect.
// A run resumed from a save (resume.ts) starts here too, from the checkpoint's optimizer state.
//
// An interval save takes a copy of the weights and AdamW moments in the GPU queue
// (Trainer.stageState: the run goes on at once, the files are written from the mapped copy);
// where that copy does not fit beside the run, they are read back while training waits.
// A non-finite loss pauses the run at that step: the engine skipped its update, and nothing is
// saved then, since the weights of the step before are those that gave the non-finite loss:
// going back to them at a lower rate would meet the same batch with the same weights. The user
// chooses: go back to the run's last save at a lower learning rate, or stop.
import { requireSubgroupReductions } from '../engine/gpu/subgroup-layout.ts';
import { kernelsRecord, variantsFromRecord, type KernelsRecord } from '../engine/gpu/variants.ts';
import { tunedVariants } from './tuning-opfs.ts';
import { describeError, NonFiniteLossError, OutOfMemoryError } from '../engine/errors.ts';
import type { EvalResult as EngineEval } from '../engine/eval/evaluate.ts';
import { ThroughputMeter } from '../engine/eval/metrics.ts';
import type { GPT2Config } from '../engine/model/config.ts';
import { initLoraParams, LoraWeights, type LoraConfig } from '../engine/model/lora.ts';
import type { GpuWeights } from '../engine/model/weights.ts';
import type { TrainRunConfig } from '../engine/train/config.ts';
import { groupLabel } from '../engine/train/groups.ts';
import { runTraining, type RunSnapshot } from '../engine/train/loop.ts';
import { RunSettingsError, toRunConfig } from '../engine/train/run-settings.ts';
import type { StagedTrainerState, Trainer, TrainerState } from '../engine/train/trainer.ts';
import type { HostParams } from '../engine/model/params.ts';
import { mergeLora } from '../io/peft.ts';
import { checkpointFiles, tokensFingerprint, type TrainerStateJson } from '../io/run-checkpoint.ts';
import type { RunSummary as SavedRunSummary } from '../io/run-store.ts';
import { Sha256 } from '../io/sha256.ts';
import {
  baseFingerprint, corpusAssets, logHistory, modelAssets, pageStateFile, readPageState, RunSaver, savedModelSource, trainerState,
  type PageState, type ShownEvent,
} from './autosave.ts';
import { explainOutOfMemory, loraConfigOf } from './estimate.ts';
import { pageEval, type EvalTarget } from './evaluation.ts';
import { baseTarget, postSample } from './model-tasks.ts';
import type { EvalResult, MemoryBreakdown, RunState, SampleSettings, TrainSettings, WorkerEvent } from './protocol.ts';
import { RunControl } from './run-control.ts';
import { SettingsError, StudioBusyError, type GpuModel, type LoraSession, type RunHandle, type Session } from './session.ts';
import { hasErrors, runSteps, validateSample, validateTrain } from './settings.ts';

/** A run continued from a saved checkpoint. */
export interface ResumeInput {
  runId: string;
  optimizer: TrainerState;
  /** optimizer steps the checkpoint holds */
  step: number;
  events: ShownEvent[];
  fingerprints: TrainerStateJson['fingerprints'];
  /** the kernel variants the checkpoint recorded: the resumed run uses them */
  kernels: KernelsRecord;
  evalBefore: EvalResult | null;
  savedAt: number;
  bytes: number;
}

/** After a non-finite loss: resume the saved run `id` (as the runResume request does) at learning rate `lr`. */
export interface GoBack {
  id: string;
  lr: number;
  /** the factor the user chose (lr = the diverged run's rate × factor) */
  factor: number;
}

/** What the session holds of the run in progress (RunHandle), and what the run loop's hooks share. */
class TrainingRun implements RunHandle {
  readonly control = new RunControl();
  /** the events the page shows of this run (charts, samples, notes), saved with it */
  readonly shown: ShownEvent[] = [];
  saver: RunSaver | null = null;

  constructor(
    readonly post: (ev: WorkerEvent) => void,
    public step: number,
    readonly total: number,
  ) {}

  get waiting(): boolean {
    return this.control.waiting;
  }

  get runId(): string | undefined {
    return this.saver?.runId;
  }

  pause(): void {
    this.control.pause();
  }

  resume(frozen: ReadonlySet<number>): void {
    if (this.control.paused) this.control.resume(frozen);
  }

  stop(): void {
    if (this.control.stopped) return;
    this.setState('stopping');
    this.control.stop();
  }

  deviceLost(): void {
    this.control.stop(new StudioBusyError('The GPU device was lost.'));
  }

  /** set while the run waits after a non-finite loss: the save it may go back to (null: none yet) */
  divergedSave: { id: string; step: number } | null | undefined = undefined;

  goBack(lrScale: number): void {
    if (!(lrScale > 0 && Number.isFinite(lrScale))) throw new SettingsError(`The learning-rate factor must be a number above 0, got ${lrScale}.`);
    if (this.divergedSave === null) throw new StudioBusyError('This run has no save to go back to yet: stop it, lower the learning rate, reset the weights and train again.');
    if (!this.control.goBack(lrScale)) throw new StudioBusyError('The run is not paused after a non-finite loss: there is nothing to go back from.');
  }

  /** true when the run ended because the device was lost (see deviceLost) */
  get lost(): boolean {
    return this.control.stopped && this.control.abort.signal.reason instanceof StudioBusyError;
  }

  record(ev: WorkerEvent): void {
    if (ev.type === 'step' || ev.type === 'eval' || ev.type === 'sample' || ev.type === 'info') this.shown.push(ev);
  }

  setState(state: RunState, message?: string): void {
    this.post({ type: 'runState', state, step: this.step, totalSteps: this.total, ...(message ? { message } : {}) });
  }
}

function sameLora(a: LoraConfig, b: LoraConfig): boolean {
  return a.r === b.r && a.alpha === b.alpha && a.dropout === b.dropout && a.rslora === b.rslora && a.targets.join() === b.targets.join();
}

/** The LoRA weights the run trains (kept when the LoRA settings did not change), or null for full fine-tuning. */
async function prepareLora(s: Session, gm: GpuModel, settings: TrainSettings): Promise<LoraSession | null> {
  const want = loraConfigOf(settings);
  const have = gm.lora;
  if (want && have && sameLora(want, have.config)) return have;
  if (have) {
    // Continue from what LoRA learned: merge it into the weights, then drop it.
    const cfg = have.config;
    const merged = mergeLora(gm.tuned.config, await gm.tuned.download(), cfg, await have.weights.download());
    for (const [name, t] of merged) gm.tuned.upload(name, t);
    s.evaluator.generators.forget(have.weights);
    have.weights.destroy();
    gm.lora = null;
    s.post({ type: 'info', message: `The previous LoRA weights (r = ${cfg.r}) were merged into the model before this run.` });
  }
  if (!want) return null;
  gm.lora = { config: want, weights: new LoraWeights(gm.ctx, gm.tuned.config, want, initLoraParams(gm.tuned.config, want, settings.seed)) };
  return gm.lora;
}

function runConfig(settings: TrainSettings, config: GPT2Config, frozen: Set<number>, steps: number): TrainRunConfig {
  try {
    return toRunConfig(settings, config, { frozen, steps });
  } catch (e) {
    // The Layers panel is where a frozen set is fixed.
    if (e instanceof RunSettingsError) throw new SettingsError(`${e.message} The Layers panel sets which layers train.`);
    throw e;
  }
}

function postMemory(s: Session, t: Trainer, gm: GpuModel): void {
  const m = t.memory();
  const baseCopy = gm.base.bytes;
  const memory: MemoryBreakdown = { ...m, baseCopy, total: m.parameters + m.gradients + m.optimizer + m.activations + m.scratch + baseCopy };
  s.post({ type: 'memory', memory, trainableParams: t.trainableParams });
}

function summaryOf(s: Session, run: TrainingRun, step: number, state: SavedRunSummary['state']): SavedRunSummary {
  return { model: s.model!.folder.name, corpus: s.corpus!.name, step, totalSteps: run.total, state };
}

function pageState(s: Session, settings: TrainSettings, sample: SampleSettings, frozen: number[], shown: ShownEvent[]): PageState {
  const m = s.model!;
  const c = s.corpus!;
  return {
    format: 'webgpu-finetuning-studio/page-state', version: 1,
    model: { name: m.folder.name, source: savedModelSource(m.source) },
    corpus: { name: c.name, names: c.names, options: c.options, stats: c.tokenized.stats },
    settings, frozen, sample, events: shown, evalBefore: s.evaluator.baseResult,
  };
}

/** The run's assets, written with its first save: the tokenized corpus, and dropped model files. */
function assetsOf(s: Session): Record<string, ReturnType<typeof corpusAssets>> {
  const m = s.model!;
  return { corpus: corpusAssets(s.corpus!.tokenized), ...(m.source.kind === 'files' ? { model: modelAssets(m.source.files) } : {}) };
}

/** What one save holds and the settings it describes (see checkpointFilesOf). */
interface SaveInput {
  gm: GpuModel;
  lora: LoraSession | null;
  cfg: TrainRunConfig;
  settings: TrainSettings;
  sample: SampleSettings;
  trainTokens: number;
  shown: ShownEvent[];
}

/** The run at one step boundary, as a save records it (plain values: they outlive the snapshot). */
interface SavePoint {
  snap: Pick<RunSnapshot, 'step' | 'rowsRead' | 'userFrozen'>;
  optimizer: TrainerState;
  /** the weights: host tensors, or read from the GPU as the file is written (when they hold still meanwhile) */
  params: HostParams | ((name: string) => Promise<Float32Array>);
  loraParams: HostParams | null;
  /** the events shown up to this boundary */
  shown: ShownEvent[];
}

function checkpointFilesOf(s: Session, i: SaveInput, p: SavePoint, fingerprints: TrainerStateJson['fingerprints']) {
  const m = s.model!;
  const state = trainerState({
    snap: p.snap, dropoutStep: p.optimizer.stepIndex, cfg: i.cfg, lora: i.lora?.config ?? null, evalEvery: i.settings.evalEvery,
    windows: Math.floor((i.trainTokens - 1) / i.cfg.seq), modelName: m.folder.baseModel, corpusNames: s.corpus!.names, fingerprints,
    log: logHistory(p.shown), kernels: kernelsRecord(i.gm.ctx.kernels, i.cfg.precision ?? 'f32'),
  });
  const files = checkpointFiles({
    config: m.folder.config,
    params: p.params,
    lora: i.lora && p.loraParams ? { config: i.lora.config, params: p.loraParams, baseModel: m.folder.baseModel } : null,
    optimizer: p.optimizer,
    state,
    tokenizer: m.folder.tokenizer.files,
  });
  const frozenNow = [...p.snap.userFrozen].sort((a, b) => a - b);
  return [...files.map((f) => ({ name: f.name, data: f.data })), pageStateFile(pageState(s, i.settings, i.sample, frozenNow, p.shown))];
}

/** After the final evaluation and sample: the last save's page state and log get them too. */
async function updateSavedState(s: Session, run: TrainingRun, saver: RunSaver, settings: TrainSettings, sample: SampleSettings): Promise<void> {
  const r = await saver.store.open(saver.runId);
  const ps = await readPageState(r.checkpoint.get('studio_state.json'));
  const st = JSON.parse(await r.checkpoint.get('trainer_state.json')!.text()) as TrainerStateJson;
  st.log_history = logHistory(run.shown);
  await saver.store.updateCheckpointFile(saver.runId, { name: 'trainer_state.json', data: new TextEncoder().encode(`${JSON.stringify(st, null, 2)}\n`) });
  await saver.store.updateCheckpointFile(saver.runId, pageStateFile(pageState(s, settings, sample, ps?.frozen ?? [], run.shown)), summaryOf(s, run, run.step, 'finished'));
}

/**
 * Trains the loaded model on the loaded corpus with `settings` until the run finishes, stops or
 * fails; the session holds the run (`s.run`) meanwhile. `resume` continues a saved run. Returns
 * where to go back to when the user chose so after a non-finite loss (the caller resumes it).
 */
export async function train(s: Session, settings: TrainSettings, frozen: Set<number>, sample: SampleSettings, resume?: ResumeInput): Promise<GoBack | null> {
  if (s.run) throw new StudioBusyError('A run is already in progress. Stop it before starting another.');
  if (s.loading) throw new StudioBusyError(`The ${s.loading} is still loading; start when it is ready.`);
  if (s.task) throw new StudioBusyError(`Wait for the ${s.task} to finish before starting a run.`);
  const m = s.model;
  if (!m) throw new StudioBusyError('No model is loaded. Load the built-in model, a Hub model or local files first.');
  const corpus = s.corpus;
  if (!corpus) throw new StudioBusyError('No corpus is loaded. Use the sample corpus or drop text files first.');
  const config = m.folder.config;
  const split = s.splitFor(settings.valFraction, settings.seed, settings.seq);
  const errors = {
    ...validateTrain(settings, {
      nPositions: config.nPositions, nLayer: config.nLayer, trainTokens: split.train.length, hasF16: s.ctx ? s.ctx.hasF16 : undefined,
      hasSubgroups: s.ctx ? s.ctx.device.features.has('subgroups') : undefined,
    }),
    ...validateSample(sample, { nPositions: config.nPositions }),
  };
  if (hasErrors(errors)) throw new SettingsError(`Fix the settings first: ${Object.values(errors).join(' ')}`);

  const totalSteps = runSteps(settings, split.train.length);
  const hasVal = split.valWindows > 0;
  const cfg: TrainRunConfig = {
    ...runConfig(settings, config, frozen, totalSteps),
    evaluation: hasVal ? { every: settings.evalEvery, tokens: split.val } : null,
  };
  const run = new TrainingRun((ev) => s.post(ev), resume?.step ?? 0, totalSteps);
  const control = run.control;
  s.run = run;
  try {
    run.setState('starting');
    // What the page shows of this run is kept, to be saved with it (and replayed on resume).
    if (resume) {
      for (const ev of resume.events) s.post(ev);
      s.post({ type: 'saved', id: resume.runId, step: resume.step, at: resume.savedAt, bytes: resume.bytes, seconds: 0 });
    }
    const store = await s.runStore();
    const saver = store ? new RunSaver(store, settings.autosaveMinutes * 60_000, resume?.runId) : null;
    run.saver = saver;
    let lastCheckpoint = resume?.step ?? -1;
    /** the step of the run's last save that was written whole (what "go back" returns to) */
    let lastSaved = resume?.step ?? -1;
    /** false once a staged copy did not fit: later saves read back instead */
    let staging = true;
    const t0 = performance.now();
    let lastLoss = NaN;
    let finalEval: EngineEval | null = null;
    try {
      const gm = await s.gpuModel();
      const lora = await prepareLora(s, gm, settings);
      const target: EvalTarget = { ctx: gm.ctx, weights: gm.tuned, lora: lora?.weights ?? null, tokenizer: m.folder.tokenizer };

      if (resume) {
        if (resume.evalBefore) s.evaluator.restoreBase(resume.evalBefore, corpus.version, settings.seq);
      } else {
        if (hasVal) {
          const before = await s.evaluator.base(baseTarget(s, gm), split.val, settings, corpus.version);
          s.post({ type: 'eval', phase: 'before', step: 0, tuned: before, base: null });
        }
        await postSample(s, gm, sample, 0, m.trainedSteps > 0);
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
      const saveInput: SaveInput = { gm, lora, cfg, settings, sample, trainTokens: split.train.length, shown: run.shown };
      /** an interval save still being written while the run trains on */
      let writing: Promise<void> = Promise.resolve();
      /** the staged copy of this boundary, or null where it does not fit (then read back: the page says so once) */
      const stage = async (snap: RunSnapshot): Promise<StagedTrainerState | null> => {
        if (!staging) return null;
        try {
          return await snap.stage();
        } catch (e) {
          if (!(e instanceof OutOfMemoryError)) throw e;
          staging = false;
          s.post({
            type: 'info',
            message: 'Autosave: a copy of the weights and optimizer state does not fit in GPU memory beside this run, so each save reads them back ' +
              'while training waits (seconds per save at GPT-2 124M). Freeze more layers, use LoRA or a smaller batch to make room.',
          });
          return null;
        }
      };
      const saveAt = async (snap: RunSnapshot, state: SavedRunSummary['state']) => {
        // Nothing to save on a lost device (its buffers are gone): the last save stands. Nor after
        // a non-finite step (see the header): the save to go back to is kept as it is.
        if (!saver || snap.step === lastCheckpoint || gm.ctx.lost || snap.reason === 'non-finite') return;
        await writing; // one save at a time
        // An interval save is written while the next steps run: training waits only for a copy
        // of the weights and moments (in the GPU queue when it fits, else read back to memory).
        // A save at pause, stop or finish is written before the run goes on: the user may close the tab.
        const background = snap.reason === 'interval' && !control.paused;
        const t = performance.now();
        try {
          const fingerprints = await fingerprintsNow();
          const at = { step: snap.step, rowsRead: snap.rowsRead, userFrozen: new Set(snap.userFrozen) };
          const shown = run.shown.slice();
          const loraParams = lora ? await lora.weights.download() : null; // small: copied now
          const staged = background ? await stage(snap) : null;
          let files: Promise<ReturnType<typeof checkpointFilesOf>>;
          if (staged) {
            files = staged.read().then(({ state: optimizer, params }) =>
              // With LoRA the base weights hold still: read as the file is written.
              checkpointFilesOf(s, saveInput, { snap: at, optimizer, params: params ?? ((name) => gm.tuned.read(name)), loraParams, shown }, fingerprints));
          } else {
            const optimizer = await snap.exportState();
            // Read while the file is written, unless the run goes on meanwhile: then copied now.
            const params = background && !lora ? await gm.tuned.download() : (name: string) => gm.tuned.read(name);
            files = Promise.resolve(checkpointFilesOf(s, saveInput, { snap: at, optimizer, params, loraParams, shown }, fingerprints));
          }
          lastCheckpoint = snap.step;
          const write = files.then((f) => saver.save(summaryOf(s, run, snap.step, state), f, () => assetsOf(s))).then(
            (saved) => {
              lastSaved = snap.step;
              s.post({ type: 'saved', id: saver.runId, step: snap.step, at: saved.at, bytes: saved.bytes, seconds: (performance.now() - t) / 1000 });
            },
            // A failed save never ends the run: the previous save stays whole, and the user is told.
            (e: unknown) => s.post({ type: 'error', ...describeError(e), request: 'train' }),
          ).finally(() => staged?.release());
          if (background) writing = write;
          else await write;
        } catch (e) {
          s.post({ type: 'error', ...describeError(e), request: 'train' });
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
      // Kernel variants: a resumed run keeps the checkpoint's (refusing when this adapter cannot
      // run them); a new one takes this adapter's tuned tiles (the Tune button), else the defaults.
      gm.ctx.kernels = resume ? variantsFromRecord(resume.kernels, gm.ctx.limits, gm.ctx.adapter.features) : await tunedVariants(gm.ctx, (message) => s.post({ type: 'info', message }));
      // Subgroup reductions only when the settings ask (validated above against the adapter).
      if (!resume && settings.subgroups) gm.ctx.kernels.subgroups = true;
      // … and only where the device lays subgroups out as they assume (a probe, once per device).
      if (gm.ctx.kernels.subgroups) await requireSubgroupReductions(gm.ctx, resume ? 'Resuming a run trained with subgroup reductions' : 'Subgroup reductions');
      run.setState('running');
      await runTraining(gm.ctx, gm.tuned, split.train, cfg, {
        signal: control.abort.signal,
        // Saved every N minutes, and before a requested pause takes effect.
        checkpointAt: () => !!saver && (saver.due() || control.paused),
        onCheckpoint: (snap) => saveAt(snap, snap.reason === 'end' ? 'finished' : snap.reason === 'stopped' ? 'stopped' : snap.reason === 'non-finite' ? 'failed' : control.paused ? 'paused' : 'running'),
        onInfo: (message) => s.post({ type: 'info', message }),
        onTrainer: (t) => {
          trainer = t;
          postMemory(s, t, gm);
        },
        onStep: (log) => {
          const now = performance.now();
          meter.add(tokensPerStep, now - clock);
          clock = now;
          run.step = log.step;
          lastLoss = log.loss;
          if (memoryChanged && trainer) {
            memoryChanged = false;
            postMemory(s, trainer, gm);
          }
          s.post({
            type: 'step', step: log.step, totalSteps, loss: log.loss, lr: log.lr, gradNorm: log.grad_norm,
            tokensPerSec: meter.recent, elapsedMs: meter.elapsedMs, etaMs: meter.etaMs((totalSteps - log.step) * tokensPerStep),
          });
        },
        onEval: (log, result) => {
          if (log.step === totalSteps) finalEval = result;
          else s.post({ type: 'eval', phase: 'during', step: log.step, tuned: pageEval(result, null), base: null });
          clock = performance.now();
        },
        beforeStep: async (step, settle) => {
          const changed = await control.boundary(settle, () => run.setState('paused'), () => {
            run.setState('running');
            clock = performance.now();
          });
          if (changed) {
            memoryChanged = true;
            s.post({ type: 'info', message: `Step ${step + 1}: frozen groups now ${[...changed].sort((a, b) => a - b).map((g) => groupLabel(config.nLayer, g)).join(', ') || 'none'}.` });
          }
          if (settings.sampleEvery > 0 && step > 0 && step % settings.sampleEvery === 0 && !control.stopped) {
            await settle();
            await postSample(s, gm, sample, step, false);
            clock = performance.now();
          }
          return changed;
        },
      }, lora?.weights, resume ? { state: resume.optimizer } : undefined).finally(() => writing);
      m.trainedSteps += run.step;
      m.lastRun = { cfg, trainLoss: lastLoss, seconds: (performance.now() - t0) / 1000, tokens: run.step * tokensPerStep };
      if (control.stopped) {
        run.setState('stopped', `Stopped after ${run.step} of ${totalSteps} steps.`);
        return null;
      }
      if (hasVal && finalEval) {
        const fe: EngineEval = finalEval;
        const bleu = await s.evaluator.bleu(target, split.val, 'Scoring BLEU of the fine-tuned model');
        m.lastRun = { ...m.lastRun, valLoss: fe.loss, valAccuracy: fe.accuracy };
        s.post({ type: 'eval', phase: 'after', step: run.step, tuned: pageEval(fe, bleu), base: s.evaluator.baseResult });
      }
      await postSample(s, gm, sample, run.step, true);
      // The final evaluation and sample came after the last save: add them to it.
      if (saver && lastCheckpoint === run.step) {
        await updateSavedState(s, run, saver, settings, sample).catch((e: unknown) => s.post({ type: 'error', ...describeError(e), request: 'train' }));
      }
      run.setState('finished', `Finished ${totalSteps} steps in ${((performance.now() - t0) / 1000).toFixed(1)} s.`);
      return null;
    } catch (e) {
      if (s.model === m && m.gpu) m.trainedSteps += run.step;
      if (e instanceof NonFiniteLossError && e.step !== undefined && !run.lost && !control.stopped) {
        return await diverged(run, e, settings.lr, saver && lastSaved >= 0 ? { id: saver.runId, step: lastSaved } : null);
      }
      const err = e instanceof OutOfMemoryError && s.model ? explainOutOfMemory(e, s.model.folder.config, settings, frozen, s.ctx) : e;
      const lost = run.lost;
      run.setState(lost ? 'stopped' : 'failed', describeError(err).message);
      if (!lost) throw err;
      return null;
    }
  } finally {
    s.run = null;
  }
}

/**
 * The run paused at a non-finite step (the engine applied none of its update): tells the page
 * and waits for the user to go back to the last save at a lower rate, or to stop.
 */
async function diverged(run: TrainingRun, e: NonFiniteLossError, lr: number, save: { id: string; step: number } | null): Promise<GoBack | null> {
  const step = e.step!;
  run.setState('paused', `Paused at step ${step}: the loss became non-finite. The weights are those after step ${run.step}.`);
  run.post({ type: 'diverged', step, lastGood: run.step, lr, message: e.message, save });
  run.divergedSave = save;
  const factor = await run.control.diverged();
  run.divergedSave = undefined;
  if (factor === null || !save) {
    const kept = save ? ` The run's save at step ${save.step} is unchanged.` : '';
    run.setState('stopped', `Stopped after step ${run.step}: the loss became non-finite at step ${step}.${kept}`);
    return null;
  }
  run.setState('stopped', `Going back to the save at step ${save.step} with the learning rate × ${factor}.`);
  return { id: save.id, lr: lr * factor, factor };
}
