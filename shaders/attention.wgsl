// attention.wgsl — causal multi-head self-attention in the flash style: the (T, T) score
// matrix of a head is never stored. The forward keeps a running (online) softmax per query
// and saves only the row logsumexp; the backward recomputes probabilities from it.
//
//   qkv (B, T, 3C): q, k, v are consecutive C-wide blocks; head h is [h·HS, (h+1)·HS) of each
//   out (B, T, C),  lse (B, NH, T),  dout (B, T, C),  dqkv (B, T, 3C)
//   s_ij = scale · q_i·k_j with scale = 1/sqrt(HS), causal: only keys j ≤ i
//   P_ij = exp(s_ij − lse_i);  P̃_ij = P_ij · keep_ij / (1 − p) (attention dropout; the softmax is
//   normalised over the undropped probabilities, as torch's softmax-then-dropout does)
//   out_i = Σ_j P̃_ij v_j
//
// Entry points and what each thread owns (64 threads per workgroup, one row each):
//   forward       one query i of one (b, h): out_i, lse_i.  grid (ceil(T/64), B·NH)
//   backward_dq   one query i: dq_i = scale · Σ_{j≤i} dS_ij k_j            grid (ceil(T/64), B·NH)
//   backward_dkv  one key j:   dk_j = scale · Σ_{i≥j} dS_ij q_i,
//                              dv_j = Σ_{i≥j} P̃_ij dout_i                     grid (ceil(T/64), B·NH)
//   with dP_ij = dout_i·v_j · keep_ij/(1−p),  D_i = dout_i·out_i,  dS_ij = P_ij (dP_ij − D_i).
// The two backward passes split the sums by rows and columns so that every output element has
// exactly one writer and a fixed summation order (no atomics; results are deterministic).
// K/V (forward, dq) or Q/dout (dkv) rows stream through workgroup memory in tiles of
// kt = min(64, floor(1920/HS)) rows.
//
// Bindings (the backward's read-only out and lse get their own slots, so that no binding is
// declared twice with two access modes):
//   0 dims   uniform Dims                         forward, backward
//   1 rng    uniform Rng {seed, step}, written once per optimizer step by the trainer
//   2 qkv    storage read        (B, T, 3C)        forward, backward
//   3 out    storage read_write  (B, T, C)         forward
//   4 lse    storage read_write  (B, NH, T)        forward
//   5 outIn  storage read        (B, T, C)         backward
//   6 lseIn  storage read        (B, NH, T)        backward
//   7 dout   storage read        (B, T, C)         backward
//   8 dqkv   storage read_write  (B, T, 3C)        backward, overwritten
//
// Dropout RNG: the stream of shaders/prelude.wgsl (CPU twin: src/engine/random.ts),
// stream = (step·64 + micro)·4096 + site,
// index = ((b·NH + h)·T + i)·T + j; keep when uniform(seed, stream, index) ≥ p.
// p = 0 takes a branch that never touches the RNG, so it reproduces the no-dropout result exactly.

struct Dims {
  B: u32,
  T: u32,
  C: u32,
  NH: u32,
  HS: u32,
  micro: u32,
  site: u32,
  p: f32,
}
struct Rng { seed: u32, step: u32 }

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<uniform> rng: Rng;
@group(0) @binding(2) var<storage, read> qkv: array<f32>;
// forward outputs
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> lse: array<f32>;
// backward
@group(0) @binding(5) var<storage, read> outIn: array<f32>;
@group(0) @binding(6) var<storage, read> lseIn: array<f32>;
@group(0) @binding(7) var<storage, read> dout: array<f32>;
@group(0) @binding(8) var<storage, read_write> dqkv: array<f32>;

const WG: u32 = 64u;          // rows (queries or keys) per workgroup, one per thread
// One shared tile holds 1920 floats (7.5 KiB): two tiles plus the two 64-float row arrays of
// backward_dkv take 15.5 KiB, within the 16 KiB every WebGPU adapter offers.
const TILE_WORDS: u32 = 1920u;
const MAX_KT: u32 = 64u;
const NEG_BIG: f32 = -3.0e38;  // stands in for −inf (WGSL has no infinity literal)

var<workgroup> tileA: array<f32, 1920>; // (kt, HS): K (forward, dq) or Q (dkv)
var<workgroup> tileB: array<f32, 1920>; // (kt, HS): V (forward, dq) or dout (dkv)
var<workgroup> rowA: array<f32, 64>;    // (kt): lse of the tile's queries (dkv)
var<workgroup> rowB: array<f32, 64>;    // (kt): D of the tile's queries (dkv)

// The dropout stream (shaders/prelude.wgsl): the per-site part of the hash is computed once
// per thread (siteKey), then dropoutUniform(key, index) per probability.
fn siteKey() -> u32 {
  return dropoutKey(rng.seed, rng.step, dims.micro, dims.site);
}

