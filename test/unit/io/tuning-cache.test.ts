// The kernel tuning cache: format validation, entries keyed by the adapter's identity (an entry
// of another adapter or driver is ignored), the Node file (write beside + rename, a damaged file
// reported and kept aside, never deleted) and the page's OPFS file (the same rules).
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readTunedTiles, tuningFilePath, writeTunedTiles } from '../../../src/cli/tuning-file.ts';
import type { AdapterReport } from '../../../src/engine/gpu/context.ts';
import type { GpuContext } from '../../../src/engine/gpu/context.ts';
import { DEFAULT_TILE, parseTile } from '../../../src/engine/gpu/variants.ts';
import { adapterKey, emptyTuningCache, parseTuningCache, tilesFor, TuningCacheError, withTiles } from '../../../src/io/tuning-cache.ts';
import { saveTunedTiles, tunedVariants, TUNING_FILE } from '../../../src/worker/tuning-opfs.ts';
import { fakeOpfs } from '../../helpers/fake-opfs.ts';

const adapter = (description: string): AdapterReport => ({
  vendor: 'mesa', architecture: 'llvmpipe', device: '', description, isFallbackAdapter: false, features: [],
  limits: {} as AdapterReport['limits'],
});
const A = adapter('Mesa 25.0.7 (LLVM 15.0.6)');
const A_NEWER_DRIVER = adapter('Mesa 25.1.0 (LLVM 19.1.0)');
const TILES = { nn: parseTile('32x64x16-8x8-v4'), tn: parseTile('16x16x8-4x4') };

describe('tuning cache format', () => {
  it('keeps entries per adapter identity and ignores another adapter or driver', () => {
    const c = withTiles(emptyTuningCache(), A, TILES, 'tiny');
    expect(tilesFor(c, A)).toEqual(TILES);
    expect(tilesFor(c, A_NEWER_DRIVER)).toBeNull();
    const both = withTiles(c, A_NEWER_DRIVER, { nn: DEFAULT_TILE }, 'tiny');
    expect(tilesFor(both, A)).toEqual(TILES);
    expect(tilesFor(both, A_NEWER_DRIVER)).toEqual({ nn: DEFAULT_TILE });
    expect(Object.keys(both.adapters)).toEqual([adapterKey(A), adapterKey(A_NEWER_DRIVER)]);
    expect(parseTuningCache(JSON.stringify(both))).toEqual(both);
  });

  it('names what is wrong with a damaged cache', () => {
    expect(() => parseTuningCache('{"format": "webgpu-studio-kern')).toThrow(TuningCacheError);
    expect(() => parseTuningCache('{"format": "other", "version": 1, "adapters": {}}')).toThrow(/"format" is not/);
    expect(() => parseTuningCache(JSON.stringify({ ...emptyTuningCache(), version: 99 }))).toThrow(/version 99/);
    const bad = withTiles(emptyTuningCache(), A, TILES, 'tiny');
    bad.adapters[adapterKey(A)].matmul = { nn: '64x64' };
    expect(() => parseTuningCache(JSON.stringify(bad))).toThrow(/BMxBNxBK-TXxTY/);
    bad.adapters[adapterKey(A)].matmul = { sideways: '64x64x32-8x8' } as never;
    expect(() => parseTuningCache(JSON.stringify(bad))).toThrow(/unknown shape class "sideways"/);
  });
});

