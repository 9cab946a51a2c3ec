// The download cache for Hub files, so a model is downloaded once: entries are keyed by
// endpoint + repo + revision + file, can be listed and cleared, and a download interrupted
// part-way keeps what it wrote and resumes from there. This module holds the interface, the
// browser's implementation over the origin private file system (OPFS), and an in-memory one
// (tests, and browsers where OPFS is unavailable). The Node implementation for the CLI is
// node-cache.ts, which the browser never imports.
//
// Why OPFS rather than Cache Storage: File System Standard files (https://fs.spec.whatwg.org/)
// can be written piece by piece and read back as disk-backed File objects, so a 1.5 GB checkpoint
// is read tensor by tensor without ever being held in memory, and a partial download can be
// resumed; a Cache Storage entry is one Response, written whole or not at all.
// FileSystemWritableFileStream is Baseline 2025 (Chrome 86, Firefox 111, Safari 26), the same
// browsers that have WebGPU.
//
// OPFS layout, one folder per key component (each encodeURIComponent'ed, so names are safe and
// never contain '@', which marks the cache's own files):
//   studio-hub-cache/<endpoint>/<repo>/<revision>/<file>/part-0, part-1, …   the bytes, in order
//   studio-hub-cache/<endpoint>/<repo>/<revision>/<file>/@complete.json     present once complete
//   studio-hub-cache/<endpoint>/<repo>/<revision>/@model.json                which files a model has
// A write stream's data reaches its file only when the stream is closed (the standard writes to a
// swap file first), so a download is cut into parts of at most PART_BYTES, each closed when full
// or when the download stops: after a crash or reload, the closed parts are kept and the download
// resumes after them, in a new part.
import { StudioError } from '../engine/errors.ts';
import { blobSource, bytesSource, type ByteSource } from './bytes.ts';

/** The cache cannot be used (no OPFS in this browser, storage full, a broken entry …). */
export class CacheError extends StudioError {}

/** Which file of which model: the cache key. */
export interface HubFileKey {
  /** e.g. 'https://huggingface.co' (no trailing slash) */
  endpoint: string;
  /** 'owner/name' */
  repo: string;
  /** branch, tag or commit as the user gave it, e.g. 'main' */
  revision: string;
  /** path in the repository, e.g. 'model.safetensors' */
  file: string;
}

/** A model repository at a revision: a key without the file. */
export type HubRepoKey = Omit<HubFileKey, 'file'>;

export interface CacheEntry extends HubFileKey {
  /** bytes stored (for a partial download, the bytes so far) */
  size: number;
  /** false for an interrupted download that can be resumed */
  complete: boolean;
  /** when it was stored (ms since the epoch) */
  storedAt: number;
}

/** One model repository at a revision in the cache, summed over its files (what the page lists). */
export interface CachedModelSummary extends HubRepoKey {
  files: number;
  bytes: number;
  /** every file finished downloading */
  complete: boolean;
}

/** The cache's entries grouped per endpoint, repository and revision, in first-seen order. */
export function summarizeCache(entries: readonly CacheEntry[]): CachedModelSummary[] {
  const byModel = new Map<string, CachedModelSummary>();
  for (const e of entries) {
    const k = JSON.stringify([e.endpoint, e.repo, e.revision]);
    const m = byModel.get(k) ?? { endpoint: e.endpoint, repo: e.repo, revision: e.revision, files: 0, bytes: 0, complete: true };
    m.files++;
    m.bytes += e.size;
    m.complete &&= e.complete;
    byModel.set(k, m);
  }
  return [...byModel.values()];
}

/**
 * What a repository at a revision was found to hold, so a second load needs no request: the
 * files downloaded for it, and the optional files the server said it does not have (404).
 */
export interface ModelManifest {
  files: string[];
  absent: string[];
  /** the commit the revision resolved to, when the server said (X-Repo-Commit) */
  commit?: string;
}

