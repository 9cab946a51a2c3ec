// The streaming ZIP writer, checked by independent readers: CPython's zipfile (names, sizes,
// CRCs via testzip, ZIP64 records) and Info-ZIP's `unzip -t` when installed; plus CRC-32 known
// values, exact zipSize, name validation, declared-size checks, and streaming without buffering.
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crc32, zipChunks, zipReadableStream, zipSize, ZipError, type ZipEntry, type ZipOptions } from '../../../src/io/zip.ts';
import { hasCommand, runPython } from '../../helpers/python.ts';
import { rng } from '../../helpers/numeric.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'zip-test-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function randomBytes(n: number, seed: number): Uint8Array {
  const r = rng(seed);
  return Uint8Array.from({ length: n }, () => Math.floor(r() * 256));
}

async function collect(entries: ZipEntry[], opts: ZipOptions = {}): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of zipChunks(entries, opts)) parts.push(c.slice());
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Chunks of `bytes`, `size` at a time, produced lazily. */
function chunked(bytes: Uint8Array, size: number): () => AsyncIterable<Uint8Array> {
  return async function* () {
    for (let o = 0; o < bytes.length; o += size) yield bytes.subarray(o, o + size);
  };
}

const PY = String.raw`
import json, sys, zipfile, zlib, struct
path = sys.argv[1]
with zipfile.ZipFile(path) as z:
    bad = z.testzip()
    out = {'testzip': bad, 'entries': []}
    for i in z.infolist():
        data = z.read(i)
        extra_ids = []
        e = i.extra
        while len(e) >= 4:
            hid, ln = struct.unpack('<HH', e[:4])
            extra_ids.append(hid)
            e = e[4 + ln:]
        out['entries'].append({'name': i.filename, 'size': i.file_size, 'crc': i.CRC, 'zlib_crc': zlib.crc32(data),
                               'method': i.compress_type, 'flags': i.flag_bits, 'zip64_extra': 0x0001 in extra_ids,
                               'header_offset': i.header_offset, 'date': list(i.date_time), 'hex': data[:64].hex()})
raw = open(path, 'rb').read()
out['zip64_eocd'] = raw.rfind(b'PK\x06\x06') >= 0 and raw.rfind(b'PK\x06\x07') >= 0
print(json.dumps(out))
`;

interface PyZip {
  testzip: string | null;
  zip64_eocd: boolean;
  entries: Array<{ name: string; size: number; crc: number; zlib_crc: number; method: number; flags: number;
    zip64_extra: boolean; header_offset: number; date: number[]; hex: string }>;
}

