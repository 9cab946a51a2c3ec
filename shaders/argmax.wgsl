// argmax.wgsl — the index of the largest value of each row of a (N, V) matrix of logits:
//   out[n] = min { v : logits[n, v] = max_u logits[n, u] }
// Ties go to the lowest index, as torch.argmax and the CPU sampler's argmax do, so "top-1
// correct" means the same thing on both sides. NaN never wins a comparison; a row with no
// value above −FLT_MAX (all −∞ or NaN) gets 0xFFFFFFFF, which matches no target.
// With REFUSE_NAN (generation's greedy pick on the GPU), a row holding any NaN also gets
// 0xFFFFFFFF, so the caller falls back to the CPU sampler, which names the NaN in its error.
// One workgroup of 256 threads per row: each thread scans a strided slice, then a fixed-order
// tree reduction over (value, index) pairs (deterministic).
//
// Bindings:
//   0 dims    uniform {N, V}
//   1 logits  storage read        (N, V)
//   2 out     storage read_write  (N) u32
// Row = wg.y · num_workgroups.x + wg.x (2-D grid, N may exceed 65535).

struct Dims { N: u32, V: u32 }

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

override REFUSE_NAN: bool = false;

const WG: u32 = 256u;
const NONE: u32 = 0xFFFFFFFFu;
const LOWEST: f32 = -0x1.fffffep+127f; // −FLT_MAX

var<workgroup> bestV: array<f32, 256>;
var<workgroup> bestI: array<u32, 256>;
var<workgroup> sawNaN: atomic<u32>;

// NaN by its bits: a compiler may fold x != x away under fast-math assumptions.
fn isNaN(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

// (a, ia) beats (b, ib): larger value, or equal value and lower index. A missing candidate has
// index NONE, the highest, so it never wins a tie.
fn better(a: f32, ia: u32, b: f32, ib: u32) -> bool {
  return a > b || (a == b && ia < ib);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wg.y * nwg.x + wg.x;
  if (row >= dims.N) { return; } // uniform: the whole workgroup leaves
  let V = dims.V;
  let base = row * V;
  if (REFUSE_NAN && lid == 0u) { atomicStore(&sawNaN, 0u); }
  var m = LOWEST;
  var mi = NONE;
  var nan = false;
  // Increasing v within a thread: strict > keeps the lowest index among equals.
  for (var v = lid; v < V; v += WG) {
    let x = logits[base + v];
    if (REFUSE_NAN && isNaN(x)) { nan = true; }
    if (x > m || (x == m && mi == NONE)) {
      m = x;
      mi = v;
    }
  }
  bestV[lid] = m;
  bestI[lid] = mi;
  workgroupBarrier(); // also orders the flag's reset before any thread sets it
  if (REFUSE_NAN && nan) { atomicStore(&sawNaN, 1u); }
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s && better(bestV[lid + s], bestI[lid + s], bestV[lid], bestI[lid])) {
      bestV[lid] = bestV[lid + s];
      bestI[lid] = bestI[lid + s];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    var best = bestI[0];
    if (REFUSE_NAN && atomicLoad(&sawNaN) != 0u) { best = NONE; }
    out[row] = best;
  }
}