/** A download being written into the cache. */
export interface CacheWriter {
  /** bytes stored so far, including those kept from an earlier interrupted download */
  readonly written: number;
  write(chunk: Uint8Array): Promise<void>;
  /** drops every stored byte (the server answered a resume with the whole file) */
  reset(): Promise<void>;
  /** keeps the bytes stored so far for a later resume, and releases the writer */
  suspend(): Promise<void>;
  /** the download is complete: the bytes become the cache entry, read back through the result */
  commit(): Promise<ByteSource>;
  /** drops the partial download and releases the writer */
  discard(): Promise<void>;
}

export interface ClearFilter {
  endpoint?: string;
  repo?: string;
  revision?: string;
}

export interface ModelCache {
  /** 'opfs' (browser), 'node' (CLI folder) or 'memory' */
  readonly kind: 'opfs' | 'node' | 'memory';
  /** a readable source over a complete entry, or undefined */
  get(key: HubFileKey): Promise<ByteSource | undefined>;
  /** starts or resumes the download of `key`; one writer per key at a time */
  open(key: HubFileKey): Promise<CacheWriter>;
  getManifest(key: HubRepoKey): Promise<ModelManifest | undefined>;
  putManifest(key: HubRepoKey, manifest: ModelManifest): Promise<void>;
  /** every entry, complete or partial */
  list(): Promise<CacheEntry[]>;
  /** removes the entries (and model manifests) that match; returns how many files and bytes */
  clear(filter?: ClearFilter): Promise<{ entries: number; bytes: number }>;
}

/** Name of a key component on disk: never '', '.', '..', and never contains '/', '\\' or '@'. */
export function encodeKeyPart(s: string): string {
  if (s === '') return '%';
  return encodeURIComponent(s).replace(/\./g, (m, i: number, all: string) => (all === '.' || all === '..' ? '%2E' : m));
}

export function decodeKeyPart(s: string): string {
  return s === '%' ? '' : decodeURIComponent(s);
}

export function matchesFilter(k: HubRepoKey, f: ClearFilter | undefined): boolean {
  return !f || ((f.endpoint === undefined || f.endpoint === k.endpoint)
    && (f.repo === undefined || f.repo === k.repo)
    && (f.revision === undefined || f.revision === k.revision));
}

export function checkManifest(m: unknown, where: string): ModelManifest {
  const r = m as Partial<ModelManifest> | null;
  const strings = (v: unknown) => Array.isArray(v) && v.every((x) => typeof x === 'string');
  if (!r || typeof r !== 'object' || !strings(r.files) || !strings(r.absent) || (r.commit !== undefined && typeof r.commit !== 'string')) {
    throw new CacheError(`${where} is not a model manifest ({files, absent}); clear this model from the cache.`);
  }
  return { files: [...r.files!], absent: [...r.absent!], ...(r.commit ? { commit: r.commit } : {}) };
}

// ---- in memory -------------------------------------------------------------------------------

/**
 * A cache in memory: for tests, and for browsers without OPFS (private windows of some browsers),
 * where a reload downloads again. Entries hold their bytes, so the model is in memory once here.
 */
