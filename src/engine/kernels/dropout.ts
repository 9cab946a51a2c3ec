// Wrapper for shaders/dropout.wgsl (out = x · mask / (1 − p), forward and backward alike), and
// the pieces every dropout-capable kernel wrapper shares: the dropout parameters in a dims
// uniform, the per-step `rng` uniform and the site numbering.
//
// The mask is counter-based (see the dropout stream in src/engine/random.ts and its WGSL twin
// in shaders/prelude.wgsl): stream = (step · 64 + micro) · 4096 + site, index = the flat
// element index within the site's tensor, so backward regenerates the forward's mask.
import { StudioError } from '../errors.ts';
import { MAX_DROPOUT_SITES, MAX_MICRO_BATCHES } from '../random.ts';
import type { GpuContext } from '../gpu/context.ts';
import { bindAll, flatGrid, needElements, needPositive, uniformWords, type BufferRange, type Dispatch } from '../gpu/dispatch.ts';

/** Dropout parameters that cannot be reproduced (p outside [0, 1), a site or micro-batch out of range, no rng). */
export class DropoutConfigError extends StudioError {}

export interface DropoutSpec {
  /** drop probability in [0, 1); 0 reproduces the no-dropout result exactly */
  p: number;
  /** site number (see DROPOUT_SITE in random.ts) */
  site: number;
  /** micro-batch index within the optimizer step, 0 ≤ micro < 64 */
  micro: number;
  /** the trainer's `Rng { seed: u32, step: u32 }` uniform (createRngUniform / writeRng); may be omitted only when p = 0 */
  rng?: GPUBuffer;
}

/** The `Rng { seed, step }` uniform. One per trainer; rewrite it once per optimizer step with writeRng. */
export function createRngUniform(ctx: GpuContext, label = 'rng', seed = 0, step = 0): GPUBuffer {
  return ctx.createUniform(new Uint32Array([seed >>> 0, step >>> 0, 0, 0]).buffer, label);
}

/** queue.writeBuffer of the seed and the 0-based optimizer step (no allocation on the GPU). */
export function writeRng(ctx: GpuContext, rng: GPUBuffer, seed: number, step: number): void {
  ctx.device.queue.writeBuffer(rng, 0, new Uint32Array([seed >>> 0, step >>> 0]));
}

const zeroRng = new WeakMap<GpuContext, GPUBuffer>();

/** Checks a dropout spec and returns the dims words [micro, site, threshold, scale] and the rng uniform to bind. */
export function dropoutParams(ctx: GpuContext, spec: DropoutSpec | undefined, label: string): { words: Array<number | { f32: number }>; rng: GPUBuffer } {
  const p = spec?.p ?? 0;
  const micro = spec?.micro ?? 0;
  const site = spec?.site ?? 0;
  if (!(p >= 0 && p < 1)) {
    throw new DropoutConfigError(`${label}: dropout probability ${p} is outside [0, 1). Use 0 to turn dropout off; values near 1 drop everything.`);
  }
  if (!Number.isInteger(micro) || micro < 0 || micro >= MAX_MICRO_BATCHES) {
    throw new DropoutConfigError(`${label}: micro-batch index ${micro} must be an integer in [0, ${MAX_MICRO_BATCHES}); use at most ${MAX_MICRO_BATCHES} accumulation steps.`);
  }
  if (!Number.isInteger(site) || site < 0 || site >= MAX_DROPOUT_SITES) {
    throw new DropoutConfigError(`${label}: dropout site ${site} must be an integer in [0, ${MAX_DROPOUT_SITES}) (a model of at most 1365 layers).`);
  }
  let rng = spec?.rng;
  if (!rng) {
    if (p > 0) throw new DropoutConfigError(`${label}: dropout p = ${p} needs the trainer's rng uniform (createRngUniform); without it every step would drop the same elements.`);
    rng = zeroRng.get(ctx);
    if (!rng) {
      rng = createRngUniform(ctx, 'rng.unused');
      zeroRng.set(ctx, rng);
    }
  }
  // keep ⇔ f32(u >> 8)·2^-24 ≥ p ⇔ (u >> 8) ≥ ceil(p·2^24): exact, p·2^24 is exact in float64.
  const threshold = Math.ceil(p * 2 ** 24);
  return { words: [micro, site, threshold, { f32: 1 / (1 - p) }], rng };
}

export interface DropoutArgs {
  label: string;
  /** element count */
  n: number;
  /** (n) activations (forward) or upstream gradient (backward) */
  input: BufferRange;
  /** (n) written: input · mask / (1 − p); must not alias input */
  output: BufferRange;
  dropout: DropoutSpec;
}

/** out = dropout(x). The backward is the same call with the gradient as input and the same spec. */
export async function dropout(ctx: GpuContext, args: DropoutArgs): Promise<Dispatch> {
  const { label, n } = args;
  needPositive(n, 'n', label);
  needElements(args.input, n, 'input', label);
  needElements(args.output, n, 'output', label);
  const { words, rng } = dropoutParams(ctx, args.dropout, label);
  const pipeline = await ctx.pipeline('dropout', 'main');
  const dims = uniformWords(ctx, `${label}.dims`, [n, ...words]);
  return {
    label,
    pipeline,
    bindGroup: bindAll(ctx, pipeline, label, [dims, rng], [args.input, args.output]),
    workgroups: flatGrid(ctx, Math.ceil(n / 256), label),
  };
}
