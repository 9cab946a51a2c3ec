// The tuning cache in the page: one JSON file (format: src/io/tuning-cache.ts) at the root of the
// origin private file system, written by the Tune request (worker/tune.ts) and read when a new
// run starts. OPFS's createWritable writes to a swap file that replaces the file only on close,
// so a failed write leaves the old cache whole. A damaged file is reported, ignored, and kept
// aside under another name when a new result is saved.
import type { GpuContext } from '../engine/gpu/context.ts';
import { defaultVariants, type KernelVariants, type MatmulClass, type MatmulTile } from '../engine/gpu/variants.ts';
import { tryFile, writeWhole, type OpfsDirectory } from '../io/cache.ts';
import { emptyTuningCache, parseTuningCache, tilesFor, TuningCacheError, withTiles, type TuningCache } from '../io/tuning-cache.ts';

export const TUNING_FILE = 'studio-kernel-tuning.json';

async function opfsRoot(): Promise<OpfsDirectory | null> {
  const storage = (globalThis.navigator as { storage?: { getDirectory?: () => Promise<unknown> } } | undefined)?.storage;
  if (!storage?.getDirectory) return null;
  try {
    return (await storage.getDirectory()) as OpfsDirectory;
  } catch {
    return null; // no OPFS (a private window of some browsers): the default tiles
  }
}

async function readCache(root: OpfsDirectory): Promise<{ cache: TuningCache | null; damaged: string | null }> {
  const f = await tryFile(root, TUNING_FILE);
  if (!f) return { cache: null, damaged: null };
  try {
    return { cache: parseTuningCache(await (await f.getFile()).text()), damaged: null };
  } catch (e) {
    return { cache: null, damaged: (e as Error).message };
  }
}

/** The variants for a new run on `ctx`: this adapter's tuned tiles when the cache has them, else the defaults. */
export async function tunedVariants(
  ctx: GpuContext, warn: (message: string) => void = (m) => console.warn(m), root?: OpfsDirectory | null,
): Promise<KernelVariants> {
  const v = defaultVariants();
  const dir = root === undefined ? await opfsRoot() : root;
  if (!dir) return v;
  const r = await readCache(dir);
  if (r.damaged !== null) {
    warn(`The saved kernel tuning is damaged (${r.damaged}); training uses the default matmul tiles. Tune again in the Adapter panel to replace it.`);
    return v;
  }
  const tiles = r.cache ? tilesFor(r.cache, ctx.adapter) : null;
  if (tiles) v.matmul = tiles;
  return v;
}

/** Saves this adapter's tiles, keeping other adapters' entries; a damaged file is kept as `<name>.damaged-<time>` and `say` names it. */
export async function saveTunedTiles(
  ctx: GpuContext, tiles: Partial<Record<MatmulClass, MatmulTile>>, shapes: string, say: (message: string) => void, root?: OpfsDirectory | null,
): Promise<void> {
  const dir = root === undefined ? await opfsRoot() : root;
  if (!dir) throw new TuningCacheError('This browser gives the page no private file system (OPFS), so the tuning cannot be kept; training uses the default tiles.');
  const r = await readCache(dir);
  const write = (name: string, text: string) => writeWhole(dir, name, text);
  if (r.damaged !== null) {
    const aside = `${TUNING_FILE}.damaged-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    const old = await (await dir.getFileHandle(TUNING_FILE)).getFile();
    await write(aside, await old.text());
    say(`The saved kernel tuning was damaged (${r.damaged}); kept it as ${aside}.`);
  }
  await write(TUNING_FILE, JSON.stringify(withTiles(r.cache ?? emptyTuningCache(), ctx.adapter, tiles, shapes), null, 2) + '\n');
}
