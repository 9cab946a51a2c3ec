// An arena: many tensors packed into a few large GPU buffers, each tensor at an offset aligned
// for storage binding, bound as ranges. Parameters, gradients and the two Adam moments each
// live in one arena with the same tensor order, so the optimizer walks them in step.
//
// A tensor larger than the adapter's largest storage binding (GPT-2's wte: 50257 × 768 × 4 =
// 147 MiB; Mesa lavapipe and many laptop adapters bind 128 MiB) still lives in one buffer, but
// is bound as several row ranges: each a multiple of 64 rows (so with float32 rows every range
// offset moves by a multiple of 256 bytes, the strictest offset alignment WebGPU allows), each
// within the binding limit. The split depends only on the tensor's shape and the limit, so a
// parameter, its gradient and its moments split the same way in every arena.
//
// An arena holds float32 tensors, or (elementBytes 2) the f16 weight copies that matmuls read
// under --precision f16; a 2-byte tensor's byte size is rounded up to 4 (WebGPU binds multiples
// of 4 bytes).
//
// arenaLayout is the pure packing rule; the Arena allocates exactly what it computes, and
// train/memory.ts estimates with the same function before anything is allocated.
import { AdapterLimitError, ShapeError, StudioError } from '../errors.ts';
import type { GpuContext } from '../gpu/context.ts';
import type { BufferRange } from '../gpu/dispatch.ts';

/** A tensor name that the arena does not hold (a name from another model or config). */
export class UnknownTensorError extends StudioError {}

export interface ArenaItem {
  name: string;
  /** elements (4 bytes each, or the arena's elementBytes) */
  numel: number;
  /** leading dimension of the tensor (its rows); a tensor can only be split between rows. Default 1 (not splittable). */
  rows?: number;
}

/** The device limits packing depends on (GpuContext gives them; memory estimates take defaults). */
export interface ArenaLimits {
  /** minStorageBufferOffsetAlignment */
  alignment: number;
  /** the largest storage binding the engine may use (GpuContext.maxBinding) */
  maxBinding: number;
  /** maxBufferSize */
  maxBuffer: number;
}

/** Rows per bindable range: a multiple of 64 (see the header). */
export const RANGE_ROW_MULTIPLE = 64;

/** One bindable piece of a tensor: rows [row0, row0 + rows) at `offset` bytes of its buffer. */
export interface TensorRange extends BufferRange {
  row0: number;
  rows: number;
}

export interface ArenaSlot {
  name: string;
  /** byte offset in its buffer */
  offset: number;
  /** bytes */
  size: number;
  /** bindable pieces, in row order: [offset, size, row0, rows] relative to the buffer */
  pieces: Array<{ offset: number; size: number; row0: number; rows: number }>;
}

export interface ArenaLayout {
  buffers: Array<{ size: number; slots: ArenaSlot[] }>;
  /** bytes of all buffers (what the GPU allocates, padding included) */
  bytes: number;
}

export function limitsOf(ctx: GpuContext): ArenaLimits {
  return { alignment: ctx.alignment, maxBinding: ctx.maxBinding, maxBuffer: ctx.limits.maxBufferSize };
}

/** Rows per bindable range for rows of `rowBytes`, or 0 when even 64 rows exceed the limit. */
export function rowsPerRange(rowBytes: number, maxBinding: number): number {
  return Math.floor(maxBinding / rowBytes / RANGE_ROW_MULTIPLE) * RANGE_ROW_MULTIPLE;
}

