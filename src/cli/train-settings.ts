// The train command's run options and their reading into the engine's RunSettings. Every
// default (and so every default --help shows) comes from the engine's one table,
// RUN_DEFAULTS in engine/train/run-settings.ts, which the page uses too.
import { ShapeError } from '../engine/errors.ts';
import { ATTENTION_MAX_HEAD_SIZE } from '../engine/kernels/attention.ts';
import type { GPT2Config } from '../engine/model/config.ts';
import { RUN_DEFAULTS, type RunSettings } from '../engine/train/run-settings.ts';
import type { ScheduleKind } from '../engine/train/schedule.ts';
import { UsageError, type Args, type OptionSpec } from './args.ts';

/** The CLI's schedule names: the engine's, with ULMFiT's slanted triangular as `stlr`. */
export const SCHEDULE_NAMES: Record<string, ScheduleKind> = { constant: 'constant', linear: 'linear', cosine: 'cosine', stlr: 'slanted' };
const scheduleName = (k: ScheduleKind) => Object.keys(SCHEDULE_NAMES).find((n) => SCHEDULE_NAMES[n] === k)!;

const D = RUN_DEFAULTS;

/** Options that set the run (the rest of `train`'s options name files and outputs). */
export const RUN_OPTIONS: OptionSpec[] = [
  { name: 'steps', kind: 'int', default: D.steps, help: 'optimizer steps' },
  { name: 'batch', kind: 'int', default: D.batch, help: 'rows per micro-batch (B)' },
  { name: 'seq', kind: 'int', default: D.seq, help: 'tokens per row (T ≤ n_positions)' },
  { name: 'grad-accum', kind: 'int', default: D.gradAccum, help: 'micro-batches per optimizer step' },
  { name: 'lr', kind: 'float', default: D.lr, help: 'peak learning rate of the top group' },
  { name: 'schedule', kind: 'string', default: scheduleName(D.schedule), choices: Object.keys(SCHEDULE_NAMES), help: 'learning-rate schedule (Hugging Face semantics; stlr = ULMFiT slanted triangular)' },
  { name: 'warmup', kind: 'float', default: D.warmup, help: 'warmup steps, or a fraction of the run when below 1' },
  { name: 'min-lr-ratio', kind: 'float', default: D.minLrRatio, help: 'linear/cosine decay ends at this fraction of the peak' },
  { name: 'stlr-cut-frac', kind: 'float', default: D.cutFrac, help: 'slanted triangular: fraction of steps spent rising' },
  { name: 'stlr-ratio', kind: 'float', default: D.stlrRatio, help: 'slanted triangular: peak / lowest rate' },
  { name: 'lr-decay', kind: 'float', default: D.lrDecay, help: 'discriminative factor f: depth group d trains at lr / f^(L+1−d); 1 = off' },
  { name: 'unfreeze-start', kind: 'int', optional: true, help: `gradual unfreezing: groups open at first, counted from the top (ULMFiT: ${D.unfreeze.start})` },
  { name: 'unfreeze-every', kind: 'int', optional: true, help: 'gradual unfreezing: open one more group every N optimizer steps' },
  { name: 'weight-decay', kind: 'float', default: D.weightDecay, help: 'AdamW decoupled weight decay (tensors with ≥ 2 dims only)' },
  { name: 'beta1', kind: 'float', default: D.beta1, help: 'AdamW β1' },
  { name: 'beta2', kind: 'float', default: D.beta2, help: 'AdamW β2' },
  { name: 'eps', kind: 'float', default: D.eps, help: 'AdamW ε' },
  { name: 'grad-clip', kind: 'float', default: D.gradClip, help: 'max global gradient norm (0 = off)' },
  { name: 'dropout', kind: 'float', optional: true, help: "sets embd/attn/resid dropout together (default: the model config's)" },
  { name: 'seed', kind: 'int', default: D.seed, help: 'seed of dropout, the shuffled order and LoRA initialization' },
  { name: 'order', kind: 'string', default: D.order, choices: ['sequential', 'shuffled'], help: 'window order' },
  {
    name: 'precision', kind: 'string', default: D.precision, choices: ['f32', 'f16'],
    help: 'f16: matmuls read f16 copies of the weights (float32 sums, masters and AdamW moments); needs an adapter with shader-f16. A checkpoint resumes in its own precision',
  },
];

/**
 * The run settings of a train command line (LoRA aside: `lora` comes from the LoRA options),
 * with the checks a flag can fail on its own. Exit code 2 (UsageError) for each.
 */
export function runSettingsFromArgs(a: Args, lora: RunSettings['lora'] | null): RunSettings {
  for (const k of ['steps', 'batch', 'seq', 'grad-accum'] as const) {
    if (a.num(k) < 1) throw new UsageError(`train: --${k} must be at least 1, got ${a.num(k)}.`);
  }
  const p = a.optNum('dropout');
  if (p !== undefined && !(p >= 0 && p < 1)) throw new UsageError(`train: --dropout must be in [0, 1), got ${p}.`);
  const hasStart = a.has('unfreeze-start');
  if (hasStart !== a.has('unfreeze-every')) throw new UsageError('train: give --unfreeze-start and --unfreeze-every together.');
  return {
    lr: a.num('lr'),
    schedule: SCHEDULE_NAMES[a.str('schedule')],
    warmup: a.num('warmup'),
    minLrRatio: a.num('min-lr-ratio'),
    cutFrac: a.num('stlr-cut-frac'),
    stlrRatio: a.num('stlr-ratio'),
    steps: a.num('steps'),
    batch: a.num('batch'),
    seq: a.num('seq'),
    gradAccum: a.num('grad-accum'),
    weightDecay: a.num('weight-decay'),
    gradClip: a.num('grad-clip'),
    beta1: a.num('beta1'),
    beta2: a.num('beta2'),
    eps: a.num('eps'),
    dropout: p ?? null,
    seed: a.num('seed'),
    order: a.str('order') === 'shuffled' ? 'shuffled' : 'sequential',
    evalEvery: a.has('eval-every') ? a.num('eval-every') : D.evalEvery,
    lrDecay: a.num('lr-decay'),
    unfreeze: hasStart ? { enabled: true, start: a.num('unfreeze-start'), every: a.num('unfreeze-every') } : { ...D.unfreeze, enabled: false },
    lora: lora ?? { ...D.lora, enabled: false },
    precision: a.str('precision') === 'f16' ? 'f16' : 'f32',
  };
}

/**
 * What the model's config alone rules out, checked before its weights are read: a sequence
 * longer than n_positions (a usage error), a head size the attention kernel cannot hold.
 */
export function checkRunFitsModel(s: RunSettings, config: GPT2Config): void {
  if (s.seq > config.nPositions) throw new UsageError(`train: --seq ${s.seq} exceeds the model's n_positions ${config.nPositions}.`);
  const hs = config.nEmbd / config.nHead;
  if (hs > ATTENTION_MAX_HEAD_SIZE) {
    throw new ShapeError(
      `train: the model's head size is ${hs} (n_embd ${config.nEmbd} / n_head ${config.nHead}), above the attention kernel's limit of ` +
        `${ATTENTION_MAX_HEAD_SIZE}. The studio cannot train this model; GPT-2's sizes (head size 64) all fit.`,
    );
  }
}
