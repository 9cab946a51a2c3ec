// Streamed corpus ingestion (src/io/corpus-stream.ts and the streaming path of tokenizeCorpus):
// files read in byte chunks give exactly the ids of whole-text tokenization with GPT-2's real
// tokenizer, never read more than one chunk at a time, and report bad input at absolute offsets
// and the right line numbers across chunk boundaries.
import { beforeAll, describe, expect, it } from 'vitest';
import { type ByteSource, bytesSource } from '../../../src/io/bytes.ts';
import { CorpusFormatError, tokenizeCorpus } from '../../../src/io/corpus.ts';
import { chunkedSourceOf, decodeChunks } from '../../../src/io/corpus-stream.ts';
import { type Tokenizer, loadDefaultTokenizer } from '../../../src/io/tokenizer.ts';
import { BinaryCorpusError, CorpusEncodingError, decodeUtf8 } from '../../../src/io/utf8.ts';
import { rng } from '../../helpers/numeric.ts';

const CHUNK = 64 << 10;
const enc = new TextEncoder();

/** A ByteSource over `u8` that records the largest single read. */
function recording(u8: Uint8Array, name: string): ByteSource & { maxRead: number; reads: number } {
  const inner = bytesSource(u8, name);
  const src = {
    size: inner.size,
    name,
    maxRead: 0,
    reads: 0,
    async read(offset: number, length: number) {
      src.maxRead = Math.max(src.maxRead, length);
      src.reads++;
      return inner.read(offset, length);
    },
  };
  return src;
}

const WORDS = ['the', 'quick', 'brown', 'fox', "don't", 'jumps', '1234', 'naïve', 'café', '日本語', 'Ωμέγα', '😀', '👩‍💻', '  ', '\t', '--', 'x'];

/** About `bytes` of mixed text: words, spaces, newlines, "\n\n", unicode, emoji and <|endoftext|>. */
function synthText(bytes: number, seed: number): string {
  const r = rng(seed);
  const parts: string[] = [];
  let n = 0;
  while (n < bytes) {
    const u = r();
    let p: string;
    if (u < 0.02) p = '\n\n';
    else if (u < 0.06) p = '\n';
    else if (u < 0.061) p = '<|endoftext|>';
    else if (u < 0.062) p = '\r\n';
    else p = WORDS[Math.floor(r() * WORDS.length)] + (r() < 0.85 ? ' ' : '');
    parts.push(p);
    n += p.length;
  }
  return parts.join('');
}

/** Inserts a 4-byte emoji near each CHUNK-byte boundary (first byte 2 or 1 before it, mostly), so most straddle it. */
function emojiAcrossBoundaries(text: string): Uint8Array {
  const u8 = enc.encode(text);
  const out: number[] = [];
  const emoji = enc.encode('😀'); // F0 9F 98 80
  let next = CHUNK - 2;
  for (let i = 0; i < u8.length; i++) {
    // only at a character start, so the text stays valid
    if (out.length >= next && (u8[i] & 0xc0) !== 0x80) {
      for (const b of emoji) out.push(b);
      next += CHUNK;
    }
    out.push(u8[i]);
  }
  return Uint8Array.from(out);
}

let gpt2: Tokenizer;
beforeAll(async () => {
  gpt2 = await loadDefaultTokenizer();
});

