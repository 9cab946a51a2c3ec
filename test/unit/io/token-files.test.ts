// Token files: nanoGPT's raw uint16 and llm.c's 256-int32-header format, byte for byte, their
// detection and validation, and prepareCorpus.
import { describe, expect, it } from 'vitest';
import type { Tokenizer } from '../../../src/io/tokenizer.ts';
import { loadDefaultTokenizer } from '../../../src/io/tokenizer.ts';
import {
  LLMC_HEADER_BYTES, TokenCountMismatchError, TokenFileLengthError, TokenIdRangeError, UnsupportedTokenFileError,
  VocabTooLargeError, checkTokenIds, detectTokenFileFormat, readTokenFile, writeLlmcTokens,
  writeNanoGptTokens,
} from '../../../src/io/token-files.ts';
import { prepareCorpus } from '../../../src/io/prepare.ts';
import { rng } from '../../helpers/numeric.ts';

const ids = [0, 1, 258, 50256, 65535, 12345];

describe('nanoGPT token files', () => {
  it('are raw little-endian uint16', () => {
    const bytes = writeNanoGptTokens([1, 258, 65535]);
    expect(Array.from(bytes)).toEqual([0x01, 0x00, 0x02, 0x01, 0xff, 0xff]);
  });

  it('round-trip, also from a view at an odd byte offset', () => {
    const bytes = writeNanoGptTokens(ids);
    const { format, tokens } = readTokenFile(bytes, 'train.bin');
    expect(format).toBe('nanogpt');
    expect(tokens).toBeInstanceOf(Uint16Array);
    expect(Array.from(tokens)).toEqual(ids);
    const padded = new Uint8Array(bytes.length + 3);
    padded.set(bytes, 1);
    expect(Array.from(readTokenFile(padded.subarray(1, 1 + bytes.length), 'x').tokens)).toEqual(ids);
  });

  it('refuse an odd length and ids that do not fit', () => {
    expect(() => readTokenFile(new Uint8Array(7), 'train.bin')).toThrow(TokenFileLengthError);
    expect(() => readTokenFile(new Uint8Array(7), 'train.bin')).toThrow(/train\.bin: 7 bytes is an odd length/);
    expect(() => writeNanoGptTokens([1, 65536])).toThrow(TokenIdRangeError);
    expect(() => writeNanoGptTokens([-1])).toThrow(/token 0 is -1/);
    expect(() => writeNanoGptTokens([1.5])).toThrow(TokenIdRangeError);
  });
});

describe('llm.c token files', () => {
  it('have the 256-int32 header: magic 20240520, version 1, count', () => {
    const bytes = writeLlmcTokens(ids);
    expect(bytes.length).toBe(1024 + 2 * ids.length);
    const header = new DataView(bytes.buffer);
    expect(header.getInt32(0, true)).toBe(20240520);
    expect(Array.from(bytes.subarray(0, 4))).toEqual([0x88, 0xd8, 0x34, 0x01]); // 20240520 = 0x0134D888
    expect(header.getInt32(4, true)).toBe(1);
    expect(header.getInt32(8, true)).toBe(ids.length);
    for (let i = 3; i < 256; i++) expect(header.getInt32(4 * i, true)).toBe(0);
    expect(Array.from(bytes.subarray(1024, 1028))).toEqual([0, 0, 1, 0]);
  });

  it('round-trip and are told apart from nanoGPT files by the magic', () => {
    const r = rng(5);
    const many = Array.from({ length: 3000 }, () => Math.floor(r() * 50257));
    const llmc = writeLlmcTokens(many);
    expect(detectTokenFileFormat(llmc)).toBe('llmc');
    expect(detectTokenFileFormat(writeNanoGptTokens(many))).toBe('nanogpt');
    const back = readTokenFile(llmc, 'val.bin', 50257);
    expect(back.format).toBe('llmc');
    expect(Array.from(back.tokens)).toEqual(many);
    // an empty token list is a valid header-only file
    expect(readTokenFile(writeLlmcTokens([]), 'e.bin').tokens.length).toBe(0);
    // a short nanoGPT file that starts like the magic is still nanoGPT (too short for a header)
    expect(detectTokenFileFormat(writeLlmcTokens([]).subarray(0, 8))).toBe('nanogpt');
  });

  it('refuse a count that disagrees with the data, and other versions', () => {
    const bytes = writeLlmcTokens(ids);
    expect(() => readTokenFile(bytes.subarray(0, bytes.length - 2), 'val.bin')).toThrow(TokenCountMismatchError);
    expect(() => readTokenFile(bytes.subarray(0, bytes.length - 2), 'val.bin')).toThrow(/header says 6 tokens.*truncated/);
    const longer = new Uint8Array(bytes.length + 2);
    longer.set(bytes);
    expect(() => readTokenFile(longer, 'val.bin')).toThrow(TokenCountMismatchError);
    const v2 = bytes.slice();
    new DataView(v2.buffer).setInt32(4, 2, true);
    expect(() => readTokenFile(v2, 'val.bin')).toThrow(UnsupportedTokenFileError);
    expect(bytes.length).toBeGreaterThan(LLMC_HEADER_BYTES);
  });
});

