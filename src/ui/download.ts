// Saves a file the worker made (an `exported` event's Blob) through a temporary link: the
// browser's own download, nothing uploaded.
import type { WorkerEvent } from '../worker/protocol.ts';
import { setLastExport } from './store.ts';

export function saveExport(ev: Extract<WorkerEvent, { type: 'exported' }>): void {
  const url = URL.createObjectURL(ev.blob);
  setLastExport({ format: ev.format, fileName: ev.fileName, url, bytes: ev.blob.size });
  clickDownload(url, ev.fileName);
}

/** Saves a Blob under `fileName`; the object URL is released once the browser has taken it. */
export function saveFile(blob: Blob, fileName: string): void {
  const url = URL.createObjectURL(blob);
  clickDownload(url, fileName);
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

function clickDownload(url: string, fileName: string): void {
  const a = document.createElement('a');
  a.href = url;
  a.download = fileName;
  a.rel = 'noopener';
  document.body.appendChild(a);
  a.click();
  a.remove();
}
