// The tuning cache as a file for the CLI: <cache>/kernel-tuning.json, where <cache> is
// $STUDIO_CACHE, else $XDG_CACHE_HOME/webgpu-studio, else ~/.cache/webgpu-studio (the Hub
// download cache's root). Format: src/io/tuning-cache.ts. Reading never fails a run: a missing
// file means the default tiles, a damaged one is reported and ignored. Writing goes to a
// temporary beside the file, then a rename; a damaged file is renamed aside (and said), never
// deleted.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { AdapterReport } from '../engine/gpu/context.ts';
import type { MatmulClass, MatmulTile } from '../engine/gpu/variants.ts';
import { defaultCacheDir } from '../io/node-cache.ts';
import { emptyTuningCache, parseTuningCache, tilesFor, withTiles, type TuningCache } from '../io/tuning-cache.ts';

export function tuningFilePath(env: Record<string, string | undefined> = process.env): string {
  return join(defaultCacheDir(env), 'kernel-tuning.json');
}

type Read = { cache: TuningCache; damaged: null } | { cache: null; damaged: string | null };

async function readCache(path: string): Promise<Read> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { cache: null, damaged: null };
    return { cache: null, damaged: `it cannot be read (${(e as Error).message})` };
  }
  try {
    return { cache: parseTuningCache(text), damaged: null };
  } catch (e) {
    return { cache: null, damaged: (e as Error).message };
  }
}

/**
 * This adapter's tuned tiles from the cache file, or null (no file, no entry for this adapter,
 * or a damaged file: then `warn` says so and that the default tiles are used).
 */
export async function readTunedTiles(
  adapter: AdapterReport, warn: (line: string) => void, path = tuningFilePath(),
): Promise<Partial<Record<MatmulClass, MatmulTile>> | null> {
  const r = await readCache(path);
  if (r.damaged !== null) {
    warn(`warning: the kernel tuning cache ${path} is damaged (${r.damaged}); using the default matmul tiles. Run \`npm run tune\` to measure again (the damaged file is then kept beside it).`);
    return null;
  }
  return r.cache ? tilesFor(r.cache, adapter) : null;
}

/**
 * Stores this adapter's tiles in the cache file, keeping other adapters' entries. A damaged file
 * is renamed to `<file>.damaged-<time>` first and `say` names it.
 */
export async function writeTunedTiles(
  adapter: AdapterReport, tiles: Partial<Record<MatmulClass, MatmulTile>>, shapes: string, say: (line: string) => void, path = tuningFilePath(),
): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const r = await readCache(path);
  if (r.damaged !== null) {
    const aside = `${path}.damaged-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    await rename(path, aside);
    say(`the kernel tuning cache was damaged (${r.damaged}); kept it as ${aside}`);
  }
  const next = withTiles(r.cache ?? emptyTuningCache(), adapter, tiles, shapes);
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, JSON.stringify(next, null, 2) + '\n');
  await rename(tmp, path);
}
