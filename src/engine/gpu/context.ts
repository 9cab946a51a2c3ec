// The WebGPU device the engine runs on: adapter discovery, the limits training needs,
// a compiled-pipeline cache, and small helpers for uploads and readback.
// The engine never touches `navigator` itself: the host (page worker, Node CLI, tests)
// passes its `GPU` object in, so the same code runs in the browser and under Dawn.
import { AdapterLimitError, DeviceLostError, MissingFeatureError, GpuError, NO_WEBGPU_HELP, NoWebGPUError, OutOfMemoryError, ShaderError } from '../errors.ts';
import { defaultVariants, type KernelVariants } from './variants.ts';
import { loadShader, sourceLine, type ShaderDefines, type ShaderName } from './shaders.ts';

/** What the page and the CLI show about the adapter. Plain data: safe to post to the UI. */
export interface AdapterReport {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isFallbackAdapter: boolean;
  features: string[];
  limits: {
    maxStorageBufferBindingSize: number;
    maxBufferSize: number;
    maxComputeWorkgroupStorageSize: number;
    maxComputeInvocationsPerWorkgroup: number;
    maxStorageBuffersPerShaderStage: number;
    maxComputeWorkgroupsPerDimension: number;
    minStorageBufferOffsetAlignment: number;
  };
}

/** Limits the engine asks for: the adapter's best, since the defaults (128 MiB bindings) are too small for GPT-2. */
const WANTED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
] as const;

const OPTIONAL_FEATURES: GPUFeatureName[] = ['shader-f16', 'subgroups' as GPUFeatureName, 'timestamp-query'];

export function reportAdapter(adapter: GPUAdapter): AdapterReport {
  const info = adapter.info;
  const l = adapter.limits;
  return {
    vendor: info?.vendor || 'unknown',
    architecture: info?.architecture || 'unknown',
    device: info?.device || '',
    description: info?.description || '',
    isFallbackAdapter: Boolean((info as { isFallbackAdapter?: boolean } | undefined)?.isFallbackAdapter),
    features: [...adapter.features].map(String).sort(),
    limits: {
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
      minStorageBufferOffsetAlignment: l.minStorageBufferOffsetAlignment,
    },
  };
}

export interface GpuContextOptions {
  /**
   * Test-only: bind at most this many bytes per storage binding, below the device's own limit.
   * Every bind group is then checked, so a tensor the engine forgot to split fails loudly, as it
   * would on an adapter with that limit.
   */
  maxStorageBufferBindingSize?: number;
}

/** Wraps device.createBindGroup so a buffer binding larger than `limit` throws, like a device with that limit. */
function enforceBindingLimit(device: GPUDevice, limit: number): void {
  const create = device.createBindGroup.bind(device);
  device.createBindGroup = (desc: GPUBindGroupDescriptor): GPUBindGroup => {
    for (const e of desc.entries) {
      const r = e.resource as GPUBufferBinding;
      if (!r || typeof r !== 'object' || !('buffer' in r)) continue;
      const size = r.size ?? r.buffer.size - (r.offset ?? 0);
      if (size > limit) {
        throw new AdapterLimitError(`${desc.label ?? 'bind group'}: binding ${e.binding} is ${size} bytes; this context binds at most ${limit} bytes per storage binding.`);
      }
    }
    return create(desc);
  };
}

/** What frees GPU memory for a training run, from the largest saving down. */
export const OOM_ADVICE =
  'To fit, lower the batch size or the sequence length, freeze more layers (frozen layers need no gradients or Adam moments), or train LoRA weights instead of every weight.';

function isOutOfMemory(e: unknown): boolean {
  // GPUOutOfMemoryError is a global in browsers; match by name so Node's Dawn classes work too.
  return !!e && (e as object).constructor?.name === 'GPUOutOfMemoryError';
}

export class GpuContext {
  readonly device: GPUDevice;
  readonly adapter: AdapterReport;
  /** Resolves when the device is lost; `lost` is then set. */
  readonly lostPromise: Promise<DeviceLostError>;
  lost: DeviceLostError | null = null;
  private pipelines = new Map<string, Promise<GPUComputePipeline>>();
  private modules = new Map<string, Promise<GPUShaderModule>>();

  /**
   * Largest storage binding the engine may use: the device's limit, or a smaller one given to
   * create() (WebGPU never lowers a device's limit below its 128 MiB default, so a test that
   * wants to see tensors split into ranges cheaply asks the engine to behave as if it were lower).
   */
  readonly maxBinding: number;