export function memoryCache(): ModelCache {
  const entries = new Map<string, { key: HubFileKey; parts: Uint8Array[]; size: number; complete: boolean; storedAt: number; data?: Uint8Array }>();
  const manifests = new Map<string, { key: HubRepoKey; m: ModelManifest }>();
  const open = new Set<string>();
  const id = (k: HubFileKey) => JSON.stringify([k.endpoint, k.repo, k.revision, k.file]);
  const rid = (k: HubRepoKey) => JSON.stringify([k.endpoint, k.repo, k.revision]);
  return {
    kind: 'memory',
    async get(key) {
      const e = entries.get(id(key));
      return e?.complete ? bytesSource(e.data!, key.file) : undefined;
    },
    async open(key) {
      const k = id(key);
      if (open.has(k)) throw new CacheError(`${key.file} of ${key.repo} is already being downloaded.`);
      let e = entries.get(k);
      if (e?.complete) entries.delete(k);
      if (!e || e.complete) {
        e = { key: { ...key }, parts: [], size: 0, complete: false, storedAt: Date.now() };
        entries.set(k, e);
      }
      open.add(k);
      const entry = e;
      let closed = false;
      const live = () => {
        if (closed) throw new CacheError(`The download of ${key.file} was already finished or released.`);
      };
      return {
        get written() {
          return entry.size;
        },
        async write(chunk) {
          live();
          entry.parts.push(chunk.slice());
          entry.size += chunk.length;
        },
        async reset() {
          live();
          entry.parts = [];
          entry.size = 0;
        },
        async suspend() {
          closed = true;
          open.delete(k);
        },
        async commit() {
          live();
          closed = true;
          open.delete(k);
          const data = new Uint8Array(entry.size);
          let o = 0;
          for (const p of entry.parts) {
            data.set(p, o);
            o += p.length;
          }
          entry.parts = [];
          entry.data = data;
          entry.complete = true;
          entry.storedAt = Date.now();
          return bytesSource(data, key.file);
        },
        async discard() {
          closed = true;
          open.delete(k);
          if (entries.get(k) === entry) entries.delete(k);
        },
      };
    },
    async getManifest(key) {
      const m = manifests.get(rid(key))?.m;
      return m && { files: [...m.files], absent: [...m.absent], ...(m.commit ? { commit: m.commit } : {}) };
    },
    async putManifest(key, m) {
      manifests.set(rid(key), { key: { endpoint: key.endpoint, repo: key.repo, revision: key.revision }, m: checkManifest(m, 'manifest') });
    },
    async list() {
      return [...entries.values()].map((e) => ({ ...e.key, size: e.size, complete: e.complete, storedAt: e.storedAt }));
    },
    async clear(filter) {
      let n = 0;
      let bytes = 0;
      for (const [k, e] of entries) {
        if (matchesFilter(e.key, filter) && !open.has(k)) {
          entries.delete(k);
          n++;
          bytes += e.size;
        }
      }
      for (const [k, m] of manifests) if (matchesFilter(m.key, filter)) manifests.delete(k);
      return { entries: n, bytes };
    },
  };
}

// ---- OPFS --------------------------------------------------------------------------------------

/** The subset of the File System Standard this cache uses (so tests can provide one). */
export interface OpfsDirectory {
  getDirectoryHandle(name: string, options?: { create?: boolean }): Promise<OpfsDirectory>;
  getFileHandle(name: string, options?: { create?: boolean }): Promise<OpfsFile>;
  removeEntry(name: string, options?: { recursive?: boolean }): Promise<void>;
  entries(): AsyncIterable<[string, { kind: 'file' | 'directory' }]>;
}

export interface OpfsFile {
  getFile(): Promise<Blob & { lastModified?: number }>;
  createWritable(options?: { keepExistingData?: boolean }): Promise<OpfsWritable>;
}

export interface OpfsWritable {
  write(data: Uint8Array<ArrayBuffer>): Promise<void>;
  close(): Promise<void>;
  abort(): Promise<void>;
}

/** Largest part file: what a crash or reload can lose of a download in progress. */
export const PART_BYTES = 64 * 1024 * 1024;
export const OPFS_ROOT = 'studio-hub-cache';
const COMPLETE = '@complete.json';
const MANIFEST = '@model.json';

/** An OPFS lookup of a missing name (or of a file where a folder was asked for, and the reverse). */
export function isNotFound(e: unknown): boolean {
  const n = (e as { name?: string } | null)?.name;
  return n === 'NotFoundError' || n === 'TypeMismatchError';
}

/** The sub-folder `name`, or undefined when there is none. */
export async function tryDir(parent: OpfsDirectory, name: string): Promise<OpfsDirectory | undefined> {
  try {
    return await parent.getDirectoryHandle(name);
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw e;
  }
}

/** The file `name`, or undefined when there is none. */
export async function tryFile(parent: OpfsDirectory, name: string): Promise<OpfsFile | undefined> {
  try {
    return await parent.getFileHandle(name);
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw e;
  }
}

