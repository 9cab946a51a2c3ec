// matmul_reg.wgsl — C (M, N) = op(A) · op(B) [+ bias (N)] [+ C], the register-tiled variant of
// shaders/matmul.wgsl (same bindings, same dims, same results bit for bit): no workgroup memory
// and no barrier. Chosen by a `-reg` tiling (src/engine/gpu/variants.ts), never by default.
//
// Layout: a workgroup of TX invocations (one row of threads) owns BM consecutive output rows and
// BN = TX·RN columns; invocation x computes all BM rows for its RN columns x + TX·j, in registers.
// Every invocation of a workgroup reads the same rows of op(A); neighbouring invocations read
// neighbouring columns of op(B).
//
// Why this shape (measured with bench/matmul.ts on Mesa lavapipe, bench/README.md "Matmul tiles"):
// a CPU driver runs the invocations of a workgroup as SIMD lanes and, inside a loop, loads every
// value lane by lane with a bounds check, whether or not the address is the same for all lanes;
// a barrier splits the shader into resumable pieces. So the cost is the number of loads per
// fused multiply-add. Here each op(B) value loaded feeds BM multiply-adds; the op(A) values,
// identical across lanes, are loaded BK = 8 at a time, one per subgroup lane, and handed to every
// lane with subgroupBroadcast (a register shuffle), so one load brings eight distinct values.
//
// SUBGROUPS (the device's `subgroups` feature): the broadcast path, taken when the subgroup has
// at least BK lanes; otherwise, and for the last K mod BK steps, each lane loads op(A) itself.
// Both paths add the terms of every output in the order k = 0, 1, … K−1 with one fma each,
// starting from 0, then the bias, then C under ACCUMULATE: the sums of shaders/matmul.wgsl.
//
// Bounds: a row or column index past M or N is clamped to the last one for loading (so every
// lane runs the same loop and every load is in range), and its outputs are not stored.
//
// Bindings:
//   0 dims  uniform {M, N, K, lda, ldb, ldc}
//   1 A     storage read      (array<f32>)
//   2 B     storage read      (array<f32>, or array<f16> with F16_B, widened as it is read)
//   3 bias  storage read      (N); bound but unread unless HAS_BIAS
//   4 C     storage read_write (M, N)
//   5 G     storage read_write (M, N), with GELU only: gelu(C) of the value just stored, as in
//           shaders/matmul.wgsl (geluValue of prelude.wgsl; GELU_KIND 0 gelu_new, 1 gelu)
#if SUBGROUPS
enable subgroups;
#endif
#if F16_B
enable f16;
#endif

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override HAS_BIAS: bool = false;
override ACCUMULATE: bool = false;
override GELU_KIND: u32 = 0u;

struct Dims { M: u32, N: u32, K: u32, lda: u32, ldb: u32, ldc: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> A: array<f32>;
#if F16_B
@group(0) @binding(2) var<storage, read> B: array<f16>;
#else
@group(0) @binding(2) var<storage, read> B: array<f32>;
#endif
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> C: array<f32>;
#if GELU
@group(0) @binding(5) var<storage, read_write> G: array<f32>;
#endif

const BM: u32 = $BM; // output rows per workgroup, all of them per invocation
const BN: u32 = $BN; // output columns per workgroup
const TX: u32 = $TX; // invocations per workgroup
const RN: u32 = BN / TX; // columns per invocation
const BK: u32 = 8u; // op(A) values per lane load on the broadcast path (the unrolled steps below)

// op(A)[m, k] and op(B)[k, n] for in-range indices.
fn a(m: u32, k: u32) -> f32 {
  if (TRANS_A) { return A[k * dims.lda + m]; }
  return A[m * dims.lda + k];
}

fn b(k: u32, n: u32) -> f32 {
  // f32() is the identity on the f32 array and widens the f16 one.
  if (TRANS_B) { return f32(B[n * dims.ldb + k]); }
  return f32(B[k * dims.ldb + n]);
}

@compute @workgroup_size(TX)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u
#if SUBGROUPS
  , @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) lanes: u32