describe('tuning cache file (CLI)', () => {
  it('lives under $STUDIO_CACHE, else $XDG_CACHE_HOME/webgpu-studio', () => {
    expect(tuningFilePath({ STUDIO_CACHE: '/c' })).toBe('/c/kernel-tuning.json');
    expect(tuningFilePath({ XDG_CACHE_HOME: '/x' })).toBe('/x/webgpu-studio/kernel-tuning.json');
  });

  it('writes, reads back for the same adapter only, and leaves no temporary', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tuning-'));
    const path = join(dir, 'sub', 'kernel-tuning.json');
    const said: string[] = [];
    expect(await readTunedTiles(A, (l) => said.push(l), path)).toBeNull(); // no file: silent
    await writeTunedTiles(A, TILES, 'tiny', (l) => said.push(l), path);
    expect(await readTunedTiles(A, (l) => said.push(l), path)).toEqual(TILES);
    expect(await readTunedTiles(A_NEWER_DRIVER, (l) => said.push(l), path)).toBeNull();
    await writeTunedTiles(A_NEWER_DRIVER, { nn: DEFAULT_TILE }, 'tiny', (l) => said.push(l), path);
    expect(await readTunedTiles(A, (l) => said.push(l), path)).toEqual(TILES);
    expect(readdirSync(join(dir, 'sub'))).toEqual(['kernel-tuning.json']);
    expect(said).toEqual([]);
  });

  it('ignores a damaged file with a warning, never deletes it, and keeps it aside when tuning writes anew', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tuning-'));
    const path = join(dir, 'kernel-tuning.json');
    writeFileSync(path, '{"format": "webgpu-studio-kernel-tuning", "vers');
    const warned: string[] = [];
    expect(await readTunedTiles(A, (l) => warned.push(l), path)).toBeNull();
    expect(warned.join('\n')).toMatch(/kernel-tuning\.json is damaged \(not JSON.*default matmul tiles.*npm run tune/);
    expect(readFileSync(path, 'utf8')).toBe('{"format": "webgpu-studio-kernel-tuning", "vers');
    const said: string[] = [];
    await writeTunedTiles(A, TILES, 'tiny', (l) => said.push(l), path);
    const aside = readdirSync(dir).filter((n) => n.startsWith('kernel-tuning.json.damaged-'));
    expect(aside).toHaveLength(1);
    expect(readFileSync(join(dir, aside[0]), 'utf8')).toBe('{"format": "webgpu-studio-kernel-tuning", "vers');
    expect(said.join('\n')).toContain(aside[0]);
    expect(await readTunedTiles(A, () => {}, path)).toEqual(TILES);
    expect(existsSync(path)).toBe(true);
  });
});

describe('tuning cache in OPFS (page)', () => {
  const ctxOf = (a: AdapterReport) => ({ adapter: a }) as GpuContext;
  it('gives a new run the tuned tiles of its adapter, the defaults elsewhere', async () => {
    const fs = fakeOpfs();
    expect((await tunedVariants(ctxOf(A), () => {}, fs.root)).matmul).toEqual({});
    await saveTunedTiles(ctxOf(A), TILES, 'tiny', () => {}, fs.root);
    expect((await tunedVariants(ctxOf(A), () => {}, fs.root)).matmul).toEqual(TILES);
    expect((await tunedVariants(ctxOf(A_NEWER_DRIVER), () => {}, fs.root)).matmul).toEqual({});
    expect((await tunedVariants(ctxOf(A), () => {}, null)).matmul).toEqual({}); // no OPFS
  });

  it('warns about a damaged file, uses the defaults, and keeps it aside on the next save', async () => {
    const fs = fakeOpfs();
    const w = await (await fs.root.getFileHandle(TUNING_FILE, { create: true })).createWritable();
    await w.write(new TextEncoder().encode('garbage'));
    await w.close();
    const warned: string[] = [];
    expect((await tunedVariants(ctxOf(A), (m) => warned.push(m), fs.root)).matmul).toEqual({});
    expect(warned.join('\n')).toMatch(/damaged \(not JSON/);
    const said: string[] = [];
    await saveTunedTiles(ctxOf(A), TILES, 'tiny', (m) => said.push(m), fs.root);
    const aside = fs.paths().filter((p) => p.includes('.damaged-'));
    expect(aside).toHaveLength(1);
    expect(said.join('\n')).toContain('kept it as');
    expect((await tunedVariants(ctxOf(A), () => {}, fs.root)).matmul).toEqual(TILES);
  });
});
