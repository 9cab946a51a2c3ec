// Prints the adapter the gpu tier runs on, and fails the tier (never skips) when there is none.
// Gives the tier a cache folder of its own ($STUDIO_CACHE, removed at the end): the CLI reads the
// kernel tuning cache and the Hub cache from there, so a tuning the machine's user ran (`npm run
// tune`) cannot change what the tests run. Test files that need a cache state set their own.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nodeGpu, ADAPTER_HELP } from '../../src/cli/webgpu-node.ts';
import { GpuContext } from '../../src/engine/gpu/context.ts';

export default async function setup(): Promise<() => void> {
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
  // Set before the test processes start (pool: forks), which inherit it.
  const cache = mkdtempSync(join(tmpdir(), 'studio-gpu-tier-cache-'));
  process.env.STUDIO_CACHE = cache;
  return () => rmSync(cache, { recursive: true, force: true });
}
