// matmul.wgsl — C (M, N) = op(A) · op(B) [+ bias (N)] [+ C]
// The one GEMM of the engine: linear layers forward (x·W + b), their input gradient
// (dY·Wᵀ), their weight gradient (xᵀ·dY, accumulated across micro-batches), and the
// tied LM head (x·wteᵀ) with its gradients.
//   op(A) = A stored (M, K), or with TRANS_A, A stored (K, M)
//   op(B) = B stored (K, N), or with TRANS_B, B stored (N, K)
// Row-major, any sizes (bounds-checked). Leading dimensions (elements between consecutive
// stored rows) lda, ldb, ldc let A, B and C be column blocks of wider matrices: the LM head over
// a vocabulary split into row ranges of wte writes, and reads, one column block of the (rows, V)
// logits per range.
//
// Tiling (a variant, chosen per shape class by src/engine/kernels/matmul.ts from KernelVariants
// and specialized into the text by src/engine/gpu/shaders.ts): a BM×BN output tile per workgroup
// of TX×TY threads, (BM/TY)×(BN/TX) outputs per thread held in registers, K in steps of BK through
// workgroup memory ((BM + BN)·BK floats). Each value read from workgroup memory feeds BN/TX or
// BM/TY FMAs. Thread (x, y) owns rows y + TY·i and columns x + TX·j of the tile, so neighbouring
// threads read neighbouring workgroup-memory words. The default, 64×64 with 8×8 threads and
// BK = 32 (2 × 8 KiB, within WebGPU's default 16 KiB), ran about twice as fast on Mesa lavapipe as
// 16×16 threads with 4×4 outputs each (bench/matmul.ts).
//
// VEC_A / VEC_B: the operand is bound as array<vec4f> and staged four contiguous floats per load;
// the wrapper picks it only when the operand's leading dimension and stored width are multiples
// of 4 (so a vec4 never straddles a row end or the bound), else the scalar path (ragged shapes,
// odd leading dimensions). Every variant sums each output over k = 0, 1, … K−1 in order with one
// fma per term: all tilings and load widths give bit-identical results.
//
// Bindings:
//   0 dims  uniform {M, N, K, lda, ldb, ldc}
//   1 A     storage read      (array<f32>, or array<vec4f> with VEC_A)
//   2 B     storage read      (array<f32>, array<vec4f> with VEC_B, or array<f16> with F16_B)
//   3 bias  storage read      (N); bound but unread unless HAS_BIAS
//   4 C     storage read_write (M, N)
//   5 G     storage read_write (M, N), with GELU only: G = gelu(C) of the value just stored
//
// GELU (c_fc's forward, the MLP's first layer): the epilogue also writes the activation of each
// output, with the same function gelu.wgsl's forward applies (geluValue in prelude.wgsl, GELU_KIND
// 0 gelu_new, 1 gelu), so C keeps the pre-activation the backward needs and G equals what a
// separate GELU pass over C would write, bit for bit, without that pass. Not with ACCUMULATE.

// F16_B (precision f16, docs/ARCHITECTURE.md "Mixed precision"): B is an f16 weight copy, read
// scalar and widened to f32 as it is staged, so every product and sum stays f32. That module
// needs the device's shader-f16 feature, hence the enable directive in that variant only.
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
#if VEC_A
@group(0) @binding(1) var<storage, read> A: array<vec4f>;
#else
@group(0) @binding(1) var<storage, read> A: array<f32>;
#endif
#if VEC_B
@group(0) @binding(2) var<storage, read> B: array<vec4f>;
#else
#if F16_B
@group(0) @binding(2) var<storage, read> B: array<f16>;
#else
@group(0) @binding(2) var<storage, read> B: array<f32>;
#endif
#endif
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> C: array<f32>;
#if GELU
@group(0) @binding(5) var<storage, read_write> G: array<f32>;
#endif

const BM: u32 = $BM;
const BN: u32 = $BN;
const BK: u32 = $BK;
const TX: u32 = $TX; // threads along a tile row (columns n)
const TY: u32 = $TY; // threads along a tile column (rows m)
const RM: u32 = BM / TY; // outputs per thread along m
const RN: u32 = BN / TX; // outputs per thread along n
const THREADS: u32 = TX * TY;
const VEC_A_ON: bool = $VEC_A;
const VEC_B_ON: bool = $VEC_B;

var<workgroup> As: array<f32, BK * BM>; // (BK, BM)
var<workgroup> Bs: array<f32, BK * BN>; // (BK, BN)

#if VEC_A
#else
fn loadA(m: u32, k: u32) -> f32 {
  if (m >= dims.M || k >= dims.K) { return 0.0; }
  if (TRANS_A) { return A[k * dims.lda + m]; }
  return A[m * dims.lda + k];
}
#endif

#if VEC_B
#else
fn loadB(k: u32, n: u32) -> f32 {
  if (k >= dims.K || n >= dims.N) { return 0.0; }
  // f32() is the identity on the f32 array and widens the f16 one.
  if (TRANS_B) { return f32(B[n * dims.ldb + k]); }
  return f32(B[k * dims.ldb + n]);
}
#endif

// Staging: the (BK, BM) slice of op(A) at (row0, k0) into As and the (BK, BN) slice of op(B) at
// (k0, col0) into Bs, one staging index (a float, or four with vec4 loads) per call; consecutive
// threads take consecutive addresses of the stored layout.
const LOADS_A: u32 = select(BM * BK / THREADS, BM * BK / 4u / THREADS, VEC_A_ON);
const LOADS_B: u32 = select(BN * BK / THREADS, BN * BK / 4u / THREADS, VEC_B_ON);

