// Loads a training corpus for the CLI: token files (nanoGPT raw uint16 or llm.c's, told by the
// header) or text (.txt/.md/.jsonl/.csv) tokenized with the model's tokenizer (its own files
// when the model folder has them, else GPT-2's).
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { StudioError } from '../engine/errors.ts';
import { tokenizeCorpus, type TokenArray } from '../io/corpus.ts';
import { readTokenFile } from '../io/token-files.ts';
import { nodeFileSource } from '../io/node-model.ts';
import { tokenizerFromModelFiles } from '../io/tokenizer.ts';

export class DataFileError extends StudioError {}

const TOKEN_EXT = /\.(bin|tokens)$/i;

async function nodeFile(path: string) {
  try {
    const s = await stat(path);
    if (!s.isFile()) throw new DataFileError(`${path} is not a file.`);
    return { name: path, size: s.size, bytes: async () => new Uint8Array(await readFile(path)) };
  } catch (e) {
    if (e instanceof DataFileError) throw e;
    throw new DataFileError(`Cannot read data file ${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}.`);
  }
}

/** Files of a model folder that can carry a tokenizer. */
async function modelTokenizerFiles(modelDir: string) {
  const names = ['tokenizer.json', 'tokenizer_config.json', 'vocab.json', 'merges.txt'];
  const have = new Set(await readdir(modelDir).catch(() => [] as string[]));
  return Promise.all(names.filter((n) => have.has(n)).map((n) => nodeFile(join(modelDir, n))));
}

export async function loadTrainingTokens(
  paths: string[],
  vocabSize: number,
  modelDir: string | null,
  log: (msg: string) => void,
): Promise<TokenArray> {
  if (!paths.length) throw new DataFileError('No data file given: pass --data <file>.');
  const files = await Promise.all(paths.map(nodeFile));
  const tokenFiles = files.filter((f) => TOKEN_EXT.test(f.name));
  if (tokenFiles.length === files.length) {
    const parts = await Promise.all(tokenFiles.map(async (f) => readTokenFile(await f.bytes(), f.name, vocabSize).tokens));
    if (parts.length === 1) return parts[0];
    const out = new Uint16Array(parts.reduce((a, p) => a + p.length, 0));
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }
  if (tokenFiles.length) throw new DataFileError('Mix of token files (.bin) and text files: pass one kind at a time.');
  const { tokenizer, source } = await tokenizerFromModelFiles(modelDir ? await modelTokenizerFiles(modelDir) : []);
  if (tokenizer.vocabSize > vocabSize) {
    throw new DataFileError(`The tokenizer (${source}) has ${tokenizer.vocabSize} ids but the model's vocabulary has ${vocabSize}: they do not belong together.`);
  }
  // Text files are read in chunks (tokenizeCorpus streams .txt/.md/.jsonl), named by their path.
  const sources = await Promise.all(files.map(async (f) => ({ ...(await nodeFileSource(f.name)), name: f.name })));
  let last = 0;
  const corpus = await tokenizeCorpus(sources, tokenizer, {}, (done, total) => {
    const pct = Math.floor((100 * done) / Math.max(1, total));
    if (pct >= last + 10) {
      last = pct;
      log(`tokenizing: ${pct}%`);
    }
  });
  log(`corpus: ${corpus.stats.documents} document(s), ${corpus.stats.characters} characters, ${corpus.stats.tokens} tokens (tokenizer: ${source})`);
  return corpus.tokens;
}
