// reduce.wgsl — deterministic reductions: the global gradient norm with its clip coefficient
// (torch.nn.utils.clip_grad_norm_, norm_type 2), and a scaled sum for the step loss.
// No float atomics exist in WGSL, and a fixed summation order makes runs reproducible: every
// sum here is a grid-stride loop over a fixed number of workgroups, then a tree in workgroup
// memory, then one write per workgroup.
// SUBGROUPS (a define, the kernel variant `subgroups`): the workgroup sum of every entry point
// is shaders/subgroups.wgsl's subgroupsSum instead of the tree (the same grid-stride partials
// per thread; the sum over the threads differs in the last bits). sum_squares and
// sum_squares_multi then share that order too, as long as the adapter gives both pipelines the
// same subgroup size (test/gpu/reduce.test.ts checks it on the test adapter).
//
// Entry points (all 256 threads per workgroup):
//   sum_squares    partials[slot + w] = Σ x[i]² over the elements i that workgroup w visits,
//                  i = w·256 + t, then in steps of 256·numWorkgroups.
//                  grid (min(PARTIALS, ⌈n/256⌉), 1, 1): element i goes to workgroup ⌊i/256⌋ mod
//                  the grid either way. One dispatch per gradient range; each range owns PARTIALS
//                  consecutive slots, and those of workgroups not launched stay 0.
//   sum_squares_multi  sum_squares for many gradient ranges in one dispatch: x is a span of
//                  the gradient arena (gpu/dispatch.ts packSpans) and binding 3 a table with one
//                  SqEntry per range (offset in the span, length, first slot, first workgroup,
//                  workgroups = min(PARTIALS, ⌈n/256⌉) as sum_squares launches). Workgroup w
//                  (flattened 2-D grid) finds its range by binary search and sums exactly what
//                  sum_squares' workgroup w − wg0 sums, in the same order: bit-identical partials.
//                  dims.n = entries, dims.slot = total workgroups.
//   norm_finalize  one workgroup: s = Σ_k partials[k] over k < n in a fixed order, then
//                  norm[0] = sqrt(s)                                  (total norm, before clipping)
//                  norm[1] = min(1, maxNorm / (norm + 1e-6)), 1 when maxNorm ≤ 0 (clipping off)
//                  norm[2] = 1 when s is NaN or ±inf, else 0           (the step must be skipped)
//                  With accumulate = 1 the flag is sticky: once set it stays set (norm[2] read
//                  before it is written), so a trainer that finds a non-finite step also skips
//                  the steps already queued behind it and its weights stay those of the last
//                  good step (the state a checkpoint then captures).
//   mean_reduce    one workgroup: out[slot] = Σ_i x[i] · scale  (+ out[slot] when accumulate)
//
// Bindings:
//   0 dims  uniform Dims {n, slot, accumulate, value}
//             sum_squares:   n = elements of x, slot = first partial slot
//             norm_finalize: n = partials to sum, value = maxNorm (0 = no clipping),
//                            accumulate = 1: the non-finite flag is sticky
//             mean_reduce:   n = elements of x, slot = output slot, accumulate 0/1, value = scale
//   1 x     storage read        sum_squares: the gradient range (n); norm_finalize: partials (n);
//                               mean_reduce: the values (n), e.g. per-token losses (B·T)
//   2 y     storage read_write  sum_squares: partials (whole buffer, slots slot .. slot+PARTIALS−1);
//                               norm_finalize: norm (3); mean_reduce: out (whole buffer)

#if SUBGROUPS
enable subgroups;
#endif

