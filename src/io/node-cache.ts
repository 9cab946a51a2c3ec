// The Hub download cache on disk, for the CLI (Node only; the page uses cache.ts's OPFS cache).
// Root: $STUDIO_CACHE, else $XDG_CACHE_HOME/webgpu-studio, else ~/.cache/webgpu-studio. Layout,
// one folder per key component (encodeURIComponent'ed, so a component never holds '/' or '@'):
//   <root>/hub/<endpoint>/<repo>/<revision>/<file>            a complete file
//   <root>/hub/<endpoint>/<repo>/<revision>/<file>@partial    an interrupted download, resumable
//   <root>/hub/<endpoint>/<repo>/<revision>/<file>@lock       held by the process downloading it
//   <root>/hub/<endpoint>/<repo>/<revision>/@model.json       which files the model has
// Top-level repository files keep their own names, so a revision folder is a model folder that
// loadModelDir and the CLI's tokenizer lookup read directly.
import { mkdir, open, readdir, readFile, rename, rm, rmdir, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { ByteSource } from './bytes.ts';
import {
  CacheError,
  checkManifest,
  decodeKeyPart,
  encodeKeyPart,
  matchesFilter,
  type CacheEntry,
  type CacheWriter,
  type HubFileKey,
  type HubRepoKey,
  type ModelCache,
} from './cache.ts';
import { nodeFileSource } from './node-model.ts';

const PARTIAL = '@partial';
const LOCK = '@lock';
const MANIFEST = '@model.json';

/** Where the CLI keeps downloads: $STUDIO_CACHE, $XDG_CACHE_HOME/webgpu-studio or ~/.cache/webgpu-studio. */
export function defaultCacheDir(env: Record<string, string | undefined> = process.env): string {
  if (env.STUDIO_CACHE) return env.STUDIO_CACHE;
  if (env.XDG_CACHE_HOME) return join(env.XDG_CACHE_HOME, 'webgpu-studio');
  return join(homedir(), '.cache', 'webgpu-studio');
}

function code(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | null)?.code;
}

async function dirNames(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  } catch (e) {
    if (code(e) === 'ENOENT') return [];
    throw e;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return code(e) === 'EPERM'; // alive, owned by someone else
  }
}

