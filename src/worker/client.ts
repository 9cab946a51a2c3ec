// The page's handle on the engine worker: sends WorkerRequests, delivers WorkerEvents. A worker
// that fails to start or crashes is reported as an error event.
import type { RequestType, WorkerEvent, WorkerRequest } from './protocol.ts';

export class EngineClient {
  private worker: Worker;
  private readonly onEvent: (ev: WorkerEvent) => void;
  private lastRequest: RequestType = 'probe';

  constructor(onEvent: (ev: WorkerEvent) => void) {
    this.onEvent = onEvent;
    this.worker = this.spawn();
  }

  private spawn(): Worker {
    const w = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module', name: 'engine' });
    w.onmessage = (e: MessageEvent<WorkerEvent>) => this.onEvent(e.data);
    w.onerror = (e) => {
      e.preventDefault();
      this.onEvent({
        type: 'error',
        name: 'WorkerError',
        message: `The engine worker failed (${e.message || 'it could not start'}). Reload the page; if it repeats, the browser may lack module workers (use a current Chrome, Edge, Safari or Firefox).`,
        request: this.lastRequest,
      });
    };
    w.onmessageerror = () => this.onEvent({ type: 'error', name: 'WorkerError', message: 'A message from the engine worker could not be read. Reload the page.', request: this.lastRequest });
    return w;
  }

  send(req: WorkerRequest): void {
    this.lastRequest = req.type;
    this.worker.postMessage(req);
  }

  terminate(): void {
    this.worker.terminate();
  }
}