fn stageA(row0: u32, k0: u32, idx: u32) {
#if VEC_A
  if (TRANS_A) { // stored (K, M): four consecutive m
    let am = (idx % (BM / 4u)) * 4u; let ak = idx / (BM / 4u);
    var v = vec4f(0.0);
    if (k0 + ak < dims.K && row0 + am < dims.M) { v = A[((k0 + ak) * dims.lda + row0 + am) / 4u]; }
    As[ak * BM + am] = v.x; As[ak * BM + am + 1u] = v.y; As[ak * BM + am + 2u] = v.z; As[ak * BM + am + 3u] = v.w;
  } else { // stored (M, K): four consecutive k
    let ak = (idx % (BK / 4u)) * 4u; let am = idx / (BK / 4u);
    var v = vec4f(0.0);
    if (row0 + am < dims.M && k0 + ak < dims.K) { v = A[((row0 + am) * dims.lda + k0 + ak) / 4u]; }
    As[ak * BM + am] = v.x; As[(ak + 1u) * BM + am] = v.y; As[(ak + 2u) * BM + am] = v.z; As[(ak + 3u) * BM + am] = v.w;
  }
#else
  if (TRANS_A) {
    let am = idx % BM; let ak = idx / BM;
    As[ak * BM + am] = loadA(row0 + am, k0 + ak);
  } else {
    let ak = idx % BK; let am = idx / BK;
    As[ak * BM + am] = loadA(row0 + am, k0 + ak);
  }
#endif
}

fn stageB(k0: u32, col0: u32, idx: u32) {
#if VEC_B
  if (TRANS_B) { // stored (N, K): four consecutive k
    let bk = (idx % (BK / 4u)) * 4u; let bn = idx / (BK / 4u);
    var v = vec4f(0.0);
    if (col0 + bn < dims.N && k0 + bk < dims.K) { v = B[((col0 + bn) * dims.ldb + k0 + bk) / 4u]; }
    Bs[bk * BN + bn] = v.x; Bs[(bk + 1u) * BN + bn] = v.y; Bs[(bk + 2u) * BN + bn] = v.z; Bs[(bk + 3u) * BN + bn] = v.w;
  } else { // stored (K, N): four consecutive n
    let bn = (idx % (BN / 4u)) * 4u; let bk = idx / (BN / 4u);
    var v = vec4f(0.0);
    if (k0 + bk < dims.K && col0 + bn < dims.N) { v = B[((k0 + bk) * dims.ldb + col0 + bn) / 4u]; }
    Bs[bk * BN + bn] = v.x; Bs[bk * BN + bn + 1u] = v.y; Bs[bk * BN + bn + 2u] = v.z; Bs[bk * BN + bn + 3u] = v.w;
  }
#else
  if (TRANS_B) {
    let bk = idx % BK; let bn = idx / BK;
    Bs[bk * BN + bn] = loadB(k0 + bk, col0 + bn);
  } else {
    let bn = idx % BN; let bk = idx / BN;
    Bs[bk * BN + bn] = loadB(k0 + bk, col0 + bn);
  }
#endif
}

@compute @workgroup_size(TX, TY)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row0 = wg.y * BM;
  let col0 = wg.x * BN;
  let tid = lid.y * TX + lid.x;
  var acc: array<f32, RM * RN>; // (RM, RN): rows lid.y + TY·i, columns lid.x + TX·j of the tile
  for (var i = 0u; i < RM * RN; i++) { acc[i] = 0.0; }

  for (var k0 = 0u; k0 < dims.K; k0 += BK) {
    // One loop stages both operands when their counts agree (the common square tile).
    for (var i = 0u; i < LOADS_A; i++) {
      stageA(row0, k0, tid + i * THREADS);
      if (LOADS_B == LOADS_A) { stageB(k0, col0, tid + i * THREADS); }
    }
    if (LOADS_B != LOADS_A) {
      for (var i = 0u; i < LOADS_B; i++) { stageB(k0, col0, tid + i * THREADS); }
    }
    workgroupBarrier();
    for (var k = 0u; k < BK; k++) {
      var a: array<f32, RM>;
      var b: array<f32, RN>;
      for (var i = 0u; i < RM; i++) { a[i] = As[k * BM + lid.y + TY * i]; }
      for (var j = 0u; j < RN; j++) { b[j] = Bs[k * BN + lid.x + TX * j]; }
      for (var i = 0u; i < RM; i++) {
        for (var j = 0u; j < RN; j++) {
          acc[i * RN + j] = fma(a[i], b[j], acc[i * RN + j]);
        }
      }
    }
    workgroupBarrier();
  }

  for (var i = 0u; i < RM; i++) {
    let r = row0 + lid.y + TY * i;
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

// ---------------------------------------------------------------------------------------
// bias_grad — db (N) [+]= Σ_m dY (M, N): the bias gradient of a linear layer.
// One thread per column, rows in order (deterministic; no float atomics in WGSL).
// Bindings (entry point bias_grad):
//   0 dims  uniform {M, N, K, lda, ldb, ldc (unused here)}
//   1 dY    storage read       (M, N)
//   2 dbias storage read_write (N)

@group(0) @binding(1) var<storage, read> dY: array<f32>;
@group(0) @binding(2) var<storage, read_write> dbias: array<f32>;

@compute @workgroup_size(256)
fn bias_grad(@builtin(global_invocation_id) gid: vec3u) {
  let n = gid.x;
  if (n >= dims.N) { return; }
  var s = 0.0;
  for (var m = 0u; m < dims.M; m++) {
    s += dY[m * dims.N + n];
  }
  if (ACCUMULATE) { s += dbias[n]; }
  dbias[n] = s;
}
