// Shared WGSL, composed after every kernel's own source by src/engine/gpu/shaders.ts (WGSL has
// no #include; module-scope declarations may come in any order, so appending keeps the
// kernel's line numbers in compiler messages). Declares nothing a kernel must bind: a function
// or workgroup variable a kernel does not use costs it nothing.
//
// The counter-based dropout stream (the CPU twin is src/engine/random.ts; the float64
// reference and test/gpu/dropout.test.ts check the two agree bit for bit):
//   hash     = lowbias32 (Chris Wellons, "Prospecting for hash functions", nullprogram.com, 2018)
//   stream   = (step · 64 + micro) · 4096 + site                     (u32, wrapping)
//   key      = hash(seed ^ hash(stream))                              (once per site and thread)
//   bits     = hash(index ^ key) >> 8;  uniform = f32(bits) · 2^-24
//   keep     ⇔ uniform ≥ p ⇔ bits ≥ ceil(p · 2^24)   (the threshold is computed on the CPU,
//                                                      so the comparison is exact)

fn lowbias32(x0: u32) -> u32 {
  var x = x0;
  x ^= x >> 16u;
  x *= 0x7feb352du;
  x ^= x >> 15u;
  x *= 0x846ca68bu;
  x ^= x >> 16u;
  return x;
}

/** The per-site part of the hash for the optimizer step, micro-batch and site. */
fn dropoutKey(seed: u32, step: u32, micro: u32, site: u32) -> u32 {
  let stream = (step * 64u + micro) * 4096u + site;
  return lowbias32(seed ^ lowbias32(stream));
}

/** The 24 random bits of element `index` of the site whose key is `key`. */
fn dropoutBits(key: u32, index: u32) -> u32 {
  return lowbias32(index ^ key) >> 8u;
}

/** Uniform in [0, 1), exactly representable in f32. */
fn dropoutUniform(key: u32, index: u32) -> f32 {
  return f32(dropoutBits(key, index)) * (1.0 / 16777216.0);
}

// Tree reductions over one workgroup of `wg` threads (a power of two ≤ 256); every thread of
// the workgroup must call them, in uniform control flow, and gets the result.
var<workgroup> reduceScratch: array<f32, 256>;

fn workgroupMax(v: f32, lid: u32, wg: u32) -> f32 {
  reduceScratch[lid] = v;
  workgroupBarrier();
  for (var s = wg / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { reduceScratch[lid] = max(reduceScratch[lid], reduceScratch[lid + s]); }
    workgroupBarrier();
  }
  let r = reduceScratch[0];
  workgroupBarrier();
  return r;
}

fn workgroupSum(v: f32, lid: u32, wg: u32) -> f32 {
  reduceScratch[lid] = v;
  workgroupBarrier();
  for (var s = wg / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { reduceScratch[lid] += reduceScratch[lid + s]; }
    workgroupBarrier();
  }
  let r = reduceScratch[0];
  workgroupBarrier();
  return r;
}

// GELU, the MLP activation, in the two forms Hugging Face's GPT-2 may name (kind 0 gelu_new,
// kind 1 gelu), for gelu.wgsl and for matmul.wgsl's GELU epilogue, so both compute the same bits.
//   gelu_new: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), through the identity
//     0.5·(1 + tanh(u)) = 1 / (1 + exp(−2u)) (a logistic sigmoid of 2u), which has no
//     cancellation for negative x; 2u is clamped to ±80, since WGSL's tanh/exp misbehave for huge
//     arguments (exp(80) ≈ 5.5e34 still fits in f32; the sigmoid is 0 or 1 to f32 precision well
//     before that).
//   gelu: 0.5·x·(1 + erf(x/√2)) = 0.5·x·erfc(−x/√2). WGSL has no erf: erfc(z) for z ≥ 0 is the
//     Chebyshev fit of Numerical Recipes in C (2nd ed., §6.2, `erfcc`), fractional error
//     < 1.2e-7 everywhere, and erfc(−z) = 2 − erfc(z).
const GELU_SQRT_2_OVER_PI: f32 = 0.7978845608028654;
const GELU_COEF: f32 = 0.044715;
const GELU_INV_SQRT_2: f32 = 0.7071067811865476;
const GELU_INV_SQRT_2PI: f32 = 0.3989422804014327;

// erfc(z) for z ≥ 0 (Numerical Recipes erfcc).
fn geluErfcPos(z: f32) -> f32 {
  let t = 1.0 / (1.0 + 0.5 * z);
  let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
             t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  return t * exp(-z * z + poly);
}

fn geluErfc(z: f32) -> f32 {
  if (z >= 0.0) { return geluErfcPos(z); }
  return 2.0 - geluErfcPos(-z);
}

// exp(−2u) for gelu_new, with 2u clamped to [−80, 80].
fn geluExpNeg2u(v: f32) -> f32 {
  let u = GELU_SQRT_2_OVER_PI * (v + GELU_COEF * v * v * v);
  return exp(-clamp(2.0 * u, -80.0, 80.0));
}

fn geluValue(v: f32, kind: u32) -> f32 {
  if (kind == 0u) {
    return v / (1.0 + geluExpNeg2u(v));
  }
  return 0.5 * v * geluErfc(-v * GELU_INV_SQRT_2);
}

// d gelu / dx.
fn geluDerivative(v: f32, kind: u32) -> f32 {
  if (kind == 0u) {
    // gelu_new = x·s, s = σ(2u): d/dx = s + x·2·s·(1 − s)·u', with 1 − s = e·s, e = exp(−2u).
    let e = geluExpNeg2u(v);
    let s = 1.0 / (1.0 + e);
    let du = GELU_SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_COEF * v * v);
    return s + v * 2.0 * s * (e * s) * du;
  }
  // gelu = x·Φ(x): d/dx = Φ(x) + x·φ(x).
  return 0.5 * geluErfc(-v * GELU_INV_SQRT_2) + v * GELU_INV_SQRT_2PI * exp(-0.5 * v * v);
}
