// Learning-rate multipliers against values worked out by hand from Hugging Face's formulas
// (optimization.py) and ULMFiT's slanted triangular rate (Howard & Ruder 2018, eq. 3).
import { describe, expect, it } from 'vitest';
import { lrMultiplier, ScheduleConfigError, scheduleCurve, warmupSteps, type ScheduleConfig } from '../../../src/engine/train/schedule.ts';
import { DEFAULT_SCHEDULE } from '../../../src/engine/train/run-settings.ts';

const cfg = (o: Partial<ScheduleConfig>): ScheduleConfig => ({ ...DEFAULT_SCHEDULE, ...o });

// [name, schedule, step, total, expected]. Each expected value is written as the arithmetic
// of the formula, not as a value produced by the code under test.
const cases: Array<[string, ScheduleConfig, number, number, number]> = [
  // HF get_constant_schedule_with_warmup: step < warmup ? step / warmup : 1
  ['constant, no warmup, first step', cfg({ kind: 'constant' }), 0, 10, 1],
  ['constant, no warmup, last step', cfg({ kind: 'constant' }), 9, 10, 1],
  ['constant warmup 4, step 0', cfg({ kind: 'constant', warmup: 4 }), 0, 10, 0],
  ['constant warmup 4, step 3', cfg({ kind: 'constant', warmup: 4 }), 3, 10, 3 / 4],
  ['constant warmup 4, step 4', cfg({ kind: 'constant', warmup: 4 }), 4, 10, 1],
  // HF get_linear_schedule_with_warmup(warmup 10, total 100):
  // step < 10 ? step / 10 : max(0, (100 − step) / 90)
  ['HF linear, step 0', cfg({ kind: 'linear', warmup: 10 }), 0, 100, 0],
  ['HF linear, step 5', cfg({ kind: 'linear', warmup: 10 }), 5, 100, 0.5],
  ['HF linear, step 10 (peak)', cfg({ kind: 'linear', warmup: 10 }), 10, 100, 1],
  ['HF linear, step 55', cfg({ kind: 'linear', warmup: 10 }), 55, 100, 45 / 90],
  ['HF linear, step 99', cfg({ kind: 'linear', warmup: 10 }), 99, 100, 1 / 90],
  ['HF linear, step 100', cfg({ kind: 'linear', warmup: 10 }), 100, 100, 0],
  ['linear, no warmup, step 0', cfg({ kind: 'linear' }), 0, 8, 1],
  ['linear, no warmup, step 2', cfg({ kind: 'linear' }), 2, 8, 6 / 8],
  // Warmup as a fraction: ⌈0.25 · 10⌉ = 3 steps; then (10 − step)/7.
  ['linear warmup 0.25 of 10, step 1', cfg({ kind: 'linear', warmup: 0.25 }), 1, 10, 1 / 3],
  ['linear warmup 0.25 of 10, step 3', cfg({ kind: 'linear', warmup: 0.25 }), 3, 10, 1],
  ['linear warmup 0.25 of 10, step 6', cfg({ kind: 'linear', warmup: 0.25 }), 6, 10, 4 / 7],
  // With a minimum ratio r the decayed value is r + (1 − r)·HF.
  ['linear to 0.1, step 55 of 100, warmup 10', cfg({ kind: 'linear', warmup: 10, minLrRatio: 0.1 }), 55, 100, 0.1 + 0.9 * 0.5],
  ['linear to 0.1, warmup still from 0', cfg({ kind: 'linear', warmup: 10, minLrRatio: 0.1 }), 0, 100, 0],
  ['linear to 0.1, step 100', cfg({ kind: 'linear', warmup: 10, minLrRatio: 0.1 }), 100, 100, 0.1],
  // HF get_cosine_schedule_with_warmup(warmup 10, total 110): progress = (step − 10)/100,
  // max(0, 0.5·(1 + cos(π·progress))).
  ['HF cosine, step 5', cfg({ kind: 'cosine', warmup: 10 }), 5, 110, 0.5],
  ['HF cosine, step 10 (peak)', cfg({ kind: 'cosine', warmup: 10 }), 10, 110, 1],
  ['HF cosine, step 35 (progress ¼)', cfg({ kind: 'cosine', warmup: 10 }), 35, 110, 0.5 * (1 + Math.SQRT1_2)],
  ['HF cosine, step 60 (progress ½)', cfg({ kind: 'cosine', warmup: 10 }), 60, 110, 0.5],
  ['HF cosine, step 85 (progress ¾)', cfg({ kind: 'cosine', warmup: 10 }), 85, 110, 0.5 * (1 - Math.SQRT1_2)],
  ['HF cosine, step 110 (end)', cfg({ kind: 'cosine', warmup: 10 }), 110, 110, 0],
  // get_cosine_with_min_lr_schedule_with_warmup: factor·(1 − r) + r
  ['cosine to 0.2, progress ½', cfg({ kind: 'cosine', warmup: 10, minLrRatio: 0.2 }), 60, 110, 0.2 + 0.8 * 0.5],
  ['cosine to 0.2, end', cfg({ kind: 'cosine', warmup: 10, minLrRatio: 0.2 }), 110, 110, 0.2],
  ['cosine, no warmup, step 0', cfg({ kind: 'cosine' }), 0, 4, 1],
  ['cosine, no warmup, step 2 of 4', cfg({ kind: 'cosine' }), 2, 4, 0.5],
  // ULMFiT slanted triangular, T = 100, cut_frac 0.1, ratio 32: cut = 10;
  // p = t/10 before the cut, 1 − (t − 10)/(10·9) after; (1 + 31p)/32.
  ['STLR t 0', cfg({ kind: 'slanted' }), 0, 100, 1 / 32],
  ['STLR t 5', cfg({ kind: 'slanted' }), 5, 100, (1 + 31 * 0.5) / 32],
  ['STLR t 10 (peak)', cfg({ kind: 'slanted' }), 10, 100, 1],
  ['STLR t 55', cfg({ kind: 'slanted' }), 55, 100, (1 + 31 * 0.5) / 32],
  ['STLR t 99', cfg({ kind: 'slanted' }), 99, 100, (1 + 31 * (1 / 90)) / 32],
  ['STLR t 100', cfg({ kind: 'slanted' }), 100, 100, 1 / 32],
  // T = 25, cut_frac 0.2, ratio 8: cut = 5; after the cut the span is 5·(5 − 1) = 20.
  ['STLR T 25 cut 0.2 ratio 8, t 2', cfg({ kind: 'slanted', cutFrac: 0.2, ratio: 8 }), 2, 25, (1 + 7 * 0.4) / 8],
  ['STLR T 25 cut 0.2 ratio 8, t 15', cfg({ kind: 'slanted', cutFrac: 0.2, ratio: 8 }), 15, 25, (1 + 7 * 0.5) / 8],
  // T = 25, cut_frac 0.1: cut = ⌊2.5⌋ = 2 and the decay spans 2·9 = 18 steps, so it reaches
  // the bottom at t = 20, before the end; past it p is held at 0 (the formula would go negative).
  ['STLR T 25 cut 0.1, t 11', cfg({ kind: 'slanted' }), 11, 25, (1 + 31 * 0.5) / 32],
  ['STLR T 25 cut 0.1, t 20', cfg({ kind: 'slanted' }), 20, 25, 1 / 32],
  ['STLR T 25 cut 0.1, t 24', cfg({ kind: 'slanted' }), 24, 25, 1 / 32],
  // T = 5, cut_frac 0.1: cut = ⌊0.5⌋ = 0, no climb; decays over all 5 steps.
  ['STLR too short to climb, t 0', cfg({ kind: 'slanted' }), 0, 5, 1],
  ['STLR too short to climb, t 2', cfg({ kind: 'slanted' }), 2, 5, (1 + 31 * (3 / 5)) / 32],
  ['STLR ignores warmup', cfg({ kind: 'slanted', warmup: 50 }), 10, 100, 1],
];

