// dropout.wgsl — out (n) = x (n) · keep(i) / (1 − p), over a flat tensor.
// The same kernel is the forward (x = activations) and the backward (x = the upstream
// gradient): the mask is regenerated from (seed, stream, index), never stored.
// Also the backward of residual.wgsl (db = dropout_backward(dout)).
//
// RNG: the counter-based dropout stream of shaders/prelude.wgsl (CPU twin: src/engine/random.ts),
// keep ⇔ dropoutBits(key, index) ≥ ceil(p · 2^24) = dims.threshold. The integer threshold
// (computed on the CPU in float64) makes the comparison exact, so the mask is bit-identical to
// the float64 reference for every p.
//
// Bindings:
//   0 dims  uniform {n, micro, site, threshold, scale: f32}
//   1 rng   uniform {seed, step}       (written by the trainer once per optimizer step)
//   2 x     storage read       (n)
//   3 out   storage read_write (n)
// Grid: 256 threads per workgroup, workgroups laid out in 2-D (x + y · num_workgroups.x) so
// that more than 65535·256 elements fit.

struct Dims { n: u32, micro: u32, site: u32, threshold: u32, scale: f32 }
struct Rng { seed: u32, step: u32 }

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<uniform> rng: Rng;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

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
    // p = 0: an exact copy (no scaling, no hashing).
    out[i] = x[i];
    return;
  }
  if (kept(streamKey(), i)) {
    out[i] = x[i] * dims.scale;
  } else {
    out[i] = 0.0;
  }
}