async function check(name: string, bytes: Uint8Array): Promise<PyZip> {
  const path = join(dir, name);
  await writeFile(path, bytes);
  const py = runPython<PyZip>(PY, [path]);
  expect(py.testzip).toBeNull();
  if (hasCommand('unzip')) {
    const r = spawnSync('unzip', ['-tq', path], { encoding: 'utf8' });
    expect(r.status, `unzip -t: ${r.stdout}${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/No errors detected/);
  }
  return py;
}

const hex = (b: Uint8Array) => Buffer.from(b.subarray(0, 64)).toString('hex');

describe('CRC-32', () => {
  it('matches the standard check values', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
    expect(crc32(new Uint8Array(0))).toBe(0);
    expect(crc32(new TextEncoder().encode('The quick brown fox jumps over the lazy dog'))).toBe(0x414fa339);
  });

  it('continues across chunks at any split', () => {
    const b = randomBytes(1000, 1);
    const whole = crc32(b);
    for (const cut of [0, 1, 7, 8, 9, 500, 999, 1000]) expect(crc32(b.subarray(cut), crc32(b.subarray(0, cut)))).toBe(whole);
  });
});

describe('zip archives read back by independent readers', () => {
  const small = randomBytes(5000, 2);
  const streamed = randomBytes(70_001, 3);
  const when = new Date(2024, 4, 20, 13, 37, 42);
  const entries = (): ZipEntry[] => [
    { name: 'model/config.json', data: new TextEncoder().encode('{"model_type": "gpt2"}\n'), modified: when },
    { name: 'model/empty.txt', data: new Uint8Array(0), modified: when },
    { name: 'model/small.bin', data: small, modified: when },
    { name: 'model/model.safetensors', data: chunked(streamed, 4096), size: streamed.length, modified: when },
    { name: 'model/undeclared.bin', data: chunked(small, 1000), modified: when },
    { name: 'model/ünïcode név.txt', data: new TextEncoder().encode('é'), modified: when },
  ];

  it('writes stored entries with CRCs, sizes and names zipfile and unzip accept', async () => {
    const bytes = await collect(entries());
    const py = await check('plain.zip', bytes);
    expect(py.entries.map((e) => e.name)).toEqual(entries().map((e) => e.name));
    expect(py.zip64_eocd).toBe(false);
    for (const e of py.entries) {
      expect(e.method).toBe(0);
      expect(e.crc).toBe(e.zlib_crc);
      expect(e.zip64_extra).toBe(false);
      expect(e.date).toEqual([2024, 5, 20, 13, 37, 42]);
    }
    const byName = new Map(py.entries.map((e) => [e.name, e]));
    expect(byName.get('model/small.bin')).toMatchObject({ size: 5000, hex: hex(small), crc: crc32(small) });
    expect(byName.get('model/model.safetensors')).toMatchObject({ size: streamed.length, hex: hex(streamed), crc: crc32(streamed) });
    expect(byName.get('model/model.safetensors')!.flags & 8).toBe(8); // data descriptor
    expect(byName.get('model/small.bin')!.flags & 8).toBe(0);
    expect(byName.get('model/ünïcode név.txt')!.flags & 0x800).toBe(0x800);
    expect(byName.get('model/config.json')!.flags & 0x800).toBe(0);
  });

  it('zipSize is the exact archive size; the ReadableStream gives the same bytes', async () => {
    const declared = entries().filter((e) => e.name !== 'model/undeclared.bin');
    const bytes = await collect(declared);
    expect(zipSize(declared)).toBe(bytes.length);
    expect(zipSize(declared, { zip64: 'always' })).toBe((await collect(declared, { zip64: 'always' })).length);
    expect(() => zipSize(entries())).toThrow(/undeclared\.bin' has no declared size/);
    const viaStream = new Uint8Array(await new Response(zipReadableStream(declared)).arrayBuffer());
    expect(viaStream).toEqual(bytes);
  });

  it('writes valid ZIP64 records when asked for them on every entry', async () => {
    const py = await check('zip64.zip', await collect(entries(), { zip64: 'always' }));
    expect(py.zip64_eocd).toBe(true);
    expect(py.entries.every((e) => e.zip64_extra && e.crc === e.zlib_crc)).toBe(true);
    expect(py.entries.find((e) => e.name === 'model/model.safetensors')).toMatchObject({ size: streamed.length, hex: hex(streamed) });
  });

  it('switches to ZIP64 exactly where sizes and offsets reach the limit (limit lowered to 6000 bytes)', async () => {
    const limit = 6000;
    const bytes = await collect(entries(), { zip64Limit: limit });
    const py = await check('zip64-auto.zip', bytes);
    for (const e of py.entries) {
      expect(e.zip64_extra, e.name).toBe(e.size >= limit || e.header_offset >= limit);
      expect(e.crc).toBe(e.zlib_crc);
    }
    expect(py.entries.some((e) => e.zip64_extra)).toBe(true);
    expect(py.entries.some((e) => !e.zip64_extra)).toBe(true);
    expect(py.zip64_eocd).toBe(true); // the central directory starts past the limit
    const declared = entries().filter((e) => e.name !== 'model/undeclared.bin');
    expect(zipSize(declared, { zip64Limit: limit })).toBe((await collect(declared, { zip64Limit: limit })).length);
  });

  it('refuses an undeclared streamed entry that grows past the ZIP64 limit, and a size that does not match', async () => {
    const big = randomBytes(3000, 4);
    await expect(collect([{ name: 'x', data: chunked(big, 100) }], { zip64Limit: 2000 })).rejects.toThrow(/grew past 4 GiB without a declared size/);
    await expect(collect([{ name: 'x', data: chunked(big, 100), size: 2999 }])).rejects.toThrow(/declared 2999 bytes but produced more/);
    await expect(collect([{ name: 'x', data: chunked(big, 100), size: 3001 }])).rejects.toThrow(/declared 3001 bytes but produced 3000/);
    await expect(collect([{ name: 'x', data: big, size: 1 }])).rejects.toThrow(ZipError);
  });

  it.each([['../evil'], ['/abs'], ['a/./b'], ['dir/'], ['a\\b'], ['']])('refuses the entry name %j', async (name) => {
    await expect(collect([{ name, data: new Uint8Array(1) }])).rejects.toThrow(ZipError);
  });

  it('refuses a repeated name', async () => {
    await expect(collect([{ name: 'a', data: new Uint8Array(1) }, { name: 'a', data: new Uint8Array(2) }])).rejects.toThrow(/'a' is added to the zip twice/);
  });
});

describe('streaming', () => {
  it('yields each chunk before asking for the next, so the archive is never held', async () => {
    let requested = 0;
    let yieldedData = 0;
    const chunkBytes = 1000;
    async function* source() {
      for (let i = 0; i < 10; i++) {
        requested++;
        // Every chunk asked for before this one has already been passed on.
        expect(yieldedData).toBe((requested - 1) * chunkBytes);
        yield new Uint8Array(chunkBytes).fill(i);
      }
    }
    const it = zipChunks([{ name: 'big.bin', data: source, size: 10 * chunkBytes }]);
    let n = 0;
    for await (const c of it) {
      if (n > 0 && c.length === chunkBytes) yieldedData += c.length;
      n++;
    }
    expect(requested).toBe(10);
    expect(yieldedData).toBe(10 * chunkBytes);
  });

  it('stops when aborted', async () => {
    const ctl = new AbortController();
    const seen: number[] = [];
    const p = collect([{ name: 'a', data: chunked(randomBytes(10_000, 5), 100), size: 10_000 }], {
      signal: ctl.signal,
      onProgress: (pr) => {
        seen.push(pr.bytes);
        if (pr.bytes > 2000) ctl.abort(new Error('stop'));
      },
    });
    await expect(p).rejects.toThrow('stop');
    expect(Math.max(...seen)).toBeLessThan(3000);
  });

  it('reports progress in archive bytes, up to the exact total', async () => {
    const e: ZipEntry[] = [{ name: 'a', data: chunked(randomBytes(10_000, 6), 1000), size: 10_000 }, { name: 'b', data: new Uint8Array(10) }];
    const seen: Array<{ bytes: number; total: number | null }> = [];
    const bytes = await collect(e, { onProgress: (p) => seen.push({ bytes: p.bytes, total: p.total }) });
    for (let i = 1; i < seen.length; i++) expect(seen[i].bytes).toBeGreaterThanOrEqual(seen[i - 1].bytes);
    expect(seen.at(-1)).toEqual({ bytes: bytes.length, total: bytes.length });
  });
});
