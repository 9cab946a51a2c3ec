// cast.wgsl — dst[dstOffset + i] = f16(src[srcOffset + i]) for i < n: the f16 copy of a float32
// master weight that matmuls read under precision f16. Compiles only on a device with the
// `shader-f16` feature (kernels/cast.ts asks for it first). The conversion is WGSL's f32 → f16
// value conversion; this is the one kernel that makes f16 copies, so a copy made after loading a
// checkpoint equals the copy the uninterrupted run made from the same master weights.
//
// Bindings:
//   0 dims  uniform {n, srcOffset, dstOffset}  (elements)
//   1 src   storage read        the float32 master range
//   2 dst   storage read_write  the f16 copy range
// Grid: (min(ceil(n/256), CAST_MAX_WORKGROUPS), 1, 1), grid-stride over n.
//
// Entry point `multi`: the same conversion for many ranges in one dispatch (the copies of every
// weight an optimizer step updated). Bindings 1 and 2 are then spans of the master and copy
// arenas (gpu/dispatch.ts packSpans) and binding 3 a table with one Entry per range: its element
// offsets in the two spans, length, and its workgroups [wg0, wg0 + count), count =
// min(ceil(n / (256·16)), CAST_MAX_WORKGROUPS) (kernels/cast.ts: the lookup is per invocation,
// so each does at least 16 elements where the range is large enough). Workgroup w
// (flattened 2-D grid) finds its entry by binary search over wg0, as adamw.wgsl's `multi` does.
//   0 mdims  uniform {entries, workgroups}
//   3 table  storage read  array<Entry>

enable f16;

struct Dims { n: u32, srcOffset: u32, dstOffset: u32, pad0: u32 }

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f16>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = 256u * nwg.x;
  for (var i = gid.x; i < dims.n; i += stride) {
    dst[dims.dstOffset + i] = f16(src[dims.srcOffset + i]);
  }
}

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
@group(0) @binding(3) var<storage, read> table: array<Entry>;

@compute @workgroup_size(256)
fn multi(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) t: u32) {
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
