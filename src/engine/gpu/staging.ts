// Copies of GPU buffers into mappable staging buffers, encoded in the device queue right where
// they are asked for, and read later. WebGPU runs a queue's commands in submission order
// (WebGPU §19 "Queues"), so the copies hold the buffers exactly as the work submitted before
// them left them, whatever is submitted after: training can go on while the copies finish, map
// and are read. Reading goes through the mapped ranges themselves, with no copy into JavaScript
// memory; they stay valid until release().
//
// The staging buffers are allocated inside an out-of-memory error scope: where the copies do
// not fit beside what is already allocated, StagedCopy.take throws OutOfMemoryError and a caller
// falls back to reading the buffers back one by one (GpuContext.read), which needs no such memory.
import type { GpuContext } from './context.ts';

export class StagedCopy {
  private mapped: Promise<ArrayBuffer[]> | null = null;
  private released = false;

  private constructor(
    private readonly staging: GPUBuffer[],
    /** bytes of the staging buffers (what the copy costs in memory while it is held) */
    readonly bytes: number,
  ) {}

  /**
   * Allocates one staging buffer per source and submits the copies (one command buffer). Throws
   * OutOfMemoryError, having released what it allocated, when they do not fit.
   */
  static async take(ctx: GpuContext, sources: readonly GPUBuffer[], label: string): Promise<StagedCopy> {
    const staging = await ctx.allocating(
      `${label} (a copy of ${sources.length} buffers for a snapshot)`,
      () => sources.map((b, i) => ctx.device.createBuffer({ size: b.size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: `${label}[${i}]` })),
      (made) => made.forEach((b) => b.destroy()),
    );
    const enc = ctx.device.createCommandEncoder({ label });
    sources.forEach((b, i) => enc.copyBufferToBuffer(b, 0, staging[i], 0, b.size));
    ctx.device.queue.submit([enc.finish()]);
    return new StagedCopy(staging, staging.reduce((a, b) => a + b.size, 0));
  }

  /** Waits for the copies and maps them: the contents of source i as the i-th buffer (valid until release()). */
  map(): Promise<ArrayBuffer[]> {
    if (this.released) throw new Error('StagedCopy.map after release');
    this.mapped ??= Promise.all(this.staging.map((b) => b.mapAsync(GPUMapMode.READ))).then(() => this.staging.map((b) => b.getMappedRange()));
    return this.mapped;
  }

  /** Frees the staging buffers; the mapped ranges are detached. Safe to call more than once, and while a map is pending. */
  release(): void {
    if (this.released) return;
    this.released = true;
    // destroy() unmaps a mapped buffer and rejects a pending mapAsync (WebGPU §5.1 GPUBuffer.destroy).
    for (const b of this.staging) b.destroy();
    this.mapped?.catch(() => {});
  }
}
