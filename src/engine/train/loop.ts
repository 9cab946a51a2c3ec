// A training run: batches from the token stream, the learning-rate schedule, discriminative
// rates and gradual unfreezing around Trainer's optimizer steps. The CLI and the page's worker
// both drive training through this one loop.
import { ShapeError } from '../errors.ts';
import { Evaluator, type EvalResult } from '../eval/evaluate.ts';
import type { GpuContext } from '../gpu/context.ts';
import type { ProfileMethod, ProfileResult } from '../gpu/profile.ts';
import type { LoraWeights } from '../model/lora.ts';
import type { GpuWeights } from '../model/weights.ts';
import { NotEnoughTokensError, windowCount } from '../windows.ts';
import { WindowSampler } from './data.ts';
import { groupLrFactors, unfreezeSchedule, type UnfreezeSchedule } from './groups.ts';
import { lrMultiplier } from './schedule.ts';
import type { EvalLog, StepLog, TrainRunConfig } from './config.ts';
import { Trainer, type StagedTrainerState, type StepMetrics, type TrainerState } from './trainer.ts';
import { NonFiniteLossError } from '../errors.ts';

/** Where a resumed run starts: after `state.stepIndex` optimizer steps, with that optimizer state. */
export interface TrainResume {
  /** from Trainer.exportState (or a checkpoint); the weights (and LoRA weights) given to runTraining are those after the same step */
  state: TrainerState;
}

/** Why a checkpoint is asked for. */
export type CheckpointReason = 'interval' | 'end' | 'stopped' | 'non-finite';

/**
 * The run at a step boundary: every step up to `step` has finished and been reported (onStep,
 * onEval), none after it has been submitted, so the weights (and LoRA weights) on the GPU are
 * those after `step` updates. Valid only during the onCheckpoint call.
 */
export interface RunSnapshot {
  /** optimizer steps completed */
  step: number;
  reason: CheckpointReason;
  /** batch rows read from the window order so far: step · batch · gradAccum */
  rowsRead: number;
  /** the groups the user froze at this point (a host may have changed them while paused) */
  userFrozen: ReadonlySet<number>;
  /** the optimizer state after `step` steps */
  exportState(): Promise<TrainerState>;
  /**
   * A copy of the optimizer state (and the weights, without LoRA) after `step` steps, taken in the
   * GPU queue: the run may go on as soon as it resolves, and the copy is read meanwhile
   * (Trainer.stageState; OutOfMemoryError when it does not fit). Only for 'interval' snapshots.
   */
  stage(): Promise<StagedTrainerState>;
}

export interface TrainHooks {
  onStep?(log: StepLog, metrics: StepMetrics): void;
  /** after each held-out evaluation (cfg.evaluation), following the onStep of its step */
  onEval?(log: EvalLog, result: EvalResult): void;
  /** human-readable notes: the unfreezing schedule, groups opening */
  onInfo?(message: string): void;
  signal?: AbortSignal;
  /** called once the trainer exists (its memory() and trainableParams are then known) */
  onTrainer?(trainer: Trainer): void;
  /**
   * Profiles one optimizer step (gpu/profile.ts): the `step`-th (0-based) this call runs, or its
   * last when fewer run. That step runs kernel by kernel with the same results, and onProfile gets
   * its time per kernel family and its 1-based number.
   */
  profile?: { step: number; method?: ProfileMethod | 'auto'; onProfile(result: ProfileResult, step: number): void };
  /**
   * Awaited before each optimizer step with its 0-based index: a host pauses the run by not
   * resolving yet, and may resolve with the groups the user froze from this step on (changes
   * made while paused apply on resume). GPU work it submits meanwhile runs after the steps
   * already submitted, so it sees the weights after `step` updates. `settle` waits for those
   * steps and reports them through onStep (a paused run shows every step it took).
   */
  beforeStep?(step: number, settle: () => Promise<void>): Promise<ReadonlySet<number> | void>;
  /**
   * Whether to checkpoint after `step` optimizer steps (asked at each boundary of the run but its
   * first and last, e.g. every N steps). When true the steps in flight are settled first.
   */
  checkpointAt?(step: number): boolean;
  /**
   * Called with the run at a step boundary: where checkpointAt says so, at the end (finished, or
   * stopped through `signal` after the steps in flight finished), and after a non-finite step
   * (the snapshot of the last good step, before the NonFiniteLossError is thrown). Awaited: the
   * next step is submitted only after it resolves.
   */
  onCheckpoint?(snap: RunSnapshot): Promise<void>;
}

