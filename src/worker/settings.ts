// The studio's run settings as plain data: training, sampling and evaluation options with their
// defaults (the engine's one table, engine/train/run-settings.ts, plus the page's own), and the
// checks that explain a bad value where it is typed (the page) and again before a run starts
// (the worker). Pure TypeScript with no GPU: both sides of the protocol use it.
import { MAX_MICRO_BATCHES } from '../engine/random.ts';
import { DEFAULT_SAMPLING } from '../engine/generate/sampling.ts';
import { PAGE_OVERRIDES, RUN_DEFAULTS, UNTRAINED_MODEL_LR, type LoraRunSettings, type RunSettings } from '../engine/train/run-settings.ts';
import type { ScheduleKind } from '../engine/train/schedule.ts';

export type { ScheduleKind };

export type LoraTarget = 'c_attn' | 'c_proj' | 'c_fc';
export const LORA_TARGETS: readonly LoraTarget[] = ['c_attn', 'c_proj', 'c_fc'];

/** The page's LoRA settings: the engine's, with the targets the page offers. */
export interface LoraSettings extends LoraRunSettings {
  targets: LoraTarget[];
}

/**
 * The page's run settings: the engine's RunSettings (engine/train/run-settings.ts) with one
 * dropout number and the page's own choices of run length, validation split and sampling.
 */
export interface TrainSettings extends RunSettings {
  /** embd/attn/resid dropout together */
  dropout: number;
  /** run length in optimizer steps, or in epochs over the training windows */
  lengthUnit: 'steps' | 'epochs';
  epochs: number;
  /** fraction of the corpus held out for validation */
  valFraction: number;
  /** generate a sample every N steps; 0 = only before and after */
  sampleEvery: number;
  lora: LoraSettings;
  /** save the run in the browser every N minutes of training (0: only at pause, stop and finish) */
  autosaveMinutes: number;
  /**
   * reduce rows (LayerNorm, cross-entropy, the gradient norm) with WebGPU subgroup operations, as
   * the CLI's `train --subgroups`: needs the adapter's 'subgroups' feature; the last bits of the
   * sums differ from the default kernels', so it is off unless asked for
   */
  subgroups: boolean;
}

export interface SampleSettings {
  prompt: string;
  /** 0 = greedy */
  temperature: number;
  /** 0 = off */
  topK: number;
  /** 1 = off */
  topP: number;
  maxNewTokens: number;
  seed: number;
}

/**
 * The page's first run: the engine's RUN_DEFAULTS with the page's intentional differences
 * (PAGE_OVERRIDES, each with its reason, next to the table), plus what only the page has.
 * The learning rate is RUN_DEFAULTS' 5e-5 for a pretrained model; the page raises it for a
 * freshly initialized one such as the built-in demo (see suggestedLr).
 */
export const DEFAULT_TRAIN: TrainSettings = {
  ...RUN_DEFAULTS,
  ...PAGE_OVERRIDES,
  lengthUnit: 'steps',
  epochs: 1,
  // A tenth held out: enough windows for a stable validation loss on the sample corpus.
  valFraction: 0.1,
  // As often as the evaluation, so the samples change along the curve.
  sampleEvery: PAGE_OVERRIDES.evalEvery,
  // A save of GPT-2 124M (weights and Adam moments, 1.4 GB) takes seconds; every 2 minutes keeps
  // its cost near the 5% budget measured in bench/autosave.ts, and a crash loses at most 2 minutes.
  autosaveMinutes: 2,
  // The default kernels: the sums the PyTorch parity tests check, bit for bit the CLI's default.
  subgroups: false,
  unfreeze: { ...RUN_DEFAULTS.unfreeze },
  lora: { ...RUN_DEFAULTS.lora, targets: RUN_DEFAULTS.lora.targets.filter((t): t is LoraTarget => (LORA_TARGETS as readonly string[]).includes(t)) },
};

/**
 * The page's samples. HF generate()'s defaults (the engine's DEFAULT_SAMPLING, which the CLI's
 * `generate` uses: temperature 1, top-k 50, top-p 1) read as noise on a barely trained model, so
 * the page samples a little sharper (temperature 0.8, nucleus 0.95), with a short continuation.
 */
export const DEFAULT_SAMPLE: SampleSettings = {
  prompt: 'First Citizen:\n',
  temperature: 0.8,
  topK: DEFAULT_SAMPLING.topK,
  topP: 0.95,
  maxNewTokens: 40,
  seed: 1,
};

