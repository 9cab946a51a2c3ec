// Saves a file the worker made (an `exported` event's Blob) through a temporary link: the
// browser's own download, nothing uploaded.
import type { WorkerEvent } from '../worker/protocol.ts';
import { setLastExport } from './store.ts';

export function saveExport(ev: Extract<WorkerEvent, { type: 'exported' }>): void {
  const url = URL.createObjectURL(ev.blob);
  setLastExport({ format: ev.format, fileName: ev.fileName, url, bytes: ev.blob.size });
  const a = document.createElement('a');
  a.href = url;
  a.download = ev.fileName;
  a.rel = 'noopener';
  document.body.appendChild(a);
  a.click();
  a.remove();
}
