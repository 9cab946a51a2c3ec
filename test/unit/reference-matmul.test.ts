import { describe, expect, it } from 'vitest';
import { refMatmul } from '../../src/engine/reference/matmul.ts';

describe('reference matmul', () => {
  it('computes a known 2×3 · 3×2 product with bias', () => {
    const a = [1, 2, 3, 4, 5, 6];
    const b = [7, 8, 9, 10, 11, 12];
    expect([...refMatmul({ M: 2, N: 2, K: 3, a, b, bias: [1, -1] })]).toEqual([59, 63, 140, 153]);
  });
  it('transposed operands give the same product', () => {
    const a = [1, 2, 3, 4, 5, 6]; // (2,3)
    const aT = [1, 4, 2, 5, 3, 6]; // (3,2)
    const b = [7, 8, 9, 10, 11, 12]; // (3,2)
    const bT = [7, 9, 11, 8, 10, 12]; // (2,3)
    const ref = refMatmul({ M: 2, N: 2, K: 3, a, b });
    expect([...refMatmul({ M: 2, N: 2, K: 3, a: aT, b: bT, transA: true, transB: true })]).toEqual([...ref]);
  });
});
