// The one table of run defaults and the one mapping from run settings to the engine's
// TrainRunConfig. The page (worker/settings.ts, the store), the command line (`train`'s option
// defaults and --help) and the engine all take their defaults from RUN_DEFAULTS; where the page
// starts differently on purpose, PAGE_OVERRIDES says so and why. Pure TypeScript with no GPU
// import (only erased `import type`s), so the page's bundle can use it.
import type { GPT2Config } from '../model/config.ts';
import type { LoraConfig } from '../model/lora.ts';
import type { Precision } from '../model/weights.ts';
import { StudioError } from '../errors.ts';
import type { TrainRunConfig } from './config.ts';
import type { ScheduleConfig, ScheduleKind } from './schedule.ts';

/** A run setting that cannot become a run (a frozen group that does not exist, nothing left to train). */
export class RunSettingsError extends StudioError {}

export interface LoraRunSettings {
  enabled: boolean;
  /** rank r of A (r, in) and B (out, r) */
  r: number;
  /** lora_alpha: the update is scaled by α/r (α/√r with rsLoRA) */
  alpha: number;
  /** dropout on the LoRA input only (PEFT's lora_dropout) */
  dropout: number;
  /** PEFT target_modules, matched by suffix */
  targets: readonly string[];
  /** use_rslora; absent = false */
  rslora?: boolean;
}

/** Everything that decides a training run, as plain data: what the page edits and the CLI parses. */
export interface RunSettings {
  /** peak learning rate of the top group */
  lr: number;
  schedule: ScheduleKind;
  /** warmup: whole steps, or a fraction of the run when below 1 */
  warmup: number;
  /** linear/cosine decay ends at this fraction of the peak */
  minLrRatio: number;
  /** slanted triangular: fraction of steps spent rising */
  cutFrac: number;
  /** slanted triangular: peak / lowest rate */
  stlrRatio: number;
  /** optimizer steps */
  steps: number;
  /** rows per micro-batch (B) */
  batch: number;
  /** tokens per row (T ≤ n_positions) */
  seq: number;
  /** micro-batches per optimizer step */
  gradAccum: number;
  /** AdamW decoupled weight decay (≥ 2-D tensors only) */
  weightDecay: number;
  /** max global gradient norm; 0 = off */
  gradClip: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** one rate for embd/attn/resid dropout; null = the model config's own three rates */
  dropout: number | null;
  /** seed of the window order, dropout masks and LoRA's initial A */
  seed: number;
  order: 'sequential' | 'shuffled';
  /** evaluate the held-out data every N optimizer steps; 0 = only at the end */
  evalEvery: number;
  /** discriminative factor f (1 = off): group d trains at lr / f^(L+1−d) */
  lrDecay: number;
  /** gradual unfreezing: `start` groups open at first (from the top), one more every `every` steps */
  unfreeze: { enabled: boolean; start: number; every: number };
  lora: LoraRunSettings;
  /** 'f16': matmuls read f16 weight copies (needs the adapter's shader-f16); 'f32': float32 throughout */
  precision: Precision;
}

/**
 * The defaults of a run, each with the reason it was chosen. Hugging Face's Trainer is the
 * reference a fine-tuning user knows (transformers' TrainingArguments), torch.optim.AdamW the
 * optimizer's, PEFT's LoraConfig LoRA's, ULMFiT (Howard & Ruder 2018) the schedule extras'.
 */
export const RUN_DEFAULTS: Readonly<RunSettings> = Object.freeze({
  // TrainingArguments.learning_rate = 5e-5: the rate for fine-tuning a pretrained model.
  lr: 5e-5,
  // TrainingArguments.lr_scheduler_type = "linear" (decay to 0).
  schedule: 'linear' as ScheduleKind,
  // TrainingArguments.warmup_steps = 0: small rates on a pretrained model stay stable without it.
  warmup: 0,
  // HF's linear and cosine schedules decay to 0.
  minLrRatio: 0,
  // ULMFiT's slanted triangular: a climb over the first 10 % of steps, the lowest rate 1/32 of the peak.
  cutFrac: 0.1,
  stlrRatio: 32,
  // Long enough to watch the loss fall on a small corpus, short enough for a first run.
  steps: 200,
  // Small enough for an integrated GPU or a software adapter; accumulate for larger batches.
  batch: 4,
  // Enough context for sentences; activations grow with B·T and stay small at 4 × 128 beside
  // GPT-2 124M's ~2 GB of weights, gradients and AdamW moments.
  seq: 128,
  gradAccum: 1,
  // TrainingArguments.weight_decay = 0.0.
  weightDecay: 0,
  // TrainingArguments.max_grad_norm = 1.0.
  gradClip: 1,
  // torch.optim.AdamW's betas (0.9, 0.999) and eps 1e-8 (also TrainingArguments' adam_* defaults).
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  // The model's own embd/attn/resid_pdrop (0.1 for GPT-2), as from_pretrained() trains it.
  dropout: null,
  // TrainingArguments.seed = 42.
  seed: 42,
  // The Trainer's RandomSampler shuffles the training set every epoch.
  order: 'shuffled' as const,
  // Evaluate only at the end unless asked (TrainingArguments.eval_strategy = "no" until set).
  evalEvery: 0,
  // Discriminative rates off; 1.05 … 1.35 suits GPT-2's 14 groups when turned on.
  lrDecay: 1,
  // ULMFiT opens the top group first (k = 1); one more every 20 steps is ten groups in a default run.
  unfreeze: Object.freeze({ enabled: false, start: 1, every: 20 }),
  // PEFT's LoraConfig: r 8, lora_alpha 8, lora_dropout 0.0, use_rslora False; the target for
  // GPT-2 is PEFT's TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING['gpt2'] = ['c_attn'].
  lora: Object.freeze({ enabled: false, r: 8, alpha: 8, dropout: 0, targets: Object.freeze(['c_attn']) as readonly string[], rslora: false }),
  // float32 everywhere: the precision the PyTorch parity and continuation are checked in, and the
  // one every adapter runs. f16 (matmul weight copies) is opt-in where the adapter has shader-f16.
  precision: 'f32' as Precision,
});

