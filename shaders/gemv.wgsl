// gemv.wgsl — matrix-vector products for one-row linear layers: generation's Conv1D layers,
// its tied LM head and LoRA factors, one token at a time (the training matmul's 64×64 tiles
// would compute 64 rows to keep one).
//
// Entry points (one thread per output, k in order with fma, as the training matmul sums):
//   gemv     y (N) = x (K) · W (K, N) + b: a Conv1D layer (HF stores W as (in, out))
//                                                                   grid ceil(N/256), 2-D
//   gemv_t   y (N) [+]= scale · W (N, K) · x (K): the tied LM head (W = a range of wte's rows),
//            and LoRA's A·x and += B·(s·A·x) (A (r, in), B (out, r) as PEFT stores them)
//                                                                   grid ceil(N/256), 2-D
//   gemv_t4  gemv_t for K a multiple of 4: W and x read as vec4 (a quarter of the loads), two
//            rows per thread; the four products of each vec4 still summed one by one with fma
//            in k order, so the result is bit-identical to gemv_t's grid ceil(N/128), 2-D
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

var<workgroup> xs4: array<vec4f, 64>; // a tile of x: 256 floats

// 64 threads, each two rows (n and n + 64) of a 128-row block: on a software adapter (lavapipe)
// this measured 1.3-1.6x faster than one row per thread, and 1.6-2.3x faster than gemv_t.
@compute @workgroup_size(64)
fn gemv_t4(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let K4 = dims.K / 4u;
  let N = dims.N;
  let n0 = (wg.y * nwg.x + wg.x) * 128u + lid;
  let n1 = n0 + 64u;
  // A row past N reads row N − 1 (in bounds) and is never written.
  let r0 = min(n0, N - 1u) * K4;
  let r1 = min(n1, N - 1u) * K4;
  var acc0 = 0.0;
  var acc1 = 0.0;
  for (var k0 = 0u; k0 < K4; k0 += 64u) {
    if (k0 + lid < K4) { xs4[lid] = x4[k0 + lid]; }
    workgroupBarrier();
    let kn = min(64u, K4 - k0);
    for (var i = 0u; i < kn; i++) {
      let b = xs4[i];
      let a = w4[r0 + k0 + i];
      let c = w4[r1 + k0 + i];
      acc0 = fma(a.x, b.x, acc0);
      acc1 = fma(c.x, b.x, acc1);
      acc0 = fma(a.y, b.y, acc0);
      acc1 = fma(c.y, b.y, acc1);
      acc0 = fma(a.z, b.z, acc0);
      acc1 = fma(c.z, b.z, acc1);
      acc0 = fma(a.w, b.w, acc0);
      acc1 = fma(c.w, b.w, acc1);
    }
    workgroupBarrier();
  }
  if (n0 < N) {
    var y = dims.scale * acc0;
    if (ACCUMULATE) { y += out[n0]; }
    out[n0] = y;
  }
  if (n1 < N) {
    var y = dims.scale * acc1;
    if (ACCUMULATE) { y += out[n1]; }
    out[n1] = y;
  }
}