/** Takes the per-file lock, replacing one left by a process that no longer runs. */
async function lock(path: string, what: string): Promise<void> {
  for (let tries = 0; tries < 2; tries++) {
    try {
      const fh = await open(path, 'wx');
      await fh.writeFile(String(process.pid));
      await fh.close();
      return;
    } catch (e) {
      if (code(e) !== 'EEXIST') throw e;
      const pid = Number((await readFile(path, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && pidAlive(pid)) {
        throw new CacheError(`${what} is being downloaded by another process (pid ${pid}). Wait for it to finish, or stop it.`);
      }
      if (pid === process.pid) throw new CacheError(`${what} is already being downloaded.`);
      await rm(path, { force: true }); // stale
    }
  }
  throw new CacheError(`Could not lock ${path}; remove it if no download is running.`);
}

/** The model cache in a folder (default: defaultCacheDir()). */
export function nodeCache(root: string = defaultCacheDir()): NodeModelCache {
  return new NodeModelCache(root);
}

export class NodeModelCache implements ModelCache {
  readonly kind = 'node' as const;
  readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  /** The folder of a repository at a revision: a model folder once its files are downloaded. */
  repoDir(k: HubRepoKey): string {
    return join(this.root, 'hub', encodeKeyPart(k.endpoint), encodeKeyPart(k.repo), encodeKeyPart(k.revision));
  }

  private filePath(k: HubFileKey): string {
    return join(this.repoDir(k), encodeKeyPart(k.file));
  }

  async get(key: HubFileKey): Promise<ByteSource | undefined> {
    const path = this.filePath(key);
    const st = await stat(path).catch(() => null);
    if (!st?.isFile()) return undefined;
    return { ...(await nodeFileSource(path)), name: key.file };
  }

  async open(key: HubFileKey): Promise<CacheWriter> {
    const path = this.filePath(key);
    const partial = path + PARTIAL;
    const lockPath = path + LOCK;
    try {
      await mkdir(this.repoDir(key), { recursive: true });
    } catch (e) {
      throw new CacheError(`Cannot create the cache folder ${this.repoDir(key)} (${(e as Error).message}). Set STUDIO_CACHE to a writable folder.`);
    }
    await lock(lockPath, `${key.file} of ${key.repo}@${key.revision}`);
    let fh: FileHandle;
    let written: number;
    try {
      fh = await open(partial, 'a');
      written = (await fh.stat()).size;
    } catch (e) {
      await rm(lockPath, { force: true });
      throw e;
    }
    let closed = false;
    const release = async () => {
      closed = true;
      await fh.close().catch(() => {});
      await rm(lockPath, { force: true });
    };
    const live = () => {
      if (closed) throw new CacheError(`The download of ${key.file} was already finished or released.`);
    };
    const full = (e: unknown): never => {
      if (code(e) === 'ENOSPC') throw new CacheError(`The disk is full while storing ${key.file} in ${this.root}. Free space or set STUDIO_CACHE to another disk; the download resumes where it stopped.`);
      throw e;
    };
    return {
      get written() {
        return written;
      },
      async write(chunk) {
        live();
        try {
          let o = 0;
          // Append mode: each write lands at the end, whatever the position.
          while (o < chunk.length) o += (await fh.write(chunk, o, chunk.length - o)).bytesWritten;
        } catch (e) {
          full(e);
        }
        written += chunk.length;
      },
      async reset() {
        live();
        await fh.truncate(0);
        written = 0;
      },
      async suspend() {
        if (!closed) await release();
      },
      async commit() {
        live();
        try {
          await fh.sync();
        } catch (e) {
          full(e);
        }
        await fh.close();
        await rename(partial, path);
        await release();
        return { ...(await nodeFileSource(path)), name: key.file };
      },
      async discard() {
        if (closed) return;
        await release();
        await rm(partial, { force: true });
      },
    };
  }

  async getManifest(key: HubRepoKey) {
    const text = await readFile(join(this.repoDir(key), MANIFEST), 'utf8').catch(() => undefined);
    if (text === undefined) return undefined;
    try {
      return checkManifest(JSON.parse(text), MANIFEST);
    } catch {
      return undefined; // a broken manifest only costs requests: the model is resolved again
    }
  }

  async putManifest(key: HubRepoKey, manifest: { files: string[]; absent: string[]; commit?: string }): Promise<void> {
    await mkdir(this.repoDir(key), { recursive: true });
    const path = join(this.repoDir(key), MANIFEST);
    await writeFile(`${path}.tmp${process.pid}`, JSON.stringify(checkManifest(manifest, 'manifest'), null, 1));
    await rename(`${path}.tmp${process.pid}`, path);
  }

  private async walk(): Promise<Array<{ key: HubRepoKey; dir: string; names: string[] }>> {
    const out: Array<{ key: HubRepoKey; dir: string; names: string[] }> = [];
    const hub = join(this.root, 'hub');
    for (const ep of await dirNames(hub)) {
      for (const repo of await dirNames(join(hub, ep))) {
        for (const rev of await dirNames(join(hub, ep, repo))) {
          const dir = join(hub, ep, repo, rev);
          const names = (await readdir(dir).catch(() => [] as string[])).sort();
          out.push({ key: { endpoint: decodeKeyPart(ep), repo: decodeKeyPart(repo), revision: decodeKeyPart(rev) }, dir, names });
        }
      }
    }
    return out;
  }

  async list(): Promise<CacheEntry[]> {
    const out: CacheEntry[] = [];
    for (const { key, dir, names } of await this.walk()) {
      for (const n of names) {
        if (n.startsWith('@') || n.endsWith(LOCK)) continue;
        const complete = !n.endsWith(PARTIAL);
        const st = await stat(join(dir, n)).catch(() => null);
        if (!st?.isFile()) continue;
        out.push({ ...key, file: decodeKeyPart(complete ? n : n.slice(0, -PARTIAL.length)), size: st.size, complete, storedAt: st.mtimeMs });
      }
    }
    return out;
  }

  async clear(filter?: { endpoint?: string; repo?: string; revision?: string }): Promise<{ entries: number; bytes: number }> {
    let entries = 0;
    let bytes = 0;
    for (const { key, dir, names } of await this.walk()) {
      if (!matchesFilter(key, filter)) continue;
      const locked = new Set(names.filter((n) => n.endsWith(LOCK)).map((n) => n.slice(0, -LOCK.length)));
      for (const n of names) {
        if (n.startsWith('@') || n.endsWith(LOCK)) continue;
        const base = n.endsWith(PARTIAL) ? n.slice(0, -PARTIAL.length) : n;
        if (locked.has(base) && n.endsWith(PARTIAL)) continue; // a download in progress
        const st = await stat(join(dir, n)).catch(() => null);
        if (!st?.isFile()) continue;
        await rm(join(dir, n), { force: true });
        entries++;
        bytes += st.size;
      }
      await rm(join(dir, MANIFEST), { force: true });
      await rmdir(dir).catch(() => {}); // only if now empty
    }
    return { entries, bytes };
  }
}
