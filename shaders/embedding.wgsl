// embedding.wgsl — GPT-2's input embedding and its gradients.
//   forward:      out[b,t,:] = dropout(wte[tokens[b,t], :] + wpe[t, :])      (embd_pdrop, site 0)
//   backward_wpe: dwpe[t,c] (+)= Σ_b g[b,t,c] for t < T; rows t ≥ T are zeroed (or left, accumulating)
//   zero_fill:    buf[0 .. n) = 0 (clears dwte before a non-accumulating backward_wte)
//   backward_wte: dwte[tok, :] (+)= Σ_{positions p holding tok, in increasing order} g[p, :]
// where g = dropout_backward(dout) with the forward's mask (regenerated, not stored).
// The wte gradient is a gather, never a scatter (WGSL has no float atomics and the result must be
// deterministic): the CPU groups positions by token (src/engine/kernels/embedding.ts
// buildTokenBuckets, the bucket idea of llm.c's encoder_backward) and one workgroup per unique
// token sums its positions in a fixed order.
//
// Row ranges: wte (and dwte) may be bound as a range of rows [row0, row0 + rows) when the whole
// table exceeds the adapter's largest storage binding (GPT-2's wte is 147 MiB; many adapters
// bind 128 MiB). One dispatch per range: forward writes only the positions whose token lies in
// its range (the range at row0 = 0 also writes the NaN rows of out-of-vocabulary ids), and
// backward_wte gathers only the buckets of its range's tokens. Unsplit, row0 = 0 and rows = V.
//
// Bucket buffer (u32, capacity K = B·T, written by the trainer each step with queue.writeBuffer):
//   [0] U (unique tokens this step) | [1, 1+K) uniqueTokens | [1+K, 2+2K) starts (U+1 used)
//   | [2+2K, 2+3K) positions (flat b·T + t, grouped by token, increasing within a group)
// The dispatch always covers K buckets; workgroups g ≥ U exit, so U never has to be in a uniform.
//
// RNG: the contract in shaders/dropout.wgsl (lowbias32, Chris Wellons), copied here since WGSL
// has no includes; the index is the flat element index (b·T + t)·C + c.
//
// Entry points and bindings (dims uniform at 0):
//   forward:      1 rng uniform; 2 tokens (B·T) u32 read; 3 wte (rows,C) read; 4 wpe (P,C) read;
//                 5 out (B,T,C) read_write                      one thread per element
//   backward_wpe: 1 rng; 2 dout (B,T,C) read; 3 dwpe (P,C) read_write   one thread per (t, c)
//   zero_fill:    1 buf (n) read_write                                   one thread per element
//   backward_wte: 1 rng; 2 dout (B,T,C) read; 3 buckets (2+3K) u32 read; 4 dwte (rows,C) read_write
//                 one workgroup per bucket, threads loop over channels
// Elementwise grids are 2-D: index = (wg.y · num_workgroups.x + wg.x) · 256 + local index.

override ACCUMULATE: bool = false;

struct Dims {
  B: u32, T: u32, C: u32, V: u32,
  P: u32, micro: u32, site: u32, threshold: u32,
  scale: f32, n: u32, row0: u32, rows: u32,
}
struct Rng { seed: u32, step: u32 }

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<uniform> rng: Rng;

// forward
@group(0) @binding(2) var<storage, read> tokens: array<u32>;
@group(0) @binding(3) var<storage, read> wte: array<f32>;
@group(0) @binding(4) var<storage, read> wpe: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

// backward_wpe / backward_wte
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> dwpe: array<f32>;
@group(0) @binding(3) var<storage, read> buckets: array<u32>;
@group(0) @binding(4) var<storage, read_write> dwte: array<f32>;

// zero_fill
@group(0) @binding(1) var<storage, read_write> zeroBuf: array<f32>;

const WG: u32 = 256u;

// The dropout hash, its stream numbering and dropoutBits are in shaders/prelude.wgsl.
fn streamKey() -> u32 {
  return dropoutKey(rng.seed, rng.step, dims.micro, dims.site);
}

// x · mask / (1 − p) at flat index i; exactly x when p = 0.
fn drop(key: u32, i: u32, v: f32) -> f32 {
  if (dims.threshold == 0u) { return v; }
  if (dropoutBits(key, i) >= dims.threshold) { return v * dims.scale; }
  return 0.0;
}

fn flatIndex(wg: vec3u, nwg: vec3u, lid: u32) -> u32 {
  return (wg.y * nwg.x + wg.x) * WG + lid;
}

@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wg, nwg, lid);
  let C = dims.C;
  if (i >= dims.B * dims.T * C) { return; }
  let bt = i / C;
  let c = i % C;
  let t = bt % dims.T;
  let tok = tokens[bt];
  if (tok >= dims.V) {
    // A token id outside the vocabulary: make it loud (NaN loss) instead of reading a wrong row.
    // A quiet NaN built at run time (a constant NaN is a WGSL compile error).
    if (dims.row0 == 0u) { out[i] = bitcast<f32>(0x7fc00000u | (dims.V & 0u)); }
    return;
  }
  if (tok < dims.row0 || tok - dims.row0 >= dims.rows) { return; } // another range's dispatch writes it
  out[i] = drop(streamKey(), i, wte[(tok - dims.row0) * C + c] + wpe[t * C + c]);
}

@compute @workgroup_size(256)
fn backward_wpe(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wg, nwg, lid);
  let C = dims.C;
  if (i >= dims.P * C) { return; }
  let t = i / C;
  let c = i % C;
  if (t >= dims.T) {
    // Positions this batch does not reach have zero gradient.
    if (!ACCUMULATE) { dwpe[i] = 0.0; }
    return;
  }
  let key = streamKey();
  let TC = dims.T * C;
  var s = 0.0;
  for (var b = 0u; b < dims.B; b++) {
    let j = b * TC + t * C + c;
    s += drop(key, j, dout[j]);
  }
  if (ACCUMULATE) { s += dwpe[i]; }
  dwpe[i] = s;
}

@compute @workgroup_size(256)
fn zero_fill(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flatIndex(wg, nwg, lid);
  if (i >= dims.n) { return; }
  zeroBuf[i] = 0.0;
}

@compute @workgroup_size(256)
fn backward_wte(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let g = wg.y * nwg.x + wg.x;
  let K = dims.B * dims.T;
  if (g >= K || g >= buckets[0]) { return; }
  let tok = buckets[1u + g];
  if (tok >= dims.V) { return; } // rejected on the CPU by buildTokenBuckets; never write outside dwte
  if (tok < dims.row0 || tok - dims.row0 >= dims.rows) { return; } // another range's dispatch
  let s0 = buckets[1u + K + g];
  let s1 = buckets[2u + K + g];
  let posBase = 2u + 2u * K;
  let C = dims.C;
  let key = streamKey();
  for (var c = lid; c < C; c += WG) {
    var s = 0.0;
    for (var k = s0; k < s1; k++) {
      let j = buckets[posBase + k] * C + c;
      s += drop(key, j, dout[j]);
    }
    let o = (tok - dims.row0) * C + c;
    if (ACCUMULATE) { s += dwte[o]; }
    dwte[o] = s;
  }
}