fn tileRows() -> u32 {
  return min(MAX_KT, TILE_WORDS / dims.HS);
}

@compute @workgroup_size(64)
fn forward(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let T = dims.T;
  let C = dims.C;
  let HS = dims.HS;
  let C3 = 3u * C;
  let bh = wg.y;
  let b = bh / dims.NH;
  let h = bh % dims.NH;
  let i = wg.x * WG + lid.x;
  let valid = i < T;
  let kt = tileRows();
  let scale = 1.0 / sqrt(f32(HS));
  let p = dims.p;
  let keepScale = 1.0 / (1.0 - p);
  let key = siteKey();

  var q: array<f32, 128>;   // (HS) this query, pre-scaled
  var acc: array<f32, 128>; // (HS) Σ_j exp(s_ij − m) · keep/(1−p) · v_j
  var s: array<f32, 64>;    // (kt) scores of the current tile
  let qBase = (b * T + i) * C3 + h * HS;
  for (var d = 0u; d < HS; d++) {
    acc[d] = 0.0;
    q[d] = 0.0;
    if (valid) { q[d] = qkv[qBase + d] * scale; }
  }
  var m = NEG_BIG; // running max of the scores
  var l = 0.0;     // running Σ_j exp(s_ij − m), undropped

  // Keys any query of this workgroup can see: 0 .. last−1 (uniform across the workgroup).
  let last = min(T, wg.x * WG + WG);
  for (var j0 = 0u; j0 < last; j0 += kt) {
    let n = min(kt, last - j0);
    for (var e = lid.x; e < n * HS; e += WG) {
      let r = e / HS;
      let src = (b * T + j0 + r) * C3 + h * HS + (e % HS);
      tileA[e] = qkv[src + C];
      tileB[e] = qkv[src + 2u * C];
    }
    workgroupBarrier();
    if (valid && j0 <= i) {
      let jn = min(n, i + 1u - j0);
      var mt = m;
      for (var r = 0u; r < jn; r++) {
        var dot = 0.0;
        for (var d = 0u; d < HS; d++) { dot = fma(q[d], tileA[r * HS + d], dot); }
        s[r] = dot;
        mt = max(mt, dot);
      }
      // Rescale what was accumulated under the old maximum (exp(NEG_BIG − mt) is 0 at the start).
      let corr = exp(m - mt);
      l *= corr;
      for (var d = 0u; d < HS; d++) { acc[d] *= corr; }
      for (var r = 0u; r < jn; r++) {
        var pr = exp(s[r] - mt);
        l += pr;
        if (p > 0.0) {
          let index = (bh * T + i) * T + j0 + r;
          pr = select(0.0, pr * keepScale, dropoutUniform(key, index) >= p);
        }
        if (pr != 0.0) {
          for (var d = 0u; d < HS; d++) { acc[d] = fma(pr, tileB[r * HS + d], acc[d]); }
        }
      }
      m = mt;
    }
    workgroupBarrier();
  }

  if (valid) {
    let inv = 1.0 / l;
    let oBase = (b * T + i) * C + h * HS;
    for (var d = 0u; d < HS; d++) { out[oBase + d] = acc[d] * inv; }
    lse[bh * T + i] = m + log(l);
  }
}

@compute @workgroup_size(64)
fn backward_dq(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let T = dims.T;
  let C = dims.C;
  let HS = dims.HS;
  let C3 = 3u * C;
  let bh = wg.y;
  let b = bh / dims.NH;
  let h = bh % dims.NH;
  let i = wg.x * WG + lid.x;
  let valid = i < T;
  let kt = tileRows();
  let scale = 1.0 / sqrt(f32(HS));
  let p = dims.p;
  let keepScale = 1.0 / (1.0 - p);
  let key = siteKey();

  var q: array<f32, 128>;  // (HS) pre-scaled
  var dO: array<f32, 128>; // (HS) dout_i
  var dq: array<f32, 128>; // (HS) Σ_j dS_ij k_j
  var D = 0.0;
  var L = 0.0;
  let qBase = (b * T + i) * C3 + h * HS;
  let oBase = (b * T + i) * C + h * HS;
  for (var d = 0u; d < HS; d++) {
    q[d] = 0.0;
    dO[d] = 0.0;
    dq[d] = 0.0;
    if (valid) {
      q[d] = qkv[qBase + d] * scale;
      dO[d] = dout[oBase + d];
      D = fma(dO[d], outIn[oBase + d], D);
    }
  }
  if (valid) { L = lseIn[bh * T + i]; }

  let last = min(T, wg.x * WG + WG);
  for (var j0 = 0u; j0 < last; j0 += kt) {
    let n = min(kt, last - j0);
    for (var e = lid.x; e < n * HS; e += WG) {
      let r = e / HS;
      let src = (b * T + j0 + r) * C3 + h * HS + (e % HS);
      tileA[e] = qkv[src + C];
      tileB[e] = qkv[src + 2u * C];
    }
    workgroupBarrier();
    if (valid && j0 <= i) {
      let jn = min(n, i + 1u - j0);
      for (var r = 0u; r < jn; r++) {
        var sc = 0.0;
        var dP = 0.0;
        for (var d = 0u; d < HS; d++) {
          sc = fma(q[d], tileA[r * HS + d], sc);
          dP = fma(dO[d], tileB[r * HS + d], dP);
        }
        let P = exp(sc - L);
        if (p > 0.0) {
          let index = (bh * T + i) * T + j0 + r;
          dP = select(0.0, dP * keepScale, dropoutUniform(key, index) >= p);
        }
        let dS = P * (dP - D);
        for (var d = 0u; d < HS; d++) { dq[d] = fma(dS, tileA[r * HS + d], dq[d]); }
      }
    }
    workgroupBarrier();
  }

  if (valid) {
    for (var d = 0u; d < HS; d++) { dqkv[qBase + d] = dq[d] * scale; }
  }
}