  /**
   * The kernel variants dispatches are built with (matmul tiles per shape class, vec4 loads,
   * subgroup reductions): the defaults until the host sets a tuned or a checkpoint's choice,
   * before it builds the model's dispatches.
   */
  kernels: KernelVariants = defaultVariants();

  /**
   * Called with errors that no error scope caught (the device's `uncapturederror` event): an
   * allocation outside allocating(), a validation error. Without a listener they would only reach
   * the browser console, and the page would not know why training stopped making sense.
   */
  onUncapturedError: ((e: OutOfMemoryError | GpuError) => void) | null = null;

  private constructor(device: GPUDevice, adapter: AdapterReport, bindingLimit?: number) {
    this.device = device;
    // Dawn in Node may not make the device an EventTarget; the page's browsers all do.
    const target = device as unknown as Partial<EventTarget>;
    target.addEventListener?.('uncapturederror', (ev: Event) => {
      const err = (ev as GPUUncapturedErrorEvent).error;
      const wrapped = isOutOfMemory(err)
        ? new OutOfMemoryError(`The GPU ran out of memory (${err.message || 'no detail given'}). ${OOM_ADVICE}`)
        : new GpuError(`The GPU reported an error: ${err?.message ?? String(err)}. Reload the page if results look wrong, and report it with the adapter shown in the Adapter panel.`);
      if (this.onUncapturedError) {
        ev.preventDefault();
        this.onUncapturedError(wrapped);
      }
    });
    this.adapter = adapter;
    this.maxBinding = Math.min(device.limits.maxStorageBufferBindingSize, bindingLimit ?? Infinity);
    if (bindingLimit !== undefined) enforceBindingLimit(device, this.maxBinding);
    this.lostPromise = device.lost.then((info) => {
      this.lost = new DeviceLostError(
        info.reason === 'destroyed'
          ? 'The GPU device was released.'
          : `The GPU device was lost (${info.message || 'no reason given'}). Start the run again; if it repeats, use a smaller model, batch or sequence length.`,
      );
      return this.lost;
    });
  }