describe('streamed .txt corpus', () => {
  it('gives the ids of whole-text tokenization for ~20 MB read in 64 KiB chunks', async () => {
    const bytes = emojiAcrossBoundaries(synthText(16e6, 7));
    const text = new TextDecoder().decode(bytes);
    // emoji do straddle chunk boundaries: some boundary falls inside a 4-byte sequence
    let straddling = 0;
    for (let b = CHUNK; b < bytes.length; b += CHUNK) if ((bytes[b] & 0xc0) === 0x80) straddling++;
    expect(straddling).toBeGreaterThan(10);

    const src = recording(bytes, 'big.txt');
    const progress: number[] = [];
    const t0 = performance.now();
    const out = await tokenizeCorpus([src], gpt2, { readChunkBytes: CHUNK }, (done) => progress.push(done));
    const ms = performance.now() - t0;
    expect(src.maxRead).toBeLessThanOrEqual(CHUNK);
    expect(src.reads).toBe(Math.ceil(bytes.length / CHUNK));
    const expected = [...gpt2.encode(text), gpt2.eosId];
    expect(out.tokens.length).toBe(expected.length);
    // compare without building a 5M-element diff on failure
    let firstDiff = -1;
    for (let i = 0; i < expected.length && firstDiff < 0; i++) if (out.tokens[i] !== expected[i]) firstDiff = i;
    expect(firstDiff).toBe(-1);
    expect(out.stats.documents).toBe(1);
    expect(out.stats.bytes).toBe(bytes.length);
    expect(out.stats.characters).toBe([...text].length);
    expect(out.stats.tokens).toBe(expected.length);
    // progress after every chunk, in bytes, ending at the file size
    expect(progress.length).toBeGreaterThanOrEqual(src.reads);
    expect(progress.at(-1)).toBe(bytes.length);
    for (let i = 1; i < progress.length; i++) expect(progress[i]).toBeGreaterThanOrEqual(progress[i - 1]);
    console.log(`streamed ${(bytes.length / 1e6).toFixed(1)} MB, ${expected.length} tokens in ${ms.toFixed(0)} ms`);
  }, 300_000);

  it('gives the same ids and stats as the whole-file path on hard text at tiny chunks', async () => {
    // chunkChars and read chunks small so cuts and waits for look-ahead happen often
    const text = synthText(300_000, 3) + '\n\n<|endoftext|>\n\nend';
    const bytes = enc.encode(text);
    const whole = await tokenizeCorpus([{ name: 'a.txt', bytes: async () => bytes }], gpt2, { chunkChars: 64 });
    const streamed = await tokenizeCorpus([bytesSource(bytes, 'a.txt')], gpt2, { chunkChars: 64, readChunkBytes: 1024 });
    expect(Array.from(streamed.tokens)).toEqual(Array.from(whole.tokens));
    expect(streamed.stats).toEqual(whole.stats);
  });

  it('never cuts before an added token that a read chunk splits', async () => {
    // "\n\n<|endoftext|>" must not be cut between its newlines; the cut is only known to be unsafe
    // once the whole added token is read, so read boundaries inside it must not allow it.
    const units = ['ab cd\n\n<|endoftext|>', 'x\n\n<|endoftext|>y', 'hello  \n\n<|endoftext|>\n'];
    const text = Array.from({ length: 600 }, (_, i) => units[i % units.length] + 'w'.repeat(i % 7)).join('');
    const bytes = enc.encode(text);
    const expected = [...gpt2.encode(text), gpt2.eosId];
    for (const chunkChars of [8, 13, 20, 31, 47, 64]) {
      const out = await tokenizeCorpus([bytesSource(bytes, 'eot.txt')], gpt2, { chunkChars, readChunkBytes: 1024 });
      expect(Array.from(out.tokens), `chunkChars ${chunkChars}`).toEqual(expected);
    }
  });

  it('drops a BOM at the start only and keeps CRLF', async () => {
    const body = enc.encode('hello\r\nworld \ufeffx');
    const bytes = new Uint8Array(3 + body.length);
    bytes.set([0xef, 0xbb, 0xbf]);
    bytes.set(body, 3);
    const out = await tokenizeCorpus([bytesSource(bytes, 'b.txt')], gpt2, { readChunkBytes: 1024 });
    expect(Array.from(out.tokens)).toEqual([...gpt2.encode('hello\r\nworld \ufeffx'), gpt2.eosId]);
    expect(out.stats.bytes).toBe(body.length);
  });

  it('reports invalid UTF-8 after the first chunk at its absolute byte offset and line', async () => {
    const text = 'abc\n'.repeat(50_000); // 200,000 bytes, 50,000 lines
    const bytes = enc.encode(text);
    const bad = 3 * CHUNK + 5;
    bytes[bad] = 0xff;
    const err = await tokenizeCorpus([recording(bytes, 'bad.txt')], gpt2, { readChunkBytes: CHUNK }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CorpusEncodingError);
    expect((err as CorpusEncodingError).offset).toBe(bad);
    expect((err as CorpusEncodingError).file).toBe('bad.txt');
    const line = Math.floor(bad / 4) + 1;
    expect((err as Error).message).toContain(`bad.txt is not valid UTF-8: byte offset ${bad} (line ${line})`);
    // the same message as the whole-file decoder
    expect(() => decodeUtf8(bytes, 'bad.txt')).toThrow((err as Error).message);
  });

  it('reports a sequence cut by a chunk boundary and then broken, and one cut by the end of the file', async () => {
    const bytes = enc.encode('a'.repeat(CHUNK - 1) + '😀' + 'b'.repeat(100));
    bytes[CHUNK + 1] = 0x41; // the emoji's third byte, in the second chunk
    const err = await tokenizeCorpus([bytesSource(bytes, 'cut.txt')], gpt2, { readChunkBytes: CHUNK }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CorpusEncodingError);
    expect((err as CorpusEncodingError).offset).toBe(CHUNK - 1);

    const tail = enc.encode('x'.repeat(CHUNK) + '😀').subarray(0, CHUNK + 2);
    const err2 = await tokenizeCorpus([bytesSource(tail, 'end.txt')], gpt2, { readChunkBytes: CHUNK }).catch((e: unknown) => e);
    expect(err2).toBeInstanceOf(CorpusEncodingError);
    expect((err2 as CorpusEncodingError).offset).toBe(CHUNK);
    expect(() => decodeUtf8(tail, 'end.txt')).toThrow((err2 as Error).message);
  });

  it('refuses a binary file and UTF-16 text by name', async () => {
    const bin = new Uint8Array(5000).fill(0x41);
    bin[700] = 0;
    await expect(tokenizeCorpus([bytesSource(bin, 'x.txt')], gpt2, { readChunkBytes: 1024 })).rejects.toThrow(BinaryCorpusError);
    await expect(tokenizeCorpus([bytesSource(bin, 'x.txt')], gpt2, { readChunkBytes: 1024 })).rejects.toThrow(/x\.txt looks like a binary file \(a NUL byte at offset 700\)/);
    const u16 = Uint8Array.from([0xff, 0xfe, 0x41, 0x00]);
    await expect(tokenizeCorpus([bytesSource(u16, 'w.txt')], gpt2)).rejects.toThrow(/w\.txt is UTF-16 text/);
  });

  it('counts an empty file as an empty document and stops on abort', async () => {
    const out = await tokenizeCorpus([bytesSource(new Uint8Array(0), 'e.txt'), bytesSource(enc.encode('hi'), 'h.txt')], gpt2);
    expect(out.stats.emptyDocuments).toBe(1);
    expect(out.stats.documents).toBe(1);
    const ac = new AbortController();
    ac.abort(new Error('stopped by the test'));
    await expect(tokenizeCorpus([bytesSource(enc.encode('hi'), 'h.txt')], gpt2, { signal: ac.signal })).rejects.toThrow('stopped by the test');
  });

  it('reads a Blob in slices of at most the chunk size', async () => {
    const text = synthText(10_000, 5);
    const blob = new Blob([text]);
    let maxSlice = 0;
    const file = Object.assign(blob, { name: 'blob.txt' });
    const slice = blob.slice.bind(blob);
    file.slice = (a?: number, b?: number) => {
      maxSlice = Math.max(maxSlice, (b ?? blob.size) - (a ?? 0));
      return slice(a, b);
    };
    expect(chunkedSourceOf(file)).toBeDefined();
    const out = await tokenizeCorpus([file], gpt2, { readChunkBytes: 1024 });
    expect(Array.from(out.tokens)).toEqual([...gpt2.encode(text), gpt2.eosId]);
    expect(maxSlice).toBeLessThanOrEqual(1024);
    expect(maxSlice).toBeGreaterThan(0);
    // in-memory text and bytes() files keep the whole-file path
    expect(chunkedSourceOf({ name: 'a.txt', text: 'x' })).toBeUndefined();
    expect(chunkedSourceOf({ name: 'a.txt', bytes: async () => new Uint8Array(0) })).toBeUndefined();
  });

  it('refuses a read chunk below the binary sniff size', async () => {
    const gen = decodeChunks(bytesSource(enc.encode('x'), 'x.txt'), 100);
    await expect(gen.next()).rejects.toThrow(RangeError);
  });
});