/** The pieces a tensor of `size` bytes in `rows` rows is bound as (one piece when it fits a binding). */
export function splitRows(label: string, name: string, size: number, rows: number,
  maxBinding: number): Array<{ offset: number; size: number; row0: number; rows: number }> {
  if (size <= maxBinding) return [{ offset: 0, size, row0: 0, rows }];
  const rowBytes = size / rows;
  const per = rows > 1 && Number.isInteger(rowBytes) ? rowsPerRange(rowBytes, maxBinding) : 0;
  if (per === 0) {
    throw new AdapterLimitError(
      `${label}: tensor ${name} needs ${size} bytes in one binding and cannot be split into ranges of ${RANGE_ROW_MULTIPLE} rows; ` +
        `this adapter binds at most ${maxBinding} bytes. Use an adapter with a larger maxStorageBufferBindingSize or a smaller model.`,
    );
  }
  const out = [];
  for (let r0 = 0; r0 < rows; r0 += per) {
    const n = Math.min(per, rows - r0);
    out.push({ offset: r0 * rowBytes, size: n * rowBytes, row0: r0, rows: n });
  }
  return out;
}

/** Greedy packing in order: a new buffer starts when the next tensor would not fit the buffer limit. Elements are float32 unless elementBytes is 2 (f16). */
export function arenaLayout(label: string, items: readonly ArenaItem[], limits: ArenaLimits, elementBytes: 2 | 4 = 4): ArenaLayout {
  const align = limits.alignment;
  const maxBuffer = Math.min(limits.maxBuffer, 2 ** 31);
  const buffers: ArenaLayout['buffers'] = [];
  let cur: ArenaSlot[] = [];
  let end = 0;
  for (const it of items) {
    const exact = it.numel * elementBytes;
    const size = Math.max(4, Math.ceil(exact / 4) * 4);
    const pieces = splitRows(label, it.name, Math.max(4, exact), Math.max(1, it.rows ?? 1), limits.maxBinding);
    // An odd count of 2-byte elements: the last piece takes the rounding (it stays within `size`).
    const last = pieces[pieces.length - 1];
    last.size = size - last.offset;
    if (size > maxBuffer) {
      throw new AdapterLimitError(`${label}: tensor ${it.name} needs ${size} bytes; this adapter's largest buffer is ${maxBuffer} bytes. Use a smaller model.`);
    }
    let offset = cur.length ? Math.ceil(end / align) * align : 0;
    if (offset + size > maxBuffer && cur.length) {
      buffers.push({ size: Math.ceil(end / 16) * 16, slots: cur });
      cur = [];
      offset = 0;
    }
    cur.push({ name: it.name, offset, size, pieces });
    end = offset + size;
  }
  if (cur.length) buffers.push({ size: Math.ceil(end / 16) * 16, slots: cur });
  // GpuContext.createBuffer allocates at least 16 bytes, in multiples of 16.
  const bytes = buffers.reduce((a, b) => a + Math.max(16, b.size), 0);
  return { buffers, bytes };
}

export class Arena {
  readonly label: string;
  readonly buffers: GPUBuffer[] = [];
  private readonly ctx: GpuContext;
  private readonly whole = new Map<string, BufferRange>();
  private readonly pieces = new Map<string, TensorRange[]>();
  private readonly maxBinding: number;
  /** bytes allocated on the GPU, padding included (summed from the buffers themselves) */
  readonly bytes: number;

  /** bytes per element: 4 (float32), or 2 for an arena of f16 copies (written only by GPU kernels) */
  readonly elementBytes: 2 | 4;

  constructor(ctx: GpuContext, label: string, items: readonly ArenaItem[], elementBytes: 2 | 4 = 4) {
    this.label = label;
    this.ctx = ctx;
    this.maxBinding = ctx.maxBinding;
    this.elementBytes = elementBytes;
    const layout = arenaLayout(label, items, limitsOf(ctx), elementBytes);
    let total = 0;
    layout.buffers.forEach((b, i) => {
      const buffer = ctx.createBuffer(b.size, `${label}[${i}]`);
      this.buffers.push(buffer);
      total += buffer.size;
      for (const s of b.slots) {
        this.whole.set(s.name, { buffer, offset: s.offset, size: s.size });
        this.pieces.set(s.name, s.pieces.map((p) => ({ buffer, offset: s.offset + p.offset, size: p.size, row0: p.row0, rows: p.rows })));
      }
    });
    this.bytes = total;
  }

  has(name: string): boolean {
    return this.whole.has(name);
  }