async function children(dir: OpfsDirectory, kind: 'file' | 'directory'): Promise<string[]> {
  const out: string[] = [];
  for await (const [name, h] of dir.entries()) if (h.kind === kind) out.push(name);
  return out.sort();
}

async function readJson(file: OpfsFile): Promise<unknown> {
  return JSON.parse(await (await file.getFile()).text());
}

/** Writes `text` as the file `name` in `dir` through a writable that replaces the file only on close (aborted on failure). */
export async function writeWhole(dir: OpfsDirectory, name: string, text: string): Promise<void> {
  const w = await (await dir.getFileHandle(name, { create: true })).createWritable();
  try {
    await w.write(new TextEncoder().encode(text));
    await w.close();
  } catch (e) {
    await w.abort().catch(() => {});
    throw e;
  }
}

/** Part files of a file folder, in order, stopping at the first gap. */
async function partNames(dir: OpfsDirectory): Promise<string[]> {
  const names = new Set(await children(dir, 'file'));
  const out: string[] = [];
  for (let i = 0; names.has(`part-${i}`); i++) out.push(`part-${i}`);
  return out;
}

function storageError(e: unknown, what: string): never {
  if ((e as { name?: string } | null)?.name === 'QuotaExceededError') {
    throw new CacheError(`The browser's storage for this site is full while ${what}. Clear cached models you no longer need (or free disk space) and try again.`);
  }
  throw e;
}

/**
 * The model cache in the origin private file system. `root` is the OPFS root directory
 * (`await navigator.storage.getDirectory()`); tests pass a stand-in.
 */
