// Corpus ingestion: UTF-8 checking, documents from .txt/.jsonl/.csv, chunked tokenization equal to
// whole-text tokenization, stats, progress, and the train/validation split.
import { draculaExcerpt, shakespeareExcerpts } from '../../helpers/corpora.ts';
import { beforeAll, describe, expect, it } from 'vitest';
import { bytesSource } from '../../../src/io/bytes.ts';
import {
  CorpusFormatError, CorpusSplitError, EmptyCorpusError, type TokenizedCorpus, csvRecords, splitCorpus,
  tokenizeCorpus,
} from '../../../src/io/corpus.ts';
import { BatchConfigError, windowCount } from '../../../src/engine/windows.ts';
import { type Tokenizer, loadDefaultTokenizer } from '../../../src/io/tokenizer.ts';
import {
  BinaryCorpusError, CorpusEncodingError, type NamedFile, decodeUtf8, firstInvalidUtf8, readAllBytes, utf8Length,
} from '../../../src/io/utf8.ts';
import { rng } from '../../helpers/numeric.ts';

const enc = (s: string) => new TextEncoder().encode(s);
const file = (name: string, content: string | Uint8Array): NamedFile => {
  const bytes = typeof content === 'string' ? enc(content) : content;
  return { name, size: bytes.length, bytes: async () => bytes.slice() };
};

let gpt2: Tokenizer;
beforeAll(async () => {
  gpt2 = await loadDefaultTokenizer();
});

/** A tokenizer stub: one id per UTF-16 unit, id = code + offset, so ids can exceed 65,535. */
function stubTokenizer(vocabSize: number, offset = 0): Tokenizer & { pieces: string[] } {
  const pieces: string[] = [];
  return {
    vocabSize, eosId: vocabSize - 1, chunkable: true, addedTokens: [], pieces,
    encode(text: string) {
      pieces.push(text);
      return Array.from(text, (c) => (c.charCodeAt(0) + offset) % (vocabSize - 1));
    },
    decode(ids: ArrayLike<number>) {
      return String.fromCharCode(...Array.from(ids, (i) => i - offset));
    },
  };
}

