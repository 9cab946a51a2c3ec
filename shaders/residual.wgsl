// residual.wgsl — out (n) = a (n) + dropout(b) (n): the residual add of a transformer block,
// with the block's output dropout (resid_pdrop) applied to the branch b before the add.
// Backward: da = dout (the trainer reuses dout), db = dropout_backward(dout), which is
// shaders/dropout.wgsl with the same (p, site, micro); so this file has the forward only.
//
// RNG: the contract in shaders/dropout.wgsl (lowbias32, Chris Wellons), copied here because
// WGSL has no includes; index = flat element index of b.
//
// Bindings:
//   0 dims  uniform {n, micro, site, threshold, scale: f32}
//   1 rng   uniform {seed, step}
//   2 a     storage read       (n)  residual stream
//   3 b     storage read       (n)  branch output
//   4 out   storage read_write (n)
// Grid: 256 threads per workgroup, workgroups in 2-D (x + y · num_workgroups.x).

struct Dims { n: u32, micro: u32, site: u32, threshold: u32, scale: f32 }
struct Rng { seed: u32, step: u32 }

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<uniform> rng: Rng;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// The dropout hash, its stream numbering and dropoutBits are in shaders/prelude.wgsl.
fn streamKey() -> u32 {
  return dropoutKey(rng.seed, rng.step, dims.micro, dims.site);
}

fn kept(key: u32, index: u32) -> bool {
  return dropoutBits(key, index) >= dims.threshold;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wg.y * nwg.x + wg.x) * 256u + lid;
  if (i >= dims.n) { return; }
  if (dims.threshold == 0u) {
    // p = 0: exactly a + b.
    out[i] = a[i] + b[i];
    return;
  }
  var d = 0.0;
  if (kept(streamKey(), i)) { d = b[i] * dims.scale; }
  out[i] = a[i] + d;
}
