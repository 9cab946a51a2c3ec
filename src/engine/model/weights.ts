// GPT-2's parameters on the GPU: one arena in paramSpecs order, uploaded from and downloaded
// to host tensors keyed by Hugging Face name. A tensor larger than one storage binding (wte on
// adapters that bind 128 MiB) is bound in row ranges: `ranges`; `range` refuses it.
//
// Precision f16 (setPrecision('f16'), docs/ARCHITECTURE.md "Mixed precision"): the float32
// tensors stay the master weights, and a second arena holds an f16 copy of every weight that a
// matmul reads as its B operand (F16_COPIED: the four linear weights of each block and the tied
// wte). The graph's matmuls then bind the copy (`matmulWeight`, `matmulRanges`); embedding,
// LayerNorm, biases and generation's gemv keep reading the masters. Every change of a master
// through this class (upload, copyFrom) rewrites its copy with kernels/cast.ts, and the trainer
// does the same after each AdamW update, so a copy is always f16(master).
import type { GpuContext } from '../gpu/context.ts';
import { encode, type BufferRange, type Dispatch } from '../gpu/dispatch.ts';
import { castToF16, type CastPiece } from '../kernels/cast.ts';
import { Arena, type ArenaItem, type TensorRange } from './arena.ts';
import type { GPT2Config } from './config.ts';
import { checkHostParams, paramSpecs, type HostParams, type ParamSpec } from './params.ts';

/** Arena items of parameter specs: 2-D tensors may be split between rows. */
export function arenaItems(specs: readonly ParamSpec[]): ArenaItem[] {
  return specs.map((s) => ({ name: s.name, numel: s.numel, rows: s.shape.length >= 2 ? s.shape[0] : 1 }));
}

/** Weight precision of the matmuls: float32 throughout, or f16 copies of the matmul weights (f32 accumulation). */
export type Precision = 'f32' | 'f16';

/** Whether a parameter gets an f16 copy under precision f16: the weights matmuls read as B. */
export function isF16Copied(name: string): boolean {
  return name === 'wte.weight' || /^h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$/.test(name);
}

/** Arena items of the f16 copies (elementBytes 2), in paramSpecs order: memory.ts estimates with them. */
export function f16CopyItems(specs: readonly ParamSpec[]): ArenaItem[] {
  return arenaItems(specs.filter((s) => isF16Copied(s.name)));
}

/** A weight a matmul binds as B: the master (f32) or its f16 copy. */
export interface MatmulWeight {
  range: BufferRange;
  f16: boolean;
}

export class GpuWeights {
  readonly config: GPT2Config;
  readonly specs: ParamSpec[];
  readonly arena: Arena;
  private readonly ctx: GpuContext;
  /** the f16 copies under precision f16, else null */
  private half: Arena | null = null;
  /** per copied tensor, the ranges its copy is converted in (the master's and the copy's row ranges may split differently) */
  private pieces = new Map<string, CastPiece[]>();
  /** per copied tensor, the cast dispatch(es) that rewrite its copy after an upload (prepared once), and their tables */
  private casts = new Map<string, Dispatch[]>();
  private castTables: GPUBuffer[] = [];

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

  /** 'f16' when the matmuls read f16 copies (setPrecision), else 'f32'. */
  get precision(): Precision {
    return this.half ? 'f16' : 'f32';
  }