@compute @workgroup_size(64)
fn backward_dkv(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let T = dims.T;
  let C = dims.C;
  let HS = dims.HS;
  let C3 = 3u * C;
  let bh = wg.y;
  let b = bh / dims.NH;
  let h = bh % dims.NH;
  let j = wg.x * WG + lid.x; // this thread's key
  let valid = j < T;
  let kt = tileRows();
  let scale = 1.0 / sqrt(f32(HS));
  let p = dims.p;
  let keepScale = 1.0 / (1.0 - p);
  let key = siteKey();

  var k: array<f32, 128>;  // (HS) pre-scaled
  var v: array<f32, 128>;  // (HS)
  var dk: array<f32, 128>; // (HS) Σ_i dS_ij q_i
  var dv: array<f32, 128>; // (HS) Σ_i P̃_ij dout_i
  let kBase = (b * T + j) * C3 + h * HS;
  for (var d = 0u; d < HS; d++) {
    k[d] = 0.0;
    v[d] = 0.0;
    dk[d] = 0.0;
    dv[d] = 0.0;
    if (valid) {
      k[d] = qkv[kBase + C + d] * scale;
      v[d] = qkv[kBase + 2u * C + d];
    }
  }

  // Queries that see any key of this workgroup: first .. T−1 (uniform across the workgroup).
  let first = wg.x * WG;
  for (var i0 = first; i0 < T; i0 += kt) {
    let n = min(kt, T - i0);
    for (var e = lid.x; e < n * HS; e += WG) {
      let r = e / HS;
      let d = e % HS;
      tileA[e] = qkv[(b * T + i0 + r) * C3 + h * HS + d];
      tileB[e] = dout[(b * T + i0 + r) * C + h * HS + d];
    }
    for (var r = lid.x; r < n; r += WG) {
      let oBase = (b * T + i0 + r) * C + h * HS;
      var D = 0.0;
      for (var d = 0u; d < HS; d++) { D = fma(dout[oBase + d], outIn[oBase + d], D); }
      rowA[r] = lseIn[bh * T + i0 + r];
      rowB[r] = D;
    }
    workgroupBarrier();
    if (valid && i0 + n > j) {
      // Rows of this tile with i ≥ j.
      let r0 = select(0u, j - i0, j > i0);
      for (var r = r0; r < n; r++) {
        var sc = 0.0;
        var dP = 0.0;
        for (var d = 0u; d < HS; d++) {
          sc = fma(tileA[r * HS + d], k[d], sc);
          dP = fma(tileB[r * HS + d], v[d], dP);
        }
        let P = exp(sc - rowA[r]);
        var Pt = P;
        if (p > 0.0) {
          let index = (bh * T + i0 + r) * T + j;
          let kept = dropoutUniform(key, index) >= p;
          Pt = select(0.0, P * keepScale, kept);
          dP = select(0.0, dP * keepScale, kept);
        }
        let dS = P * (dP - rowB[r]);
        for (var d = 0u; d < HS; d++) {
          dv[d] = fma(Pt, tileB[r * HS + d], dv[d]);
          dk[d] = fma(dS, tileA[r * HS + d], dk[d]);
        }
      }
    }
    workgroupBarrier();
  }

  if (valid) {
    for (var d = 0u; d < HS; d++) {
      dqkv[kBase + C + d] = dk[d] * scale;
      dqkv[kBase + 2u * C + d] = dv[d];
    }
  }
}
