// The download cache, the same table of behaviours for its three implementations (in memory,
// OPFS over an in-memory stand-in of the File System Standard, and the Node folder): entries keyed
// by endpoint + repo + revision + file, partial downloads kept and resumed, reset and discard,
// one writer per key, model manifests, list and clear with filters. Then what is particular to
// each: OPFS parts surviving a crash, the Node lock and its folder being a model folder.
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CacheError, memoryCache, opfsCache, decodeKeyPart, encodeKeyPart, type HubFileKey, type ModelCache } from '../../../src/io/cache.ts';
import { defaultCacheDir, nodeCache } from '../../../src/io/node-cache.ts';
import { loadModelDir } from '../../../src/io/node-model.ts';
import { fakeOpfs } from '../../helpers/fake-opfs.ts';
import { hubFixtures } from '../../helpers/hub-server.ts';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'cache-test-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const key = (file: string, extra: Partial<HubFileKey> = {}): HubFileKey => ({ endpoint: 'https://huggingface.co', repo: 'openai-community/gpt2', revision: 'main', file, ...extra });
const bytes = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed * 7) & 0xff);
const concat = (...a: Uint8Array[]) => {
  const out = new Uint8Array(a.reduce((s, x) => s + x.length, 0));
  let o = 0;
  for (const x of a) {
    out.set(x, o);
    o += x.length;
  }
  return out;
};
const readAll = async (c: ModelCache, k: HubFileKey) => {
  const src = await c.get(k);
  return src && src.read(0, src.size);
};

let counter = 0;
const makers: Array<[string, () => ModelCache]> = [
  ['memory', () => memoryCache()],
  ['opfs', () => opfsCache(fakeOpfs().root, { partBytes: 10 })],
  ['node', () => nodeCache(join(tmp, `node-${counter++}`))],
];

