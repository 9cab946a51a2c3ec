// gemv.wgsl — matrix-vector products for one-row linear layers: generation's Conv1D layers,
// its tied LM head and LoRA factors, one token at a time (the training matmul's 64×64 tiles
// would compute 64 rows to keep one).
//
// Entry points (one thread per output, k in order with fma, as the training matmul sums):
//   gemv     y (N) = x (K) · W (K, N) + b: a Conv1D layer (HF stores W as (in, out))
//                                                                   grid ceil(N/256), 2-D
//   gemv4    gemv for N a multiple of 4: four outputs per thread as one vec4, each still
//            summed with fma in k order, so bit-identical to gemv's  grid ceil(N/64), 2-D
//   gemv_t   y (N) [+]= scale · W (N, K) · x (K): the tied LM head (W = a range of wte's rows),
//            and LoRA's A·x and += B·(s·A·x) (A (r, in), B (out, r) as PEFT stores them)
//                                                                   grid ceil(N/256), 2-D
//   gemv_t4  gemv_t for K a multiple of 4: W and x read as vec4 (a quarter of the loads); the
//            four products of each vec4 still summed one by one with fma in k order, so the
//            result is bit-identical to gemv_t's                      grid ceil(N/16), 2-D
// Workgroups are laid out as x + y · num_workgroups.x, so N above 65535·256 still fits.
//
// Bindings:
//   0 dims   uniform Dims {K, N, scale}
//   1 x      storage read        (K)
//   2 w      storage read        (K, N) gemv, (N, K) gemv_t
//   3 bias   storage read        (N)    gemv only
//   4 out    storage read_write  (N)

struct Dims { K: u32, N: u32, scale: f32 }

override ACCUMULATE: bool = false; // gemv_t: add into out instead of overwriting it

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> xs: array<f32, 256>; // a tile of x

@compute @workgroup_size(256)
fn gemv(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let K = dims.K;
  let N = dims.N;
  let n = (wg.y * nwg.x + wg.x) * 256u + lid;
  var acc = 0.0;
  // Every thread stays for the barriers; only n < N accumulate and write.
  for (var k0 = 0u; k0 < K; k0 += 256u) {
    if (k0 + lid < K) { xs[lid] = x[k0 + lid]; }
    workgroupBarrier();
    if (n < N) {
      let kn = min(256u, K - k0);
      // Consecutive threads read consecutive columns of one row of W.
      for (var i = 0u; i < kn; i++) { acc = fma(xs[i], w[(k0 + i) * N + n], acc); }
    }
    workgroupBarrier();
  }
  if (n < N) { out[n] = acc + bias[n]; }
}

@compute @workgroup_size(256)
fn gemv_t(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let K = dims.K;
  let N = dims.N;
  let n = (wg.y * nwg.x + wg.x) * 256u + lid;
  var acc = 0.0;
  for (var k0 = 0u; k0 < K; k0 += 256u) {
    if (k0 + lid < K) { xs[lid] = x[k0 + lid]; }
    workgroupBarrier();
    if (n < N) {
      let kn = min(256u, K - k0);
      let row = n * K + k0;
      for (var i = 0u; i < kn; i++) { acc = fma(w[row + i], xs[i], acc); }
    }
    workgroupBarrier();
  }
  if (n < N) {
    var y = dims.scale * acc;
    if (ACCUMULATE) { y += out[n]; }
    out[n] = y;
  }
}

// gemv_t4's views of x and W (the same bindings as gemv_t, read four floats at a time).
@group(0) @binding(1) var<storage, read> x4: array<vec4f>;
@group(0) @binding(2) var<storage, read> w4: array<vec4f>;

// 16 threads, one row each, x read straight from storage, no workgroup memory or barriers: on
// lavapipe 2-3x faster than a 64-thread version tiling x in workgroup memory, and 4-6x faster
// than gemv_t, at the LM head's (N, K) = (50257, 128).
@compute @workgroup_size(16)
fn gemv_t4(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let K4 = dims.K / 4u;
  let n = (wg.y * nwg.x + wg.x) * 16u + lid;
  if (n >= dims.N) { return; }
  let row = n * K4;
  var acc = 0.0;
  for (var i = 0u; i < K4; i++) {
    let a = w4[row + i];
    let b = x4[i];
    acc = fma(a.x, b.x, acc);
    acc = fma(a.y, b.y, acc);
    acc = fma(a.z, b.z, acc);
    acc = fma(a.w, b.w, acc);
  }
  var y = dims.scale * acc;
  if (ACCUMULATE) { y += out[n]; }
  out[n] = y;
}

// gemv4's views of bias (N/4) and out (N/4) as vec4; W through w4 as (K, N/4).
@group(0) @binding(3) var<storage, read> bias4: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> out4: array<vec4f>;

// 16 threads, four outputs each, x read straight from storage (the same address in every
// thread), no workgroup memory or barriers: GPT-2's layers have N of a few hundred, so small
// workgroups are what spreads them over a CPU's cores. On lavapipe 5-20x faster than gemv at
// (K, N) = (128, 384), (128, 512), (512, 128).
@compute @workgroup_size(16)
fn gemv4(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let K = dims.K;
  let N4 = dims.N / 4u;
  let j = (wg.y * nwg.x + wg.x) * 16u + lid;
  if (j >= N4) { return; }
  var acc = vec4f(0.0);
  for (var k = 0u; k < K; k++) { acc = fma(vec4f(x[k]), w4[k * N4 + j], acc); }
  out4[j] = acc + bias4[j];
}

