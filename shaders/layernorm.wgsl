// layernorm.wgsl — LayerNorm over the last dimension of x (N, C), as torch.nn.LayerNorm:
//   mean = Σ x / C,  var = Σ (x − mean)² / C (biased),  rstd = 1 / sqrt(var + eps)
//   out = (x − mean)·rstd·w + b
// Backward (llm.c's layernorm_backward formula), with norm = (x − mean)·rstd, g = dout·w:
//   dx = rstd·(g − mean(g) − norm·mean(g·norm))
//   dw = Σ_rows dout·norm,  db = Σ_rows dout
// Every reduction has a fixed order (no float atomics), so results are deterministic.
//
// Entry points and bindings (dims uniform at binding 0 everywhere):
//   forward:                1 x (N,C) read; 2 w (C) read; 3 b (C) read;
//                           4 out (N,C) read_write; 5 mean (N) read_write; 6 rstd (N) read_write
//                           one workgroup of ROW_WG threads per row.
//   backward_dx:            1 dout (N,C) read; 2 x (N,C) read; 3 w (C) read; 4 mean (N) read;
//                           5 rstd (N) read; 6 dx (N,C) read_write (ACCUMULATE_DX: dx += ...)
//                           one workgroup of ROW_WG threads per row.
//   backward_params_partial: 1 dout; 2 x; 3 mean; 4 rstd; 5 partial (2, chunks, C) read_write
//                           workgroup (i, chunk): channels [256·i, 256·i + 256), rows
//                           [chunk·R, chunk·R + R) summed in order; dw partials first, then db.
//   backward_params_reduce: 1 partial (2, chunks, C) read; 2 dw (C) read_write; 3 db (C) read_write
//                           one thread per channel sums the chunks in order (ACCUMULATE_PARAMS: +=).
// Row grids are 2-D (row = wg.y · num_workgroups.x + wg.x) so N may exceed 65535.
//
// SUBGROUPS (a define, the kernel variant `subgroups`): the row sums of forward and backward_dx
// add within each subgroup first (subgroupAdd), then the per-subgroup partials from workgroup
// memory with a second subgroupAdd (as shaders/subgroups.wgsl's subgroupsSum, which the fused
// residual + LayerNorm uses): two barriers instead of the tree's eight. The subgroup size is read
// from the `subgroup_size` builtin (WebGPU lets it be anything from 4 to 128, and lets it differ
// between pipelines); any size works: ROW_WG / size partials, or one when a subgroup covers the
// row. Subgroups are taken as consecutive runs of local_invocation_index, `size` each (how
// Vulkan, D3D12 and Metal lay out a 1-D workgroup; test/gpu/subgroups.test.ts checks the layout
// and test/gpu/layernorm.test.ts the result against the float64 reference on the test adapter). The order of subgroupAdd's additions is the
// implementation's, so results differ in the last bits from the tree's (hence a variant recorded
// in the checkpoint), but are the same on every run of one adapter.
#if SUBGROUPS
enable subgroups;
#endif

override ACCUMULATE_DX: bool = false;
override ACCUMULATE_PARAMS: bool = false;

struct Dims { N: u32, C: u32, eps: f32, rowsPerChunk: u32, chunks: u32 }

@group(0) @binding(0) var<uniform> dims: Dims;

// forward
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> meanOut: array<f32>;
@group(0) @binding(6) var<storage, read_write> rstdOut: array<f32>;

// backward_dx (x and w as above at other bindings would clash, so these have their own names)
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> xb: array<f32>;
@group(0) @binding(3) var<storage, read> wb: array<f32>;
@group(0) @binding(4) var<storage, read> meanIn: array<f32>;
@group(0) @binding(5) var<storage, read> rstdIn: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;

// backward_params_partial: dout at 1, xb at 2, then
@group(0) @binding(3) var<storage, read> meanP: array<f32>;
@group(0) @binding(4) var<storage, read> rstdP: array<f32>;
@group(0) @binding(5) var<storage, read_write> partialOut: array<f32>;

// backward_params_reduce
@group(0) @binding(1) var<storage, read> partialIn: array<f32>;
@group(0) @binding(2) var<storage, read_write> dw: array<f32>;
@group(0) @binding(3) var<storage, read_write> db: array<f32>;

const WG: u32 = 256u;
// Threads per row in forward and backward_dx. 64, not 256: every barrier of the reductions
// waits for the whole workgroup, and a software adapter (lavapipe) runs a workgroup's threads
// in SIMD batches one after another, so a 256-thread row cost four times the barrier work for
// GPT-2's C = 768 (12 values per thread at 64) and far more at small C (tiny shape: step
// layernorm.backward_dx 11.6 → 1.5 ms a step; bench:peer --profile). llm.c gives a row one
// 32-thread warp.
const ROW_WG: u32 = 64u;
var<workgroup> red: array<vec2f, 64>;