describe('streamed .jsonl corpus', () => {
  function jsonl(lines: number, seed: number): string {
    const r = rng(seed);
    const out: string[] = [];
    for (let i = 0; i < lines; i++) {
      if (r() < 0.05) out.push('');
      else out.push(JSON.stringify({ id: i, text: synthText(200 + Math.floor(r() * 3000), seed + i) }));
    }
    return out.join('\n') + '\n';
  }

  it('gives the ids and stats of the whole-file path with lines across chunk boundaries', async () => {
    const text = jsonl(400, 11); // ~700 KB: lines cross many 4 KiB boundaries
    const bytes = enc.encode(text);
    const whole = await tokenizeCorpus([{ name: 'd.jsonl', bytes: async () => bytes }], gpt2);
    const src = recording(bytes, 'd.jsonl');
    const streamed = await tokenizeCorpus([src], gpt2, { readChunkBytes: 4096 });
    expect(src.maxRead).toBeLessThanOrEqual(4096);
    expect(src.reads).toBeGreaterThan(100);
    expect(Array.from(streamed.tokens)).toEqual(Array.from(whole.tokens));
    expect(Array.from(streamed.docStarts)).toEqual(Array.from(whole.docStarts));
    expect(streamed.stats).toEqual(whole.stats);
    expect(streamed.stats.documents).toBeGreaterThan(300);
    // CRLF line ends and no final newline
    const crlf = enc.encode(text.trimEnd().split('\n').join('\r\n'));
    const streamedCrlf = await tokenizeCorpus([bytesSource(crlf, 'd.jsonl')], gpt2, { readChunkBytes: 4096 });
    expect(Array.from(streamedCrlf.tokens)).toEqual(Array.from(whole.tokens));
  });

  it('names the right line of a bad line found after many chunks', async () => {
    const lines = jsonl(300, 12).split('\n');
    const badLine = 250; // 1-based
    lines[badLine - 1] = '{"text": "unterminated';
    const bytes = enc.encode(lines.join('\n'));
    expect(enc.encode(lines.slice(0, badLine - 1).join('\n')).length).toBeGreaterThan(10 * 4096);
    const err = await tokenizeCorpus([bytesSource(bytes, 'e.jsonl')], gpt2, { readChunkBytes: 4096 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CorpusFormatError);
    expect((err as CorpusFormatError).line).toBe(badLine);
    expect((err as Error).message).toMatch(/^e\.jsonl, line 250: not valid JSON/);
    const whole = await tokenizeCorpus([{ name: 'e.jsonl', bytes: async () => bytes }], gpt2).catch((e: unknown) => e);
    expect((err as Error).message).toBe((whole as Error).message);
  });
});
