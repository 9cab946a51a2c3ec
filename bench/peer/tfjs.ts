// TensorFlow.js on Dawn: the peer of the side-by-side benchmark (bench/peer.ts). TensorFlow.js's
// WebGPU backend is the one in-browser trainer on npm; here it runs in Node on the same Dawn
// `GPU` object the engine uses (src/cli/webgpu-node.ts), so both sides get the same adapter.
//
// Two things the browser gives TensorFlow.js that Node does not:
//  - `navigator.gpu`: the backend registers itself only when it sees one
//    (tfjs-backend-webgpu/src/base.ts, isWebGPUSupported), so a `navigator` holding Dawn's GPU is
//    defined before the backend module is imported;
//  - the gradient registry: @tensorflow/tfjs-core's Node bundle (its package "main") carries no
//    gradient functions (the `@tensorflow/tfjs` union package imports
//    `register_all_gradients` for that). Its ES module tree is published under dist/ but uses
//    extensionless imports that Node's ESM loader refuses, so it is bundled in memory with
//    esbuild (already installed as Vite's bundler) and imported once. The registry is a global
//    (tfjs-core getGlobal('gradRegistry')), so gradients registered by that copy serve the Node
//    bundle too.
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';

export { tf };

let ready: Promise<GPUDevice> | null = null;

async function registerGradients(): Promise<void> {
  const require = createRequire(import.meta.url);
  const entry = require.resolve('@tensorflow/tfjs-core/dist/register_all_gradients.js');
  const { build } = await import('esbuild');
  const out = await build({ entryPoints: [entry], bundle: true, format: 'esm', write: false, platform: 'node', logLevel: 'error' });
  await import(`data:text/javascript;base64,${Buffer.from(out.outputFiles[0].text).toString('base64')}`);
}

/** Selects TensorFlow.js's WebGPU backend on `gpu` (Dawn); resolves to the backend's own device. */
export function tfjsOnDawn(gpu: GPU): Promise<GPUDevice> {
  ready ??= (async () => {
    const g = globalThis as { navigator?: { gpu?: GPU } };
    if (!g.navigator?.gpu) Object.defineProperty(globalThis, 'navigator', { value: { ...(g.navigator ?? {}), gpu }, configurable: true, writable: true });
    await registerGradients();
    await import('@tensorflow/tfjs-backend-webgpu');
    if (!(await tf.setBackend('webgpu'))) throw new Error('TensorFlow.js could not start its WebGPU backend on this adapter.');
    await tf.ready();
    return (tf.backend() as unknown as { device: GPUDevice }).device;
  })();
  return ready;
}

/** Waits until everything TensorFlow.js has recorded so far has run on the GPU. */
export async function tfjsSync(): Promise<void> {
  const b = tf.backend() as unknown as { submitQueue(): void; endComputePassEncoder(): void; commandEncoder: GPUCommandEncoder | null; device: GPUDevice };
  if (b.commandEncoder) {
    b.endComputePassEncoder();
    b.submitQueue();
  }
  await b.device.queue.onSubmittedWorkDone();
}

/** Bytes TensorFlow.js's WebGPU backend holds in GPU buffers, its pool of freed buffers included. */
export function tfjsGpuBytes(): number {
  const m = tf.memory() as tf.MemoryInfo & { numBytesAllocatedInGPU?: number; numBytesInGPU?: number };
  return m.numBytesAllocatedInGPU ?? m.numBytesInGPU ?? 0;
}
