// The worker's side of the saved-runs panel: the run store over the browser's origin private file
// system (io/run-store.ts), listed with sizes, deleted, and downloaded as a .zip written to a
// temporary OPFS file (so a model-sized archive lives on disk, not in memory).
import { StudioError } from '../engine/errors.ts';
import type { OpfsDirectory } from '../io/cache.ts';
import { RunStore, type SavedRun } from '../io/run-store.ts';
import { zipChunks, type ZipEntry } from '../io/zip.ts';
import type { SavedRunInfo } from './protocol.ts';

/** Saved runs need the origin private file system, which this browser (or window) does not give. */
export class NoRunStorageError extends StudioError {}

let opened: Promise<RunStore | null> | null = null;

/** The browser's run store, or null without OPFS (e.g. some private windows). Opened once; leftovers of cut-short saves are removed then. */
export function browserRunStore(): Promise<RunStore | null> {
  opened ??= (async () => {
    const storage = (globalThis as { navigator?: { storage?: StorageManager } }).navigator?.storage;
    if (!storage || typeof storage.getDirectory !== 'function') return null;
    try {
      const store = new RunStore((await storage.getDirectory()) as unknown as OpfsDirectory);
      await store.cleanUp();
      return store;
    } catch {
      return null;
    }
  })();
  return opened;
}

export async function requireRunStore(open: () => Promise<RunStore | null> = browserRunStore): Promise<RunStore> {
  const s = await open();
  if (!s) {
    throw new NoRunStorageError(
      "This browser gives the page no origin private file system (a private window may refuse it), so runs cannot be saved or resumed here. Use a normal window of a current Chrome, Edge, Firefox or Safari.",
    );
  }
  return s;
}

export function runInfo(r: SavedRun): SavedRunInfo {
  const s = r.summary;
  return { id: r.id, model: s.model, corpus: s.corpus, step: s.step, totalSteps: s.totalSteps, state: s.state, saved: r.saved, bytes: r.bytes };
}

/** A file-name-safe version of a model name, e.g. 'openai-community/gpt2' → 'gpt2'. */
export function runFileStem(model: string, step: number): string {
  const base = (model.split('/').pop() ?? 'model').replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[-.]+|[-.]+$/g, '') || 'model';
  return `${base}-checkpoint-${step}`;
}

/** The saved run as a .zip Blob (on disk in OPFS when possible). */
export async function runZip(store: RunStore, id: string): Promise<{ fileName: string; blob: Blob }> {
  const r = (await store.list()).find((x) => x.id === id);
  if (!r) throw new NoRunStorageError(`There is no saved run ${id} any more (it may have been deleted in another tab).`);
  const stem = runFileStem(r.summary.model, r.summary.step);
  return zipBlob(`${stem}.zip`, await store.zipEntries(id, stem), r.bytes);
}

/** A .zip of `entries` as a Blob, written to a temporary OPFS file when the browser has one (so a model-sized archive lives on disk). */
export async function zipBlob(fileName: string, entries: ZipEntry[], bytes: number): Promise<{ fileName: string; blob: Blob }> {
  const storage = (globalThis as { navigator?: { storage?: StorageManager } }).navigator?.storage;
  if (storage && typeof storage.getDirectory === 'function') {
    const root = await storage.getDirectory();
    const dir = await root.getDirectoryHandle('studio-exports', { create: true });
    // One download at a time is kept: earlier ones were saved by the browser or abandoned.
    for await (const [n] of (dir as unknown as { entries(): AsyncIterable<[string, unknown]> }).entries()) {
      if (n !== fileName) await dir.removeEntry(n).catch(() => {});
    }
    const handle = await dir.getFileHandle(fileName, { create: true });
    const w = await handle.createWritable();
    try {
      for await (const chunk of zipChunks(entries)) await w.write(chunk as Uint8Array<ArrayBuffer>);
      await w.close();
    } catch (e) {
      await w.abort().catch(() => {});
      if ((e as { name?: string })?.name === 'QuotaExceededError') {
        throw new NoRunStorageError(`The browser's storage is full: the ${Math.round(bytes / 1e6)} MB archive of this run does not fit beside it. Delete other saved runs or cached models, then download again.`);
      }
      throw e;
    }
    return { fileName, blob: await handle.getFile() };
  }
  const parts: Uint8Array<ArrayBuffer>[] = [];
  for await (const chunk of zipChunks(entries)) parts.push(chunk.slice() as Uint8Array<ArrayBuffer>);
  return { fileName, blob: new Blob(parts, { type: 'application/zip' }) };
}
