// Chart helpers: TensorBoard-style debiased smoothing and thinning long series for drawing.
import { describe, expect, it } from 'vitest';
import { smooth, thin } from '../../../src/ui/ChartsPanel.tsx';

describe('smooth', () => {
  it('is the debiased EMA: the first value is kept, a constant stays constant', () => {
    expect(smooth([5, 5, 5], 0.9)).toEqual([5, 5, 5].map(() => expect.closeTo(5, 12)));
    const w = 0.5;
    const s = smooth([4, 0], w);
    expect(s[0]).toBeCloseTo(4, 12);
    // (w·(1−w)·4 + (1−w)·0) / (1 − w²) = 1/0.75
    expect(s[1]).toBeCloseTo(1 / 0.75, 12);
  });

  it('does nothing at weight 0 and passes non-finite values through', () => {
    expect(smooth([1, 2, 3], 0)).toEqual([1, 2, 3]);
    expect(smooth([1, NaN, 1], 0.5)[1]).toBeNaN();
  });
});

describe('thin', () => {
  it('keeps short series whole and long ones at most max points, the last included', () => {
    expect(thin([1, 2, 3], 5)).toEqual([1, 2, 3]);
    const long = Array.from({ length: 1000 }, (_, i) => i);
    const t = thin(long, 100);
    expect(t).toHaveLength(100);
    expect(t[0]).toBe(0);
    expect(t.at(-1)).toBe(999);
  });
});