/** Learning rate suggested for a model: pretrained checkpoints fine-tune at 5e-5; freshly initialized weights learn at ~3e-3. */
export function suggestedLr(pretrained: boolean): number {
  return pretrained ? RUN_DEFAULTS.lr : UNTRAINED_MODEL_LR;
}

/** What the checks know about the loaded model and corpus (undefined while nothing is loaded). */
export interface SettingsContext {
  nPositions?: number;
  nLayer?: number;
  /** training tokens after the split */
  trainTokens?: number;
  /** whether the adapter offers shader-f16 (undefined while it is not known) */
  hasF16?: boolean;
  /** whether the adapter offers subgroups (undefined while it is not known) */
  hasSubgroups?: boolean;
}

export type TrainErrors = Partial<Record<keyof TrainSettings | `unfreeze.${'start' | 'every'}` | `lora.${'r' | 'alpha' | 'dropout' | 'targets'}`, string>>;

const isInt = (v: number) => Number.isInteger(v);

/** Optimizer steps of a run: the steps given, or ⌈epochs · W / (B · accumulation)⌉ over W training windows. */
export function runSteps(s: TrainSettings, trainTokens: number | undefined): number {
  if (s.lengthUnit === 'steps') return s.steps;
  if (trainTokens === undefined || !(s.seq >= 1)) return 0;
  const W = Math.max(0, Math.floor((trainTokens - 1) / s.seq));
  return Math.max(1, Math.ceil((s.epochs * W) / Math.max(1, s.batch * s.gradAccum)));
}