  /**
   * Makes the matmuls read float32 masters ('f32', which frees the copies) or f16 copies ('f16',
   * which allocates and fills them; MissingFeatureError on a device without shader-f16). Graphs
   * built before a change keep the bindings they were built with: build them after this.
   */
  async setPrecision(p: Precision): Promise<void> {
    if (p === this.precision) return;
    if (p === 'f32') {
      this.half!.destroy();
      this.half = null;
      this.casts.clear();
      this.pieces.clear();
      for (const t of this.castTables.splice(0)) t.destroy();
      return;
    }
    this.ctx.requireF16('Precision f16');
    const half = await this.ctx.allocating('the f16 copies of the weights', () => new Arena(this.ctx, 'params.f16', f16CopyItems(this.specs), 2), (a) => a.destroy());
    const casts = new Map<string, Dispatch[]>();
    const pieces = new Map<string, CastPiece[]>();
    const tables: GPUBuffer[] = [];
    for (const s of this.specs) {
      if (!isF16Copied(s.name)) continue;
      const rowElems = s.numel / s.shape[0];
      const mine: CastPiece[] = [];
      // The master's and the copy's bindable row ranges may split differently (model/arena.ts):
      // one piece per overlap, with element offsets into both ranges.
      for (const src of this.arena.ranges(s.name)) {
        for (const dst of half.ranges(s.name)) {
          const r0 = Math.max(src.row0, dst.row0);
          const r1 = Math.min(src.row0 + src.rows, dst.row0 + dst.rows);
          if (r1 <= r0) continue;
          mine.push({ n: (r1 - r0) * rowElems, src, srcOffset: (r0 - src.row0) * rowElems, dst, dstOffset: (r0 - dst.row0) * rowElems });
        }
      }
      const own = await castToF16(this.ctx, `f16copy.${s.name}`, mine);
      casts.set(s.name, own.dispatches);
      tables.push(...own.tables);
      pieces.set(s.name, mine);
    }
    this.half = half;
    this.casts = casts;
    this.castTables = tables;
    this.pieces = pieces;
    this.refreshCopies(this.specs.map((s) => s.name));
    await this.ctx.device.queue.onSubmittedWorkDone();
  }

  /** The dispatches that rewrite `name`'s f16 copy from its master (none when it has no copy). */
  private copyDispatches(name: string): Dispatch[] {
    return this.casts.get(name) ?? [];
  }

  /**
   * The dispatches that rewrite the f16 copies of `names` (those that have one) from their
   * masters, as few as the binding limit allows (kernels/cast.ts: one per span of the arenas).
   * None under precision f32. The caller destroys `tables` when it no longer runs the dispatches.
   */
  copyAllDispatches(names: readonly string[]): Promise<{ dispatches: Dispatch[]; tables: GPUBuffer[] }> {
    return castToF16(this.ctx, 'f16copy', names.flatMap((n) => this.pieces.get(n) ?? []));
  }

  /** Submits the rewriting of the f16 copies of `names` (those that have one). */
  private refreshCopies(names: readonly string[]): void {
    const ds = names.flatMap((n) => this.copyDispatches(n));
    if (!ds.length) return;
    const enc = this.ctx.device.createCommandEncoder({ label: 'weights.f16copy' });
    const pass = enc.beginComputePass();
    encode(pass, ds);
    pass.end();
    this.ctx.device.queue.submit([enc.finish()]);
  }

  /** The weight a matmul reads as B: its f16 copy under precision f16, else the master (one binding: see `range`). */
  matmulWeight(name: string): MatmulWeight {
    if (this.half?.has(name)) return { range: this.half.binding(name), f16: true };
    return { range: this.range(name), f16: false };
  }

  /** The matmul weight as bindable row ranges (wte for the LM head), with whether they are f16 copies. */
  matmulRanges(name: string): { ranges: TensorRange[]; f16: boolean } {
    if (this.half?.has(name)) return { ranges: this.half.ranges(name), f16: true };
    return { ranges: this.ranges(name), f16: false };
  }

  /** The f16 copy of `name` as binary16 bit patterns (tests); null without one. */
  async readF16Copy(name: string): Promise<Uint16Array | null> {
    if (!this.half?.has(name)) return null;
    return this.half.readF16Bits(name, this.specs.find((s) => s.name === name)!.numel);
  }

  /** Replaces one parameter with a host tensor (range by range: Arena.write), and its f16 copy. */
  upload(name: string, data: Float32Array): void {
    this.arena.write(name, data);
    this.refreshCopies([name]);
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
    this.refreshCopies(this.specs.map((s) => s.name));
  }

  /** bytes of the masters and, under precision f16, their copies */
  get bytes(): number {
    return this.arena.bytes + (this.half?.bytes ?? 0);
  }

  destroy(): void {
    this.arena.destroy();
    this.half?.destroy();
    for (const t of this.castTables.splice(0)) t.destroy();
  }
}
