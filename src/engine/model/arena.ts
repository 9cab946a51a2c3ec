// An arena: many tensors packed into a few large GPU buffers, each tensor at an offset aligned
// for storage binding, bound as ranges. Parameters, gradients and the two Adam moments each
// live in one arena with the same tensor order, so the optimizer walks them in step.
import { AdapterLimitError } from '../errors.ts';
import type { GpuContext } from '../gpu/context.ts';
import type { BufferRange } from '../gpu/dispatch.ts';

export interface ArenaItem {
  name: string;
  /** float32 elements */
  numel: number;
}

export class Arena {
  readonly label: string;
  readonly buffers: GPUBuffer[] = [];
  private readonly ranges = new Map<string, BufferRange>();
  /** bytes allocated on the GPU, padding included */
  readonly bytes: number;

  constructor(ctx: GpuContext, label: string, items: readonly ArenaItem[]) {
    this.label = label;
    const align = ctx.alignment;
    const maxBuffer = Math.min(ctx.limits.maxBufferSize, 2 ** 31);
    const maxBinding = ctx.limits.maxStorageBufferBindingSize;
    // Greedy packing in order: a new buffer starts when the next tensor would not fit.
    const layout: Array<{ items: Array<{ name: string; offset: number; size: number }>; size: number }> = [];
    let cur = { items: [] as Array<{ name: string; offset: number; size: number }>, size: 0 };
    for (const it of items) {
      const size = Math.max(4, it.numel * 4);
      if (size > maxBinding) {
        throw new AdapterLimitError(
          `${label}: tensor ${it.name} needs ${size} bytes in one binding; this adapter binds at most ${maxBinding} bytes. ` +
            'Use an adapter with a larger maxStorageBufferBindingSize or a smaller model.',
        );
      }
      const offset = Math.ceil(cur.size / align) * align;
      if (offset + size > maxBuffer && cur.items.length) {
        layout.push(cur);
        cur = { items: [], size: 0 };
      }
      const off = cur.items.length ? Math.ceil(cur.size / align) * align : 0;
      cur.items.push({ name: it.name, offset: off, size });
      cur.size = off + size;
    }
    if (cur.items.length) layout.push(cur);
    let total = 0;
    layout.forEach((b, i) => {
      const size = Math.ceil(b.size / 16) * 16;
      const buffer = ctx.createBuffer(size, `${label}[${i}]`);
      this.buffers.push(buffer);
      total += buffer.size;
      for (const it of b.items) this.ranges.set(it.name, { buffer, offset: it.offset, size: it.size });
    });
    this.bytes = total;
  }

  has(name: string): boolean {
    return this.ranges.has(name);
  }

  range(name: string): BufferRange {
    const r = this.ranges.get(name);
    if (!r) throw new Error(`${this.label}: no tensor '${name}'`);
    return r;
  }

  names(): string[] {
    return [...this.ranges.keys()];
  }

  /** Zero-fills every buffer (a recorded command; no allocation). */
  clear(encoder: GPUCommandEncoder): void {
    for (const b of this.buffers) encoder.clearBuffer(b);
  }

  destroy(): void {
    for (const b of this.buffers) b.destroy();
  }
}
