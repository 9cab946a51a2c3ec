// adamw.wgsl — one AdamW update of one parameter range, exactly torch.optim.AdamW
// (torch/optim/adamw.py, single-tensor path, amsgrad off), with the gradient clipped by the
// coefficient clip_grad_norm_ computed on the GPU (reduce.wgsl):
//   g' = g · clipCoef
//   p ← p · (1 − lr·wd)                       decoupled weight decay
//   m ← β1·m + (1 − β1)·g'
//   v ← β2·v + (1 − β2)·g'²
//   p ← p − (lr / bc1) · m / (√v / √bc2 + eps),  bc1 = 1 − β1^t, bc2 = 1 − β2^t
// t is this tensor's own step count (a parameter unfrozen later starts again at 1, as torch
// does for a parameter it has never updated); the trainer folds it into bc1 and bc2.
//
// Hyperparameters come from a storage buffer of per-tensor records, indexed by dims.record,
// which the trainer rewrites once per optimizer step (queue.writeBuffer): learning-rate
// schedules, discriminative rates and per-tensor step counts then need no new dispatches.
// The whole update is skipped, leaving p, m and v untouched, when the norm's non-finite flag
// is set (a NaN or infinite gradient must not destroy the weights) or the record is inactive.
//
// Bindings:
//   0 dims     uniform Dims {n, record}
//   1 records  storage read        array<Hyper>, 9 f32 each (see below)
//   2 norm     storage read        (3) [totalNorm, clipCoef, nonFiniteFlag] from reduce.wgsl
//   3 grad     storage read        (n)
//   4 param    storage read_write  (n)
//   5 m        storage read_write  (n) first moment
//   6 v        storage read_write  (n) second moment
// Grid: (min(ceil(n/256), ADAMW_MAX_WORKGROUPS), 1, 1), grid-stride over n.
//
// Entry point `multi`: the same update for many tensors in one dispatch. Bindings 3-6 are then
// spans of the arenas (gpu/dispatch.ts packSpans) and binding 7 a table with one Entry per
// tensor range: its offsets in the four spans, length, record, and its workgroups
// [wg0, wg0 + count), count = min(ceil(n / (256·16)), ADAMW_MAX_WORKGROUPS): at least 16
// elements per invocation where the tensor is large enough, so that the table lookup below (a
// binary search and an Entry load per invocation) stays small beside the work. Workgroup w
// (flattened 2-D grid) finds its entry by binary search over wg0 and walks the tensor with a
// grid stride of 256·count. The update is elementwise, so the grid changes which invocation
// updates an element, never its arithmetic: results are bit-identical to one dispatch per tensor.
//   0 mdims  uniform MultiDims {entries, workgroups}
//   7 table  storage read  array<Entry>

struct Dims {
  n: u32,
  record: u32,
  pad0: u32,
  pad1: u32,
}

// One tensor's hyperparameters (9 f32). Mirrors packAdamwRecords in src/engine/kernels/adamw.ts.
// The derived scalars are computed in float64 on the CPU and rounded once, as torch computes
// them as Python floats: f32(1 − β2) is 0.001 to 7 digits, whereas 1 − f32(0.999) is off by 1.3e-5.
struct Hyper {
  beta1: f32,
  beta2: f32,
  oneMinusBeta1: f32,
  oneMinusBeta2: f32,
  eps: f32,
  decay: f32,    // 1 − lr·wd
  stepSize: f32, // lr / (1 − β1^t)
  bc2Sqrt: f32,  // √(1 − β2^t)
  enabled: f32,  // 0: skip this tensor this step ("active" is reserved in WGSL)
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> records: array<Hyper>;
@group(0) @binding(2) var<storage, read> norm: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> param: array<f32>;
@group(0) @binding(5) var<storage, read_write> m: array<f32>;
@group(0) @binding(6) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let h = records[dims.record];
  if (norm[2] != 0.0 || h.enabled == 0.0) { return; }
  let coef = norm[1];
  let stride = 256u * nwg.x;
  for (var i = gid.x; i < dims.n; i += stride) {
    let g = grad[i] * coef;
    let mi = h.beta1 * m[i] + h.oneMinusBeta1 * g;
    let vi = h.beta2 * v[i] + h.oneMinusBeta2 * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = param[i] * h.decay - h.stepSize * (mi / (sqrt(vi) / h.bc2Sqrt + h.eps));
  }
}

struct MultiDims {
  entries: u32,
  workgroups: u32, // Σ count over the entries
  pad0: u32,
  pad1: u32,
}

struct Entry {
  p: u32,      // offset of the tensor in the param span, in floats
  g: u32,      // … in the grad span
  m: u32,      // … in the m span
  v: u32,      // … in the v span
  n: u32,      // elements
  record: u32, // its hyperparameter record
  wg0: u32,    // its first workgroup
  count: u32,  // its workgroups
}

@group(0) @binding(0) var<uniform> mdims: MultiDims;
@group(0) @binding(7) var<storage, read> table: array<Entry>;

@compute @workgroup_size(256)
fn multi(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) t: u32) {
  let w = wg.y * nwg.x + wg.x;
  if (w >= mdims.workgroups || norm[2] != 0.0) { return; }
  // The last entry with wg0 ≤ w (wg0 increases with the entry index).
  var lo = 0u;
  var hi = mdims.entries - 1u;
  while (lo < hi) {
    let mid = (lo + hi + 1u) / 2u;
    if (table[mid].wg0 <= w) { lo = mid; } else { hi = mid - 1u; }
  }
  let e = table[lo];
  let h = records[e.record];
  if (h.enabled == 0.0) { return; }
  let coef = norm[1];
  let stride = 256u * e.count;
  for (var i = (w - e.wg0) * 256u + t; i < e.n; i += stride) {
    let g = grad[e.g + i] * coef;
    let mi = h.beta1 * m[e.m + i] + h.oneMinusBeta1 * g;
    let vi = h.beta2 * v[e.v + i] + h.oneMinusBeta2 * g * g;
    m[e.m + i] = mi;
    v[e.v + i] = vi;
    param[e.p + i] = param[e.p + i] * h.decay - h.stepSize * (mi / (sqrt(vi) / h.bc2Sqrt + h.eps));
  }
}
