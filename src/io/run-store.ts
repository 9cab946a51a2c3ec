// The page's saved runs in the origin private file system (OPFS): each run is a folder holding
// its latest checkpoint (docs/checkpoint-format.md), the assets a resume needs that a checkpoint
// does not carry (the corpus token ids; the model files the user dropped, which cannot be opened
// again after a reload), and a manifest naming which of those folders make up the run now.
//
// Layout:
//   studio-runs/<run id>/run.json              the manifest, written last (see below)
//   studio-runs/<run id>/ckpt-<n>/…            a checkpoint's files (config.json, model.safetensors,
//                                              optimizer.safetensors, trainer_state.json, …)
//   studio-runs/<run id>/<group>-<n>/…         an asset group ('tokens', 'model'), written once
//
// Why a manifest rather than a rename: a FileSystemWritableFileStream's bytes reach its file only
// on close(), which swaps the whole file in at once (File System Standard, "close" writes the swap
// file over the target), so one small file can be replaced atomically; folders cannot be renamed
// in every browser (FileSystemHandle.move() is Chromium's). A save therefore writes the new
// folders beside the old ones, then replaces run.json to point at them, then removes what run.json
// no longer names. A save cut short (a closed tab, a crash, a full disk) leaves run.json naming
// the previous complete save; its leftovers are removed at the next save or clean-up. A run folder
// without a readable run.json is an interrupted first save and is not listed.
import { StudioError } from '../engine/errors.ts';
import { tryDir, tryFile, type OpfsDirectory } from './cache.ts';
import type { ZipEntry } from './zip.ts';

/** A saved run is missing, unreadable, or the browser's storage failed. */
export class RunStoreError extends StudioError {}

/** The browser's storage for this site is full; the message says what can be deleted. */
export class StorageFullError extends StudioError {}

/** One file of a save: bytes, or a function giving its chunks (called when its turn comes). */
export interface RunFile {
  /** a plain file name (no folders) */
  name: string;
  data: Uint8Array | (() => AsyncIterable<Uint8Array> | Iterable<Uint8Array>);
}

/** What the page shows about a saved run without opening it (kept in run.json). */
export interface RunSummary {
  /** the model's name, e.g. 'openai-community/gpt2' */
  model: string;
  /** the corpus's name */
  corpus: string;
  /** optimizer steps completed at the save */
  step: number;
  totalSteps: number;
  /** the run's state when it was saved: a finished run is not offered for resuming */
  state: 'running' | 'paused' | 'stopped' | 'finished' | 'failed' | 'lost';
}

export interface RunManifest {
  format: typeof MANIFEST_FORMAT;
  version: 1;
  id: string;
  /** ms since the epoch */
  created: number;
  saved: number;
  summary: RunSummary;
  /** folder of the checkpoint */
  checkpoint: string;
  /** folder of each asset group */
  assets: Record<string, string>;
  /** how many saves the run has had (names new folders) */
  saves: number;
}

export interface SavedRun extends RunManifest {
  /** bytes of the folders the manifest names */
  bytes: number;
}

export interface OpenedRun {
  manifest: RunManifest;
  /** the checkpoint's files, disk-backed, by name */
  checkpoint: Map<string, Blob>;
  /** each asset group's files, by name */
  assets: Record<string, Map<string, Blob>>;
}

export interface SaveInput {
  summary: RunSummary;
  checkpoint: RunFile[];
  /** asset groups written by this save; groups not given keep their earlier folder */
  assets?: Record<string, RunFile[]>;
  signal?: AbortSignal;
}

export const RUNS_FOLDER = 'studio-runs';
export const MANIFEST = 'run.json';
const MANIFEST_FORMAT = 'webgpu-finetuning-studio/saved-run';
const GROUP_NAME = /^[a-z][a-z0-9_]*$/;

function isQuota(e: unknown): boolean {
  return (e as { name?: string } | null)?.name === 'QuotaExceededError';
}

