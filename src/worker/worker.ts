// The Web Worker that owns the GPU device and the engine. It hands every WorkerRequest to the
// Studio session (src/worker/studio.ts), which answers with WorkerEvents; the page never touches
// WebGPU itself.
import type { WorkerEvent, WorkerRequest } from './protocol.ts';
import { Studio } from './studio.ts';

const studio = new Studio((ev: WorkerEvent) => self.postMessage(ev), typeof navigator !== 'undefined' ? navigator.gpu : undefined);

self.onmessage = (e: MessageEvent<WorkerRequest>) => {
  void studio.handle(e.data);
};