/**
 * Where the page's first run starts differently from RUN_DEFAULTS, on purpose. Everything else
 * on the page is RUN_DEFAULTS (a unit test holds both the page and the CLI to this).
 */
export const PAGE_OVERRIDES = Object.freeze({
  // The page's first run is the built-in demo on whatever GPU the visitor has (often integrated
  // or software): 64 tokens per row keeps a step well under a second there.
  seq: 64,
  // The page holds out a validation split by default, so it evaluates as it goes: eight points
  // over the default 200 steps, enough to watch the curve.
  evalEvery: 25,
  // The page shows one dropout field, so it needs a number: 0.1 is GPT-2's own rate.
  dropout: 0.1,
} satisfies Partial<RunSettings>);

/**
 * The page's learning rate for a freshly initialized model (the built-in demo): random weights
 * need larger steps than the 5e-5 that fine-tunes pretrained ones. The page suggests it when such
 * a model loads, unless the user set the rate by hand.
 */
export const UNTRAINED_MODEL_LR = 3e-3;

/** The default schedule as the engine's ScheduleConfig (see RUN_DEFAULTS). */
export const DEFAULT_SCHEDULE: Readonly<ScheduleConfig> = Object.freeze({
  kind: RUN_DEFAULTS.schedule, warmup: RUN_DEFAULTS.warmup, minLrRatio: RUN_DEFAULTS.minLrRatio, cutFrac: RUN_DEFAULTS.cutFrac, ratio: RUN_DEFAULTS.stlrRatio,
});

/** LoRA's defaults as the engine's LoraConfig (PEFT's, see RUN_DEFAULTS.lora). */
export const DEFAULT_LORA: Readonly<LoraConfig> = Object.freeze(loraConfigOf({ lora: { ...RUN_DEFAULTS.lora, enabled: true } })!);

/** The engine's LoRA settings for a run, or null when the run trains the weights themselves. */
export function loraConfigOf(s: Pick<RunSettings, 'lora'>): LoraConfig | null {
  const l = s.lora;
  return l.enabled ? { r: l.r, alpha: l.alpha, dropout: l.dropout, targets: [...l.targets], rslora: l.rslora ?? false } : null;
}

export interface RunConfigOptions {
  /** depth groups the user froze (0 embeddings, i + 1 block i, L + 1 ln_f) */
  frozen: ReadonlySet<number>;
  /** optimizer steps, when the host computed them (e.g. from epochs); default s.steps */
  steps?: number;
  /** held-out token ids to evaluate every s.evalEvery steps and at the end */
  evalTokens?: ArrayLike<number> | null;
}

/**
 * The one mapping from run settings to the engine's TrainRunConfig, used by the CLI's `train`
 * and the page's worker alike. Checks what only the model can tell (frozen groups exist,
 * something is left to train); value ranges are the callers' validators' (they know how to say
 * it in their own terms: a form field or a flag).
 */
export function toRunConfig(s: RunSettings, model: Pick<GPT2Config, 'nLayer' | 'embdPdrop' | 'attnPdrop' | 'residPdrop'>, o: RunConfigOptions): TrainRunConfig {
  const groups = model.nLayer + 2;
  for (const g of o.frozen) {
    if (!(Number.isInteger(g) && g >= 0 && g < groups)) {
      throw new RunSettingsError(`Frozen group ${g} does not exist in a model with ${model.nLayer} blocks (groups are 0 … ${groups - 1}).`);
    }
  }
  if (!s.unfreeze.enabled && o.frozen.size === groups) {
    throw new RunSettingsError('Every layer is frozen: nothing would train. Unfreeze at least one layer.');
  }
  const p = s.dropout;
  return {
    steps: o.steps ?? s.steps,
    batch: s.batch,
    seq: s.seq,
    gradAccum: s.gradAccum,
    lr: s.lr,
    schedule: { kind: s.schedule, warmup: s.warmup, minLrRatio: s.minLrRatio, cutFrac: s.cutFrac, ratio: s.stlrRatio },
    lrDecay: s.lrDecay,
    unfreeze: s.unfreeze.enabled ? { start: s.unfreeze.start, every: s.unfreeze.every } : null,
    beta1: s.beta1,
    beta2: s.beta2,
    eps: s.eps,
    weightDecay: s.weightDecay,
    gradClip: s.gradClip,
    dropout: p === null ? { embd: model.embdPdrop, attn: model.attnPdrop, resid: model.residPdrop } : { embd: p, attn: p, resid: p },
    seed: s.seed,
    order: s.order,
    frozen: new Set(o.frozen),
    precision: s.precision,
    evaluation: o.evalTokens ? { every: s.evalEvery, tokens: o.evalTokens } : null,
  };
}
