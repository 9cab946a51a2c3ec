// gelu.wgsl — GELU over a flat tensor (the MLP activation), forward and backward.
//   KIND 0, gelu_new (GPT-2): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
//   KIND 1, gelu (exact):      0.5·x·(1 + erf(x/√2)) = 0.5·x·erfc(−x/√2)
// The functions themselves (geluValue, geluDerivative) are in shaders/prelude.wgsl, shared with
// matmul.wgsl's GELU epilogue (c_fc's forward writes both its output and its GELU), so the two
// compute the same bits.
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

fn gelu(v: f32) -> f32 { return geluValue(v, KIND); }
fn geluGrad(v: f32) -> f32 { return geluDerivative(v, KIND); }

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
