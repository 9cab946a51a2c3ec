// Shared WGSL, composed after every kernel's own source by src/engine/gpu/shaders.ts (WGSL has
// no #include; module-scope declarations may come in any order, so appending keeps the
// kernel's line numbers in compiler messages). Declares nothing a kernel must bind: a function
// or workgroup variable a kernel does not use costs it nothing.
//
// The counter-based dropout stream (the CPU twin is src/engine/random.ts; the float64
// reference and test/gpu/dropout.test.ts check the two agree bit for bit):
//   hash     = lowbias32 (Chris Wellons, "Prospecting for hash functions", nullprogram.com, 2018)
//   stream   = (step · 64 + micro) · 4096 + site                     (u32, wrapping)
//   key      = hash(seed ^ hash(stream))                              (once per site and thread)
//   bits     = hash(index ^ key) >> 8;  uniform = f32(bits) · 2^-24
//   keep     ⇔ uniform ≥ p ⇔ bits ≥ ceil(p · 2^24)   (the threshold is computed on the CPU,
//                                                      so the comparison is exact)

fn lowbias32(x0: u32) -> u32 {
  var x = x0;
  x ^= x >> 16u;
  x *= 0x7feb352du;
  x ^= x >> 15u;
  x *= 0x846ca68bu;
  x ^= x >> 16u;
  return x;
}

/** The per-site part of the hash for the optimizer step, micro-batch and site. */
fn dropoutKey(seed: u32, step: u32, micro: u32, site: u32) -> u32 {
  let stream = (step * 64u + micro) * 4096u + site;
  return lowbias32(seed ^ lowbias32(stream));
}

/** The 24 random bits of element `index` of the site whose key is `key`. */
fn dropoutBits(key: u32, index: u32) -> u32 {
  return lowbias32(index ^ key) >> 8u;
}

/** Uniform in [0, 1), exactly representable in f32. */
fn dropoutUniform(key: u32, index: u32) -> f32 {
  return f32(dropoutBits(key, index)) * (1.0 / 16777216.0);
}

// Tree reductions over one workgroup of `wg` threads (a power of two ≤ 256); every thread of
// the workgroup must call them, in uniform control flow, and gets the result.
var<workgroup> reduceScratch: array<f32, 256>;

fn workgroupMax(v: f32, lid: u32, wg: u32) -> f32 {
  reduceScratch[lid] = v;
  workgroupBarrier();
  for (var s = wg / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { reduceScratch[lid] = max(reduceScratch[lid], reduceScratch[lid + s]); }
    workgroupBarrier();
  }
  let r = reduceScratch[0];
  workgroupBarrier();
  return r;
}

fn workgroupSum(v: f32, lid: u32, wg: u32) -> f32 {
  reduceScratch[lid] = v;
  workgroupBarrier();
  for (var s = wg / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { reduceScratch[lid] += reduceScratch[lid + s]; }
    workgroupBarrier();
  }
  let r = reduceScratch[0];
  workgroupBarrier();
  return r;
}
