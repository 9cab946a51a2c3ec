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
//
// Entry point `residual_layernorm`: the residual add fused with the LayerNorm that reads its
// result (a block's ln_2, the next block's ln_1, or ln_f), one dispatch instead of two:
//   out = a + dropout(b);  ln = LayerNorm(out)·w + bias, mean and rstd saved per row
// One workgroup of 64 threads per row (N rows of C). The add is residual's `main` element for
// element (same dropout index and key), and the LayerNorm repeats layernorm.wgsl's `forward`
// step for step (the same strided partial sums and the same 64-thread tree, two passes), so
// the results equal the two dispatches' bit for bit.
//   0 rl    uniform RLDims {N, C, eps, micro, site, threshold, scale}
//   1 rng   uniform {seed, step}
//   2 a, 3 b   storage read (N, C);  4 out storage read_write (N, C)
//   5 w, 6 bias  storage read (C);   7 ln storage read_write (N, C)
//   8 mean, 9 rstd  storage read_write (N)
// Rows in a 2-D grid (row = wg.y · num_workgroups.x + wg.x).
// SUBGROUPS (a define, the kernel variant `subgroups`; residual_layernorm only): the two row
// sums go through shaders/subgroups.wgsl's subgroupsSum, as layernorm.wgsl's forward does under
// the variant (subgroupAdd, then the partials in subgroup order), so the fused dispatch stays
// equal to the two apart (test/gpu/residual.test.ts checks both forms).

#if SUBGROUPS
enable subgroups;
#endif

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

struct RLDims { N: u32, C: u32, eps: f32, micro: u32, site: u32, threshold: u32, scale: f32 }

@group(0) @binding(0) var<uniform> rl: RLDims;
@group(0) @binding(5) var<storage, read> lnW: array<f32>;
@group(0) @binding(6) var<storage, read> lnB: array<f32>;
@group(0) @binding(7) var<storage, read_write> ln: array<f32>;
@group(0) @binding(8) var<storage, read_write> lnMean: array<f32>;
@group(0) @binding(9) var<storage, read_write> lnRstd: array<f32>;

const ROW_WG: u32 = 64u; // as layernorm.wgsl's forward

@compute @workgroup_size(64)
fn residual_layernorm(
  @builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32,
#if SUBGROUPS
  @builtin(subgroup_size) sgSize: u32, @builtin(subgroup_invocation_id) sgId: u32,
#endif
) {
  let row = wg.y * nwg.x + wg.x;
  if (row >= rl.N) { return; } // uniform: the whole workgroup leaves
  let C = rl.C;
  let base = row * C;
  let key = dropoutKey(rng.seed, rng.step, rl.micro, rl.site);
  var s = 0.0;
  for (var c = lid; c < C; c += ROW_WG) {
    let i = base + c;
    var d = b[i];
    if (rl.threshold != 0u) {
      d = 0.0;
      if (dropoutBits(key, i) >= rl.threshold) { d = b[i] * rl.scale; }
    }
    let r = a[i] + d;
    out[i] = r;
    s += r;
  }
#if SUBGROUPS
  let mean = subgroupsSum(s, lid, ROW_WG, vec2u(sgSize, sgId)) / f32(C);
#else
  let mean = workgroupSum(s, lid, ROW_WG) / f32(C);
#endif
  // Each thread rereads only what it wrote itself.
  var q = 0.0;
  for (var c = lid; c < C; c += ROW_WG) {
    let d = out[base + c] - mean;
    q += d * d;
  }
#if SUBGROUPS
  let variance = subgroupsSum(q, lid, ROW_WG, vec2u(sgSize, sgId)) / f32(C);
#else
  let variance = workgroupSum(q, lid, ROW_WG) / f32(C);
#endif
  let rstd = 1.0 / sqrt(variance + rl.eps);
  for (var c = lid; c < C; c += ROW_WG) {
    ln[base + c] = (out[base + c] - mean) * rstd * lnW[c] + lnB[c];
  }
  if (lid == 0u) {
    lnMean[row] = mean;
    lnRstd[row] = rstd;
  }
}
