// Metric helpers: values worked out by hand.
import { describe, expect, it } from 'vitest';
import {
  EmaSmoother,
  emaSmooth,
  formatLoss,
  formatPercent,
  formatPerplexity,
  MetricConfigError,
  perplexity,
  RunningAccuracy,
  RunningMean,
  ThroughputMeter,
} from '../../../src/engine/eval/metrics.ts';
import { tokensPerSecond } from '../../../src/engine/throughput.ts';

describe('perplexity', () => {
  it('is exp of the mean loss', () => {
    expect(perplexity(0)).toBe(1);
    expect(perplexity(Math.log(50257))).toBeCloseTo(50257, 6); // uniform over GPT-2's vocabulary
    expect(perplexity(2)).toBeCloseTo(7.38905609893065, 12);
  });
});

describe('RunningMean', () => {
  it('weights each value by its count', () => {
    const m = new RunningMean();
    expect(Number.isNaN(m.mean)).toBe(true);
    m.add(2, 1);
    m.add(5, 3); // (2 + 15) / 4
    expect(m.mean).toBeCloseTo(17 / 4, 15);
    expect(m.count).toBe(4);
    m.add(100, 0);
    expect(m.mean).toBeCloseTo(17 / 4, 15);
    m.reset();
    expect(m.count).toBe(0);
    m.add(3);
    expect(m.mean).toBe(3);
    expect(() => m.add(1, -1)).toThrow(MetricConfigError);
  });
});

describe('RunningAccuracy', () => {
  it('counts matching positions', () => {
    const a = new RunningAccuracy();
    expect(Number.isNaN(a.accuracy)).toBe(true);
    a.addPredictions([1, 2, 3, 4], [1, 0, 3, 0]);
    expect(a.accuracy).toBe(0.5);
    a.add(3, 4); // (2 + 3) / 8
    expect(a.accuracy).toBe(5 / 8);
    expect(a.count).toBe(8);
    expect(() => a.addPredictions([1], [1, 2])).toThrow(/same length/);
    expect(() => a.add(5, 4)).toThrow(MetricConfigError);
    a.reset();
    expect(a.count).toBe(0);
  });
});

describe('EmaSmoother (TensorBoard debiased)', () => {
  it('starts at the first value and follows last·w + (1 − w)·x divided by 1 − wⁿ', () => {
    // w = 0.5, x = 4, 0, 8: last = 2, 1, 4.5; debias 0.5, 0.75, 0.875.
    expect([...emaSmooth([4, 0, 8], 0.5)]).toEqual([4, 1 / 0.75, 4.5 / 0.875]);
  });

  it('keeps a constant series constant and w = 0 is the raw series', () => {
    for (const v of emaSmooth([3, 3, 3, 3], 0.9)) expect(v).toBeCloseTo(3, 13);
    expect([...emaSmooth([1, 5, 2], 0)]).toEqual([1, 5, 2]);
  });

  it('passes non-finite points through without poisoning the average', () => {
    const s = new EmaSmoother(0.5);
    expect(s.push(4)).toBe(4);
    expect(Number.isNaN(s.push(Number.NaN))).toBe(true);
    expect(s.push(Infinity)).toBe(Infinity);
    expect(s.push(0)).toBeCloseTo(1 / 0.75, 15); // as if the NaN and ∞ were never there
    s.reset();
    expect(s.push(7)).toBe(7);
  });

  it('refuses weights outside [0, 1)', () => {
    expect(() => new EmaSmoother(1)).toThrow(MetricConfigError);
    expect(() => new EmaSmoother(-0.1)).toThrow(/Smoothing weight/);
  });
});

describe('throughput', () => {
  it('tokensPerSecond', () => {
    expect(tokensPerSecond(4096, 500)).toBe(8192);
    expect(tokensPerSecond(10, 0)).toBe(0);
  });

  it('ThroughputMeter: recent over the last steps, overall since the start', () => {
    const m = new ThroughputMeter(2);
    m.add(1000, 1000); // 1000 tok/s
    m.add(1000, 500); // 2000 tok/s
    expect(m.recent).toBeCloseTo(2000 / 1.5, 10);
    m.add(1000, 250); // window now holds the last two steps
    expect(m.recent).toBeCloseTo(2000 / 0.75, 10);
    expect(m.overall).toBeCloseTo(3000 / 1.75, 10);
    m.reset();
    expect(m.recent).toBe(0);
    expect(() => m.add(-1, 10)).toThrow(MetricConfigError);
    expect(() => new ThroughputMeter(0)).toThrow(MetricConfigError);
  });

  it('formats metrics as the page and the model card show them: loss 4 decimals, perplexity 2, accuracy a percentage with 2', () => {
    expect(formatLoss(2.302585092994046)).toBe('2.3026');
    expect(formatLoss(0.5)).toBe('0.5000');
    expect(formatLoss(Infinity)).toBe('∞');
    expect(formatLoss(NaN)).toBe('—');
    expect(formatPerplexity(Math.exp(2.302585092994046))).toBe('10.00');
    expect(formatPerplexity(1234567.891)).toBe('1.23e+6');
    expect(formatPercent(0.06893382352941177)).toBe('6.89%');
    expect(formatPercent(1)).toBe('100.00%');
    expect(formatPercent(null)).toBe('—');
  });
});
