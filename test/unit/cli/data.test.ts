// The CLI's data loading: token files and UTF-8 text give the same ids as the tokenizer plus EOS
// after each document; mismatches get clear errors.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadTrainingTokens } from '../../../src/cli/data.ts';
import { loadDefaultTokenizer } from '../../../src/io/tokenizer.ts';
import { writeLlmcTokens, writeNanoGptTokens } from '../../../src/io/token-files.ts';

let dir: string;
const quiet = () => {};

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'cli-data-'));
});

describe('loadTrainingTokens', () => {
  it('reads nanoGPT and llm.c token files and concatenates several', async () => {
    writeFileSync(join(dir, 'a.bin'), writeNanoGptTokens([1, 2, 3]));
    writeFileSync(join(dir, 'b.bin'), writeLlmcTokens([4, 5]));
    const t = await loadTrainingTokens([join(dir, 'a.bin'), join(dir, 'b.bin')], 10, null, quiet);
    expect(Array.from(t)).toEqual([1, 2, 3, 4, 5]);
  });

  it('tokenizes text documents with GPT-2 and puts EOS after each', async () => {
    const tok = await loadDefaultTokenizer();
    writeFileSync(join(dir, 'one.txt'), 'Hello there, Dracula.\n');
    writeFileSync(join(dir, 'two.jsonl'), '{"text": "First line."}\n{"text": "Second <|endoftext|> line."}\n');
    const t = await loadTrainingTokens([join(dir, 'one.txt'), join(dir, 'two.jsonl')], 50257, null, quiet);
    const want = [...tok.encode('Hello there, Dracula.\n'), 50256, ...tok.encode('First line.'), 50256, ...tok.encode('Second <|endoftext|> line.'), 50256];
    expect(Array.from(t)).toEqual(want);
    expect(want).toContain(50256);
  });

  it('refuses a token id outside the model vocabulary, naming the file', async () => {
    writeFileSync(join(dir, 'big.bin'), writeNanoGptTokens([1, 400]));
    await expect(loadTrainingTokens([join(dir, 'big.bin')], 311, null, quiet)).rejects.toThrow(/big\.bin.*400.*311/);
  });

  it('refuses text for a model whose vocabulary is smaller than the tokenizer', async () => {
    writeFileSync(join(dir, 'x.txt'), 'some text');
    await expect(loadTrainingTokens([join(dir, 'x.txt')], 311, null, quiet)).rejects.toThrow(/50257 ids but the model's vocabulary has 311/);
  });

  it('refuses a mix of token files and text, and a missing file', async () => {
    await expect(loadTrainingTokens([join(dir, 'a.bin'), join(dir, 'x.txt')], 50257, null, quiet)).rejects.toThrow(/one kind at a time/);
    await expect(loadTrainingTokens([join(dir, 'nope.txt')], 50257, null, quiet)).rejects.toThrow(/nope\.txt: no such file/);
  });

  it('names the file and byte offset of invalid UTF-8', async () => {
    writeFileSync(join(dir, 'bad.txt'), Buffer.from([0x61, 0x62, 0xff, 0x63]));
    await expect(loadTrainingTokens([join(dir, 'bad.txt')], 50257, null, quiet)).rejects.toThrow(/bad\.txt.*byte 2|bad\.txt.*offset 2/);
  });
});