describe('utf8', () => {
  const valid: Array<[string, number[]]> = [
    ['ASCII', [0x41, 0x0a, 0x7f]],
    ['2-byte é', [0xc3, 0xa9]],
    ['3-byte €', [0xe2, 0x82, 0xac]],
    ['4-byte 😀', [0xf0, 0x9f, 0x98, 0x80]],
    ['U+10FFFF', [0xf4, 0x8f, 0xbf, 0xbf]],
    ['U+0800 (smallest 3-byte)', [0xe0, 0xa0, 0x80]],
    ['U+D7FF and U+E000 around the surrogates', [0xed, 0x9f, 0xbf, 0xee, 0x80, 0x80]],
  ];
  const invalid: Array<[string, number[], number]> = [
    ['lone continuation', [0x41, 0x80], 1],
    ['overlong "/" (C0 AF)', [0xc0, 0xaf], 0],
    ['overlong 3-byte (E0 80 80)', [0x41, 0x42, 0xe0, 0x80, 0x80], 2],
    ['surrogate U+D800 (ED A0 80)', [0xed, 0xa0, 0x80], 0],
    ['above U+10FFFF (F4 90 80 80)', [0xf4, 0x90, 0x80, 0x80], 0],
    ['F5 lead', [0xf5, 0x80, 0x80, 0x80], 0],
    ['FF', [0x61, 0x62, 0xff], 2],
    ['truncated at the end', [0x61, 0xe2, 0x82], 1],
    ['bad second continuation', [0xe2, 0x82, 0x41], 0],
    ['Latin-1 é', [0x63, 0x61, 0x66, 0xe9, 0x20], 3],
  ];
  it.each(valid)('accepts %s', (_n, b) => expect(firstInvalidUtf8(Uint8Array.from(b))).toBe(-1));
  it.each(invalid)('finds %s', (_n, b, at) => expect(firstInvalidUtf8(Uint8Array.from(b))).toBe(at));

  it('agrees with a fatal TextDecoder on random bytes, and the prefix before the offset is valid', () => {
    const r = rng(3);
    const strict = new TextDecoder('utf-8', { fatal: true });
    const pool = [0x41, 0x0a, 0x80, 0x9f, 0xa0, 0xbf, 0xc2, 0xc0, 0xdf, 0xe0, 0xe1, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff];
    let invalidSeen = 0;
    for (let k = 0; k < 3000; k++) {
      const b = Uint8Array.from({ length: 1 + Math.floor(r() * 8) }, () => pool[Math.floor(r() * pool.length)]);
      let ok = true;
      try {
        strict.decode(b);
      } catch {
        ok = false;
      }
      const at = firstInvalidUtf8(b);
      expect(at === -1, Array.from(b).join(' ')).toBe(ok);
      if (at >= 0) {
        invalidSeen++;
        expect(() => strict.decode(b.subarray(0, at))).not.toThrow();
      }
    }
    expect(invalidSeen).toBeGreaterThan(500);
  });

  it('drops a BOM, keeps CRLF and a second BOM', () => {
    expect(decodeUtf8(Uint8Array.from([0xef, 0xbb, 0xbf, ...enc('a\r\nb')]), 'f.txt')).toBe('a\r\nb');
    expect(decodeUtf8(Uint8Array.from([0xef, 0xbb, 0xbf, 0xef, 0xbb, 0xbf, 0x61]), 'f.txt')).toBe('\ufeffa');
  });

  it('names the file and byte offset of bad UTF-8', () => {
    const bytes = enc('line one\nline two caf\u00e9\n');
    const latin1 = Uint8Array.from([...bytes.subarray(0, 21), 0xe9, 0x0a]);
    try {
      decodeUtf8(latin1, 'notes.txt');
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(CorpusEncodingError);
      const err = e as CorpusEncodingError;
      expect(err.name).toBe('CorpusEncodingError');
      expect(err.offset).toBe(21);
      expect(err.message).toMatch(/notes\.txt.*byte offset 21 \(line 2\)/);
    }
  });

  it('calls a file with NUL bytes binary and a UTF-16 file by its name', () => {
    const png = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d]);
    expect(() => decodeUtf8(png, 'photo.png')).toThrow(BinaryCorpusError);
    expect(() => decodeUtf8(png, 'photo.png')).toThrow(/photo\.png looks like a binary file/);
    expect(() => decodeUtf8(Uint8Array.from([0xff, 0xfe, 0x61, 0x00]), 'w.txt')).toThrow(/w\.txt is UTF-16/);
    // NUL after the first KB is text (rare, but not a reason to refuse the whole file)
    const late = new Uint8Array(2000).fill(0x61);
    late[1500] = 0;
    expect(decodeUtf8(late, 'late.txt').length).toBe(2000);
  });

  it('reads every kind of named file', async () => {
    const b = enc('héllo');
    const blob = new Blob([b]);
    const kinds: NamedFile[] = [
      { name: 'a', bytes: async () => b },
      { name: 'b', size: blob.size, arrayBuffer: () => blob.arrayBuffer() },
      bytesSource(b, 'c'),
      { name: 'd', text: 'héllo' },
    ];
    for (const k of kinds) expect(Array.from(await readAllBytes(k))).toEqual(Array.from(b));
    expect(utf8Length('héllo 😀')).toBe(b.length + 5);
  });
});

describe('csvRecords (RFC 4180)', () => {
  const table: Array<[string, string, string[][]]> = [
    ['plain', 'a,b\n1,2\n', [['a', 'b'], ['1', '2']]],
    ['CRLF and no final newline', 'a,b\r\n1,2', [['a', 'b'], ['1', '2']]],
    ['quoted comma and "" escape', 'x\n"a, ""b"" c"\n', [['x'], ['a, "b" c']]],
    ['embedded newlines', 'x,y\n"line 1\nline 2\r\nline 3",z\n', [['x', 'y'], ['line 1\nline 2\r\nline 3', 'z']]],
    ['empty fields', ',\n,,\n"",x', [['', ''], ['', '', ''], ['', 'x']]],
    ['trailing comma', 'a,', [['a', '']]],
    ['quote inside unquoted field is text', 'a"b,c\n', [['a"b', 'c']]],
  ];
  it.each(table)('%s', (_n, text, rows) => {
    expect(Array.from(csvRecords(text), (r) => r.fields)).toEqual(rows);
  });

  it('gives the line each record starts on, counting newlines inside quotes', () => {
    const lines = Array.from(csvRecords('h\n"a\nb\nc"\nd\n'), (r) => r.line);
    expect(lines).toEqual([1, 2, 5]);
  });

  it('names the line of an unclosed quote and of text after a closing quote', () => {
    expect(() => Array.from(csvRecords('h\nok\n"never closed\n\n', 'q.csv'))).toThrow(/q\.csv, line 3: a quoted field is never closed/);
    expect(() => Array.from(csvRecords('h\n"a"b\n', 'q.csv'))).toThrow(CorpusFormatError);
  });
});

