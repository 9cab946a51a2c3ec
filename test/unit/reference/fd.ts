// Central finite differences in float64 for the reference's gradient checks.
// The checked scalar is L = Σ w ⊙ f(x) with fixed random weights w, so every output element
// contributes and the analytic gradient of L is the op's backward applied to dout = w.

/**
 * Numerical gradient of the scalar `loss()` with respect to every element of `x`, which is
 * perturbed in place (and restored) by ±h.
 */
export function numericGrad(x: Float64Array, loss: () => number, h = 1e-6): Float64Array {
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const keep = x[i];
    x[i] = keep + h;
    const lp = loss();
    x[i] = keep - h;
    const lm = loss();
    x[i] = keep;
    g[i] = (lp - lm) / (2 * h);
  }
  return g;
}

/** Σ w ⊙ y */
export function dot(w: ArrayLike<number>, y: ArrayLike<number>): number {
  if (w.length !== y.length) throw new Error(`dot: length ${w.length} != ${y.length}`);
  let s = 0;
  for (let i = 0; i < y.length; i++) s += w[i] * y[i];
  return s;
}
