// WebGPU for Node through Dawn (npm `webgpu`), for the CLI, the benchmarks and the gpu test tier.
// Picks a Vulkan driver when none is chosen: Mesa lavapipe (fastest software adapter here),
// else the SwiftShader that ships with Debian's chromium.
import { existsSync } from 'node:fs';
import { NoWebGPUError } from '../engine/errors.ts';

export const ICD_CANDIDATES = [
  { name: 'lavapipe', path: '/usr/share/vulkan/icd.d/lvp_icd.json' },
  { name: 'swiftshader', path: '/usr/lib/chromium/vk_swiftshader_icd.json' },
];

export const ADAPTER_HELP =
  'No WebGPU adapter was found. On Debian 12, as root: add bookworm-backports and run ' +
  '`apt-get install -t bookworm-backports mesa-vulkan-drivers` (Mesa lavapipe), or `apt-get install chromium` ' +
  '(its SwiftShader); `bash scripts/setup-system.sh` does both. Select one with ' +
  'VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.json (or /usr/lib/chromium/vk_swiftshader_icd.json) and set XDG_RUNTIME_DIR.';

/** Sets VK_ICD_FILENAMES to the first available driver unless the caller chose one. */
export function chooseVulkanDriver(): string | undefined {
  if (!process.env.XDG_RUNTIME_DIR) process.env.XDG_RUNTIME_DIR = '/tmp';
  if (process.env.VK_ICD_FILENAMES) return process.env.VK_ICD_FILENAMES;
  const found = ICD_CANDIDATES.find((c) => existsSync(c.path));
  if (found) process.env.VK_ICD_FILENAMES = found.path;
  return found?.path;
}

let cached: GPU | null = null;

/** Dawn's `navigator.gpu` equivalent. Throws NoWebGPUError with install instructions when it cannot load. */
export async function nodeGpu(): Promise<GPU> {
  if (cached) return cached;
  chooseVulkanDriver();
  let mod: { create(flags: string[]): GPU; globals: object };
  try {
    mod = await import('webgpu');
  } catch (e) {
    throw new NoWebGPUError(`The npm package 'webgpu' (Dawn) did not load: ${(e as Error).message}. Run npm ci.`);
  }
  // GPUBufferUsage, GPUMapMode ... are globals in browsers; Dawn exports them.
  Object.assign(globalThis, mod.globals);
  cached = mod.create([]);
  return cached;
}