/** The frozen groups at 0-based step `s`. */
function frozenAt(userFrozen: ReadonlySet<number>, L: number, sched: UnfreezeSchedule | null, s: number): Set<number> {
  if (!sched) return new Set(userFrozen);
  const open = new Set(sched.openGroupsAt(s));
  const frozen = new Set<number>();
  for (let g = 0; g < L + 2; g++) if (!open.has(g)) frozen.add(g);
  return frozen;
}

/**
 * Runs cfg.steps optimizer steps on `weights`, or, with `lora`, on LoRA weights over the frozen
 * base model (the frozen groups, unfreezing and discriminative rates then apply to the LoRA factors).
 * With `resume`, steps S+1 … cfg.steps of that run, S = resume.state.stepIndex: the window order
 * from row S·batch·gradAccum, the frozen set and unfreezing plan at step S, the schedule at step
 * S over cfg.steps, the evaluation cadence unchanged (so a run resumed with the same settings
 * performs exactly the steps the uninterrupted run would have). Returns the logs of the steps run here.
 */
export async function runTraining(
  ctx: GpuContext, weights: GpuWeights, tokens: ArrayLike<number>, cfg: TrainRunConfig, hooks: TrainHooks = {}, lora?: LoraWeights, resume?: TrainResume,
): Promise<StepLog[]> {
  const c = weights.config;
  const L = c.nLayer;
  if (!(Number.isInteger(cfg.steps) && cfg.steps >= 1)) throw new ShapeError(`steps must be a positive integer, got ${cfg.steps}.`);
  if (!(cfg.lr >= 0 && Number.isFinite(cfg.lr))) throw new ShapeError(`learning rate must be a finite number ≥ 0, got ${cfg.lr}.`);
  const factors = groupLrFactors(L, cfg.lrDecay);
  let userFrozen: ReadonlySet<number> = cfg.frozen;
  const plan = (frozen: ReadonlySet<number>) =>
    (cfg.unfreeze ? unfreezeSchedule({ L, start: cfg.unfreeze.start, every: cfg.unfreeze.every, userFrozen: frozen }) : null);
  let sched = plan(userFrozen);
  if (sched) hooks.onInfo?.(`Gradual unfreezing:\n${sched.describe()}`);
  const ev = cfg.evaluation ?? null;
  if (ev) {
    if (!(Number.isInteger(ev.every) && ev.every >= 0)) throw new ShapeError(`Evaluate every N steps: N must be a whole number ≥ 0 (0 = only at the end), got ${ev.every}.`);
    if (windowCount(ev.tokens.length, cfg.seq) < 1) {
      throw new NotEnoughTokensError(`The evaluation data has ${ev.tokens.length} tokens; one window of ${cfg.seq} targets needs ${cfg.seq + 1}. Add held-out data or lower the sequence length.`);
    }
  }
  const start = resume?.state.stepIndex ?? 0;
  if (!(Number.isSafeInteger(start) && start >= 0 && start <= cfg.steps)) {
    throw new ShapeError(`The run resumes after step ${start}, beyond its ${cfg.steps} steps; give a total of at least ${start} steps.`);
  }
  const rowsPerStep = cfg.batch * cfg.gradAccum;
  const sampler = new WindowSampler({ tokens, T: cfg.seq, shuffle: cfg.order === 'shuffled', seed: cfg.seed, startRow: start * rowsPerStep });
  const trainer = await Trainer.create(ctx, weights, {
    batch: cfg.batch, seq: cfg.seq, gradAccum: cfg.gradAccum, dropout: cfg.dropout, seed: cfg.seed,
    beta1: cfg.beta1, beta2: cfg.beta2, eps: cfg.eps, weightDecay: cfg.weightDecay, gradClip: cfg.gradClip,
    frozen: frozenAt(userFrozen, L, sched, start),
    lora,
    precision: cfg.precision ?? 'f32',
  });
  if (trainer.trainableParams === 0 && !sched) {
    trainer.destroy();
    throw new ShapeError('Every layer is frozen: nothing would train. Unfreeze at least one group.');
  }
  if (resume) {
    try {
      await trainer.importState(resume.state);
    } catch (e) {
      trainer.destroy();
      throw e;
    }
  }
  hooks.onTrainer?.(trainer);
  const logs: StepLog[] = [];
  const inFlight: Array<{ metrics: Promise<StepMetrics>; lr: number }> = [];
  const settle = async () => {
    const f = inFlight.shift()!;
    const m = await f.metrics;
    const log: StepLog = { step: m.step, loss: m.loss, lr: f.lr, grad_norm: m.gradNorm };
    logs.push(log);
    hooks.onStep?.(log, m);
  };
  const held: { evaluator: Evaluator | null } = { evaluator: null }; // built at the first evaluation
  // Queued after step `step`'s command buffer, so it sees the weights after that update.
  const evaluate = async (step: number, evalTokens: ArrayLike<number>) => {
    while (inFlight.length) await settle(); // the step lines come before the evaluation line
    held.evaluator ??= await Evaluator.create(ctx, weights, { batch: cfg.batch, seq: cfg.seq, lora });
    let r: EvalResult;
    try {
      r = await held.evaluator.evaluate(evalTokens, { signal: hooks.signal });
    } catch (e) {
      if (hooks.signal?.aborted) return; // stopping mid-evaluation ends the run like stopping between steps
      throw e;
    }
    hooks.onEval?.({ step, eval_loss: r.loss, eval_ppl: r.perplexity, eval_acc: r.accuracy }, r);
  };
  const checkpoint = async (reason: CheckpointReason) => {
    if (!hooks.onCheckpoint) return;
    const step = trainer.stepsDone;
    await hooks.onCheckpoint({
      step, reason, rowsRead: step * rowsPerStep, userFrozen, exportState: () => trainer.exportState(), stage: () => trainer.stageState(),
    });
  };
  let s = start;
  try {
    for (; s < cfg.steps; s++) {
      if (hooks.signal?.aborted) break;
      if (s > start && hooks.checkpointAt?.(s)) {
        while (inFlight.length) await settle();
        await checkpoint('interval');
        if (hooks.signal?.aborted) break;
      }
      const changed = await hooks.beforeStep?.(s, async () => {
        while (inFlight.length) await settle();
      });
      if (hooks.signal?.aborted) break;
      if (changed) {
        userFrozen = new Set(changed);
        sched = plan(userFrozen);
        if (!sched) await trainer.setFrozen(frozenAt(userFrozen, L, sched, s));
      }
      if (sched) {
        const opening = sched.openingAt(s).filter((g) => s > 0 && !userFrozen.has(g));
        if (opening.length) hooks.onInfo?.(`Step ${s + 1}: opening group(s) ${opening.join(', ')}`);
        await trainer.setFrozen(frozenAt(userFrozen, L, sched, s));
      }
      const mult = lrMultiplier(cfg.schedule, s, cfg.steps);
      const micro = [];
      for (let m = 0; m < cfg.gradAccum; m++) {
        const b = sampler.nextBatch(cfg.batch);
        micro.push({ inputs: b.inputs.slice(), targets: b.targets.slice() });
      }
      const lrTop = cfg.lr * mult * factors[L + 1];
      const profiled = hooks.profile !== undefined && s === start + Math.min(hooks.profile.step, cfg.steps - start - 1);
      const handle = await trainer.submit(micro, (g) => cfg.lr * mult * factors[g], profiled ? { profile: hooks.profile!.method ?? 'auto' } : {});
      if (handle.profile) hooks.profile!.onProfile(handle.profile, s + 1);
      inFlight.push({ metrics: handle.metrics, lr: lrTop });
      // Two steps in flight: the GPU never waits for the CPU to read a loss.
      while (inFlight.length > 2) await settle();
      if (ev && ((ev.every > 0 && (s + 1) % ev.every === 0) || s + 1 === cfg.steps)) await evaluate(s + 1, ev.tokens);
    }
    while (inFlight.length) await settle();
    await checkpoint(s >= cfg.steps ? 'end' : 'stopped');
  } catch (e) {
    if (e instanceof NonFiniteLossError && hooks.onCheckpoint) {
      // The steps queued behind the bad one were skipped on the GPU; their metrics fail the same way.
      await Promise.allSettled(inFlight.splice(0).map((f) => f.metrics));
      await checkpoint('non-finite');
    }
    throw e;
  } finally {
    held.evaluator?.destroy();
    await trainer.drain().catch(() => {});
    trainer.destroy();
  }
  return logs;
}
