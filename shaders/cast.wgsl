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
