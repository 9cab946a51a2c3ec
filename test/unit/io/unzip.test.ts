// The ZIP reader against two writers: our own streaming writer (stored entries, with and without
// ZIP64 records) and CPython's zipfile (deflated entries, a folder entry, a comment).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readZip, UnzipError } from '../../../src/io/unzip.ts';
import { zipChunks, type ZipEntry } from '../../../src/io/zip.ts';

const bytes = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed * 7) & 0xff);

async function zipBlob(entries: ZipEntry[], opts: Parameters<typeof zipChunks>[1] = {}): Promise<Blob> {
  const parts: Uint8Array<ArrayBuffer>[] = [];
  for await (const c of zipChunks(entries, opts)) parts.push(c.slice() as Uint8Array<ArrayBuffer>);
  return new Blob(parts);
}

describe('readZip', () => {
  it.each([['plain', {}], ['ZIP64 records', { zip64: 'always' as const }]])('reads back what our writer stored (%s)', async (_n, opts) => {
    const entries: ZipEntry[] = [
      { name: 'run/checkpoint-4/model.safetensors', data: bytes(1000, 2) },
      { name: 'run/checkpoint-4/trainer_state.json', data: () => [bytes(10, 3), bytes(7, 4)], size: 17 },
      { name: 'run/studio/corpus/tokens.u32', data: new Uint8Array(0) },
    ];
    const got = await readZip(await zipBlob(entries, opts));
    expect(got.map((e) => [e.name, e.size])).toEqual([['run/checkpoint-4/model.safetensors', 1000], ['run/checkpoint-4/trainer_state.json', 17], ['run/studio/corpus/tokens.u32', 0]]);
    expect(new Uint8Array(await (await got[0].blob()).arrayBuffer())).toEqual(bytes(1000, 2));
    expect(new Uint8Array(await (await got[1].blob()).arrayBuffer())).toEqual(new Uint8Array([...bytes(10, 3), ...bytes(7, 4)]));
  });

  it("reads CPython zipfile's deflated entries, skipping folders", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'unzip-test-'));
    try {
      const path = join(dir, 'a.zip');
      execFileSync('python3', ['-c', [
        'import sys, zipfile',
        'z = zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED)',
        'z.writestr("ck/", "")',
        'z.writestr("ck/config.json", "{\\"n_embd\\": 32}" * 50)',
        'z.writestr(zipfile.ZipInfo("ck/raw.bin"), bytes(range(256)) * 4, compress_type=zipfile.ZIP_STORED)',
        'z.comment = b"made by python"',
        'z.close()',
      ].join('\n'), path]);
      const got = await readZip(new Blob([readFileSync(path)]));
      expect(got.map((e) => e.name)).toEqual(['ck/config.json', 'ck/raw.bin']);
      expect(await (await got[0].blob()).text()).toBe('{"n_embd": 32}'.repeat(50));
      expect(new Uint8Array(await (await got[1].blob()).arrayBuffer())).toEqual(Uint8Array.from({ length: 1024 }, (_, i) => i & 0xff));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses what is not a zip, and a truncated one, by name', async () => {
    await expect(readZip(new Blob([bytes(100)]), 'x.zip')).rejects.toThrow(/x\.zip is not a ZIP archive/);
    const whole = await zipBlob([{ name: 'a', data: bytes(50) }]);
    const cut = new Blob([await whole.slice(0, 20).arrayBuffer(), await whole.slice(whole.size - 22).arrayBuffer()]);
    await expect(readZip(cut, 'cut.zip')).rejects.toBeInstanceOf(UnzipError);
  });
});
