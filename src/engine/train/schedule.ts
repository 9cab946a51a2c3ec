// Learning-rate schedules: the multiplier applied to the base learning rate at each optimizer step.
//
// Semantics follow Hugging Face transformers' optimization.py (get_constant_schedule_with_warmup,
// get_linear_schedule_with_warmup, get_cosine_schedule_with_warmup and
// get_cosine_with_min_lr_schedule_with_warmup): the multiplier is a function of the 0-based
// optimizer step, so the first step of a linear warmup runs at multiplier 0, exactly as a
// torch LambdaLR does before its first scheduler.step(). The slanted triangular schedule is
// ULMFiT's (Howard & Ruder 2018, "Universal Language Model Fine-tuning for Text
// Classification", eq. 3).
import { StudioError } from '../errors.ts';

/** A schedule setting that cannot be evaluated (negative warmup, ratio outside its range ...). */
export class ScheduleConfigError extends StudioError {}

export type ScheduleKind = 'constant' | 'linear' | 'cosine' | 'slanted';

export interface ScheduleConfig {
  kind: ScheduleKind;
  /**
   * Warmup length for constant, linear and cosine: a whole number of optimizer steps when ≥ 1,
   * a fraction of the total steps when in (0, 1) (rounded up, as HF's TrainingArguments
   * .get_warmup_steps does with warmup_ratio), 0 for none. Ignored by 'slanted', whose warmup
   * is cutFrac.
   */
  warmup: number;
  /** Linear and cosine decay end at this fraction of the base rate instead of 0. */
  minLrRatio: number;
  /** Slanted triangular: fraction of the steps spent increasing the rate. */
  cutFrac: number;
  /** Slanted triangular: how much smaller the lowest rate is than the peak. */
  ratio: number;
}

// The default schedule (HF Trainer's linear decay, no warmup) is in run-settings.ts with the
// other run defaults.

function checkConfig(s: ScheduleConfig): void {
  if (!Number.isFinite(s.warmup) || s.warmup < 0 || (s.warmup >= 1 && !Number.isInteger(s.warmup))) {
    throw new ScheduleConfigError(
      `Warmup ${s.warmup} is not valid: give a whole number of steps (0 for none) or a fraction of the run between 0 and 1.`,
    );
  }
  if (!(s.minLrRatio >= 0 && s.minLrRatio <= 1)) {
    throw new ScheduleConfigError(`Minimum learning-rate ratio ${s.minLrRatio} must be between 0 and 1 (0 decays to zero).`);
  }
  if (s.kind === 'slanted') {
    if (!(s.cutFrac > 0 && s.cutFrac <= 1)) {
      throw new ScheduleConfigError(`Slanted triangular cut fraction ${s.cutFrac} must be in (0, 1]; ULMFiT uses 0.1.`);
    }
    if (!(s.ratio >= 1 && Number.isFinite(s.ratio))) {
      throw new ScheduleConfigError(`Slanted triangular ratio ${s.ratio} must be at least 1; ULMFiT uses 32.`);
    }
  }
}

function checkSteps(step0: number, totalSteps: number): void {
  if (!Number.isInteger(totalSteps) || totalSteps < 1) {
    throw new ScheduleConfigError(`Total steps ${totalSteps} must be a positive whole number.`);
  }
  if (!Number.isInteger(step0) || step0 < 0) {
    throw new ScheduleConfigError(`Step ${step0} must be a whole number ≥ 0 (steps count from 0).`);
  }
}

/** Warmup in optimizer steps: the given count, or ⌈fraction · total⌉ (HF get_warmup_steps). */
export function warmupSteps(s: ScheduleConfig, totalSteps: number): number {
  checkConfig(s);
  if (s.warmup >= 1 || s.warmup === 0) return s.warmup;
  return Math.ceil(s.warmup * totalSteps);
}

/**
 * The learning-rate multiplier at 0-based optimizer step `step0` of a run of `totalSteps`.
 * Steps at or past the end hold the final value (HF's cosine would climb again past the end;
 * a resumed or extended run should not see its rate rise).
 */
export function lrMultiplier(s: ScheduleConfig, step0: number, totalSteps: number): number {
  checkConfig(s);
  checkSteps(step0, totalSteps);
  const t = Math.min(step0, totalSteps);
  if (s.kind === 'slanted') return slantedTriangular(t, totalSteps, s.cutFrac, s.ratio);

  const warm = warmupSteps(s, totalSteps);
  // HF divides by max(1, warmup) so that a warmup of 0 never divides by zero.
  if (t < warm) return t / Math.max(1, warm);
  if (s.kind === 'constant') return 1;

  // Progress through the decay, 0 at the end of warmup and 1 at the last step.
  const progress = Math.min(1, (t - warm) / Math.max(1, totalSteps - warm));
  const decayed = s.kind === 'linear'
    ? Math.max(0, 1 - progress) // HF linear: (total − step) / (total − warmup)
    : Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress))); // HF cosine, num_cycles = 0.5
  // HF get_cosine_with_min_lr_schedule_with_warmup: factor·(1 − min_lr_rate) + min_lr_rate.
  return s.minLrRatio + (1 - s.minLrRatio) * decayed;
}

/**
 * ULMFiT's slanted triangular rate at iteration t of T, as a multiplier of the peak rate:
 * cut = ⌊T·cut_frac⌋; p = t/cut before the cut, else 1 − (t − cut)/(cut·(1/cut_frac − 1));
 * multiplier (1 + p·(ratio − 1))/ratio, so it climbs from 1/ratio to 1 and falls back.
 */
function slantedTriangular(t: number, T: number, cutFrac: number, ratio: number): number {
  const cut = Math.floor(T * cutFrac);
  let p: number;
  if (t < cut) {
    p = t / cut;
  } else {
    // A run too short for a climb (cut = 0) decays over all T steps instead of dividing by 0;
    // with cut_frac = 1 there is no decay phase. When T·cut_frac is not whole, the floor makes
    // cut·(1/cut_frac − 1) shorter than T − cut, so p reaches 0 before the end: hold it there,
    // as the formula alone would go on to a negative rate.
    const decayLen = cut === 0 ? T : cut * (1 / cutFrac - 1);
    p = decayLen > 0 ? Math.max(0, 1 - (t - cut) / decayLen) : 1;
  }
  return (1 + p * (ratio - 1)) / ratio;
}

/** The multiplier at every step of the run, for the schedule chart shown before training. */
export function scheduleCurve(s: ScheduleConfig, totalSteps: number): Float64Array {
  checkSteps(0, totalSteps);
  const out = new Float64Array(totalSteps); // (totalSteps,)
  for (let i = 0; i < totalSteps; i++) out[i] = lrMultiplier(s, i, totalSteps);
  return out;
}