describe.each(makers)('%s cache', (_kind, make) => {
  it('misses, then stores a download and reads it back', async () => {
    const c = make();
    expect(await c.get(key('config.json'))).toBeUndefined();
    const w = await c.open(key('config.json'));
    expect(w.written).toBe(0);
    const a = bytes(7);
    const b = bytes(25, 2);
    await w.write(a);
    await w.write(b);
    expect(w.written).toBe(32);
    const src = await w.commit();
    expect(src.name).toBe('config.json');
    expect(src.size).toBe(32);
    expect(await src.read(5, 10)).toEqual(concat(a, b).subarray(5, 15));
    expect(await readAll(c, key('config.json'))).toEqual(concat(a, b));
    const list = await c.list();
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ ...key('config.json'), size: 32, complete: true });
    expect(list[0].storedAt).toBeGreaterThan(0);
  });

  it('keeps a suspended download and resumes it after the bytes kept', async () => {
    const c = make();
    const k = key('model.safetensors');
    const w = await c.open(k);
    await w.write(bytes(13));
    await w.write(bytes(12, 3));
    await w.suspend();
    expect(await c.get(k)).toBeUndefined();
    expect(await c.list()).toEqual([expect.objectContaining({ file: 'model.safetensors', size: 25, complete: false })]);
    const again = await c.open(k);
    expect(again.written).toBe(25);
    await again.write(bytes(9, 4));
    await again.commit();
    expect(await readAll(c, k)).toEqual(concat(bytes(13), bytes(12, 3), bytes(9, 4)));
  });

  it('reset drops what was written; discard drops the partial download', async () => {
    const c = make();
    const k = key('a.bin');
    const w = await c.open(k);
    await w.write(bytes(30));
    await w.reset();
    expect(w.written).toBe(0);
    await w.write(bytes(4, 9));
    await w.commit();
    expect(await readAll(c, k)).toEqual(bytes(4, 9));
    const w2 = await c.open(key('b.bin'));
    await w2.write(bytes(15));
    await w2.discard();
    expect((await c.list()).map((e) => e.file)).toEqual(['a.bin']);
    expect((await c.open(key('b.bin'))).written).toBe(0);
  });

  it('allows one writer per key, and none after it finished', async () => {
    const c = make();
    const w = await c.open(key('x'));
    await expect(c.open(key('x'))).rejects.toThrow(CacheError);
    const other = await c.open(key('x', { revision: 'v2' })); // another key is fine
    await other.discard();
    await w.write(bytes(3));
    await w.commit();
    await expect(w.write(bytes(1))).rejects.toThrow(/already finished or released/);
    const w2 = await c.open(key('x')); // replacing a complete entry starts over
    expect(w2.written).toBe(0);
    await w2.discard();
  });

  it('keeps keys apart, including odd characters, and lists them decoded', async () => {
    const c = make();
    const keys = [
      key('config.json'),
      key('config.json', { revision: 'refs/pr/1' }),
      key('config.json', { endpoint: 'http://127.0.0.1:8080/mirror' }),
      key('onnx/decoder model@2.onnx', { repo: 'me/x.y_z' }),
      key('..', { revision: '.' }),
    ];
    for (const [i, k] of keys.entries()) {
      const w = await c.open(k);
      await w.write(bytes(i + 1, i));
      await w.commit();
    }
    for (const [i, k] of keys.entries()) expect(await readAll(c, k)).toEqual(bytes(i + 1, i));
    const listed = (await c.list()).map(({ endpoint, repo, revision, file }) => ({ endpoint, repo, revision, file }));
    expect(listed).toHaveLength(keys.length);
    expect(listed).toEqual(expect.arrayContaining(keys));
  });

  it('stores model manifests per repo and revision', async () => {
    const c = make();
    const rk = { endpoint: 'https://huggingface.co', repo: 'a/b', revision: 'main' };
    expect(await c.getManifest(rk)).toBeUndefined();
    await c.putManifest(rk, { files: ['config.json', 'model.safetensors'], absent: ['tokenizer.json'] });
    expect(await c.getManifest(rk)).toEqual({ files: ['config.json', 'model.safetensors'], absent: ['tokenizer.json'] });
    expect(await c.getManifest({ ...rk, revision: 'v1' })).toBeUndefined();
    await expect(c.putManifest(rk, { files: 'x' } as never)).rejects.toThrow(/not a model manifest/);
  });

  it('clears by filter and reports what it removed', async () => {
    const c = make();
    const put = async (k: HubFileKey, n: number) => {
      const w = await c.open(k);
      await w.write(bytes(n));
      await w.commit();
    };
    await put(key('config.json'), 10);
    await put(key('model.safetensors'), 20);
    await put(key('config.json', { repo: 'distilbert/distilgpt2' }), 5);
    const partial = await c.open(key('model.safetensors', { repo: 'distilbert/distilgpt2' }));
    await partial.write(bytes(7));
    await partial.suspend();
    await c.putManifest({ endpoint: 'https://huggingface.co', repo: 'openai-community/gpt2', revision: 'main' }, { files: ['config.json'], absent: [] });
    expect(await c.clear({ repo: 'openai-community/gpt2' })).toEqual({ entries: 2, bytes: 30 });
    expect(await c.getManifest({ endpoint: 'https://huggingface.co', repo: 'openai-community/gpt2', revision: 'main' })).toBeUndefined();
    expect((await c.list()).map((e) => [e.file, e.complete])).toEqual(expect.arrayContaining([['config.json', true], ['model.safetensors', false]]));
    expect(await c.clear()).toEqual({ entries: 2, bytes: 12 });
    expect(await c.list()).toEqual([]);
  });
});

describe('key encoding', () => {
  it('round-trips and never yields a reserved or marked name', () => {
    for (const s of ['', '.', '..', 'a/b', 'x@y', 'refs/pr/1', 'https://h.co:8080', 'é 日本', '%41']) {
      const e = encodeKeyPart(s);
      expect(decodeKeyPart(e)).toBe(s);
      expect(['', '.', '..']).not.toContain(e);
      expect(e).not.toMatch(/[/\\@]/);
    }
  });
});

