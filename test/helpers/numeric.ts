// Seeded random inputs and the error measures the numeric tests use (docs/ARCHITECTURE.md: ‖got − ref‖ / ‖ref‖).
import { uniformStream } from '../../src/engine/random.ts';

/** Seeded uniform floats in [0, 1) (the studio's SeededRng), so failures reproduce. */
export const rng = (seed: number): (() => number) => uniformStream(seed >>> 0);

/** Standard normal samples (Box–Muller), scaled. */
export function randn(n: number, seed: number, scale = 1): Float64Array {
  const r = rng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = Math.max(r(), 1e-12);
    const v = r();
    const m = Math.sqrt(-2 * Math.log(u));
    out[i] = m * Math.cos(2 * Math.PI * v) * scale;
    if (i + 1 < n) out[i + 1] = m * Math.sin(2 * Math.PI * v) * scale;
  }
  return out;
}

export function relErr(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (got.length !== ref.length) throw new Error(`length ${got.length} != ${ref.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = got[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  if (!Number.isFinite(num)) return Infinity;
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
}

export function maxAbsDiff(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(got[i] - ref[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}
