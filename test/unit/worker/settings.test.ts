// Run settings: each bad value gets a message naming what is wrong and what would do, checked
// against the loaded model and corpus; run length in steps or epochs.
import { describe, expect, it } from 'vitest';
import { DEFAULT_SAMPLE, DEFAULT_TRAIN, runSteps, validateSample, validateTrain, type TrainSettings } from '../../../src/worker/settings.ts';

const ok = (patch: Partial<TrainSettings> = {}): TrainSettings => ({ ...DEFAULT_TRAIN, ...patch });

describe('validateTrain', () => {
  it('accepts the defaults', () => {
    expect(validateTrain(DEFAULT_TRAIN, { nPositions: 1024, nLayer: 12, trainTokens: 10_000 })).toEqual({});
    expect(validateSample(DEFAULT_SAMPLE, { nPositions: 1024 })).toEqual({});
  });

  it.each<[string, Partial<TrainSettings>, keyof TrainSettings | string, RegExp]>([
    ['a zero learning rate', { lr: 0 }, 'lr', /above 0/],
    ['a rate that diverges', { lr: 0.5 }, 'lr', /at most 0\.1/],
    ['a fractional step count', { steps: 2.5 }, 'steps', /whole number/],
    ['no epochs', { lengthUnit: 'epochs', epochs: 0 }, 'epochs', /above 0/],
    ['a warmup of 2.5 steps', { warmup: 2.5 }, 'warmup', /whole number of steps/],
    ['a batch of 0', { batch: 0 }, 'batch', /at least 1/],
    ['too much accumulation', { gradAccum: 65 }, 'gradAccum', /1 to 64/],
    ['dropout of 1', { dropout: 1 }, 'dropout', /\[0, 1\)/],
    ['a negative seed', { seed: -1 }, 'seed', /0 to 4294967295/],
    ['a validation fraction of 1', { valFraction: 1 }, 'valFraction', /\[0, 1\)/],
    ['a layer-wise decay rate for f', { lrDecay: 0.9 }, 'lrDecay', /f = 1\.111/],
    ['no LoRA target', { lora: { ...DEFAULT_TRAIN.lora, enabled: true, targets: [] } }, 'lora.targets', /at least one module/],
    ['a LoRA rank of 0', { lora: { ...DEFAULT_TRAIN.lora, enabled: true, r: 0 } }, 'lora.r', /1 to 256/],
    ['unfreezing that opens nothing', { unfreeze: { enabled: true, start: 0, every: 5 } }, 'unfreeze.start', /at least one group/],
  ])('explains %s', (_what, patch, key, message) => {
    const e = validateTrain(ok(patch), { nPositions: 1024, nLayer: 12 }) as Record<string, string>;
    expect(Object.keys(e)).toEqual([key]);
    expect(e[key]).toMatch(message);
  });

  it('f16 only where the adapter has shader-f16 (unknown adapter: not refused yet; the engine checks again)', () => {
    expect(validateTrain(ok({ precision: 'f16' }), { hasF16: true })).toEqual({});
    expect(validateTrain(ok({ precision: 'f16' }), {})).toEqual({});
    expect(validateTrain(ok({ precision: 'f16' }), { hasF16: false }).precision).toMatch(/f16 needs the WebGPU feature 'shader-f16', which this adapter does not offer.*Use f32/);
    expect(validateTrain(ok({ precision: 'f32' }), { hasF16: false })).toEqual({});
    expect(validateTrain(ok({ precision: 'bf16' as 'f16' })).precision).toMatch(/f32 or f16/);
    expect(DEFAULT_TRAIN.precision).toBe('f32');
  });

  it('subgroup reductions only where the adapter has subgroups, off by default', () => {
    expect(DEFAULT_TRAIN.subgroups).toBe(false);
    expect(validateTrain(ok({ subgroups: true }), { hasSubgroups: true })).toEqual({});
    expect(validateTrain(ok({ subgroups: true }), {})).toEqual({});
    expect(validateTrain(ok({ subgroups: true }), { hasSubgroups: false }).subgroups).toMatch(/the WebGPU feature 'subgroups', which this adapter does not offer/);
    expect(validateTrain(ok({ subgroups: false }), { hasSubgroups: false })).toEqual({});
  });

  it('checks the sequence length against n_positions and the training split', () => {
    expect(validateTrain(ok({ seq: 2048 }), { nPositions: 1024 }).seq).toMatch(/at most 1024 positions \(n_positions\); use 1024 or less/);
    expect(validateTrain(ok({ seq: 128 }), { nPositions: 1024, trainTokens: 100 }).seq).toMatch(/100 tokens; one window of 128 needs 129/);
    expect(validateTrain(ok({ seq: 99 }), { nPositions: 1024, trainTokens: 100 }).seq).toBeUndefined();
  });

  it('checks gradual unfreezing against the model\'s groups', () => {
    expect(validateTrain(ok({ unfreeze: { enabled: true, start: 15, every: 5 } }), { nLayer: 12 })['unfreeze.start']).toMatch(/14 groups/);
  });
});

describe('validateSample', () => {
  it('keeps the generation within the context and the sampling ranges', () => {
    expect(validateSample({ ...DEFAULT_SAMPLE, maxNewTokens: 64 }, { nPositions: 64 }).maxNewTokens).toMatch(/at most 64 positions/);
    expect(validateSample({ ...DEFAULT_SAMPLE, topP: 0 }).topP).toMatch(/\(0, 1\]/);
    expect(validateSample({ ...DEFAULT_SAMPLE, temperature: -1 }).temperature).toMatch(/0 \(greedy\)/);
  });
});

describe('runSteps', () => {
  it('is the step count, or ⌈epochs · W / (B · accumulation)⌉ over W = ⌊(N−1)/T⌋ windows', () => {
    expect(runSteps(ok({ steps: 7 }), undefined)).toBe(7);
    // N = 1001, T = 10: W = 100 windows; B·accum = 8: one epoch is 12.5 → 13 steps.
    expect(runSteps(ok({ lengthUnit: 'epochs', epochs: 1, seq: 10, batch: 4, gradAccum: 2 }), 1001)).toBe(13);
    expect(runSteps(ok({ lengthUnit: 'epochs', epochs: 2, seq: 10, batch: 4, gradAccum: 2 }), 1001)).toBe(25);
    expect(runSteps(ok({ lengthUnit: 'epochs', epochs: 1 }), undefined)).toBe(0);
  });
});
