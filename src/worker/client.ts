// The page's handle on the engine worker: sends WorkerRequests, delivers WorkerEvents.
import type { WorkerEvent, WorkerRequest } from './protocol.ts';

export class EngineClient {
  private worker: Worker;

  constructor(onEvent: (ev: WorkerEvent) => void) {
    this.worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module', name: 'engine' });
    this.worker.onmessage = (e: MessageEvent<WorkerEvent>) => onEvent(e.data);
    this.worker.onerror = (e) => onEvent({ type: 'error', name: 'WorkerError', message: e.message || 'The engine worker failed to start.', request: 'probe' });
  }

  send(req: WorkerRequest): void {
    this.worker.postMessage(req);
  }

  terminate(): void {
    this.worker.terminate();
  }
}
