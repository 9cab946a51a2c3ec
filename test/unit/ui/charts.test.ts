// Chart helpers: thinning long series for drawing (smoothing is engine/eval/metrics.ts's emaSmooth, tested there).
import { describe, expect, it } from 'vitest';
import { thin } from '../../../src/ui/ChartsPanel.tsx';

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