struct Dims {
  n: u32,
  slot: u32,
  accumulate: u32,
  value: f32,
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

const WG: u32 = 256u;
var<workgroup> scratch: array<f32, 256>;

// Sums scratch[0..256) into scratch[0]; every thread of the workgroup must call it.
fn treeSum(t: u32) {
  workgroupBarrier();
  for (var half = WG / 2u; half > 0u; half >>= 1u) {
    if (t < half) { scratch[t] += scratch[t + half]; }
    workgroupBarrier();
  }
}

@compute @workgroup_size(256)
fn sum_squares(
  @builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u,
#if SUBGROUPS
  @builtin(subgroup_size) sgSize: u32, @builtin(subgroup_invocation_id) sgId: u32,
#endif
) {
  let t = lid.x;
  let stride = WG * nwg.x;
  var acc = 0.0;
  for (var i = wg.x * WG + t; i < dims.n; i += stride) {
    let g = x[i];
    acc = fma(g, g, acc);
  }
#if SUBGROUPS
  let total = subgroupsSum(acc, t, WG, vec2u(sgSize, sgId));
  if (t == 0u) { y[dims.slot + wg.x] = total; }
#else
  scratch[t] = acc;
  treeSum(t);
  if (t == 0u) { y[dims.slot + wg.x] = scratch[0]; }
#endif
}

fn nonFinite(v: f32) -> bool {
  // Exponent bits all ones: inf or NaN. A bit test, since WGSL has no isnan/isinf and
  // compilers may fold v != v away.
  return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u;
}

@compute @workgroup_size(256)
fn norm_finalize(
  @builtin(local_invocation_id) lid: vec3u,
#if SUBGROUPS
  @builtin(subgroup_size) sgSize: u32, @builtin(subgroup_invocation_id) sgId: u32,
#endif
) {
  let t = lid.x;
  var acc = 0.0;
  for (var k = t; k < dims.n; k += WG) { acc += x[k]; }
#if SUBGROUPS
  let total = subgroupsSum(acc, t, WG, vec2u(sgSize, sgId));
#else
  scratch[t] = acc;
  treeSum(t);
#endif
  if (t == 0u) {
#if SUBGROUPS
    let s = total;
#else
    let s = scratch[0];
#endif
    let norm = sqrt(s);
    let maxNorm = dims.value;
    var coef = 1.0;
    if (maxNorm > 0.0) { coef = min(1.0, maxNorm / (norm + 1e-6)); }
    let bad = nonFinite(s) || (dims.accumulate != 0u && y[2] != 0.0);
    y[0] = norm;
    y[1] = select(coef, 1.0, bad);
    y[2] = select(0.0, 1.0, bad);
  }
}

@compute @workgroup_size(256)
fn mean_reduce(
  @builtin(local_invocation_id) lid: vec3u,
#if SUBGROUPS
  @builtin(subgroup_size) sgSize: u32, @builtin(subgroup_invocation_id) sgId: u32,
#endif
) {
  let t = lid.x;
  var acc = 0.0;
  for (var i = t; i < dims.n; i += WG) { acc += x[i]; }
#if SUBGROUPS
  let total = subgroupsSum(acc, t, WG, vec2u(sgSize, sgId));
#else
  scratch[t] = acc;
  treeSum(t);
#endif
  if (t == 0u) {
#if SUBGROUPS
    var v = total * dims.value;
#else
    var v = scratch[0] * dims.value;
#endif
    if (dims.accumulate != 0u) { v += y[dims.slot]; }
    y[dims.slot] = v;
  }
}

struct SqEntry {
  offset: u32, // in the span, floats
  n: u32,
  slot: u32,   // first partial slot of the range
  wg0: u32,    // first workgroup of the range
  count: u32,  // workgroups of the range
  pad0: u32,
  pad1: u32,
  pad2: u32,
}

@group(0) @binding(3) var<storage, read> table: array<SqEntry>;

@compute @workgroup_size(256)
fn sum_squares_multi(
  @builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u,
#if SUBGROUPS
  @builtin(subgroup_size) sgSize: u32, @builtin(subgroup_invocation_id) sgId: u32,
#endif
) {
  let t = lid.x;
  let w = wg.y * nwg.x + wg.x;
  if (w >= dims.slot) { return; } // uniform: the whole workgroup leaves
  var lo = 0u;
  var hi = dims.n - 1u;
  while (lo < hi) {
    let mid = (lo + hi + 1u) / 2u;
    if (table[mid].wg0 <= w) { lo = mid; } else { hi = mid - 1u; }
  }
  let e = table[lo];
  let j = w - e.wg0;
  let stride = WG * e.count;
  var acc = 0.0;
  for (var i = j * WG + t; i < e.n; i += stride) {
    let g = x[e.offset + i];
    acc = fma(g, g, acc);
  }
#if SUBGROUPS
  let total = subgroupsSum(acc, t, WG, vec2u(sgSize, sgId));
  if (t == 0u) { y[e.slot + j] = total; }
#else
  scratch[t] = acc;
  treeSum(t);
  if (t == 0u) { y[e.slot + j] = scratch[0]; }
#endif
}