describe('id validation', () => {
  it('names the first id at or above the vocabulary size', () => {
    expect(() => checkTokenIds(Uint16Array.from([5, 50256, 50257, 60000]), 50257, 'train.bin')).toThrow(/train\.bin: token 2 is id 50257, but the vocabulary has 50257 ids/);
    expect(() => readTokenFile(writeNanoGptTokens([1, 2, 50300]), 'train.bin', 50257)).toThrow(TokenIdRangeError);
    expect(() => checkTokenIds([0, 50256], 50257, 'ok')).not.toThrow();
  });
});

describe('prepareCorpus', () => {
  it('gives uint16 train and val ids with stats', async () => {
    const gpt2 = await loadDefaultTokenizer();
    const docs = Array.from({ length: 10 }, (_, i) => `Document number ${i} says hello.`);
    const files = docs.map((text, i) => ({ name: `d${i}.txt`, text }));
    const p = await prepareCorpus(files, gpt2, { valFraction: 0.2, seed: 42, contextLength: 4 });
    expect(p.train).toBeInstanceOf(Uint16Array);
    expect(p.val).toBeInstanceOf(Uint16Array);
    expect(p.stats.documents).toBe(10);
    expect([p.stats.trainDocuments, p.stats.valDocuments]).toEqual([8, 2]);
    expect(p.stats.trainTokens + p.stats.valTokens).toBe(p.stats.tokens);
    expect(p.stats.splitBy).toBe('documents');
    expect(p.stats.windows).toBe(Math.floor((p.stats.tokens - 1) / 4));
    // validation is two whole documents, each ending in EOS
    const valText = gpt2.decode(p.val);
    expect(valText.split('<|endoftext|>').filter((s) => s !== '').every((s) => docs.includes(s))).toBe(true);
    // and survives the file formats
    expect(Array.from(readTokenFile(writeLlmcTokens(p.train), 'train.bin', gpt2.vocabSize).tokens)).toEqual(Array.from(p.train));
  });

  it('passes on the single-document message', async () => {
    const gpt2 = await loadDefaultTokenizer();
    const text = 'one long document '.repeat(50);
    const p = await prepareCorpus([{ name: 'a.txt', text }], gpt2, { valFraction: 0.1, seed: 0, contextLength: 8 });
    expect(p.stats.singleDocument).toBe(true);
    expect(p.stats.splitBy).toBe('window');
    expect(p.stats.message).toMatch(/single document/);
  });

  it('refuses a vocabulary above 65,536 before reading any file', async () => {
    let read = false;
    const big: Tokenizer = {
      vocabSize: 100_277, eosId: 100_276, chunkable: true, addedTokens: [],
      encode: () => [], decode: () => '',
    };
    const files = [{ name: 'a.txt', bytes: async () => { read = true; return new Uint8Array([0x61]); } }];
    await expect(prepareCorpus(files, big, { valFraction: 0.1, seed: 0, contextLength: 8 })).rejects.toThrow(VocabTooLargeError);
    await expect(prepareCorpus(files, big, { valFraction: 0.1, seed: 0, contextLength: 8 })).rejects.toThrow(/100277 ids.*at most 65536/);
    expect(read).toBe(false);
  });
});
