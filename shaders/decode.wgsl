// decode.wgsl — the pieces of a one-token GPT-2 step with a key/value cache (batch 1) that the
// training kernels do not cover. Its one-row linear layers and the head run on gemv.wgsl;
// LayerNorm, GELU and the residual adds reuse the training kernels with one row.
//
//   kv cache of a layer (2, P, C): keys [0, P·C), values [P·C, 2·P·C); row t holds position t,
//   head h is the slice [h·HS, (h+1)·HS) of a row, as in c_attn's output (docs/ARCHITECTURE.md, GPT-2 semantics).
//
// Entry points:
//   embed       x (C) = wte[token] + wpe[pos], by the dispatch whose wte row range
//               [row0, row0 + rows) holds the token (wte may be bound in several ranges)
//                                                                          grid (ceil(C/256))
//   attend      one workgroup per head h: writes the new token's k, v into cache row pos, then
//               out_h = Σ_{j≤pos} softmax_j(scale · q_h·k_j) v_j, scale = 1/sqrt(HS)   grid (NH)
//   fill_cache  cache rows [0, T) from a prefill's qkv (T, 3C)              grid (ceil(T·C/256))
// `token` and `pos` come from the Step uniform, rewritten before every step, so the step's
// dispatches are built once and replayed (no allocation per token).
// SUBGROUPS (a define, the kernel variant `subgroups`; attend only): the softmax's max and sum
// over the positions go through shaders/subgroups.wgsl instead of the prelude's trees.
//
// Bindings (one slot per resource and access mode, as attention.wgsl does):
//   0 dims     uniform Dims
//   1 step     uniform Step {token, pos}                 embed, attend
//   2 wte      storage read        (rows, C) wte rows [row0, row0 + rows)   embed
//   3 wpe      storage read        (P, C)                embed
//   4 x        storage read_write  (C)                   embed
//   5 qkv      storage read        (3C) the new token    attend
//   6 kv       storage read_write  (2, P, C)             attend, fill_cache
//   7 scores   storage read_write  (NH, P) scratch       attend
//   8 out      storage read_write  (C)                   attend
//   9 qkvRows  storage read        (T, 3C)               fill_cache

#if SUBGROUPS
enable subgroups;
#endif

struct Dims {
  C: u32,
  NH: u32,
  HS: u32,
  P: u32,
  T: u32,
  scale: f32,
  row0: u32,
  rows: u32,
}
struct Step { token: u32, pos: u32 }

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> wte: array<f32>;
@group(0) @binding(3) var<storage, read> wpe: array<f32>;
@group(0) @binding(4) var<storage, read_write> x: array<f32>;
@group(0) @binding(5) var<storage, read> qkv: array<f32>;
@group(0) @binding(6) var<storage, read_write> kv: array<f32>;
@group(0) @binding(7) var<storage, read_write> scores: array<f32>;
@group(0) @binding(8) var<storage, read_write> out: array<f32>;
@group(0) @binding(9) var<storage, read> qkvRows: array<f32>;

const WG: u32 = 64u;
const LOWEST: f32 = -0x1.fffffep+127f; // −FLT_MAX


@compute @workgroup_size(256)
fn embed(@builtin(global_invocation_id) gid: vec3u) {
  let c = gid.x;
  let C = dims.C;
  let r = step.token - dims.row0; // wraps to a huge value below row0
  if (c >= C || r >= dims.rows) { return; }
  x[c] = wte[r * C + c] + wpe[step.pos * C + c];
}

@compute @workgroup_size(64)
fn attend(
  @builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32,
#if SUBGROUPS
  @builtin(subgroup_size) sgSize: u32, @builtin(subgroup_invocation_id) sgId: u32,
#endif
) {
  let h = wg.x;
  let C = dims.C;
  let HS = dims.HS;
  let P = dims.P;
  let pos = step.pos;
  let ho = h * HS; // this head's offset within a row
  let vo = P * C; // values after the keys
  let so = h * P; // this head's scores

  // 1. The new token's key and value join the cache. Each head writes and later reads only its
  //    own slice, so one workgroup owns everything it touches.
  for (var d = lid; d < HS; d += WG) {
    kv[pos * C + ho + d] = qkv[C + ho + d];
    kv[vo + pos * C + ho + d] = qkv[2u * C + ho + d];
  }
  storageBarrier();

  // 2. Scaled scores of keys 0 … pos, and their max.
  var m = LOWEST;
  for (var j = lid; j <= pos; j += WG) {
    var s = 0.0;
    for (var d = 0u; d < HS; d++) { s += qkv[ho + d] * kv[j * C + ho + d]; }
    s *= dims.scale;
    scores[so + j] = s;
    m = max(m, s);
  }
#if SUBGROUPS
  m = subgroupsMax(m, lid, WG, vec2u(sgSize, sgId));
#else
  m = workgroupMax(m, lid, WG);
#endif

  // 3. Unnormalised probabilities (each thread rewrites the scores it wrote) and their sum.
  var l = 0.0;
  for (var j = lid; j <= pos; j += WG) {
    let p = exp(scores[so + j] - m);
    scores[so + j] = p;
    l += p;
  }
#if SUBGROUPS
  l = subgroupsSum(l, lid, WG, vec2u(sgSize, sgId));
#else
  l = workgroupSum(l, lid, WG);
#endif
  storageBarrier(); // every thread reads every probability below

  // 4. out_h[d] = Σ_j p_j v_j[d] / l, summed over j in order (deterministic).
  let inv = 1.0 / l;
  for (var d = lid; d < HS; d += WG) {
    var acc = 0.0;
    for (var j = 0u; j <= pos; j++) { acc += scores[so + j] * kv[vo + j * C + ho + d]; }
    out[ho + d] = acc * inv;
  }
}

@compute @workgroup_size(256)
fn fill_cache(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wg.y * nwg.x + wg.x) * 256u + lid;
  let C = dims.C;
  if (i >= dims.T * C) { return; }
  let t = i / C;
  let c = i % C;
  kv[t * C + c] = qkvRows[t * 3u * C + C + c];
  kv[dims.P * C + t * C + c] = qkvRows[t * 3u * C + 2u * C + c];
}