describe('lrMultiplier', () => {
  it.each(cases)('%s', (_name, s, step, total, expected) => {
    expect(lrMultiplier(s, step, total)).toBeCloseTo(expected, 14);
  });

  it('holds the final value past the end instead of climbing again (cosine)', () => {
    const s = cfg({ kind: 'cosine', minLrRatio: 0.1 });
    expect(lrMultiplier(s, 150, 100)).toBeCloseTo(0.1, 14);
    expect(lrMultiplier(cfg({ kind: 'slanted' }), 150, 100)).toBeCloseTo(1 / 32, 14);
  });

  it('warmup longer than the run never reaches the peak', () => {
    const s = cfg({ kind: 'linear', warmup: 20 });
    expect(lrMultiplier(s, 9, 10)).toBeCloseTo(9 / 20, 14);
  });

  it('refuses settings it cannot evaluate', () => {
    expect(() => lrMultiplier(cfg({ warmup: -1 }), 0, 10)).toThrow(ScheduleConfigError);
    expect(() => lrMultiplier(cfg({ warmup: 2.5 }), 0, 10)).toThrow(/whole number of steps/);
    expect(() => lrMultiplier(cfg({ minLrRatio: 1.5 }), 0, 10)).toThrow(ScheduleConfigError);
    expect(() => lrMultiplier(cfg({ kind: 'slanted', cutFrac: 0 }), 0, 10)).toThrow(/cut fraction/);
    expect(() => lrMultiplier(cfg({ kind: 'slanted', ratio: 0.5 }), 0, 10)).toThrow(/ratio/);
    expect(() => lrMultiplier(cfg({}), -1, 10)).toThrow(ScheduleConfigError);
    expect(() => lrMultiplier(cfg({}), 1.5, 10)).toThrow(ScheduleConfigError);
    expect(() => lrMultiplier(cfg({}), 0, 0)).toThrow(/Total steps/);
  });
});

describe('warmupSteps', () => {
  it.each([
    [0, 100, 0],
    [7, 100, 7],
    [0.1, 100, 10],
    [0.1, 95, 10], // ⌈9.5⌉, as HF rounds warmup_ratio up
    [0.05, 3, 1],
  ])('warmup %s of %s steps is %s', (w, total, expected) => {
    expect(warmupSteps(cfg({ warmup: w }), total)).toBe(expected);
  });
});

describe('scheduleCurve', () => {
  it('lists the multiplier at every step', () => {
    const s = cfg({ kind: 'linear', warmup: 2 });
    // steps 0 … 5 of 6: 0, ½, then (6 − t)/4
    expect([...scheduleCurve(s, 6)]).toEqual([0, 0.5, 1, 0.75, 0.5, 0.25]);
  });
});
