// Prints the adapter the gpu tier runs on, and fails the tier (never skips) when there is none.
import { nodeGpu, ADAPTER_HELP } from '../../src/cli/webgpu-node.ts';
import { GpuContext } from '../../src/engine/gpu/context.ts';

export default async function setup(): Promise<void> {
  const gpu = await nodeGpu();
  const adapter = await gpu.requestAdapter();
  if (!adapter) throw new Error(ADAPTER_HELP);
  const ctx = await GpuContext.create(gpu);
  const a = ctx.adapter;
  console.log(
    `[gpu tier] adapter: ${a.vendor} ${a.architecture} ${a.description} (VK_ICD_FILENAMES=${process.env.VK_ICD_FILENAMES ?? 'unset'}); ` +
      `max storage binding ${a.limits.maxStorageBufferBindingSize}, max buffer ${a.limits.maxBufferSize}, f16 ${a.features.includes('shader-f16')}`,
  );
  ctx.destroy();
}
