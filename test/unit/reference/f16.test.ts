// The binary16 reference (src/engine/reference/f16.ts): every finite half round-trips, values
// halfway between two halves go to the even one, and the edges (subnormals, overflow, NaN)
// follow IEEE 754 roundTiesToEven.
import { describe, expect, it } from 'vitest';
import { f16Bits, f16Value, roundF16 } from '../../../src/engine/reference/f16.ts';
import { f16BitsToF32Bits } from '../../../src/io/safetensors.ts';

const f32OfBits = (u: number) => new Float32Array(new Uint32Array([u]).buffer)[0];

describe('binary16 reference', () => {
  it('decodes every pattern as the safetensors reader does, and encodes it back', () => {
    for (let h = 0; h < 0x10000; h++) {
      const v = f16Value(h);
      expect(Object.is(v, f32OfBits(f16BitsToF32Bits(h))) || (Number.isNaN(v) && Number.isNaN(f32OfBits(f16BitsToF32Bits(h)))), `0x${h.toString(16)}`).toBe(true);
      if (!Number.isNaN(v)) expect(f16Bits(v), `0x${h.toString(16)}`).toBe(h);
    }
  });

  it('rounds halfway cases to even and everything else to the nearest', () => {
    let checked = 0;
    // Positive finite halves below the largest: the midpoint to the next one, and just off it.
    for (let h = 0; h < 0x7bff; h += 7) {
      const lo = f16Value(h);
      const hi = f16Value(h + 1);
      const mid = (lo + hi) / 2; // exact in float32: halves have 11 significant bits
      expect(Math.fround(mid)).toBe(mid);
      expect(f16Bits(mid)).toBe(h % 2 === 0 ? h : h + 1);
      expect(f16Bits(-mid)).toBe((h % 2 === 0 ? h : h + 1) | 0x8000);
      const up = Math.fround(mid + (hi - lo) / 64);
      const down = Math.fround(mid - (hi - lo) / 64);
      expect(f16Bits(up)).toBe(h + 1);
      expect(f16Bits(down)).toBe(h);
      checked++;
    }
    expect(checked).toBeGreaterThan(4000);
  });

  it('edges: overflow, underflow, signed zero, NaN', () => {
    expect(roundF16(65504)).toBe(65504);
    expect(roundF16(65519)).toBe(65504); // below the midpoint 65520
    expect(roundF16(65520)).toBe(Infinity); // the midpoint rounds to "even", which is Inf
    expect(roundF16(-1e6)).toBe(-Infinity);
    expect(roundF16(2 ** -24)).toBe(2 ** -24);
    expect(roundF16(2 ** -25)).toBe(0); // halfway to the smallest subnormal: ties to even (0)
    expect(roundF16(Math.fround(2 ** -25 * 1.001))).toBe(2 ** -24);
    expect(roundF16(3 * 2 ** -25)).toBe(2 * 2 ** -24); // 1.5 ulp: ties to even (2)
    expect(Object.is(roundF16(-0), -0)).toBe(true);
    expect(Object.is(roundF16(-1e-30), -0)).toBe(true);
    expect(Number.isNaN(roundF16(NaN))).toBe(true);
    expect(roundF16(1 / 3)).toBe(0.333251953125);
  });
});