export function opfsCache(root: OpfsDirectory, options: { partBytes?: number } = {}): ModelCache {
  const partBytes = options.partBytes ?? PART_BYTES;
  const openKeys = new Set<string>();
  const base = () => root.getDirectoryHandle(OPFS_ROOT, { create: true });
  const repoPath = (k: HubRepoKey) => [k.endpoint, k.repo, k.revision].map(encodeKeyPart);

  async function repoDir(k: HubRepoKey, create: boolean): Promise<OpfsDirectory | undefined> {
    let d: OpfsDirectory | undefined = await base();
    for (const part of repoPath(k)) {
      d = create ? await d.getDirectoryHandle(part, { create: true }) : await tryDir(d, part);
      if (!d) return undefined;
    }
    return d;
  }

  async function fileDir(k: HubFileKey, create: boolean): Promise<OpfsDirectory | undefined> {
    const r = await repoDir(k, create);
    if (!r) return undefined;
    return create ? r.getDirectoryHandle(encodeKeyPart(k.file), { create: true }) : tryDir(r, encodeKeyPart(k.file));
  }

  /** The parts of a complete entry as one disk-backed Blob; undefined if absent or broken. */
  async function readEntry(dir: OpfsDirectory): Promise<{ blob: Blob; storedAt: number } | undefined> {
    const done = await tryFile(dir, COMPLETE);
    if (!done) return undefined;
    let meta: { size?: unknown; parts?: unknown };
    try {
      meta = (await readJson(done)) as typeof meta;
    } catch {
      return undefined;
    }
    const names = await partNames(dir);
    if (names.length !== meta.parts) return undefined;
    const files = await Promise.all(names.map(async (n) => (await dir.getFileHandle(n)).getFile()));
    const blob = new Blob(files);
    if (blob.size !== meta.size) return undefined;
    const stamp = await done.getFile();
    return { blob, storedAt: stamp.lastModified ?? Date.now() };
  }

  return {
    kind: 'opfs',
    async get(key) {
      const dir = await fileDir(key, false);
      const entry = dir && (await readEntry(dir));
      return entry ? blobSource(entry.blob, key.file) : undefined;
    },

    async open(key) {
      const id = JSON.stringify(key);
      if (openKeys.has(id)) throw new CacheError(`${key.file} of ${key.repo} is already being downloaded.`);
      let dir: OpfsDirectory;
      try {
        dir = (await fileDir(key, true))!;
      } catch (e) {
        storageError(e, `starting the download of ${key.file}`);
      }
      openKeys.add(id);
      let names: string[];
      let sizes: number[];
      try {
        // A complete entry being replaced, or a broken one: start over.
        if (await tryFile(dir, COMPLETE)) {
          for (const n of await children(dir, 'file')) await dir.removeEntry(n);
        }
        // Every closed part holds valid bytes (a part whose stream was never closed is empty), so
        // a resume continues after the parts there are, in a new part.
        names = await partNames(dir);
        sizes = await Promise.all(names.map(async (n) => (await (await dir.getFileHandle(n)).getFile()).size));
        // A part created by a stream that never closed is empty: write it again.
        while (names.length && sizes[sizes.length - 1] === 0) {
          names.pop();
          sizes.pop();
        }
        for (const n of (await children(dir, 'file')).filter((n) => n.startsWith('part-') && !names.includes(n))) {
          await dir.removeEntry(n); // empty, or after a gap, where no byte can be placed
        }
      } catch (e) {
        openKeys.delete(id);
        throw e;
      }
      let written = sizes.reduce((a, b) => a + b, 0);
      let part = names.length;
      let partFill = 0;
      let stream: OpfsWritable | undefined;
      let closed = false;
      const release = () => {
        closed = true;
        openKeys.delete(id);
      };
      const live = () => {
        if (closed) throw new CacheError(`The download of ${key.file} was already finished or released.`);
      };
      const closePart = async () => {
        if (stream) {
          const s = stream;
          stream = undefined;
          await s.close();
          part++;
          partFill = 0;
        }
      };
      const dropFrom = async (first: number) => {
        for (const n of await children(dir, 'file')) {
          const m = /^part-(\d+)$/.exec(n);
          if (m && Number(m[1]) >= first) await dir.removeEntry(n);
        }
      };
      return {
        get written() {
          return written;
        },
        async write(chunk) {
          live();
          try {
            let o = 0;
            while (o < chunk.length) {
              if (!stream) stream = await (await dir.getFileHandle(`part-${part}`, { create: true })).createWritable();
              const n = Math.min(chunk.length - o, partBytes - partFill);
              // A copy: the writer may still be reading it when the caller reuses the chunk.
              await stream.write(chunk.slice(o, o + n));
              o += n;
              partFill += n;
              written += n;
              if (partFill === partBytes) await closePart();
            }
          } catch (e) {
            storageError(e, `storing ${key.file}`);
          }
        },
        async reset() {
          live();
          if (stream) await stream.abort().catch(() => {});
          stream = undefined;
          await dropFrom(0);
          written = 0;
          part = 0;
          partFill = 0;
        },
        async suspend() {
          if (closed) return;
          release();
          await closePart(); // closing is what puts the bytes in the part file
        },
        async commit() {
          live();
          try {
            await closePart();
            const parts = (await partNames(dir)).length;
            await writeWhole(dir, COMPLETE, JSON.stringify({ ...key, size: written, parts }));
          } catch (e) {
            release();
            storageError(e, `storing ${key.file}`);
          }
          release();
          const entry = await readEntry(dir);
          if (!entry) throw new CacheError(`${key.file} was stored but cannot be read back from the browser's storage; clear it from the cache and download it again.`);
          return blobSource(entry.blob, key.file);
        },
        async discard() {
          if (closed) return;
          release();
          if (stream) await stream.abort().catch(() => {});
          stream = undefined;
          const r = await repoDir(key, false);
          await r?.removeEntry(encodeKeyPart(key.file), { recursive: true }).catch(() => {});
        },
      };
    },

    async getManifest(key) {
      const dir = await repoDir(key, false);
      const f = dir && (await tryFile(dir, MANIFEST));
      if (!f) return undefined;
      try {
        return checkManifest(await readJson(f), `${key.repo}@${key.revision} ${MANIFEST}`);
      } catch {
        return undefined; // a broken manifest only costs requests: resolve the model again
      }
    },

    async putManifest(key, m) {
      try {
        await writeWhole((await repoDir(key, true))!, MANIFEST, JSON.stringify(checkManifest(m, 'manifest')));
      } catch (e) {
        storageError(e, `saving the file list of ${key.repo}`);
      }
    },

    async list() {
      const out: CacheEntry[] = [];
      const b = await base();
      for (const ep of await children(b, 'directory')) {
        const epDir = await b.getDirectoryHandle(ep);
        for (const repo of await children(epDir, 'directory')) {
          const repoDirH = await epDir.getDirectoryHandle(repo);
          for (const rev of await children(repoDirH, 'directory')) {
            const revDir = await repoDirH.getDirectoryHandle(rev);
            for (const file of await children(revDir, 'directory')) {
              const key: HubFileKey = { endpoint: decodeKeyPart(ep), repo: decodeKeyPart(repo), revision: decodeKeyPart(rev), file: decodeKeyPart(file) };
              const fd = await revDir.getDirectoryHandle(file);
              const entry = await readEntry(fd);
              if (entry) {
                out.push({ ...key, size: entry.blob.size, complete: true, storedAt: entry.storedAt });
                continue;
              }
              let size = 0;
              let storedAt = 0;
              for (const n of await partNames(fd)) {
                const f = await (await fd.getFileHandle(n)).getFile();
                size += f.size;
                storedAt = Math.max(storedAt, f.lastModified ?? 0);
              }
              out.push({ ...key, size, complete: false, storedAt });
            }
          }
        }
      }
      return out;
    },

    async clear(filter) {
      const all = await this.list();
      let entries = 0;
      let bytes = 0;
      for (const e of all) {
        if (!matchesFilter(e, filter) || openKeys.has(JSON.stringify({ endpoint: e.endpoint, repo: e.repo, revision: e.revision, file: e.file }))) continue;
        const r = await repoDir(e, false);
        await r?.removeEntry(encodeKeyPart(e.file), { recursive: true });
        entries++;
        bytes += e.size;
      }
      // Model manifests of the matching revisions go too (they name files that are gone).
      const b = await base();
      for (const ep of await children(b, 'directory')) {
        const epDir = await b.getDirectoryHandle(ep);
        for (const repo of await children(epDir, 'directory')) {
          const repoDirH = await epDir.getDirectoryHandle(repo);
          for (const rev of await children(repoDirH, 'directory')) {
            const k = { endpoint: decodeKeyPart(ep), repo: decodeKeyPart(repo), revision: decodeKeyPart(rev) };
            if (!matchesFilter(k, filter)) continue;
            const revDir = await repoDirH.getDirectoryHandle(rev);
            if (await tryFile(revDir, MANIFEST)) await revDir.removeEntry(MANIFEST);
            if ((await children(revDir, 'directory')).length === 0 && (await children(revDir, 'file')).length === 0) {
              await repoDirH.removeEntry(rev, { recursive: true });
            }
          }
        }
      }
      return { entries, bytes };
    },
  };
}

/**
 * The browser's model cache: OPFS when this browser has it (with persistent storage requested, so
 * the browser does not evict a 500 MB model under storage pressure without asking), else an
 * in-memory cache with `persistent: false`, so the UI can say a reload will download again.
 */
export async function openBrowserCache(): Promise<{ cache: ModelCache; persistent: boolean }> {
  const storage = (globalThis as { navigator?: { storage?: StorageManager } }).navigator?.storage;
  if (storage && typeof storage.getDirectory === 'function') {
    try {
      const root = (await storage.getDirectory()) as unknown as OpfsDirectory;
      // Only a document can be granted persistence; in a worker persist() may be absent.
      await storage.persist?.().catch(() => false);
      return { cache: opfsCache(root), persistent: true };
    } catch {
      // e.g. Firefox private windows refuse OPFS: fall through to memory
    }
  }
  return { cache: memoryCache(), persistent: false };
}