// Sum of `v` over the ROW_WG threads of a row, in the same order every time. Call from uniform
// control flow. `sg` is (subgroup_size, subgroup_invocation_id) under SUBGROUPS, unused without.
fn reduceSum2(v: vec2f, lid: u32, sg: vec2u) -> vec2f {
#if SUBGROUPS
  let t = subgroupAdd(v);
  let size = sg.x;
  if (sg.y == 0u) { red[lid / size] = t; }
  workgroupBarrier();
  var r = vec2f(0.0);
  let parts = (ROW_WG + size - 1u) / size;
  for (var k = sg.y; k < parts; k += size) { r += red[k]; }
  r = subgroupAdd(r);
  workgroupBarrier(); // everyone has read the partials before the next call overwrites them
  return r;
#else
  red[lid] = v;
  workgroupBarrier();
  for (var s = ROW_WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier(); // everyone has read red[0] before the next call overwrites it
  return r;
#endif
}

@compute @workgroup_size(64)
fn forward(
  @builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32,
#if SUBGROUPS
  @builtin(subgroup_size) sgSize: u32, @builtin(subgroup_invocation_id) sgId: u32,
#endif
) {
#if SUBGROUPS
  let sg = vec2u(sgSize, sgId);
#else
  let sg = vec2u(0u);
#endif
  let row = wg.y * nwg.x + wg.x;
  if (row >= dims.N) { return; } // uniform: the whole workgroup leaves
  let C = dims.C;
  let base = row * C;
  var s = 0.0;
  for (var c = lid; c < C; c += ROW_WG) { s += x[base + c]; }
  let mean = reduceSum2(vec2f(s, 0.0), lid, sg).x / f32(C);
  // Second pass over centred values: no cancellation as in E[x²] − E[x]².
  var q = 0.0;
  for (var c = lid; c < C; c += ROW_WG) {
    let d = x[base + c] - mean;
    q += d * d;
  }
  let variance = reduceSum2(vec2f(q, 0.0), lid, sg).x / f32(C);
  let rstd = 1.0 / sqrt(variance + dims.eps);
  for (var c = lid; c < C; c += ROW_WG) {
    out[base + c] = (x[base + c] - mean) * rstd * w[c] + b[c];
  }
  if (lid == 0u) {
    meanOut[row] = mean;
    rstdOut[row] = rstd;
  }
}

@compute @workgroup_size(64)
fn backward_dx(
  @builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32,
#if SUBGROUPS
  @builtin(subgroup_size) sgSize: u32, @builtin(subgroup_invocation_id) sgId: u32,
#endif
) {
#if SUBGROUPS
  let sg = vec2u(sgSize, sgId);
#else
  let sg = vec2u(0u);
#endif
  let row = wg.y * nwg.x + wg.x;
  if (row >= dims.N) { return; }
  let C = dims.C;
  let base = row * C;
  let mean = meanIn[row];
  let rstd = rstdIn[row];
  var s = vec2f(0.0);
  for (var c = lid; c < C; c += ROW_WG) {
    let g = dout[base + c] * wb[c];
    let norm = (xb[base + c] - mean) * rstd;
    s += vec2f(g, g * norm);
  }
  let tot = reduceSum2(s, lid, sg) / f32(C); // (mean(g), mean(g·norm))
  for (var c = lid; c < C; c += ROW_WG) {
    let g = dout[base + c] * wb[c];
    let norm = (xb[base + c] - mean) * rstd;
    var v = rstd * (g - tot.x - norm * tot.y);
    if (ACCUMULATE_DX) { v += dx[base + c]; }
    dx[base + c] = v;
  }
}

@compute @workgroup_size(256)
fn backward_params_partial(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let c = wg.x * WG + lid;
  let chunk = wg.y;
  let C = dims.C;
  if (c >= C || chunk >= dims.chunks) { return; }
  let r0 = chunk * dims.rowsPerChunk;
  let r1 = min(r0 + dims.rowsPerChunk, dims.N);
  var sw = 0.0;
  var sb = 0.0;
  for (var r = r0; r < r1; r++) {
    let d = dout[r * C + c];
    sw += d * (xb[r * C + c] - meanP[r]) * rstdP[r];
    sb += d;
  }
  partialOut[chunk * C + c] = sw;
  partialOut[(dims.chunks + chunk) * C + c] = sb;
}

@compute @workgroup_size(256)
fn backward_params_reduce(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let c = wg.x * WG + lid;
  let C = dims.C;
  if (c >= C) { return; }
  var sw = 0.0;
  var sb = 0.0;
  for (var k = 0u; k < dims.chunks; k++) {
    sw += partialIn[k * C + c];
    sb += partialIn[(dims.chunks + k) * C + c];
  }
  if (ACCUMULATE_PARAMS) {
    sw += dw[c];
    sb += db[c];
  }
  dw[c] = sw;
  db[c] = sb;
}