describe('tokenizeCorpus', () => {
  it('one text file is one document followed by EOS, with stats', async () => {
    const text = 'Hello world.\r\nSecond line 😀\n';
    const c = await tokenizeCorpus([file('a.txt', text)], gpt2, { contextLength: 4 });
    const ids = [...gpt2.encode(text), 50256];
    expect(c.tokens).toBeInstanceOf(Uint16Array);
    expect(Array.from(c.tokens)).toEqual(ids);
    expect(Array.from(c.docStarts)).toEqual([0, ids.length]);
    expect(c.stats).toEqual({
      files: 1, documents: 1, emptyDocuments: 0,
      characters: Array.from(text).length, bytes: enc(text).length, tokens: ids.length,
      contextLength: 4, windows: Math.floor((ids.length - 1) / 4),
    });
  });

  it('drops a BOM, keeps CRLF, and concatenates files in order', async () => {
    const a = Uint8Array.from([0xef, 0xbb, 0xbf, ...enc('one\r\n')]);
    const c = await tokenizeCorpus([file('a.md', a), { name: 'b.txt', text: 'two' }], gpt2);
    const ids = [...gpt2.encode('one\r\n'), 50256, ...gpt2.encode('two'), 50256];
    expect(Array.from(c.tokens)).toEqual(ids);
    expect(c.stats.documents).toBe(2);
    expect(Array.from(c.docStarts)).toEqual([0, gpt2.encode('one\r\n').length + 1, ids.length]);
  });

  it('a literal <|endoftext|> in text is the special token', async () => {
    const c = await tokenizeCorpus([{ name: 'a.txt', text: 'a<|endoftext|>b' }], gpt2);
    expect(Array.from(c.tokens)).toEqual([...gpt2.encode('a'), 50256, ...gpt2.encode('b'), 50256]);
  });

  it('.jsonl: one document per line, text field by default or a chosen one', async () => {
    const lines = '{"text": "first doc", "id": 1}\n\n{"text": "second\\ndoc", "body": "x"}\r\n{"text": ""}\n';
    const c = await tokenizeCorpus([file('d.jsonl', lines)], gpt2);
    expect(Array.from(c.tokens)).toEqual([...gpt2.encode('first doc'), 50256, ...gpt2.encode('second\ndoc'), 50256]);
    expect(c.stats.documents).toBe(2);
    expect(c.stats.emptyDocuments).toBe(1);

    const d = await tokenizeCorpus([file('d.ndjson', '{"body": "B1"}\n{"body": "B2"}')], gpt2, { jsonlField: 'body' });
    expect(Array.from(d.tokens)).toEqual([...gpt2.encode('B1'), 50256, ...gpt2.encode('B2'), 50256]);
  });

  it('.jsonl errors name the file and line', async () => {
    const bad: Array<[string, RegExp]> = [
      ['{"text": "ok"}\n{"text": "no end}\n', /d\.jsonl, line 2: not valid JSON/],
      ['{"text": "ok"}\n\n{"content": "x", "meta": 1}\n', /d\.jsonl, line 3: no "text" field \(fields: "content", "meta"\)/],
      ['{"text": 5}\n', /line 1: field "text" is number, not a string/],
      ['["text"]\n', /line 1: expected a JSON object/],
    ];
    for (const [content, msg] of bad) {
      const p = tokenizeCorpus([file('d.jsonl', content)], gpt2);
      await expect(p).rejects.toThrow(msg);
      await expect(tokenizeCorpus([file('d.jsonl', content)], gpt2)).rejects.toBeInstanceOf(CorpusFormatError);
    }
  });

  it('.csv: one document per row of the chosen column', async () => {
    const csv = 'id,text,label\r\n1,"Hello, world",a\r\n2,"He said ""hi""\nthen left",b\r\n\r\n3,plain,c\r\n';
    const c = await tokenizeCorpus([file('t.csv', csv)], gpt2);
    const docs = ['Hello, world', 'He said "hi"\nthen left', 'plain'];
    expect(Array.from(c.tokens)).toEqual(docs.flatMap((d) => [...gpt2.encode(d), 50256]));
    const byIndex = await tokenizeCorpus([file('t.csv', csv)], gpt2, { csvColumn: 2 });
    expect(Array.from(byIndex.tokens)).toEqual(['a', 'b', 'c'].flatMap((d) => [...gpt2.encode(d), 50256]));
  });

  it('.csv errors: missing column, short row', async () => {
    await expect(tokenizeCorpus([file('t.csv', 'id,body\n1,x\n')], gpt2)).rejects.toThrow(/t\.csv: no column "text" in the header row \(columns: "id", "body"\)/);
    await expect(tokenizeCorpus([file('t.csv', 'id,text\n1,"a\nb"\n2\n')], gpt2)).rejects.toThrow(/t\.csv, line 4: the row has 1 fields/);
  });

  it('an empty corpus is refused', async () => {
    await expect(tokenizeCorpus([], gpt2)).rejects.toThrow(EmptyCorpusError);
    await expect(tokenizeCorpus([file('e.txt', '')], gpt2)).rejects.toThrow(/e\.txt holds no text/);
    await expect(tokenizeCorpus([file('e.jsonl', '{"text": ""}\n\n'), file('f.csv', 'text\n')], gpt2)).rejects.toThrow(EmptyCorpusError);
    await expect(tokenizeCorpus([file('b.dat', Uint8Array.from([1, 0, 2]))], gpt2)).rejects.toThrow(/b\.dat looks like a binary file/);
    // .bin is a token file: a broken one gets the token-file error
    await expect(tokenizeCorpus([file('b.bin', Uint8Array.from([1, 0, 2]))], gpt2)).rejects.toThrow(/b\.bin: 3 bytes is an odd length/);
  });

  it('uses Uint32Array above 65,536 ids and grows past its first capacity', async () => {
    const big = stubTokenizer(70_000, 66_000);
    const text = 'x'.repeat(100_000) + '\u00ff';
    const c = await tokenizeCorpus([{ name: 'a.txt', text }], big);
    expect(c.tokens).toBeInstanceOf(Uint32Array);
    expect(c.tokens.length).toBe(100_002);
    expect(c.tokens[0]).toBe(66_000 + 0x78);
    expect(c.tokens[100_000]).toBe(66_000 + 0xff);
    expect(c.tokens[100_001]).toBe(69_999);
    const small = await tokenizeCorpus([{ name: 'a.txt', text }], stubTokenizer(65_536));
    expect(small.tokens).toBeInstanceOf(Uint16Array);
  });

  it('cuts long documents into pieces no longer than chunkChars when it can', async () => {
    const stub = stubTokenizer(1000);
    const text = Array.from({ length: 400 }, (_, i) => `word${i}`).join(' ');
    const c = await tokenizeCorpus([{ name: 'a.txt', text }], stub, { chunkChars: 100 });
    expect(stub.pieces.length).toBeGreaterThan(text.length / 100);
    expect(Math.max(...stub.pieces.map((p) => p.length))).toBeLessThanOrEqual(100);
    expect(stub.pieces.join('')).toBe(text);
    expect(c.tokens.length).toBe(text.length + 1);
    // no cut at all in a long run: the piece runs on to the first safe cut after the window
    const stub2 = stubTokenizer(1000);
    await tokenizeCorpus([{ name: 'b.txt', text: 'y'.repeat(250) + ' z' + 'q'.repeat(30) }], stub2, { chunkChars: 100 });
    expect(stub2.pieces.map((p) => p.length)).toEqual([250, 32]);
    // a tokenizer that cannot be chunked gets whole documents
    const whole = { ...stubTokenizer(1000), chunkable: false };
    const pieces: string[] = [];
    await tokenizeCorpus([{ name: 'a.txt', text }], { ...whole, encode: (t: string) => (pieces.push(t), whole.encode(t)) }, { chunkChars: 100 });
    expect(pieces).toEqual([text]);
  });

  it('chunked tokenization equals whole-text tokenization on real corpora', async () => {
    for (const text of [draculaExcerpt().slice(200_000, 250_000), shakespeareExcerpts()[1]]) {
      const whole = [...gpt2.encode(text), 50256];
      for (const chunkChars of [500, 4096]) {
        const c = await tokenizeCorpus([{ name: 'x.txt', text }], gpt2, { chunkChars });
        expect(Array.from(c.tokens)).toEqual(whole);
      }
    }
  });

  it('chunked tokenization equals whole on whitespace-heavy text with special tokens', async () => {
    const r = rng(11);
    const parts = [' ', '  ', '\n', '\n\n', '\t', 'word', 'Word', "'s", '1234', '...', '<|endoftext|>', '日本語', '\r\n'];
    let text = '';
    while (text.length < 20_000) text += parts[Math.floor(r() * parts.length)];
    const c = await tokenizeCorpus([{ name: 'x.txt', text }], gpt2, { chunkChars: 64 });
    expect(Array.from(c.tokens)).toEqual([...gpt2.encode(text), 50256]);
  });

  it('reports progress in bytes, monotone, ending at the total', async () => {
    const calls: Array<[number, number]> = [];
    const text = 'abc def\n'.repeat(40_000); // 320 kB, several progress reports
    const files = [file('a.txt', text), { name: 'b.txt', bytes: async () => enc('tail') }, file('c.jsonl', '{"text": "x"}\n')];
    await tokenizeCorpus(files, stubTokenizer(1000), { chunkChars: 10_000 }, (d, t) => calls.push([d, t]));
    expect(calls[0]).toEqual([0, 320_000 + 14]); // b.txt's size is unknown until read
    const last = calls[calls.length - 1];
    expect(last).toEqual([320_000 + 4 + 14, 320_000 + 4 + 14]);
    expect(calls.length).toBeGreaterThan(3);
    for (let i = 1; i < calls.length; i++) expect(calls[i][0]).toBeGreaterThanOrEqual(calls[i - 1][0]);
    for (const [d, t] of calls) expect(d).toBeLessThanOrEqual(t);
  });

  it('stops when aborted', async () => {
    const ac = new AbortController();
    ac.abort(new Error('user cancelled'));
    await expect(tokenizeCorpus([{ name: 'a.txt', text: 'abc' }], gpt2, { signal: ac.signal })).rejects.toThrow('user cancelled');
  });
});

