// The page's one engine worker, shared by the panels. Panels send typed requests; the answers
// arrive as events folded into the store (src/ui/store.ts).
import { EngineClient } from '../worker/client.ts';
import type { WorkerRequest } from '../worker/protocol.ts';
import { saveExport, saveFile } from './download.ts';
import { useStudio } from './store.ts';

let client: EngineClient | null = null;

export function connectEngine(): EngineClient {
  client ??= new EngineClient((ev) => {
    useStudio.getState().apply(ev);
    if (ev.type === 'exported') saveExport(ev);
    if (ev.type === 'runZip') saveFile(ev.blob, ev.fileName);
  });
  return client;
}

export function disconnectEngine(): void {
  client?.terminate();
  client = null;
}

export function send(req: WorkerRequest): void {
  if (!client) {
    useStudio.getState().pageError('NoWebGPUError', 'The engine is not running because this browser has no WebGPU. See the notice at the top of the page.');
    return;
  }
  client.send(req);
}
