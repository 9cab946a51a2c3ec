// GPT-2's parameters on the GPU: one arena in paramSpecs order, uploaded from and downloaded
// to host tensors keyed by Hugging Face name. A tensor larger than one storage binding (wte on
// adapters that bind 128 MiB) is bound in row ranges: `ranges`; `range` refuses it.
import type { GpuContext } from '../gpu/context.ts';
import type { BufferRange } from '../gpu/dispatch.ts';
import { Arena, type ArenaItem, type TensorRange } from './arena.ts';
import type { GPT2Config } from './config.ts';
import { checkHostParams, paramSpecs, type HostParams, type ParamSpec } from './params.ts';

/** Arena items of parameter specs: 2-D tensors may be split between rows. */
export function arenaItems(specs: readonly ParamSpec[]): ArenaItem[] {
  return specs.map((s) => ({ name: s.name, numel: s.numel, rows: s.shape.length >= 2 ? s.shape[0] : 1 }));
}

export class GpuWeights {
  readonly config: GPT2Config;
  readonly specs: ParamSpec[];
  readonly arena: Arena;
  private readonly ctx: GpuContext;

  constructor(ctx: GpuContext, config: GPT2Config, host: HostParams) {
    checkHostParams(config, host);
    this.ctx = ctx;
    this.config = config;
    this.specs = paramSpecs(config);
    this.arena = new Arena(ctx, 'params', arenaItems(this.specs));
    for (const s of this.specs) this.upload(s.name, host.get(s.name)!);
  }

  /** The parameter as one storage binding (AdapterLimitError when it is larger than one binding: use `ranges`). */
  range(name: string): BufferRange {
    return this.arena.binding(name);
  }

  /** The parameter as bindable row ranges (one range unless it exceeds the binding limit). */
  ranges(name: string): TensorRange[] {
    return this.arena.ranges(name);
  }

  /** Replaces one parameter with a host tensor (range by range: Arena.write). */
  upload(name: string, data: Float32Array): void {
    this.arena.write(name, data);
  }

  /** One parameter on the CPU (range by range: Arena.read). */
  read(name: string): Promise<Float32Array> {
    return this.arena.read(name);
  }

  /** Copies every parameter back to the CPU (tensor by tensor, range by range, so staging stays within one binding). */
  async download(): Promise<HostParams> {
    const out: HostParams = new Map();
    for (const s of this.specs) out.set(s.name, await this.read(s.name));
    return out;
  }

  /** Makes these weights equal to `from` (same config) on the GPU, with no trip through the CPU. */
  copyFrom(from: GpuWeights): void {
    const enc = this.ctx.device.createCommandEncoder({ label: 'weights.copy' });
    this.arena.copyFrom(enc, from.arena);
    this.ctx.device.queue.submit([enc.finish()]);
  }

  get bytes(): number {
    return this.arena.bytes;
  }

  destroy(): void {
    this.arena.destroy();
  }
}
