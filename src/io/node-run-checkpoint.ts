// Checkpoint folders on disk (Node only: the CLI and tests). A checkpoint is written whole into a
// temporary sibling `.checkpoint-<step>.tmp-<random>/`, each file flushed to disk, then renamed
// to `checkpoint-<step>/`, so it exists whole or not at all; `saveTotalLimit` keeps the newest N.
// Also: finding the checkpoint a `--resume PATH` means, and Node's SHA-256 for fingerprints.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { StudioError } from '../engine/errors.ts';
import type { ExportFile } from './export.ts';
import { CHECKPOINT_DIR, TRAINER_STATE_NAME } from './run-checkpoint.ts';
import type { Sha256Hasher } from './sha256.ts';

/** A checkpoint could not be written or found where asked. */
export class CheckpointWriteError extends StudioError {}

/** Node's SHA-256 behind the format's hasher interface. */
export function nodeSha256(): Sha256Hasher {
  const h = createHash('sha256');
  return { update: (b) => void h.update(b), hex: () => h.digest('hex') };
}

const TEMP = /^\.checkpoint-\d+\.(tmp|old)-[0-9a-f]+$/;

function fsMessage(e: unknown, path: string, what: string): CheckpointWriteError {
  const code = (e as NodeJS.ErrnoException)?.code;
  const hint = code === 'ENOSPC' ? 'The disk is full: free space or point --out at another disk.'
    : code === 'EROFS' || code === 'EACCES' || code === 'EPERM' ? 'The folder is not writable: choose another --out.'
    : 'Check the folder and try again.';
  return new CheckpointWriteError(`Cannot ${what} ${path} (${code ?? (e as Error)?.message}). ${hint} Earlier checkpoints are intact.`);
}

async function writeFileChunks(path: string, f: ExportFile, signal?: AbortSignal): Promise<void> {
  const fh = await open(path, 'w');
  try {
    let written = 0;
    const chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array> = f.data instanceof Uint8Array ? [f.data] : f.data();
    for await (const chunk of chunks) {
      signal?.throwIfAborted();
      let o = 0;
      while (o < chunk.length) o += (await fh.write(chunk, o, chunk.length - o)).bytesWritten;
      written += chunk.length;
    }
    if (written !== f.size) throw new CheckpointWriteError(`${path}: wrote ${written} bytes, expected ${f.size}.`);
    // On disk before the rename makes the folder visible: a crash cannot leave a named, short file.
    await fh.datasync();
  } finally {
    await fh.close();
  }
}

/** Checkpoint folders `checkpoint-<step>` directly in `dir`, ascending by step (none when `dir` does not exist). */
export async function listCheckpoints(dir: string): Promise<Array<{ step: number; path: string }>> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const out: Array<{ step: number; path: string }> = [];
  for (const n of names) {
    const m = CHECKPOINT_DIR.exec(n);
    if (!m) continue;
    const st = await stat(join(dir, n)).catch(() => null);
    if (st?.isDirectory()) out.push({ step: Number(m[1]), path: join(dir, n) });
  }
  return out.sort((a, b) => a.step - b.step);
}

/** Removes temporary folders a killed writer left in `dir` (`.checkpoint-<step>.tmp-*` / `.old-*`: only ours). */
export async function removeStaleCheckpointTemps(dir: string): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const n of names) if (TEMP.test(n)) await rm(join(dir, n), { recursive: true, force: true });
}

export interface WriteCheckpointOptions {
  /** keep only the newest N checkpoint folders in `outDir` after writing; 0 (default) keeps all */
  saveTotalLimit?: number;
  signal?: AbortSignal;
}

/**
 * Writes `files` as `<outDir>/checkpoint-<step>/` through a temporary sibling folder and a rename,
 * replacing an existing folder of that step only once the new one is complete. Returns its path.
 */
export async function writeCheckpointFolder(outDir: string, step: number, files: ExportFile[], opts: WriteCheckpointOptions = {}): Promise<string> {
  const final = join(outDir, `checkpoint-${step}`);
  const tmp = join(outDir, `.checkpoint-${step}.tmp-${randomBytes(4).toString('hex')}`);
  try {
    await mkdir(outDir, { recursive: true });
    await mkdir(tmp);
  } catch (e) {
    throw fsMessage(e, outDir, 'create the checkpoint folder in');
  }
  try {
    for (const f of files) {
      opts.signal?.throwIfAborted();
      try {
        await writeFileChunks(join(tmp, f.name), f, opts.signal);
      } catch (e) {
        if (e instanceof StudioError || (e as Error)?.name === 'AbortError') throw e;
        throw fsMessage(e, join(tmp, f.name), 'write');
      }
    }
    const existing = await stat(final).catch(() => null);
    if (existing) {
      const old = join(outDir, `.checkpoint-${step}.old-${randomBytes(4).toString('hex')}`);
      await rename(final, old);
      await rename(tmp, final);
      await rm(old, { recursive: true, force: true });
    } else {
      await rename(tmp, final);
    }
  } catch (e) {
    await rm(tmp, { recursive: true, force: true }).catch(() => {});
    if (e instanceof StudioError || (e as Error)?.name === 'AbortError') throw e;
    throw fsMessage(e, final, 'write the checkpoint');
  }
  const limit = opts.saveTotalLimit ?? 0;
  if (limit > 0) {
    const all = await listCheckpoints(outDir);
    for (const c of all.slice(0, Math.max(0, all.length - limit))) if (c.path !== final) await rm(c.path, { recursive: true, force: true });
  }
  return final;
}

/**
 * The checkpoint `--resume PATH` means: PATH itself when it holds trainer_state.json, else the
 * newest `checkpoint-*` inside it.
 */
export async function resolveCheckpointPath(path: string): Promise<string> {
  const st = await stat(path).catch(() => null);
  if (!st) throw new CheckpointWriteError(`--resume ${path}: no such folder. Give a checkpoint folder (checkpoint-<step>/) or the --out folder of a run that holds them.`);
  if (!st.isDirectory()) throw new CheckpointWriteError(`--resume ${path} is a file; give a checkpoint folder (checkpoint-<step>/) or the folder that holds them.`);
  if (await stat(join(path, TRAINER_STATE_NAME)).catch(() => null)) return path;
  const all = await listCheckpoints(path);
  if (!all.length) throw new CheckpointWriteError(`--resume ${path}: neither a checkpoint (no ${TRAINER_STATE_NAME}) nor a folder holding checkpoint-<step>/ folders.`);
  return all[all.length - 1].path;
}