#endif
) {
  let row0 = wg.y * BM;
  let col0 = wg.x * BN;
  var rows: array<u32, BM>; // clamped into range for loading
  for (var i = 0u; i < BM; i++) { rows[i] = min(row0 + i, dims.M - 1u); }
  var cols: array<u32, RN>;
  for (var j = 0u; j < RN; j++) { cols[j] = min(col0 + lid.x + TX * j, dims.N - 1u); }
  var acc: array<f32, BM * RN>; // (BM, RN)
  for (var i = 0u; i < BM * RN; i++) { acc[i] = 0.0; }

  var k = 0u;
#if SUBGROUPS
  if (lanes >= BK) {
    // Lane l loads op(A)[rows[i], k + l] (lanes past BK load a value no one reads, kept in range).
    let l = min(lane, BK - 1u);
    for (; k + BK <= dims.K; k += BK) {
      var av: array<f32, BM>;
      for (var i = 0u; i < BM; i++) { av[i] = a(rows[i], k + l); }
      var bv: array<f32, RN>;
      // The eight steps k … k + 7, unrolled: subgroupBroadcast takes a constant lane.
      for (var j = 0u; j < RN; j++) { bv[j] = b(k, cols[j]); }
      for (var i = 0u; i < BM; i++) { let x = subgroupBroadcast(av[i], 0u); for (var j = 0u; j < RN; j++) { acc[i * RN + j] = fma(x, bv[j], acc[i * RN + j]); } }
      for (var j = 0u; j < RN; j++) { bv[j] = b(k + 1u, cols[j]); }
      for (var i = 0u; i < BM; i++) { let x = subgroupBroadcast(av[i], 1u); for (var j = 0u; j < RN; j++) { acc[i * RN + j] = fma(x, bv[j], acc[i * RN + j]); } }
      for (var j = 0u; j < RN; j++) { bv[j] = b(k + 2u, cols[j]); }
      for (var i = 0u; i < BM; i++) { let x = subgroupBroadcast(av[i], 2u); for (var j = 0u; j < RN; j++) { acc[i * RN + j] = fma(x, bv[j], acc[i * RN + j]); } }
      for (var j = 0u; j < RN; j++) { bv[j] = b(k + 3u, cols[j]); }
      for (var i = 0u; i < BM; i++) { let x = subgroupBroadcast(av[i], 3u); for (var j = 0u; j < RN; j++) { acc[i * RN + j] = fma(x, bv[j], acc[i * RN + j]); } }
      for (var j = 0u; j < RN; j++) { bv[j] = b(k + 4u, cols[j]); }
      for (var i = 0u; i < BM; i++) { let x = subgroupBroadcast(av[i], 4u); for (var j = 0u; j < RN; j++) { acc[i * RN + j] = fma(x, bv[j], acc[i * RN + j]); } }
      for (var j = 0u; j < RN; j++) { bv[j] = b(k + 5u, cols[j]); }
      for (var i = 0u; i < BM; i++) { let x = subgroupBroadcast(av[i], 5u); for (var j = 0u; j < RN; j++) { acc[i * RN + j] = fma(x, bv[j], acc[i * RN + j]); } }
      for (var j = 0u; j < RN; j++) { bv[j] = b(k + 6u, cols[j]); }
      for (var i = 0u; i < BM; i++) { let x = subgroupBroadcast(av[i], 6u); for (var j = 0u; j < RN; j++) { acc[i * RN + j] = fma(x, bv[j], acc[i * RN + j]); } }
      for (var j = 0u; j < RN; j++) { bv[j] = b(k + 7u, cols[j]); }
      for (var i = 0u; i < BM; i++) { let x = subgroupBroadcast(av[i], 7u); for (var j = 0u; j < RN; j++) { acc[i * RN + j] = fma(x, bv[j], acc[i * RN + j]); } }
    }
  }
#endif
  // The remaining steps (all of them without the broadcast path), one k at a time.
  for (; k < dims.K; k++) {
    var bv: array<f32, RN>;
    for (var j = 0u; j < RN; j++) { bv[j] = b(k, cols[j]); }
    for (var i = 0u; i < BM; i++) {
      let x = a(rows[i], k);
      for (var j = 0u; j < RN; j++) { acc[i * RN + j] = fma(x, bv[j], acc[i * RN + j]); }
    }
  }

  for (var i = 0u; i < BM; i++) {
    let r = row0 + i;
    if (r >= dims.M) { continue; }
    for (var j = 0u; j < RN; j++) {
      let c = col0 + lid.x + TX * j;
      if (c >= dims.N) { continue; }
      var v = acc[i * RN + j];
      if (HAS_BIAS) { v += bias[c]; }
      let o = r * dims.ldc + c;
      if (ACCUMULATE) { v += C[o]; }
      C[o] = v;
#if GELU
      G[o] = geluValue(v, GELU_KIND);
#endif
    }
  }
}
