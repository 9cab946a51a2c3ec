// The types of a training run's configuration and log, shared by the loop that runs it, the
// CLI and the worker that build it, and the exporters that record it (trainer_state.json, the
// model card). Types only: importing them pulls in no GPU code.
import type { DropoutRates } from '../model/graph.ts';
import type { Precision } from '../model/weights.ts';
import type { ScheduleConfig } from './schedule.ts';

export interface OptimizerOptions {
  /** AdamW betas and eps (torch defaults 0.9, 0.999, 1e-8) */
  beta1: number;
  beta2: number;
  eps: number;
  /** decoupled weight decay, applied to ≥2-D tensors only */
  weightDecay: number;
  /** max global gradient norm; 0 turns clipping off */
  gradClip: number;
}

export interface TrainRunConfig extends OptimizerOptions {
  /** optimizer steps */
  steps: number;
  batch: number;
  seq: number;
  gradAccum: number;
  /** base (peak) learning rate of the top group */
  lr: number;
  schedule: ScheduleConfig;
  /** discriminative factor f: group d trains at lr / f^(L+1−d); 1 = off */
  lrDecay: number;
  /** gradual unfreezing: k groups open at first, one more every N steps; null = off */
  unfreeze: { start: number; every: number } | null;
  dropout: DropoutRates;
  seed: number;
  order: 'sequential' | 'shuffled';
  /** depth groups the user froze */
  frozen: ReadonlySet<number>;
  /**
   * Matmul weight precision: 'f16' reads f16 copies of the weights with float32 accumulation,
   * masters and moments (trainer.ts); absent = 'f32', the exact float32 engine.
   */
  precision?: Precision;
  /**
   * Held-out evaluation (eval/evaluate.ts: every window, mean loss, perplexity, top-1 accuracy,
   * no dropout, with the run's batch and seq) after every `every` optimizer steps and after the
   * last one; `every` 0 evaluates only at the end. Absent or null: no evaluation.
   */
  evaluation?: { every: number; tokens: ArrayLike<number> } | null;
}

/** One line of the training log (the CLI's --log format). */
export interface StepLog {
  step: number;
  loss: number;
  /** learning rate of the top group (ln_f) at this step */
  lr: number;
  grad_norm: number;
}

/** One evaluation line of the training log, after optimizer step `step`. */
export interface EvalLog {
  step: number;
  eval_loss: number;
  /** exp(eval_loss) */
  eval_ppl: number;
  /** next-token top-1 accuracy */
  eval_acc: number;
}
