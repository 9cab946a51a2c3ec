// crossentropy.wgsl — fused softmax cross-entropy over a chunk of rows of logits, in place.
//   losses[n]   = logsumexp(logits[n, :]) − logits[n, target[n]]
//   logits[n,v] ← (softmax(logits[n, :])[v] − [v = target[n]]) · scale      (WRITE_GRAD)
// scale is 1/(B·T·accumulation steps), so the gradients of all chunks and micro-batches add up
// to the gradient of the mean loss. The max is subtracted before exp (stable for any logits).
// A target of 0xFFFFFFFF is ignored (padding): loss 0 and a zero gradient row. Any other
// target ≥ V is a bug upstream: that row's loss and gradient are NaN, so the trainer's
// non-finite-loss check stops the run instead of training on garbage.
// One workgroup of 256 threads per row, reductions over V in a fixed order (deterministic).
// SUBGROUPS (a define, the kernel variant `subgroups`): the row max and the sum of exponentials
// combine through subgroup operations (shaders/subgroups.wgsl) instead of the prelude's
// workgroup-memory trees; the loss and gradient differ from the tree's in the last bits.
//
// Bindings:
//   0 dims     uniform {N, V, scale: f32}
//   1 targets  storage read       (N) u32
//   2 logits   storage read_write (N, V): logits in, dlogits out (unchanged without WRITE_GRAD)
//   3 losses   storage read_write (N)
// Row = wg.y · num_workgroups.x + wg.x (2-D grid, N may exceed 65535).

#if SUBGROUPS
enable subgroups;
#endif

override WRITE_GRAD: bool = true;

struct Dims { N: u32, V: u32, scale: f32 }

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> targets: array<u32>;
@group(0) @binding(2) var<storage, read_write> logits: array<f32>;
@group(0) @binding(3) var<storage, read_write> losses: array<f32>;

const WG: u32 = 256u;
const IGNORE: u32 = 0xFFFFFFFFu;
const LOWEST: f32 = -0x1.fffffep+127f; // −FLT_MAX


@compute @workgroup_size(256)
fn main(
  @builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32,
#if SUBGROUPS
  @builtin(subgroup_size) sgSize: u32, @builtin(subgroup_invocation_id) sgId: u32,
#endif
) {
  let row = wg.y * nwg.x + wg.x;
  if (row >= dims.N) { return; } // uniform: the whole workgroup leaves
  let V = dims.V;
  let base = row * V;
  let tgt = targets[row];
  let ignored = tgt == IGNORE;
  let valid = tgt < V;
  // Read before any thread can overwrite it (the writes come after two barriers).
  var targetLogit = 0.0;
  if (valid) { targetLogit = logits[base + tgt]; }

  var m = LOWEST;
  for (var v = lid; v < V; v += WG) { m = max(m, logits[base + v]); }
#if SUBGROUPS
  m = subgroupsMax(m, lid, WG, vec2u(sgSize, sgId));
#else
  m = workgroupMax(m, lid, WG);
#endif
  var s = 0.0;
  for (var v = lid; v < V; v += WG) { s += exp(logits[base + v] - m); }
#if SUBGROUPS
  s = subgroupsSum(s, lid, WG, vec2u(sgSize, sgId));
#else
  s = workgroupSum(s, lid, WG);
#endif
  // A quiet NaN built at run time (a constant NaN is a WGSL compile error).
  let nan = bitcast<f32>(0x7fc00000u | (dims.N & 0u));

  if (lid == 0u) {
    if (ignored) {
      losses[row] = 0.0;
    } else if (valid) {
      // (max − logit) is exact for nearby f32 values (Sterbenz): more accurate than lse − logit.
      losses[row] = (m - targetLogit) + log(s);
    } else {
      losses[row] = nan;
    }
  }
  if (WRITE_GRAD) {
    let inv = 1.0 / s;
    for (var v = lid; v < V; v += WG) {
      var g = 0.0;
      if (valid) {
        var p = exp(logits[base + v] - m) * inv;
        if (v == tgt) { p -= 1.0; }
        g = p * dims.scale;
      } else if (!ignored) {
        g = nan;
      }
      logits[base + v] = g;
    }
  }
}
