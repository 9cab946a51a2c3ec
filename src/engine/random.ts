// The studio's random numbers, all seeded so that a run, a split or a sample reproduces:
//   - SeededRng: a sequential generator (xoshiro128**) for everything drawn on the CPU —
//     shuffling windows and documents, sampling tokens, initialising LoRA and demo weights;
//   - the counter-based dropout stream: a hash of (seed, stream, index), so the backward pass
//     regenerates the forward's mask without storing it, and the WGSL kernels (the same hash in
//     shaders/prelude.wgsl) and the float64 reference draw the same mask. The mixing function is
//     the "lowbias32" integer hash from Chris Wellons, "Prospecting for hash functions"
//     (nullprogram.com, 2018). All arithmetic is u32, wrapping; in JS the multiplies go through
//     Math.imul and every result is brought back with `>>> 0`.
// Pure: no GPU, no I/O, so the page, the worker, the CLI and the reference share it.
import { StudioError } from './errors.ts';

/** A seed or a range that cannot be used (negative, fractional, empty). */
export class RandomSeedError extends StudioError {}


/** murmur3's 32-bit finalizer (Appleby, MurmurHash3 fmix32): spreads the bits of a seed. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * xoshiro128** (Blackman & Vigna, "Scrambled linear pseudorandom number generators", 2018),
 * seeded from (seed, stream) through a Weyl sequence and fmix32 as the authors recommend
 * (never from raw seed bits). `stream` gives independent sequences from one user seed, e.g.
 * one per epoch for shuffling.
 */
export class SeededRng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number, stream = 0) {
    if (!Number.isSafeInteger(seed) || seed < 0 || !Number.isSafeInteger(stream) || stream < 0) {
      throw new RandomSeedError(`Random seed ${seed} (stream ${stream}) must be a whole number ≥ 0.`);
    }
    // Fold the high bits of seeds above 2^32 (e.g. a timestamp) in as well.
    let x = fmix32((seed >>> 0) ^ fmix32(Math.floor(seed / 2 ** 32) + 0x632be5ab));
    x = fmix32(x ^ fmix32((stream >>> 0) + 0x9e3779b9) ^ fmix32(Math.floor(stream / 2 ** 32) + 0x7f4a7c15));
    const next = () => {
      x = (x + 0x9e3779b9) >>> 0; // golden-ratio Weyl increment
      return fmix32(x);
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1; // the one forbidden state
  }

  /** Uniform 32-bit unsigned integer. */
  nextUint32(): number {
    const rotl = (v: number, k: number) => (v << k) | (v >>> (32 - k));
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  next(): number {
    const hi = this.nextUint32() >>> 5; // 27 bits
    const lo = this.nextUint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform integer in [0, n), without modulo bias (rejects the top partial block). */
  nextInt(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > 2 ** 32) {
      throw new RandomSeedError(`nextInt(${n}): the range must be a whole number in 1 … 2^32.`);
    }
    const limit = 2 ** 32 - (2 ** 32 % n);
    let x = this.nextUint32();
    while (x >= limit) x = this.nextUint32();
    return x % n;
  }
}

/** `() => rng.next()` of a fresh SeededRng: uniform floats in [0, 1). */
export function uniformStream(seed: number, stream = 0): () => number {
  const rng = new SeededRng(seed, stream);
  return () => rng.next();
}

// ---------------------------------------------------------------------------------------------
// The counter-based dropout stream.

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

/** Micro-batches per optimizer step and dropout sites per micro-batch that the stream numbering leaves room for. */
export const MAX_MICRO_BATCHES = 64;
export const MAX_DROPOUT_SITES = 4096;

/** Dropout sites of the model within one micro-batch, offsets from the micro-batch's base stream. */
export const DROPOUT_SITE = {
  embedding: 0,
  /** attention probabilities of block i */
  attnProbs: (i: number) => 1 + 3 * i,
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
