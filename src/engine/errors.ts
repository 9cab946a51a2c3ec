// Named failures of the engine. Each carries a message that says what went wrong and what to do;
// the worker forwards `name` and `message` to the page as an `error` event.

export class StudioError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** The name and message of anything thrown, as the page shows it (a non-Error becomes its string). */
export function describeError(e: unknown): { name: string; message: string } {
  if (e instanceof Error) return { name: e.name, message: e.message };
  return { name: 'Error', message: String(e) };
}

/** Where WebGPU works today (browser release notes, mid 2025), for messages that explain its absence. */
export const NO_WEBGPU_HELP =
  'WebGPU is needed. It is on by default in Chrome and Edge 113+ (Windows, macOS, ChromeOS, Android 121+), ' +
  'Safari 26 (macOS, iOS) and Firefox 141+ on Windows; on Linux use Chrome with ' +
  'chrome://flags/#enable-unsafe-webgpu and a Vulkan driver. The page must be served over https or from localhost.';

/** No WebGPU in this environment (old browser, insecure context, no adapter). */
export class NoWebGPUError extends StudioError {}

/** The adapter cannot hold or bind what the run needs. */
export class AdapterLimitError extends StudioError {}

/**
 * The adapter lacks a WebGPU feature the run asked for (e.g. `shader-f16` for --precision f16).
 * A subclass of AdapterLimitError: the adapter, not the input, is what cannot do it.
 */
export class MissingFeatureError extends AdapterLimitError {}

/** The GPU device was lost (driver reset, tab in background on some systems, out of memory). */
export class DeviceLostError extends StudioError {}

/** A shader file could not be fetched or did not compile. */
export class ShaderError extends StudioError {}

/** A model configuration the engine cannot reproduce exactly. */
export class UnsupportedConfigError extends StudioError {}

/** Shapes or sizes that do not fit together (a tensor against the config, T > n_positions ...). */
export class ShapeError extends StudioError {}

/** The training loss or gradient norm became NaN or infinite. */
/** A step's loss or gradient was NaN or infinite; `step` (1-based) names it when a training step raised it. */
export class NonFiniteLossError extends StudioError {
  constructor(message: string, readonly step?: number) {
    super(message);
  }
}

/**
 * An allocation did not fit in GPU memory (WebGPU reports it through an 'out-of-memory' error
 * scope, not as an exception). The message says what was being allocated; the page adds the
 * run's estimate and what to change.
 */
export class OutOfMemoryError extends StudioError {
  constructor(message: string, readonly what = '') {
    super(message);
  }
}

/** The GPU reported an error no scope caught (a validation or internal error). */
export class GpuError extends StudioError {}

/** A kernel variant (a matmul tiling, subgroup reductions) this adapter cannot run, or a malformed one. */
export class KernelVariantError extends StudioError {}