/** Every problem with `s`, keyed by field, each saying what is wrong and what would do. */
export function validateTrain(s: TrainSettings, c: SettingsContext = {}): TrainErrors {
  const e: TrainErrors = {};
  if (s.precision !== 'f32' && s.precision !== 'f16') e.precision = 'Precision is f32 or f16.';
  else if (s.precision === 'f16' && c.hasF16 === false) {
    e.precision = "f16 needs the WebGPU feature 'shader-f16', which this adapter does not offer (see the Adapter panel). Use f32.";
  }
  if (s.subgroups && c.hasSubgroups === false) {
    e.subgroups = "Subgroup reductions need the WebGPU feature 'subgroups', which this adapter does not offer (see the Adapter panel). Leave them off.";
  }
  if (!(Number.isFinite(s.autosaveMinutes) && s.autosaveMinutes >= 0)) e.autosaveMinutes = 'Save every N minutes: a number ≥ 0 (0 saves only at pause, stop and finish).';
  if (!(Number.isFinite(s.lr) && s.lr > 0)) e.lr = 'The learning rate must be a number above 0 (5e-5 suits a pretrained GPT-2).';
  else if (s.lr > 0.1) e.lr = `A learning rate of ${s.lr} makes AdamW diverge; use at most 0.1 (1e-4 … 3e-3 is usual).`;
  if (!(Number.isFinite(s.warmup) && s.warmup >= 0) || (s.warmup >= 1 && !isInt(s.warmup))) {
    e.warmup = 'Warmup is a whole number of steps (0 for none) or a fraction of the run below 1.';
  }
  if (!(s.minLrRatio >= 0 && s.minLrRatio <= 1)) e.minLrRatio = 'The minimum ratio is between 0 and 1 (0 decays to zero).';
  if (!(s.cutFrac > 0 && s.cutFrac <= 1)) e.cutFrac = 'The cut fraction is in (0, 1]; ULMFiT uses 0.1.';
  if (!(s.stlrRatio >= 1 && Number.isFinite(s.stlrRatio))) e.stlrRatio = 'The ratio is at least 1; ULMFiT uses 32.';
  if (s.lengthUnit === 'steps') {
    if (!(isInt(s.steps) && s.steps >= 1)) e.steps = 'Steps must be a whole number of at least 1.';
  } else if (!(Number.isFinite(s.epochs) && s.epochs > 0)) {
    e.epochs = 'Epochs must be a number above 0 (fractions such as 0.5 are fine).';
  }
  if (!(isInt(s.batch) && s.batch >= 1)) e.batch = 'The batch size must be a whole number of at least 1.';
  if (!(isInt(s.seq) && s.seq >= 1)) e.seq = 'The sequence length must be a whole number of at least 1.';
  else if (c.nPositions !== undefined && s.seq > c.nPositions) {
    e.seq = `The model reads at most ${c.nPositions} positions (n_positions); use ${c.nPositions} or less.`;
  } else if (c.trainTokens !== undefined && c.trainTokens < s.seq + 1) {
    e.seq = `The training split has ${c.trainTokens} tokens; one window of ${s.seq} needs ${s.seq + 1}. Lower it or add text.`;
  }
  if (!(isInt(s.gradAccum) && s.gradAccum >= 1 && s.gradAccum <= MAX_MICRO_BATCHES)) {
    e.gradAccum = `Accumulation is a whole number from 1 to ${MAX_MICRO_BATCHES}.`;
  }
  if (!(Number.isFinite(s.weightDecay) && s.weightDecay >= 0)) e.weightDecay = 'Weight decay must be 0 or more (0.01 … 0.1 is usual).';
  if (!(Number.isFinite(s.gradClip) && s.gradClip >= 0)) e.gradClip = 'The clipping norm must be 0 (off) or more; 1.0 is usual.';
  if (!(s.dropout >= 0 && s.dropout < 1)) e.dropout = 'Dropout is a probability in [0, 1); GPT-2 uses 0.1.';
  if (!(isInt(s.seed) && s.seed >= 0 && s.seed <= 2 ** 32 - 1)) e.seed = 'The seed is a whole number from 0 to 4294967295.';
  if (!(s.valFraction >= 0 && s.valFraction < 1)) e.valFraction = 'The validation fraction is in [0, 1); 0.1 holds out a tenth.';
  if (!(isInt(s.evalEvery) && s.evalEvery >= 0)) e.evalEvery = 'Evaluate every N steps: a whole number, 0 for only before and after.';
  if (!(isInt(s.sampleEvery) && s.sampleEvery >= 0)) e.sampleEvery = 'Sample every N steps: a whole number, 0 for only before and after.';
  if (!(Number.isFinite(s.lrDecay) && s.lrDecay >= 1)) {
    e.lrDecay = s.lrDecay > 0 && s.lrDecay < 1
      ? `f must be ≥ 1: for a layer-wise decay of ${s.lrDecay} use f = ${(1 / s.lrDecay).toFixed(3)}.`
      : 'f must be at least 1 (1 turns discriminative rates off; 1.05 … 1.35 suits GPT-2).';
  }
  if (s.unfreeze.enabled) {
    const groups = c.nLayer === undefined ? undefined : c.nLayer + 2;
    if (!(isInt(s.unfreeze.start) && s.unfreeze.start >= 1)) e['unfreeze.start'] = 'Open at least one group at the start (ULMFiT opens 1).';
    else if (groups !== undefined && s.unfreeze.start > groups) e['unfreeze.start'] = `The model has ${groups} groups; open at most ${groups}.`;
    if (!(isInt(s.unfreeze.every) && s.unfreeze.every >= 1)) e['unfreeze.every'] = 'Open one more group every N steps: a whole number of at least 1.';
  }
  if (s.lora.enabled) {
    if (!(isInt(s.lora.r) && s.lora.r >= 1 && s.lora.r <= 256)) e['lora.r'] = 'The rank r is a whole number from 1 to 256 (8 is usual).';
    if (!(Number.isFinite(s.lora.alpha) && s.lora.alpha > 0)) e['lora.alpha'] = 'α must be above 0 (often r or 2r).';
    if (!(s.lora.dropout >= 0 && s.lora.dropout < 1)) e['lora.dropout'] = 'LoRA dropout is a probability in [0, 1).';
    if (s.lora.targets.length === 0) e['lora.targets'] = 'Choose at least one module for LoRA (c_attn is usual).';
  }
  return e;
}

export type SampleErrors = Partial<Record<keyof SampleSettings, string>>;

export function validateSample(s: SampleSettings, c: { nPositions?: number } = {}): SampleErrors {
  const e: SampleErrors = {};
  if (!(Number.isFinite(s.temperature) && s.temperature >= 0 && s.temperature <= 5)) e.temperature = 'Temperature is from 0 (greedy) to 5; 0.7 … 1 reads well.';
  if (!(isInt(s.topK) && s.topK >= 0)) e.topK = 'top-k is a whole number, 0 for off.';
  if (!(s.topP > 0 && s.topP <= 1)) e.topP = 'top-p is in (0, 1]; 1 turns it off.';
  if (!(isInt(s.maxNewTokens) && s.maxNewTokens >= 1)) e.maxNewTokens = 'Generate at least one token.';
  else if (c.nPositions !== undefined && s.maxNewTokens >= c.nPositions) e.maxNewTokens = `The model reads at most ${c.nPositions} positions; generate fewer tokens.`;
  if (!(isInt(s.seed) && s.seed >= 0 && s.seed <= 2 ** 32 - 1)) e.seed = 'The seed is a whole number from 0 to 4294967295.';
  return e;
}

export function hasErrors(e: object): boolean {
  return Object.keys(e).length > 0;
}
