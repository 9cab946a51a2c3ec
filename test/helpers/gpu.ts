// Shared helpers of the gpu tier: one device per test file, random inputs, poisoned outputs,
// and the relative-error measure docs/ARCHITECTURE.md's tolerances are written in.
import { nodeGpu, ADAPTER_HELP } from '../../src/cli/webgpu-node.ts';
import { GpuContext } from '../../src/engine/gpu/context.ts';
import type { BufferRange } from '../../src/engine/gpu/dispatch.ts';

let ctxPromise: Promise<GpuContext> | null = null;

export function gpuContext(): Promise<GpuContext> {
  if (!ctxPromise) {
    ctxPromise = (async () => {
      const gpu = await nodeGpu();
      try {
        return await GpuContext.create(gpu);
      } catch (e) {
        throw new Error(`${(e as Error).message}\n${ADAPTER_HELP}`);
      }
    })();
  }
  return ctxPromise;
}

/**
 * The shared device with the `subgroups` kernel variant set as given: a test file that runs its
 * cases with and without subgroup reductions calls this in each (its tests run one at a time).
 */
export async function gpuContextWith(v: { subgroups: boolean }): Promise<GpuContext> {
  const ctx = await gpuContext();
  ctx.kernels = { ...ctx.kernels, subgroups: v.subgroups };
  return ctx;
}

/** NaN bit pattern written into outputs before a kernel runs, so a missed write shows. */
export const POISON = NaN;

export function upload(ctx: GpuContext, data: Float32Array | Uint32Array | Int32Array, label = 'test'): BufferRange {
  const buffer = ctx.createBuffer(data.byteLength, label, data);
  return { buffer, offset: 0, size: data.byteLength };
}

export function poisoned(ctx: GpuContext, count: number, label = 'out'): BufferRange {
  return upload(ctx, new Float32Array(count).fill(POISON), label);
}

export async function download(ctx: GpuContext, r: BufferRange): Promise<Float32Array> {
  return ctx.readF32(r.buffer, r.offset, r.size / 4);
}