  static async create(gpu: GPU | undefined | null, powerPreference: GPUPowerPreference = 'high-performance', options: GpuContextOptions = {}): Promise<GpuContext> {
    if (!gpu) throw new NoWebGPUError(`This environment has no WebGPU (navigator.gpu is missing). ${NO_WEBGPU_HELP}`);
    const adapter = await gpu.requestAdapter({ powerPreference });
    if (!adapter) throw new NoWebGPUError(`WebGPU is present but no adapter was found. ${NO_WEBGPU_HELP}`);
    const requiredLimits: Record<string, number> = {};
    for (const k of WANTED_LIMITS) requiredLimits[k] = adapter.limits[k];
    const requiredFeatures = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f));
    let device: GPUDevice;
    try {
      device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
    } catch (e) {
      throw new AdapterLimitError(`The adapter refused a device with its own limits: ${(e as Error).message}`);
    }
    const limit = options.maxStorageBufferBindingSize;
    if (limit !== undefined && !(Number.isInteger(limit) && limit >= 256 && limit % 4 === 0)) {
      throw new AdapterLimitError(`maxStorageBufferBindingSize override must be a multiple of 4 bytes, at least 256; got ${limit}.`);
    }
    return new GpuContext(device, reportAdapter(adapter), limit);
  }

  /**
   * Runs `f`, which allocates GPU memory, inside an 'out-of-memory' error scope: WebGPU reports an
   * allocation that does not fit there, asynchronously, and the buffer it returned is unusable
   * (WebGPU §22 "Errors & Debugging": createBuffer never throws for lack of memory). A failure
   * becomes OutOfMemoryError naming `what`, after `undo` released what f made.
   */
  async allocating<T>(what: string, f: () => T | Promise<T>, undo?: (made: T) => void): Promise<T> {
    this.device.pushErrorScope('out-of-memory');
    let made: T;
    try {
      made = await f();
    } catch (e) {
      await this.device.popErrorScope().catch(() => null);
      throw e;
    }
    const err = await this.device.popErrorScope();
    if (err) {
      undo?.(made);
      throw new OutOfMemoryError(`The GPU ran out of memory while allocating ${what} (${err.message || 'no detail given'}). ${OOM_ADVICE}`, what);
    }
    return made;
  }

  get limits(): GPUSupportedLimits {
    return this.device.limits;
  }

  /** Storage-binding offsets must be multiples of this (256 on most adapters). */
  get alignment(): number {
    return this.device.limits.minStorageBufferOffsetAlignment;
  }

  /** Whether the device has WGSL's f16 type (the `shader-f16` feature): what precision f16 needs. */
  get hasF16(): boolean {
    return this.device.features.has('shader-f16');
  }

  /** Throws MissingFeatureError naming `shader-f16` unless the device has it; `what` says who asks. */
  requireF16(what: string): void {
    if (this.hasF16) return;
    const name = `${this.adapter.vendor} ${this.adapter.description}`.trim();
    throw new MissingFeatureError(
      `${what} needs the WebGPU feature 'shader-f16', which this adapter (${name}) does not offer. ` +
        'Train with precision f32 (the default), or use an adapter that lists shader-f16.',
    );
  }

  private module(name: ShaderName, defines?: ShaderDefines): Promise<GPUShaderModule> {
    const key = defines ? `${name}${JSON.stringify(Object.entries(defines).sort())}` : name;
    let m = this.modules.get(key);
    if (!m) {
      m = (async () => {
        const code = await loadShader(name, defines);
        const mod = this.device.createShaderModule({ code, label: key });
        const info = await mod.getCompilationInfo();
        const errors = info.messages.filter((x) => x.type === 'error');
        if (errors.length) {
          const where = await Promise.all(errors.map((x) => sourceLine(name, x.lineNum)));
          throw new ShaderError(`shaders/${name}.wgsl does not compile:\n` + errors.map((x, i) => `  ${where[i]}:${x.linePos} ${x.message}`).join('\n'));
        }
        return mod;
      })();
      this.modules.set(key, m);
    }
    return m;
  }

  /**
   * A compute pipeline for `shader`'s `entryPoint` with WGSL override constants, its text
   * specialized by `defines` where given (shaders.ts `specialize`: tile sizes, load widths); cached.
   */
  pipeline(shader: ShaderName, entryPoint = 'main', constants: Record<string, number | boolean> = {}, defines?: ShaderDefines): Promise<GPUComputePipeline> {
    const consts: Record<string, number> = {};
    for (const [k, v] of Object.entries(constants)) consts[k] = typeof v === 'boolean' ? Number(v) : v;
    const defs = defines ? `:${JSON.stringify(Object.entries(defines).sort())}` : '';
    const key = `${shader}:${entryPoint}:${JSON.stringify(Object.entries(consts).sort())}${defs}`;
    let p = this.pipelines.get(key);
    if (!p) {
      p = (async () => {
        const module = await this.module(shader, defines);
        this.device.pushErrorScope('validation');
        const pipe = await this.device.createComputePipelineAsync({
          layout: 'auto',
          label: key,
          compute: { module, entryPoint, constants: consts },
        });
        const err = await this.device.popErrorScope();
        if (err) throw new ShaderError(`Pipeline ${key}: ${err.message}`);
        return pipe;
      })();
      this.pipelines.set(key, p);
    }
    return p;
  }

  /** A storage buffer of `bytes` (rounded up to 4), optionally filled from `data`. */
  createBuffer(bytes: number, label: string, data?: ArrayBufferView, extraUsage = 0): GPUBuffer {
    const size = Math.max(16, Math.ceil(bytes / 16) * 16);
    if (size > this.device.limits.maxBufferSize) {
      throw new AdapterLimitError(`${label} needs ${size} bytes; this adapter's largest buffer is ${this.device.limits.maxBufferSize} bytes.`);
    }
    const buffer = this.device.createBuffer({
      size,
      label,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST | extraUsage,
    });
    if (data) this.device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
    return buffer;
  }

  /** A uniform buffer holding `words` (u32 or f32 by the caller's view). */
  createUniform(data: ArrayBuffer, label: string): GPUBuffer {
    const size = Math.max(16, Math.ceil(data.byteLength / 16) * 16);
    const buffer = this.device.createBuffer({ size, label, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    this.device.queue.writeBuffer(buffer, 0, data);
    return buffer;
  }

  /** Copies `bytes` of `buffer` from `offset` to the CPU. Allocates a staging buffer: not for the training step's hot path. */
  async read(buffer: GPUBuffer, offset = 0, bytes = buffer.size - offset): Promise<ArrayBuffer> {
    const size = Math.ceil(bytes / 4) * 4;
    const staging = this.device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: 'readback' });
    const enc = this.device.createCommandEncoder();
    enc.copyBufferToBuffer(buffer, offset, staging, 0, size);
    this.device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const out = staging.getMappedRange().slice(0, bytes);
    staging.unmap();
    staging.destroy();
    return out;
  }

  async readF32(buffer: GPUBuffer, offset = 0, count = (buffer.size - offset) / 4): Promise<Float32Array> {
    return new Float32Array(await this.read(buffer, offset, count * 4));
  }

  destroy(): void {
    this.device.destroy();
  }
}
