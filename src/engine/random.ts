// mulberry32 (Tommy Ettinger's 32-bit generator): a small seeded PRNG that gives the same stream
// on every host, for reproducible initialisation, splits and test inputs. Not for sampling
// (generate/sampling.ts has its own xoshiro128** stream with a richer API).

/** Uniform floats in [0, 1) from a 32-bit seed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
