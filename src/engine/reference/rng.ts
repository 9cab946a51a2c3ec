// The counter-based dropout RNG shared by the float64 reference and the WGSL kernels.
// Counter-based so the backward pass regenerates the forward mask from (seed, stream, index)
// without storing it. The mixing function is the "lowbias32" integer hash from Chris Wellons,
// "Prospecting for hash functions" (nullprogram.com, 2018). All arithmetic is u32, wrapping;
// in JS the multiplies go through Math.imul and every result is brought back with `>>> 0`.

/** lowbias32: a u32 → u32 avalanche hash. */
export function hashU32(x: number): number {
  x >>>= 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  x ^= x >>> 16;
  return x >>> 0;
}

/** Uniform in [0, 1) with 24 random bits: exactly representable in f32, as the WGSL side computes it. */
export function dropoutUniform(seed: number, stream: number, index: number): number {
  const u = hashU32((index >>> 0) ^ hashU32((seed >>> 0) ^ hashU32(stream >>> 0)));
  return (u >>> 8) * 2 ** -24;
}

/** Whether element `index` of dropout site `stream` survives with drop probability p; kept values are scaled by 1/(1−p). */
export function dropoutKeep(seed: number, stream: number, index: number, p: number): boolean {
  return dropoutUniform(seed, stream, index) >= p;
}

/** Dropout sites of the model within one micro-batch, offsets from the micro-batch's base stream. */
export const DROPOUT_SITE = {
  embedding: 0,
  /** attention probabilities of block i */
  attn: (i: number) => 1 + 3 * i,
  /** residual dropout on the attention projection output of block i */
  attnResid: (i: number) => 2 + 3 * i,
  /** residual dropout on the MLP output of block i */
  mlpResid: (i: number) => 3 + 3 * i,
} as const;

/**
 * Stream id of a dropout site: base = (step·64 + micro)·4096, plus the site offset.
 * `step` is the 0-based optimizer step, `micro` the gradient-accumulation micro-batch (< 64),
 * `site` < 4096 (see DROPOUT_SITE). Wraps modulo 2^32 like the u32 arithmetic on the GPU.
 */
export function dropoutStream(step: number, micro: number, site: number): number {
  // step·64·4096 stays exact in float64 up to step ≈ 2^35, far beyond any run; then wrap to u32.
  return ((step * 64 + micro) * 4096 + site) % 4294967296 >>> 0;
}
