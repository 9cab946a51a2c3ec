// cast.wgsl — the f16 copies of float32 master weights that matmuls read under precision f16:
// dst[e.dst + i] = f16(src[e.src + i]) for i < e.n, for every range e of a table, in one
// dispatch. Compiles only on a device with the `shader-f16` feature (kernels/cast.ts asks for it
// first). The conversion is WGSL's f32 → f16 value conversion; this is the one kernel that makes
// f16 copies, so a copy made after loading a checkpoint equals the copy the uninterrupted run
// made from the same master weights.
//
// Bindings 1 and 2 are spans of the master and copy arenas (gpu/dispatch.ts packSpans), binding 3
// a table with one Entry per range: its element offsets in the two spans, length, and its
// workgroups [wg0, wg0 + count), count = min(ceil(n / (256·16)), 1024) (kernels/cast.ts: the
// lookup is per invocation, so each does at least 16 elements where the range is large enough).
// Workgroup w (flattened 2-D grid) finds its entry by binary search over wg0, as adamw.wgsl's
// `multi` does, and walks the range with a grid stride of 256·count.
//   0 mdims  uniform {entries, workgroups}
//   1 src    storage read        the float32 master span
//   2 dst    storage read_write  the f16 copy span
//   3 table  storage read        array<Entry>

enable f16;

struct MultiDims { entries: u32, workgroups: u32, pad0: u32, pad1: u32 }

struct Entry {
  src: u32,   // first element in the src span
  dst: u32,   // first element in the dst span
  n: u32,     // elements
  wg0: u32,   // its first workgroup
  count: u32, // its workgroups
  pad0: u32,
  pad1: u32,
  pad2: u32,
}

@group(0) @binding(0) var<uniform> mdims: MultiDims;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f16>;
@group(0) @binding(3) var<storage, read> table: array<Entry>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) t: u32) {
  let w = wg.y * nwg.x + wg.x;
  if (w >= mdims.workgroups) { return; }
  var lo = 0u;
  var hi = mdims.entries - 1u;
  while (lo < hi) {
    let mid = (lo + hi + 1u) / 2u;
    if (table[mid].wg0 <= w) { lo = mid; } else { hi = mid - 1u; }
  }
  let e = table[lo];
  let stride = 256u * e.count;
  for (var i = (w - e.wg0) * 256u + t; i < e.n; i += stride) {
    dst[e.dst + i] = f16(src[e.src + i]);
  }
}