describe('OPFS cache specifics', () => {
  it('splits a download into closed parts, so a crash keeps the parts that were closed', async () => {
    const fs = fakeOpfs();
    const c = opfsCache(fs.root, { partBytes: 10 });
    const k = key('model.safetensors');
    const w = await c.open(k);
    const data = bytes(57);
    await w.write(data.subarray(0, 25)); // parts 0 and 1 closed, part 2 open with 5 bytes
    fs.crash(); // the tab is closed: the open part's data never reaches its file
    const after = opfsCache(fs.root, { partBytes: 10 }); // a reload
    expect(await after.list()).toEqual([expect.objectContaining({ size: 20, complete: false })]);
    const r = await after.open(k);
    expect(r.written).toBe(20);
    await r.write(data.subarray(20));
    const src = await r.commit();
    expect(await src.read(0, 57)).toEqual(data);
    expect(fs.paths().filter((p) => p.includes('part-')).length).toBe(6);
  });

  it('an entry whose parts do not add up is a miss, not wrong bytes', async () => {
    const fs = fakeOpfs();
    const c = opfsCache(fs.root, { partBytes: 10 });
    const w = await c.open(key('f'));
    await w.write(bytes(25));
    await w.commit();
    const fileDir = await (await (await (await (await fs.root.getDirectoryHandle('studio-hub-cache')).getDirectoryHandle(encodeKeyPart('https://huggingface.co')))
      .getDirectoryHandle(encodeKeyPart('openai-community/gpt2'))).getDirectoryHandle('main')).getDirectoryHandle('f');
    await fileDir.removeEntry('part-1');
    expect(await c.get(key('f'))).toBeUndefined();
  });
});

describe('Node cache specifics', () => {
  it('uses $STUDIO_CACHE, then $XDG_CACHE_HOME/webgpu-studio, then ~/.cache/webgpu-studio', () => {
    expect(defaultCacheDir({ STUDIO_CACHE: '/a', XDG_CACHE_HOME: '/b' })).toBe('/a');
    expect(defaultCacheDir({ XDG_CACHE_HOME: '/b' })).toBe('/b/webgpu-studio');
    expect(defaultCacheDir({})).toMatch(/\.cache\/webgpu-studio$/);
  });

  it('refuses a file locked by a live process, and takes over a stale lock', async () => {
    const c = nodeCache(join(tmp, 'locks'));
    const k = key('model.safetensors');
    const dir = c.repoDir(k);
    const w = await c.open(k);
    await w.suspend();
    await writeFile(join(dir, 'model.safetensors@lock'), String(process.ppid)); // alive
    await expect(c.open(k)).rejects.toThrow(new RegExp(`being downloaded by another process \\(pid ${process.ppid}\\)`));
    await writeFile(join(dir, 'model.safetensors@lock'), '2147483646'); // no such process
    const again = await c.open(k);
    await again.discard();
    expect(await readdir(dir)).toEqual([]);
  });

  it('a revision folder is a model folder loadModelDir reads', async () => {
    const fx = hubFixtures();
    const c = nodeCache(join(tmp, 'model-folder'));
    for (const [file, data] of Object.entries(fx.repos['tiny/gpt2'].files)) {
      const w = await c.open(key(file, { repo: 'tiny/gpt2' }));
      await w.write(data);
      await w.commit();
    }
    const { config, params } = await loadModelDir(c.repoDir({ endpoint: 'https://huggingface.co', repo: 'tiny/gpt2', revision: 'main' }));
    expect(config).toEqual(fx.tinyConfig);
    expect([...params.get('wte.weight')!]).toEqual([...fx.tinyParams.get('wte.weight')!]);
  });
});
