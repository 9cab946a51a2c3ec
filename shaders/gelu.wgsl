// gelu.wgsl — GELU over a flat tensor (the MLP activation), forward and backward.
//   KIND 0, gelu_new (GPT-2): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
//   KIND 1, gelu (exact):      0.5·x·(1 + erf(x/√2)) = 0.5·x·erfc(−x/√2)
// gelu_new is evaluated through the identity 0.5·(1 + tanh(u)) = 1 / (1 + exp(−2u)) (a logistic
// sigmoid of 2u), which has no cancellation for negative x; the argument 2u is clamped to ±80,
// since WGSL's tanh/exp misbehave for huge arguments (exp(80) ≈ 5.5e34 still fits in f32, and
// the sigmoid is 0 or 1 to f32 precision well before that).
// WGSL has no erf: erfc(z) for z ≥ 0 is the Chebyshev fit of Numerical Recipes in C (2nd ed.,
// §6.2, `erfcc`), fractional error < 1.2e-7 everywhere, erfc(−z) = 2 − erfc(z).
//
// Entry points and bindings:
//   forward:          0 dims uniform {n}; 1 x storage read (n); 2 out storage read_write (n)
//   backward:         0 dims; 1 x (n) read; 2 dout (n) read; 3 dx (n) read_write
//   backward_inplace: 0 dims; 1 x (n) read; 2 grad (n) read_write: dout in, dx out
//   backward_bias:    backward_inplace over an (M, N) tensor fused with the bias gradient of
//                     the linear layer that produced x (c_fc): db (N) [+]= Σ_m dx[m, n].
//                     0 bdims uniform {M, N}; 1 x; 2 grad (M, N) read_write; 4 dbias (N)
//                     read_write. One thread per column, rows in order: the same sums as
//                     matmul.wgsl's bias_grad after backward_inplace, bit for bit. Grid ceil(N/64).
// x is the saved pre-activation. Grid: 256 threads per workgroup, 2-D (x + y · num_workgroups.x).

override KIND: u32 = 0u;
override ACCUMULATE: bool = false; // backward_bias: dbias += instead of =

struct Dims { n: u32 }

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad: array<f32>;

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
const GELU_COEF: f32 = 0.044715;
const INV_SQRT_2: f32 = 0.7071067811865476;
const INV_SQRT_2PI: f32 = 0.3989422804014327;

// erfc(z) for z ≥ 0 (Numerical Recipes erfcc).
fn erfcPos(z: f32) -> f32 {
  let t = 1.0 / (1.0 + 0.5 * z);
  let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
             t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  return t * exp(-z * z + poly);
}

fn erfc(z: f32) -> f32 {
  if (z >= 0.0) { return erfcPos(z); }
  return 2.0 - erfcPos(-z);
}

// exp(−2u) for gelu_new, with 2u clamped to [−80, 80].
fn expNeg2u(v: f32) -> f32 {
  let u = SQRT_2_OVER_PI * (v + GELU_COEF * v * v * v);
  return exp(-clamp(2.0 * u, -80.0, 80.0));
}

fn gelu(v: f32) -> f32 {
  if (KIND == 0u) {
    return v / (1.0 + expNeg2u(v));
  }
  return 0.5 * v * erfc(-v * INV_SQRT_2);
}

// d gelu / dx.
fn geluGrad(v: f32) -> f32 {
  if (KIND == 0u) {
    // gelu_new = x·s, s = σ(2u): d/dx = s + x·2·s·(1 − s)·u', with 1 − s = e·s, e = exp(−2u).
    let e = expNeg2u(v);
    let s = 1.0 / (1.0 + e);
    let du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_COEF * v * v);
    return s + v * 2.0 * s * (e * s) * du;
  }
  // gelu = x·Φ(x): d/dx = Φ(x) + x·φ(x).
  return 0.5 * erfc(-v * INV_SQRT_2) + v * INV_SQRT_2PI * exp(-0.5 * v * v);
}

fn flatIndex(wg: vec3u, nwg: vec3u, lid: u32) -> u32 {
  return (wg.y * nwg.x + wg.x) * 256u + lid;
}

@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wg, nwg, lid);
  if (i >= dims.n) { return; }
  out[i] = gelu(x[i]);
}

@compute @workgroup_size(256)
fn backward(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wg, nwg, lid);
  if (i >= dims.n) { return; }
  dx[i] = geluGrad(x[i]) * dout[i];
}

@compute @workgroup_size(256)
fn backward_inplace(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wg, nwg, lid);
  if (i >= dims.n) { return; }
  grad[i] = geluGrad(x[i]) * grad[i];
}

struct BiasDims { M: u32, N: u32 }

@group(0) @binding(0) var<uniform> bdims: BiasDims;
@group(0) @binding(4) var<storage, read_write> dbias: array<f32>;

@compute @workgroup_size(64)
fn backward_bias(@builtin(global_invocation_id) gid: vec3u) {
  let n = gid.x;
  let N = bdims.N;
  if (n >= N) { return; }
  var s = 0.0;
  for (var m = 0u; m < bdims.M; m++) {
    let i = m * N + n;
    let g = geluGrad(x[i]) * grad[i];
    grad[i] = g;
    s += g;
  }
  if (ACCUMULATE) { s += dbias[n]; }
  dbias[n] = s;
}