  /** The whole tensor, for copies and writes (it may exceed one binding: bind `ranges` or `binding`). */
  range(name: string): BufferRange {
    const r = this.whole.get(name);
    if (!r) throw new UnknownTensorError(`${this.label}: no tensor '${name}' (this arena holds ${[...this.whole.keys()].slice(0, 3).join(', ')}…).`);
    return r;
  }

  /** The tensor as bindable row ranges, in row order (one range when it fits a binding). */
  ranges(name: string): TensorRange[] {
    const r = this.pieces.get(name);
    if (!r) throw new UnknownTensorError(`${this.label}: no tensor '${name}' (this arena holds ${[...this.pieces.keys()].slice(0, 3).join(', ')}…).`);
    return r;
  }

  /** The tensor as one binding; AdapterLimitError when it was split (bind `ranges` instead). */
  binding(name: string): BufferRange {
    const r = this.range(name);
    if (r.size > this.maxBinding) {
      throw new AdapterLimitError(
        `${this.label}: tensor ${name} is ${r.size} bytes, more than this adapter binds at once (${this.maxBinding} bytes), ` +
          'and this kernel cannot take it in row ranges. Use an adapter with a larger maxStorageBufferBindingSize or a smaller model.',
      );
    }
    return r;
  }

  /**
   * Writes a host tensor into its slot, range by range. Every upload of parameters goes through
   * here and every download through `read`, so a tensor larger than one binding (GPT-2's wte)
   * moves the same way as the small ones.
   */
  write(name: string, data: Float32Array): void {
    if (this.elementBytes !== 4) throw new ShapeError(`${this.label}: holds f16 copies, which only GPU kernels write (kernels/cast.ts).`);
    const whole = this.range(name);
    if (data.byteLength !== whole.size) throw new ShapeError(`${this.label}: tensor ${name} holds ${whole.size / 4} floats; got ${data.length}.`);
    const base = this.pieces.get(name)![0].offset;
    for (const p of this.ranges(name)) {
      this.ctx.device.queue.writeBuffer(p.buffer, p.offset, data.buffer, data.byteOffset + (p.offset - base), p.size);
    }
  }

  /** Copies a tensor back to the CPU range by range: no staging buffer exceeds one binding. */
  async read(name: string): Promise<Float32Array> {
    if (this.elementBytes !== 4) throw new ShapeError(`${this.label}: holds f16 copies; read them with readF16Bits.`);
    const whole = this.range(name);
    const out = new Float32Array(whole.size / 4);
    for (const p of this.ranges(name)) out.set(await this.ctx.readF32(p.buffer, p.offset, p.size / 4), (p.offset - whole.offset) / 4);
    return out;
  }

  /** An f16 arena's tensor as raw binary16 bit patterns (numel of them), for tests and inspection. */
  async readF16Bits(name: string, numel: number): Promise<Uint16Array> {
    if (this.elementBytes !== 2) throw new ShapeError(`${this.label}: holds float32 tensors; read them with read.`);
    const r = this.range(name);
    return new Uint16Array(await this.ctx.read(r.buffer, r.offset, r.size)).subarray(0, numel);
  }

  /** Copies every buffer of `from`, an arena of the same layout, into this one (a recorded command). */
  copyFrom(encoder: GPUCommandEncoder, from: Arena): void {
    if (from.buffers.length !== this.buffers.length || from.buffers.some((b, i) => b.size !== this.buffers[i].size)) {
      throw new ShapeError(`${this.label}: cannot copy from ${from.label}, whose layout differs.`);
    }
    from.buffers.forEach((b, i) => encoder.copyBufferToBuffer(b, 0, this.buffers[i], 0, b.size));
  }

  names(): string[] {
    return [...this.whole.keys()];
  }

  /** Zero-fills every buffer (a recorded command; no allocation). */
  clear(encoder: GPUCommandEncoder): void {
    for (const b of this.buffers) encoder.clearBuffer(b);
  }

  destroy(): void {
    for (const b of this.buffers) b.destroy();
  }
}
