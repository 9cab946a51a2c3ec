// The kernel tuning cache: the matmul tiling per shape class that `npm run tune` (or the page's
// Tune button) measured fastest, per adapter. Plain JSON, the same in a Node file
// (src/cli/tuning-file.ts) and the page's OPFS (src/worker/tuning-opfs.ts):
//   { "format": "webgpu-studio-kernel-tuning", "version": 1,
//     "adapters": { "<adapter key>": { "adapter": {vendor, architecture, device, description},
//                                      "matmul": { "nn": "64x64x32-8x8", "tn": "32x64x32-8x8-v4", … },
//                                      "tuned": ISO time, "shapes": what was timed } } }
// An adapter's key is its identity (vendor, architecture, device, description — the description
// names the driver and its version where the browser or Dawn gives one), so an entry is used
// only on the adapter (and driver) that measured it. This module parses and validates; the
// hosts read and write.
import { StudioError } from '../engine/errors.ts';
import type { AdapterReport } from '../engine/gpu/context.ts';
import { MATMUL_CLASSES, parseTile, tileName, type MatmulClass, type MatmulTile } from '../engine/gpu/variants.ts';

export const TUNING_FORMAT = 'webgpu-studio-kernel-tuning';
export const TUNING_VERSION = 1;

/** A tuning cache that cannot be read as one (bad JSON, unknown format, malformed entries). */
export class TuningCacheError extends StudioError {}

export interface TuningEntry {
  adapter: { vendor: string; architecture: string; device: string; description: string };
  matmul: Partial<Record<MatmulClass, string>>;
  tuned: string;
  shapes: string;
}

export interface TuningCache {
  format: typeof TUNING_FORMAT;
  version: number;
  adapters: Record<string, TuningEntry>;
}

export function emptyTuningCache(): TuningCache {
  return { format: TUNING_FORMAT, version: TUNING_VERSION, adapters: {} };
}

/** The identity an entry is keyed by. */
export function adapterKey(a: Pick<AdapterReport, 'vendor' | 'architecture' | 'device' | 'description'>): string {
  return [a.vendor, a.architecture, a.device, a.description].join(' | ');
}

/** Parses and validates a cache's text; throws TuningCacheError naming what is wrong. */
export function parseTuningCache(text: string): TuningCache {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    throw new TuningCacheError(`not JSON (${(e as Error).message})`);
  }
  const o = j as Partial<TuningCache> | null;
  if (!o || typeof o !== 'object' || o.format !== TUNING_FORMAT) throw new TuningCacheError(`its "format" is not "${TUNING_FORMAT}"`);
  if (o.version !== TUNING_VERSION) throw new TuningCacheError(`version ${String(o.version)} is not the version ${TUNING_VERSION} this build reads`);
  if (!o.adapters || typeof o.adapters !== 'object') throw new TuningCacheError('it has no "adapters" object');
  for (const [key, e] of Object.entries(o.adapters)) {
    if (!e || typeof e !== 'object' || !e.matmul || typeof e.matmul !== 'object') throw new TuningCacheError(`the entry for ${key} has no "matmul" object`);
    for (const [cls, tile] of Object.entries(e.matmul)) {
      if (!(MATMUL_CLASSES as readonly string[]).includes(cls)) throw new TuningCacheError(`the entry for ${key} names an unknown shape class "${cls}"`);
      try {
        parseTile(String(tile));
      } catch (err) {
        throw new TuningCacheError(`the entry for ${key}: ${(err as Error).message}`);
      }
    }
  }
  return o as TuningCache;
}

/** This adapter's tiles per class from `cache`, or null when the cache has no entry for it. */
export function tilesFor(cache: TuningCache, adapter: AdapterReport): Partial<Record<MatmulClass, MatmulTile>> | null {
  const e = cache.adapters[adapterKey(adapter)];
  if (!e) return null;
  const out: Partial<Record<MatmulClass, MatmulTile>> = {};
  for (const [cls, tile] of Object.entries(e.matmul)) out[cls as MatmulClass] = parseTile(tile);
  return out;
}

/** `cache` with this adapter's entry set to `tiles` (other adapters' entries kept). */
export function withTiles(
  cache: TuningCache, adapter: AdapterReport, tiles: Partial<Record<MatmulClass, MatmulTile>>, shapes: string, now = new Date(),
): TuningCache {
  const matmul: Partial<Record<MatmulClass, string>> = {};
  for (const [cls, t] of Object.entries(tiles)) matmul[cls as MatmulClass] = tileName(t);
  const { vendor, architecture, device, description } = adapter;
  return {
    ...cache,
    adapters: {
      ...cache.adapters,
      [adapterKey(adapter)]: { adapter: { vendor, architecture, device, description }, matmul, tuned: now.toISOString(), shapes },
    },
  };
}
