// matmul.wgsl — C (M, N) = op(A) · op(B) [+ bias (N)] [+ C]
// The one GEMM of the engine: linear layers forward (x·W + b), their input gradient
// (dY·Wᵀ), their weight gradient (xᵀ·dY, accumulated across micro-batches), and the
// tied LM head (x·wteᵀ) with its gradients.
//   op(A) = A stored (M, K), or with TRANS_A, A stored (K, M)
//   op(B) = B stored (K, N), or with TRANS_B, B stored (N, K)
// Row-major, any sizes (bounds-checked). A 64×64 output tile per workgroup of 8×8 threads,
// 8×8 outputs per thread held in registers, K in steps of 32 through workgroup memory (2 × 8 KiB,
// within WebGPU's default 16 KiB). Each value read from workgroup memory feeds 8 FMAs; on Mesa
// lavapipe this ran about twice as fast as 16×16 threads with 4×4 outputs each (bench/matmul.ts).
// Leading dimensions (elements between consecutive stored rows) lda, ldb, ldc let A, B and C
// be column blocks of wider matrices: the LM head over a vocabulary split into row ranges of
// wte writes, and reads, one column block of the (rows, V) logits per range.
//
// Bindings:
//   0 dims  uniform {M, N, K, lda, ldb, ldc}
//   1 A     storage read
//   2 B     storage read
//   3 bias  storage read      (N); bound but unread unless HAS_BIAS
//   4 C     storage read_write (M, N)

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override HAS_BIAS: bool = false;
override ACCUMULATE: bool = false;

struct Dims { M: u32, N: u32, K: u32, lda: u32, ldb: u32, ldc: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> C: array<f32>;

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 32u;
const TM: u32 = 8u; // threads per tile row and column (TM × TM threads)
const RM: u32 = 8u; // outputs per thread in each direction (BM / TM)

var<workgroup> As: array<f32, 2048>; // (BK, BM)
var<workgroup> Bs: array<f32, 2048>; // (BK, BN)

fn loadA(m: u32, k: u32) -> f32 {
  if (m >= dims.M || k >= dims.K) { return 0.0; }
  if (TRANS_A) { return A[k * dims.lda + m]; }
  return A[m * dims.lda + k];
}

fn loadB(k: u32, n: u32) -> f32 {
  if (k >= dims.K || n >= dims.N) { return 0.0; }
  if (TRANS_B) { return B[n * dims.ldb + k]; }
  return B[k * dims.ldb + n];
}

@compute @workgroup_size(8, 8)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row0 = wg.y * BM;
  let col0 = wg.x * BN;
  let tid = lid.y * TM + lid.x;
  var acc: array<f32, 64>; // (RM, RM): rows lid.y + TM·i, columns lid.x + TM·j of the tile
  for (var i = 0u; i < 64u; i++) { acc[i] = 0.0; }

  for (var k0 = 0u; k0 < dims.K; k0 += BK) {
    // 64 threads stage a (BK, 64) slice of each operand: 32 values each.
    for (var i = 0u; i < 32u; i++) {
      let idx = tid + i * 64u;
      // Consecutive threads take consecutive addresses of the stored layout.
      if (TRANS_A) {
        let am = idx % BM; let ak = idx / BM;
        As[ak * BM + am] = loadA(row0 + am, k0 + ak);
      } else {
        let ak = idx % BK; let am = idx / BK;
        As[ak * BM + am] = loadA(row0 + am, k0 + ak);
      }
      if (TRANS_B) {
        let bk = idx % BK; let bn = idx / BK;
        Bs[bk * BN + bn] = loadB(k0 + bk, col0 + bn);
      } else {
        let bn = idx % BN; let bk = idx / BN;
        Bs[bk * BN + bn] = loadB(k0 + bk, col0 + bn);
      }
    }
    workgroupBarrier();
    for (var k = 0u; k < BK; k++) {
      var a: array<f32, 8>;
      var b: array<f32, 8>;
      for (var i = 0u; i < RM; i++) {
        a[i] = As[k * BM + lid.y + TM * i];
        b[i] = Bs[k * BN + lid.x + TM * i];
      }
      for (var i = 0u; i < RM; i++) {
        for (var j = 0u; j < RM; j++) {
          acc[i * RM + j] = fma(a[i], b[j], acc[i * RM + j]);
        }
      }
    }
    workgroupBarrier();
  }

  for (var i = 0u; i < RM; i++) {
    let r = row0 + lid.y + TM * i;
    if (r >= dims.M) { continue; }
    for (var j = 0u; j < RM; j++) {
      let c = col0 + lid.x + TM * j;
      if (c >= dims.N) { continue; }
      var v = acc[i * RM + j];
      if (HAS_BIAS) { v += bias[c]; }
      let o = r * dims.ldc + c;
      if (ACCUMULATE) { v += C[o]; }
      C[o] = v;
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