async function entries(dir: OpfsDirectory): Promise<Array<[string, 'file' | 'directory']>> {
  const out: Array<[string, 'file' | 'directory']> = [];
  for await (const [name, h] of dir.entries()) out.push([name, h.kind]);
  return out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

async function folderFiles(dir: OpfsDirectory): Promise<Map<string, Blob>> {
  const out = new Map<string, Blob>();
  for (const [name, kind] of await entries(dir)) if (kind === 'file') out.set(name, await (await dir.getFileHandle(name)).getFile());
  return out;
}

async function folderBytes(dir: OpfsDirectory): Promise<number> {
  let n = 0;
  for (const [name, kind] of await entries(dir)) {
    n += kind === 'file' ? (await (await dir.getFileHandle(name)).getFile()).size : await folderBytes(await dir.getDirectoryHandle(name));
  }
  return n;
}

async function writeFile(dir: OpfsDirectory, f: RunFile, signal?: AbortSignal): Promise<void> {
  const w = await (await dir.getFileHandle(f.name, { create: true })).createWritable();
  try {
    if (f.data instanceof Uint8Array) {
      await w.write(f.data as Uint8Array<ArrayBuffer>);
    } else {
      for await (const chunk of f.data()) {
        signal?.throwIfAborted();
        await w.write(chunk as Uint8Array<ArrayBuffer>);
      }
    }
    signal?.throwIfAborted();
    await w.close();
  } catch (e) {
    await w.abort().catch(() => {});
    throw e;
  }
}

function checkFileName(name: string): void {
  if (!name || name === '.' || name === '..' || /[/\\]/.test(name) || name === MANIFEST) {
    throw new RunStoreError(`A saved run cannot hold a file named ${JSON.stringify(name)}.`);
  }
}

/** Checks what run.json holds; a run whose manifest is not ours is not listed. */
export function parseManifest(json: unknown, id: string): RunManifest {
  const m = json as Partial<RunManifest> | null;
  const s = m?.summary as Partial<RunSummary> | undefined;
  const ok = !!m && m.format === MANIFEST_FORMAT && m.version === 1 && m.id === id
    && typeof m.checkpoint === 'string' && typeof m.created === 'number' && typeof m.saved === 'number' && typeof m.saves === 'number'
    && !!m.assets && typeof m.assets === 'object' && Object.values(m.assets).every((v) => typeof v === 'string')
    && !!s && typeof s.model === 'string' && typeof s.corpus === 'string' && Number.isInteger(s.step) && Number.isInteger(s.totalSteps) && typeof s.state === 'string';
  if (!ok) throw new RunStoreError(`The saved run ${id} has a manifest (${MANIFEST}) this page cannot read. Delete it in the Saved runs panel.`);
  return m as RunManifest;
}

function newId(now: number): string {
  const rand = Array.from(crypto.getRandomValues(new Uint8Array(4)), (b) => b.toString(16).padStart(2, '0')).join('');
  return `run-${new Date(now).toISOString().replace(/[-:]/g, '').replace(/\..*$/, '')}-${rand}`;
}

export interface RunStoreOptions {
  now?: () => number;
}

/**
 * The saved runs under `root` (the OPFS root, `await navigator.storage.getDirectory()`; tests pass
 * a stand-in). One writer at a time per run: the worker that trains it.
 */
export class RunStore {
  private readonly root: OpfsDirectory;
  private readonly now: () => number;

  constructor(root: OpfsDirectory, options: RunStoreOptions = {}) {
    this.root = root;
    this.now = options.now ?? Date.now;
  }

  private base(): Promise<OpfsDirectory> {
    return this.root.getDirectoryHandle(RUNS_FOLDER, { create: true });
  }

  private async runDir(id: string): Promise<OpfsDirectory> {
    const d = /^[A-Za-z0-9._-]+$/.test(id) && !id.startsWith('.') ? await tryDir(await this.base(), id) : undefined;
    if (!d) throw new RunStoreError(`There is no saved run ${JSON.stringify(id)} (it may have been deleted in another tab).`);
    return d;
  }

  private async readManifest(dir: OpfsDirectory, id: string): Promise<RunManifest | undefined> {
    const f = await tryFile(dir, MANIFEST);
    if (!f) return undefined;
    let json: unknown;
    try {
      json = JSON.parse(await (await f.getFile()).text());
    } catch {
      throw new RunStoreError(`The saved run ${id} has an unreadable manifest (${MANIFEST}). Delete it in the Saved runs panel.`);
    }
    return parseManifest(json, id);
  }

  /** A fresh run id; nothing is written until its first save. */
  newRunId(): string {
    return newId(this.now());
  }

  /** Every saved run with a manifest, newest save first. */
  async list(): Promise<SavedRun[]> {
    const base = await this.base();
    const out: SavedRun[] = [];
    for (const [id, kind] of await entries(base)) {
      if (kind !== 'directory') continue;
      const dir = await base.getDirectoryHandle(id);
      let m: RunManifest | undefined;
      try {
        m = await this.readManifest(dir, id);
      } catch {
        continue; // not ours or broken: shown by nothing, removed by clean-up only when asked
      }
      if (!m) continue;
      let bytes = 0;
      for (const folder of [m.checkpoint, ...Object.values(m.assets)]) {
        const d = await tryDir(dir, folder);
        if (d) bytes += await folderBytes(d);
      }
      out.push({ ...m, bytes });
    }
    return out.sort((a, b) => b.saved - a.saved);
  }

  /**
   * Saves the run `id` (new or existing): writes the checkpoint and the given asset groups into
   * new folders, then the manifest, then removes the folders the manifest no longer names. On any
   * failure the previous save stays whole, and what this one wrote is removed.
   */
  async save(id: string, input: SaveInput): Promise<RunManifest> {
    if (!/^[A-Za-z0-9._-]+$/.test(id) || id.startsWith('.')) throw new RunStoreError(`${JSON.stringify(id)} is not a run id.`);
    const names = new Set<string>();
    for (const f of input.checkpoint) {
      checkFileName(f.name);
      if (names.has(f.name)) throw new RunStoreError(`The checkpoint lists ${f.name} twice.`);
      names.add(f.name);
    }
    for (const [g, files] of Object.entries(input.assets ?? {})) {
      if (!GROUP_NAME.test(g) || g === 'ckpt') throw new RunStoreError(`${JSON.stringify(g)} is not an asset group name.`);
      for (const f of files) checkFileName(f.name);
    }
    let dir: OpfsDirectory;
    let prev: RunManifest | undefined;
    let fresh: boolean;
    try {
      dir = await (await this.base()).getDirectoryHandle(id, { create: true });
      fresh = (await entries(dir)).length === 0;
      prev = await this.readManifest(dir, id).catch(() => undefined);
    } catch (e) {
      throw await this.storageError(e, id);
    }
    const n = (prev?.saves ?? 0) + 1;
    const written: string[] = [];
    const assets: Record<string, string> = { ...(prev?.assets ?? {}) };
    const now = this.now();
    const manifest: RunManifest = {
      format: MANIFEST_FORMAT, version: 1, id, created: prev?.created ?? now, saved: now, summary: { ...input.summary },
      checkpoint: `ckpt-${n}`, assets, saves: n,
    };
    try {
      for (const [g, files] of Object.entries(input.assets ?? {})) {
        const folder = `${g}-${n}`;
        await this.writeFolder(dir, folder, files, written, input.signal);
        assets[g] = folder;
      }
      await this.writeFolder(dir, manifest.checkpoint, input.checkpoint, written, input.signal);
      input.signal?.throwIfAborted();
      await writeFile(dir, { name: MANIFEST, data: new TextEncoder().encode(JSON.stringify(manifest, null, 1)) });
    } catch (e) {
      for (const folder of written) await dir.removeEntry(folder, { recursive: true }).catch(() => {});
      if (fresh) await (await this.base()).removeEntry(id, { recursive: true }).catch(() => {});
      throw await this.storageError(e, id);
    }
    await this.removeUnnamed(dir, manifest);
    return manifest;
  }

  private async writeFolder(dir: OpfsDirectory, folder: string, files: RunFile[], written: string[], signal?: AbortSignal): Promise<void> {
    // A leftover of an interrupted save may hold this name: start it afresh.
    await dir.removeEntry(folder, { recursive: true }).catch(() => {});
    const d = await dir.getDirectoryHandle(folder, { create: true });
    written.push(folder);
    for (const f of files) await writeFile(d, f, signal);
  }

  /** Removes the folders of `dir` that `m` does not name (leftovers of replaced or cut-short saves). */
  private async removeUnnamed(dir: OpfsDirectory, m: RunManifest): Promise<void> {
    const keep = new Set([MANIFEST, m.checkpoint, ...Object.values(m.assets)]);
    for (const [name] of await entries(dir)) if (!keep.has(name)) await dir.removeEntry(name, { recursive: true }).catch(() => {});
  }

  /** Removes leftovers of interrupted saves in every run, and run folders whose first save never finished. */
  async cleanUp(): Promise<void> {
    const base = await this.base();
    for (const [id, kind] of await entries(base)) {
      if (kind !== 'directory') continue;
      const dir = await base.getDirectoryHandle(id);
      const m = await this.readManifest(dir, id).catch(() => null);
      if (m === undefined) await base.removeEntry(id, { recursive: true }).catch(() => {});
      else if (m) await this.removeUnnamed(dir, m);
    }
  }

  /** The run's manifest and its files (disk-backed Blobs, read in slices). */
  async open(id: string): Promise<OpenedRun> {
    const dir = await this.runDir(id);
    const manifest = await this.readManifest(dir, id);
    if (!manifest) throw new RunStoreError(`The saved run ${id} was never completely saved; delete it.`);
    const read = async (folder: string) => {
      const d = await tryDir(dir, folder);
      if (!d) throw new RunStoreError(`The saved run ${id} lacks its folder ${folder}; delete it.`);
      return folderFiles(d);
    };
    const assets: Record<string, Map<string, Blob>> = {};
    for (const [g, folder] of Object.entries(manifest.assets)) assets[g] = await read(folder);
    return { manifest, checkpoint: await read(manifest.checkpoint), assets };
  }

  /**
   * Replaces one small file of the run's current checkpoint (e.g. the page's state after the
   * final evaluation): a file's bytes replace the old ones only when its writer closes, so the
   * checkpoint holds the old file or the new one, never a mix.
   */
  async updateCheckpointFile(id: string, file: RunFile, summary?: RunSummary): Promise<void> {
    checkFileName(file.name);
    const dir = await this.runDir(id);
    const m = await this.readManifest(dir, id);
    if (!m) throw new RunStoreError(`The saved run ${id} was never completely saved.`);
    try {
      await writeFile(await dir.getDirectoryHandle(m.checkpoint), file);
      const next = { ...m, summary: { ...(summary ?? m.summary) }, saved: this.now() };
      if (summary) await writeFile(dir, { name: MANIFEST, data: new TextEncoder().encode(JSON.stringify(next, null, 1)) });
    } catch (e) {
      throw await this.storageError(e, id);
    }
  }

  async delete(id: string): Promise<void> {
    const base = await this.base();
    await this.runDir(id);
    await base.removeEntry(id, { recursive: true });
  }

  /**
   * The entries of a zip of the run: `<top>/checkpoint-<step>/…` (a checkpoint folder the CLI
   * resumes from and transformers loads) and `<top>/studio/<group>/…` (what the page adds).
   */
  async zipEntries(id: string, top = id): Promise<ZipEntry[]> {
    const r = await this.open(id);
    const out: ZipEntry[] = [];
    const add = (prefix: string, files: Map<string, Blob>) => {
      for (const [name, blob] of files) {
        out.push({ name: `${prefix}/${name}`, size: blob.size, modified: new Date(r.manifest.saved), data: () => blobChunks(blob) });
      }
    };
    add(`${top}/checkpoint-${r.manifest.summary.step}`, r.checkpoint);
    for (const [g, files] of Object.entries(r.assets)) add(`${top}/studio/${g}`, files);
    return out;
  }

  /** A storage failure as the user should read it: a full quota names the saved runs to delete. */
  private async storageError(e: unknown, id: string): Promise<unknown> {
    if (!isQuota(e)) return e instanceof StudioError || (e as { name?: string })?.name === 'AbortError' ? e : new RunStoreError(`Saving run ${id} failed: ${(e as Error)?.message ?? String(e)}.`);
    let others = '';
    try {
      const runs = (await this.list()).filter((r) => r.id !== id).sort((a, b) => b.bytes - a.bytes).slice(0, 3);
      if (runs.length) {
        others = ` The largest other saved runs: ${runs.map((r) => `${r.summary.model} on ${r.summary.corpus}, step ${r.summary.step} (${(r.bytes / 1e6).toFixed(0)} MB)`).join('; ')}.`;
      }
    } catch {
      // the listing is a courtesy; the error stands without it
    }
    return new StorageFullError(
      `The browser's storage for this site is full, so run ${id} could not be saved (its previous save, if any, is intact).${others} Delete saved runs you no longer need in the Saved runs panel, or cached models in the Model panel, then save again.`,
    );
  }
}

/** A Blob's bytes in 8 MiB slices, so a large file is never held whole. */
export async function* blobChunks(blob: Blob, chunk = 8 << 20): AsyncGenerator<Uint8Array> {
  for (let o = 0; o < blob.size; o += chunk) yield new Uint8Array(await blob.slice(o, Math.min(blob.size, o + chunk)).arrayBuffer());
}