describe('windows and the train/validation split', () => {
  it.each([[0, 4, 0], [1, 4, 0], [4, 4, 0], [5, 4, 1], [8, 4, 1], [9, 4, 2], [1025, 1024, 1]])('N=%i T=%i → W=%i', (n, T, w) => {
    expect(windowCount(n, T)).toBe(w);
  });
  it('refuses a bad context length', () => expect(() => windowCount(10, 0)).toThrow(BatchConfigError));

  /** D documents, document d being d+1 copies of id d then EOS (id 999). */
  function corpus(D: number): TokenizedCorpus {
    const ids: number[] = [];
    const starts = [0];
    for (let d = 0; d < D; d++) {
      for (let k = 0; k <= d; k++) ids.push(d);
      ids.push(999);
      starts.push(ids.length);
    }
    const stats = { files: 1, documents: D, emptyDocuments: 0, characters: 0, bytes: 0, tokens: ids.length };
    return { tokens: Uint16Array.from(ids), docStarts: Uint32Array.from(starts), stats };
  }
  const docsOf = (a: Uint16Array | Uint32Array) => [...new Set(Array.from(a).filter((x) => x !== 999))];

  it('splits by documents with a seeded shuffle, each side in corpus order', () => {
    const c = corpus(20);
    const s = splitCorpus(c, { valFraction: 0.25, seed: 1, contextLength: 4 });
    expect(s.by).toBe('documents');
    expect(s.singleDocument).toBe(false);
    expect(s.message).toBeUndefined();
    expect(s.valDocuments).toBe(5);
    expect(s.trainDocuments).toBe(15);
    const v = docsOf(s.val);
    const t = docsOf(s.train);
    expect(v).toEqual([...v].sort((a, b) => a - b));
    expect([...v, ...t].sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(s.train.length + s.val.length).toBe(c.tokens.length);
    expect(s.trainWindows).toBe(windowCount(s.train.length, 4));
    // each document arrives whole: document d is d+1 copies of d then EOS
    for (const d of v) expect(Array.from(s.val).filter((x) => x === d).length).toBe(d + 1);
    // same seed, same split; the seed matters
    expect(Array.from(splitCorpus(c, { valFraction: 0.25, seed: 1, contextLength: 4 }).val)).toEqual(Array.from(s.val));
    const others = [2, 3, 4, 5].map((seed) => docsOf(splitCorpus(c, { valFraction: 0.25, seed, contextLength: 4 }).val).join());
    expect(others.some((o) => o !== v.join())).toBe(true);
  });

  it('keeps at least one document on each side', () => {
    expect(splitCorpus(corpus(2), { valFraction: 0.01, seed: 0, contextLength: 4 }).valDocuments).toBe(1);
    const hi = splitCorpus(corpus(2), { valFraction: 0.99, seed: 0, contextLength: 4 });
    expect([hi.trainDocuments, hi.valDocuments]).toEqual([1, 1]);
    const none = splitCorpus(corpus(3), { valFraction: 0, seed: 0, contextLength: 4 });
    expect([none.trainDocuments, none.valDocuments, none.val.length]).toEqual([3, 0, 0]);
  });

  it('cuts a single document at a window boundary and says so', () => {
    const N = 101;
    const one: TokenizedCorpus = {
      tokens: Uint16Array.from({ length: N }, (_, i) => i),
      docStarts: Uint32Array.from([0, N]),
      stats: { files: 1, documents: 1, emptyDocuments: 0, characters: 0, bytes: 0, tokens: N },
    };
    const T = 8; // W = 12 windows
    const s = splitCorpus(one, { valFraction: 0.25, seed: 0, contextLength: T });
    expect(s.by).toBe('window');
    expect(s.singleDocument).toBe(true);
    expect(s.message).toMatch(/single document.*window boundary.*first 9 windows.*last 3/);
    expect(s.train.length).toBe(9 * T + 1);
    expect(s.val[0]).toBe(9 * T); // the shared token: last training target, first validation input
    expect(s.train[s.train.length - 1]).toBe(s.val[0]);
    expect(s.val[s.val.length - 1]).toBe(N - 1);
    expect([s.trainWindows, s.valWindows]).toEqual([9, 3]);

    const short = splitCorpus({ ...one, tokens: one.tokens.slice(0, 10), docStarts: Uint32Array.from([0, 10]) }, { valFraction: 0.5, seed: 0,
      contextLength: 8 });
    expect(short.val.length).toBe(0);
    expect(short.train.length).toBe(10);
    expect(short.message).toMatch(/too few to hold out a validation window/);
  });

  it('refuses a fraction outside [0, 1)', () => {
    for (const f of [-0.1, 1, Number.NaN]) {
      expect(() => splitCorpus(corpus(3), { valFraction: f, seed: 0, contextLength: 4 })).toThrow(CorpusSplitError);
    }
  });
});

describe('token files among corpus files', () => {
  it('nanoGPT and llm.c token files join the stream as they are (one document each, no extra EOS)', async () => {
    const { writeNanoGptTokens, writeLlmcTokens } = await import('../../../src/io/token-files.ts');
    const tok = stubTokenizer(1000);
    const c = await tokenizeCorpus(
      [
        { name: 'a.bin', bytes: async () => writeNanoGptTokens([5, 6, 7]) },
        { name: 'b.txt', text: 'xy' },
        { name: 'c.bin', bytes: async () => writeLlmcTokens([8, 9]) },
      ],
      tok,
    );
    expect(Array.from(c.tokens)).toEqual([5, 6, 7, ...tok.encode('xy'), tok.eosId, 8, 9]);
    expect(Array.from(c.docStarts)).toEqual([0, 3, 3 + tok.encode('xy').length + 1, c.tokens.length]);
    expect(c.stats.documents).toBe(3);
  });

  it('a token id outside the vocabulary names the file', async () => {
    const { writeNanoGptTokens } = await import('../../../src/io/token-files.ts');
    await expect(tokenizeCorpus([{ name: 'big.bin', bytes: async () => writeNanoGptTokens([1, 5000]) }], stubTokenizer(1000))).rejects.toThrow(/big\.bin.*5000/);
  });
});
