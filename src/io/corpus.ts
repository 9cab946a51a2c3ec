// Corpus ingestion (docs/ARCHITECTURE.md, Corpora): named files → documents → one compact token stream with
// EOS after every document, plus statistics and a train/validation split.
//   - a .txt/.md (or any other plain-text) file is one document;
//   - each line of a .jsonl/.ndjson file is one document (a string field, `text` by default);
//   - each row of a .csv file is one document (a chosen column, `text` by default; RFC 4180).
// Long documents are tokenized in chunks cut where GPT-2's pre-tokenizer cannot merge across
// (see safeCut), so the stream equals whole-text tokenization while progress is reported and
// memory stays one chunk of ids plus the growing typed array.
// A .txt/.md/.jsonl/.ndjson file that can be read in pieces (a ByteSource, or a browser Blob/File)
// is streamed: fixed-size byte chunks are decoded (corpus-stream.ts) and only a pending tail of
// text is kept, so memory is bounded by the token ids, not the file size. A .csv file is read
// whole: a quoted field may span lines, so rows cannot be cut without parsing from the start.
import { StudioError } from '../engine/errors.ts';
import { type Tokenizer, isSafeCut, safeCut } from './tokenizer.ts';
import { type NamedFile, baseName, decodeUtf8, knownSize, readAllBytes, readText, utf8Length } from './utf8.ts';
import { SeededRng } from '../engine/random.ts';
import { windowCount } from '../engine/windows.ts';
// token-files.ts imports this module too; readTokenFile is only called at run time, so the cycle is harmless.
import { readTokenFile } from './token-files.ts';
import type { ByteSource } from './bytes.ts';
import { DEFAULT_READ_CHUNK_BYTES, chunkedSourceOf, decodeChunks } from './corpus-stream.ts';

/** No text to train on: no files, or only empty documents. */
export class EmptyCorpusError extends StudioError {}

/** A .jsonl line or .csv row that cannot be read as a document; names the file and line. */
export class CorpusFormatError extends StudioError {
  readonly file: string;
  readonly line: number;
  constructor(file: string, line: number, message: string) {
    super(message);
    this.file = file;
    this.line = line;
  }
}

/** Split options that make no sense (a fraction outside [0, 1), a context length below 1). */
export class CorpusSplitError extends StudioError {}

/** Token ids: 16-bit when every id fits (vocabularies up to 65,536), else 32-bit. */
export type TokenArray = Uint16Array | Uint32Array;

export interface CorpusOptions {
  /** .jsonl: the string field holding a document's text */
  jsonlField?: string;
  /** .csv: the column (header name, or 0-based index) holding a document's text */
  csvColumn?: string | number;
  /** longest piece of a document handed to the tokenizer at once, in UTF-16 code units */
  chunkChars?: number;
  /** bytes read at a time from a file that can be read in pieces (default 8 MiB, at least 1024) */
  readChunkBytes?: number;
  /** T, to count windows in the stats */
  contextLength?: number;
  /** stops between chunks (throws the signal's reason) */
  signal?: AbortSignal;
}

export interface CorpusStats {
  files: number;
  /** documents tokenized (empty ones are skipped, not counted here) */
  documents: number;
  /** documents skipped because their text was empty */
  emptyDocuments: number;
  /** Unicode code points of the documents' text */
  characters: number;
  /** UTF-8 bytes of the documents' text (excludes JSON/CSV syntax and BOMs) */
  bytes: number;
  /** N: tokens including one EOS after each document */
  tokens: number;
  /** W = ⌊(N−1)/T⌋ at options.contextLength, when given */
  windows?: number;
  contextLength?: number;
}

export interface TokenizedCorpus {
  /** (N,) the token stream */
  tokens: TokenArray;
  /** (D+1,) document d spans tokens [docStarts[d], docStarts[d+1]), its EOS last */
  docStarts: Uint32Array;
  stats: CorpusStats;
}

/** Called with bytes of input done and total bytes (total grows when a file of unknown size is read). */
export type ProgressFn = (done: number, total: number) => void;

const DEFAULT_CHUNK_CHARS = 1 << 16;


/** Unicode code points in s (a surrogate pair is one). */
function codePoints(s: string, from = 0, to = s.length): number {
  let n = to - from;
  for (let i = from; i < to - 1; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n--;
      i++;
    }
  }
  return n;
}

/** A typed array that grows geometrically (×2), so appending N items costs O(N) copies. */
class Growable<A extends Uint16Array | Uint32Array> {
  length = 0;
  data: A;
  private readonly make: (n: number) => A;
  constructor(data: A, make: (n: number) => A) {
    this.data = data;
    this.make = make;
  }

  private reserve(extra: number): void {
    if (this.length + extra <= this.data.length) return;
    let cap = Math.max(this.data.length, 1024);
    while (cap < this.length + extra) cap *= 2;
    const next = this.make(cap);
    next.set(this.data.subarray(0, this.length));
    this.data = next;
  }

  push(x: number): void {
    this.reserve(1);
    this.data[this.length++] = x;
  }

  pushAll(xs: ArrayLike<number>): void {
    this.reserve(xs.length);
    const d = this.data;
    let n = this.length;
    for (let i = 0; i < xs.length; i++) d[n++] = xs[i];
    this.length = n;
  }

  /** A copy of exactly `length` items; the spare capacity is released. */
  done(): A {
    return this.data.slice(0, this.length) as A;
  }
}

/** The typed array for ids below vocabSize. */
export function tokenArrayFor(vocabSize: number, length: number): TokenArray {
  return vocabSize <= 65536 ? new Uint16Array(length) : new Uint32Array(length);
}

type FileKind = 'text' | 'jsonl' | 'csv' | 'tokens';

function kindOf(name: string): FileKind {
  const n = baseName(name).toLowerCase();
  if (n.endsWith('.jsonl') || n.endsWith('.ndjson')) return 'jsonl';
  if (n.endsWith('.csv')) return 'csv';
  if (n.endsWith('.bin') || n.endsWith('.tokens')) return 'tokens';
  return 'text';
}

/** One document's text and the position (in the file's text) where it ends, for progress. */
interface Doc {
  text: string;
  end: number;
}

/** .jsonl: one document per non-blank line, the string `field` of a JSON object. */
function* jsonlDocs(text: string, file: string, field: string): Generator<Doc> {
  let start = 0;
  let line = 0;
  while (start < text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    line++;
    const raw = text.slice(start, end);
    start = end + 1;
    const doc = jsonlLine(raw, file, line, field);
    if (doc !== undefined) yield { text: doc, end: Math.min(start, text.length) };
  }
}

/** The document of one .jsonl line (1-based `line`), or undefined for a blank line. */
function jsonlLine(raw: string, file: string, line: number, field: string): string | undefined {
  if (raw.trim() === '') return undefined; // blank lines (often a trailing one) are no documents
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (e) {
    throw new CorpusFormatError(file, line, `${file}, line ${line}: not valid JSON (${(e as Error).message}). Each line of a .jsonl file must be one JSON object.`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new CorpusFormatError(file, line, `${file}, line ${line}: expected a JSON object with a "${field}" field, got ${Array.isArray(value) ? 'an array' : typeof value}.`);
  }
  const rec = value as Record<string, unknown>;
  if (!(field in rec)) {
    const keys = Object.keys(rec).slice(0, 10).map((k) => JSON.stringify(k)).join(', ');
    throw new CorpusFormatError(file, line, `${file}, line ${line}: no "${field}" field (fields: ${keys || 'none'}). Choose the field that holds the text.`);
  }
  const v = rec[field];
  if (typeof v !== 'string') {
    throw new CorpusFormatError(file, line, `${file}, line ${line}: field "${field}" is ${v === null ? 'null' : typeof v}, not a string.`);
  }
  return v;
}

/**
 * RFC 4180 records: fields separated by ',', records by CRLF (LF alone is accepted too);
 * a field in double quotes may hold ',', CR, LF and "" (one quote). Yields each record's fields
 * and the 1-based line it starts on. A quote inside an unquoted field is kept as text (as
 * Python's csv module does); text after a closing quote or an unclosed quote is an error.
 */
export function* csvRecords(text: string, file = 'csv'): Generator<{ fields: string[]; line: number; end: number }> {
  const n = text.length;
  let i = 0;
  let line = 1;
  while (i < n) {
    const startLine = line;
    const fields: string[] = [];
    for (;;) {
      // one field starting at i
      if (text[i] === '"') {
        const fieldLine = line;
        let value = '';
        let j = i + 1;
        for (;;) {
          const q = text.indexOf('"', j);
          if (q < 0) {
            throw new CorpusFormatError(file, fieldLine, `${file}, line ${fieldLine}: a quoted field is never closed. Check for a stray '"' (write "" for a quote inside a quoted field).`);
          }
          const part = text.slice(j, q);
          for (let k = 0; k < part.length; k++) if (part.charCodeAt(k) === 10) line++;
          value += part;
          if (text[q + 1] === '"') {
            value += '"';
            j = q + 2;
          } else {
            i = q + 1;
            break;
          }
        }
        fields.push(value);
        if (i < n && text[i] !== ',' && text[i] !== '\n' && !(text[i] === '\r' && text[i + 1] === '\n')) {
          throw new CorpusFormatError(file, line, `${file}, line ${line}: unexpected ${JSON.stringify(text[i])} after a closing quote. A field with quotes must be quoted whole, with "" for each quote inside.`);
        }
      } else {
        let j = i;
        while (j < n && text[j] !== ',' && text[j] !== '\n' && !(text[j] === '\r' && text[j + 1] === '\n')) j++;
        fields.push(text.slice(i, j));
        i = j;
      }
      if (i >= n) break;
      if (text[i] === ',') {
        i++;
        if (i >= n) {
          fields.push(''); // "a,b," at the very end: the last field is empty
          break;
        }
        continue;
      }
      // end of record: LF or CRLF
      i += text[i] === '\r' ? 2 : 1;
      line++;
      break;
    }
    yield { fields, line: startLine, end: i };
  }
}

/** .csv: one document per row after the header, the chosen column. */
function* csvDocs(text: string, file: string, column: string | number): Generator<Doc> {
  let col = -1;
  let header: string[] | undefined;
  for (const rec of csvRecords(text, file)) {
    if (header === undefined) {
      header = rec.fields;
      col = typeof column === 'number' ? column : header.indexOf(column);
      if (col < 0 || col >= header.length) {
        const names = header.slice(0, 20).map((h) => JSON.stringify(h)).join(', ');
        throw new CorpusFormatError(file, rec.line, `${file}: no column ${typeof column === 'number' ? `#${column}` : JSON.stringify(column)} in the header row (columns: ${names}). Choose the column that holds the text.`);
      }
      continue;
    }
    if (rec.fields.length === 1 && rec.fields[0] === '') continue; // a blank line
    if (col >= rec.fields.length) {
      throw new CorpusFormatError(file, rec.line, `${file}, line ${rec.line}: the row has ${rec.fields.length} fields but the text is column ${col + 1} of ${header.length}.`);
    }
    yield { text: rec.fields[col], end: rec.end };
  }
}

/**
 * Tokenizes the files into one stream: each document's ids, then EOS. Reads one file at a time;
 * progress is reported in input bytes after every chunk. Throws EmptyCorpusError when no
 * document has any text, CorpusFormatError / CorpusEncodingError / BinaryCorpusError naming
 * the file (and line or byte offset) of bad input.
 */
export async function tokenizeCorpus(
  files: readonly NamedFile[],
  tokenizer: Tokenizer,
  options: CorpusOptions = {},
  onProgress: ProgressFn = () => {},
): Promise<TokenizedCorpus> {
  const chunkChars = options.chunkChars ?? DEFAULT_CHUNK_CHARS;
  if (!(Number.isInteger(chunkChars) && chunkChars >= 1)) throw new RangeError(`chunkChars must be a positive integer, got ${chunkChars}.`);
  const readChunkBytes = options.readChunkBytes ?? DEFAULT_READ_CHUNK_BYTES;
  const jsonlField = options.jsonlField ?? 'text';
  const csvColumn = options.csvColumn ?? 'text';
  const signal = options.signal;

  const sizes = files.map(knownSize);
  let total = sizes.reduce<number>((s, x) => s + (x ?? 0), 0);
  let doneBefore = 0; // bytes of the files already finished
  let lastReported = 0;

  const tokens = new Growable<TokenArray>(tokenArrayFor(tokenizer.vocabSize, 1 << 16), (n) => tokenArrayFor(tokenizer.vocabSize, n));
  const docStarts = new Growable<Uint32Array>(new Uint32Array(1024), (n) => new Uint32Array(n));
  docStarts.push(0);
  const stats: CorpusStats = { files: files.length, documents: 0, emptyDocuments: 0, characters: 0, bytes: 0, tokens: 0 };
  onProgress(0, total);

  // One document's ids, cut into pieces of at most ~chunkChars at safe cuts; `onPiece` gets the
  // position reached after each piece.
  const encodeDocument = (d: string, onPiece?: (pos: number) => void): void => {
    stats.documents++;
    stats.characters += codePoints(d);
    let pos = 0;
    while (pos < d.length) {
      signal?.throwIfAborted();
      let end = d.length;
      if (tokenizer.chunkable && d.length - pos > chunkChars) {
        end = safeCut(d, pos, pos + chunkChars, tokenizer.addedTokens);
        if (end < 0) {
          // no safe cut in the window: take the first one after it, else the rest
          end = pos + chunkChars + 1;
          while (end < d.length && !isSafeCut(d, end, tokenizer.addedTokens)) end++;
        }
      }
      const piece = d.slice(pos, end);
      stats.bytes += utf8Length(piece);
      tokens.pushAll(tokenizer.encode(piece));
      pos = end;
      onPiece?.(pos);
    }
    endDocument();
  };
  const endDocument = (): void => {
    tokens.push(tokenizer.eosId);
    if (tokens.length > 0xffffffff) throw new RangeError('The corpus has more than 2^32 tokens; split it into several runs.');
    docStarts.push(tokens.length);
  };

  // Longest added token: a cut in streamed text must see a whole added token after it (safeCut
  // refuses a newline cut right before one), so the last maxAdded + 1 characters wait for more.
  const maxAdded = tokenizer.addedTokens.reduce((m, a) => Math.max(m, a.length), 0);

  /**
   * A .txt/.md (one document) or .jsonl (one per line) file read chunk by chunk: only the text not
   * yet tokenized (a partial line, or the tail after the last safe cut) is kept between chunks.
   */
  const streamFile = async (src: ByteSource, name: string, kind: 'text' | 'jsonl'): Promise<void> => {
    let pending = '';
    let line = 0; // .jsonl: lines read so far, for the line number in errors
    let textChars = 0; // text: characters of the document already tokenized
    let scanned = 0; // text: pending[..scanned) has no safe cut past the current window
    const textPiece = (piece: string): void => {
      textChars += piece.length;
      stats.bytes += utf8Length(piece);
      stats.characters += codePoints(piece);
      tokens.pushAll(tokenizer.encode(piece));
    };
    // Tokenizes pending text up to the last safe cut with its look-ahead in view (all of it at the
    // end of the file). A tokenizer that is not chunkable gets the whole text at the end.
    const cutText = (final: boolean): void => {
      if (!tokenizer.chunkable) return;
      const room = final ? pending.length : pending.length - 1 - maxAdded; // largest cut to try
      let pos = 0;
      while (room - pos > chunkChars) {
        signal?.throwIfAborted();
        let end = safeCut(pending, pos, pos + chunkChars, tokenizer.addedTokens);
        if (end < 0) {
          // no safe cut in the window: the first one after it, else wait for more text
          end = Math.max(pos + chunkChars + 1, scanned);
          while (end <= room && !isSafeCut(pending, end, tokenizer.addedTokens)) end++;
          if (end > room) {
            scanned = end;
            break;
          }
        }
        textPiece(pending.slice(pos, end));
        pos = end;
      }
      if (pos > 0) {
        pending = pending.slice(pos);
        scanned = Math.max(0, scanned - pos);
      }
    };
    const jsonlDocument = (raw: string): void => {
      const d = jsonlLine(raw, name, ++line, jsonlField);
      if (d === undefined) return;
      if (d.length === 0) stats.emptyDocuments++;
      else encodeDocument(d);
    };

    for await (const { text, bytesRead } of decodeChunks(src, readChunkBytes, signal)) {
      pending += text;
      if (kind === 'jsonl') {
        const last = pending.lastIndexOf('\n');
        if (last >= 0) {
          for (let start = 0; start <= last;) {
            const end = pending.indexOf('\n', start);
            jsonlDocument(pending.slice(start, end));
            start = end + 1;
          }
          pending = pending.slice(last + 1);
        }
      } else cutText(false);
      onProgress(doneBefore + bytesRead, total);
    }
    if (kind === 'jsonl') {
      if (pending.length) jsonlDocument(pending);
      return;
    }
    cutText(true);
    if (textChars + pending.length === 0) {
      stats.emptyDocuments++;
      return;
    }
    stats.documents++;
    if (pending.length) textPiece(pending);
    endDocument();
  };

  for (let f = 0; f < files.length; f++) {
    signal?.throwIfAborted();
    const file = files[f];
    const fileKind = kindOf(file.name);
    const src = fileKind === 'text' || fileKind === 'jsonl' ? chunkedSourceOf(file) : undefined;
    if (src) {
      await streamFile(src, file.name, fileKind as 'text' | 'jsonl');
      if (sizes[f] !== src.size) total += src.size - (sizes[f] ?? 0);
      doneBefore += src.size;
      lastReported = doneBefore;
      onProgress(doneBefore, total);
      continue;
    }
    let text: string;
    let fileBytes: number;
    if ('text' in file && typeof file.text === 'string') {
      text = await readText(file);
      fileBytes = sizes[f] ?? 0;
    } else {
      const bytes = await readAllBytes(file);
      fileBytes = bytes.length;
      if (sizes[f] === undefined) total += fileBytes;
      else if (sizes[f] !== fileBytes) total += fileBytes - (sizes[f] as number); // size was stale
      if (kindOf(file.name) === 'tokens') {
        // A nanoGPT / llm.c token file is already a token stream (its EOS ids included): one
        // document, taken as it is.
        const ids = readTokenFile(bytes, file.name, tokenizer.vocabSize).tokens;
        if (ids.length) {
          tokens.pushAll(ids);
          docStarts.push(tokens.length);
          stats.documents++;
        } else stats.emptyDocuments++;
        doneBefore += fileBytes;
        lastReported = doneBefore;
        onProgress(doneBefore, total);
        continue;
      }
      text = decodeUtf8(bytes, file.name);
    }
    const report = (pos: number) => {
      const done = doneBefore + Math.round(fileBytes * (text.length === 0 ? 1 : pos / text.length));
      // At most ~1000 reports per corpus: a .jsonl of a million lines must not post a million events.
      if (done - lastReported >= Math.max(1 << 16, total / 1000)) {
        lastReported = done;
        onProgress(done, total);
      }
    };

    const kind = kindOf(file.name);
    const docs: Iterable<Doc> = kind === 'jsonl' ? jsonlDocs(text, file.name, jsonlField)
      : kind === 'csv' ? csvDocs(text, file.name, csvColumn)
        : [{ text, end: text.length }];
    for (const doc of docs) {
      const d = doc.text;
      if (d.length === 0) {
        stats.emptyDocuments++;
        continue;
      }
      encodeDocument(d, kind === 'text' ? report : undefined);
      if (kind !== 'text') report(doc.end);
    }
    doneBefore += fileBytes;
    lastReported = doneBefore;
    onProgress(doneBefore, total);
  }

  if (stats.documents === 0) {
    throw new EmptyCorpusError(files.length === 0
      ? 'No corpus files were given. Add one or more text files (.txt, .md, .jsonl, .csv).'
      : `The corpus is empty: ${files.map((f) => f.name).slice(0, 5).join(', ')}${files.length > 5 ? ', …' : ''} hold${files.length === 1 ? 's' : ''} no text. Add files with text in them.`);
  }
  stats.tokens = tokens.length;
  if (options.contextLength !== undefined) {
    stats.contextLength = options.contextLength;
    stats.windows = windowCount(stats.tokens, options.contextLength);
  }
  return { tokens: tokens.done(), docStarts: docStarts.done(), stats };
}

export interface SplitOptions {
  /** fraction of documents (or, for a single document, of windows) held out for validation */
  valFraction: number;
  /** seed of the document shuffle */
  seed: number;
  /** T: a single document is cut at a multiple of T */
  contextLength: number;
}

export interface CorpusSplit {
  train: TokenArray;
  val: TokenArray;
  trainDocuments: number;
  valDocuments: number;
  /** windows of T in each part */
  trainWindows: number;
  valWindows: number;
  /** 'documents': whole documents on each side; 'window': one document cut at a window boundary */
  by: 'documents' | 'window';
  /** set when the corpus is a single document, so the split is inside it */
  singleDocument: boolean;
  /** what was done and why, for the UI and the CLI, when it is not a plain document split */
  message?: string;
}

function concatDocs(corpus: TokenizedCorpus, docs: readonly number[]): TokenArray {
  let n = 0;
  for (const d of docs) n += corpus.docStarts[d + 1] - corpus.docStarts[d];
  const out = corpus.tokens instanceof Uint16Array ? new Uint16Array(n) : new Uint32Array(n);
  let o = 0;
  for (const d of docs) {
    const part = corpus.tokens.subarray(corpus.docStarts[d], corpus.docStarts[d + 1]);
    out.set(part, o);
    o += part.length;
  }
  return out;
}

/**
 * Train/validation split. With two or more documents, a seeded shuffle picks
 * round(D·valFraction) documents for validation, at least one and at most D−1 (each side keeps
 * its documents in corpus order). A single document is cut at a window boundary instead: the
 * last round(W·valFraction) windows (at least one, leaving at least one) validate, and the two
 * parts share one token, the last target of training and the first input of validation, so every
 * target is scored on exactly one side. valFraction 0 keeps everything for training.
 */
export function splitCorpus(corpus: TokenizedCorpus, options: SplitOptions): CorpusSplit {
  const { valFraction: f, seed, contextLength: T } = options;
  if (!(f >= 0 && f < 1)) throw new CorpusSplitError(`The validation fraction must be in [0, 1), got ${f}.`);
  if (!(Number.isInteger(T) && T >= 1)) throw new CorpusSplitError(`The context length must be a positive integer, got ${T}.`);
  const D = corpus.docStarts.length - 1;
  const all = corpus.tokens;
  const empty = all instanceof Uint16Array ? new Uint16Array(0) : new Uint32Array(0);
  const result = (train: TokenArray, val: TokenArray, trainDocuments: number, valDocuments: number, by: CorpusSplit['by'], message?: string): CorpusSplit => ({
    train, val, trainDocuments, valDocuments,
    trainWindows: windowCount(train.length, T), valWindows: windowCount(val.length, T),
    by, singleDocument: D === 1, ...(message === undefined ? {} : { message }),
  });

  if (f === 0) return result(all.slice(), empty, D, 0, 'documents');
  if (D >= 2) {
    const order = Array.from({ length: D }, (_, i) => i);
    const rng = new SeededRng(seed);
    for (let i = D - 1; i > 0; i--) { // Fisher–Yates
      const j = rng.nextInt(i + 1);
      const t = order[i];
      order[i] = order[j];
      order[j] = t;
    }
    const nVal = Math.min(D - 1, Math.max(1, Math.round(D * f)));
    const val = order.slice(0, nVal).sort((a, b) => a - b);
    const train = order.slice(nVal).sort((a, b) => a - b);
    return result(concatDocs(corpus, train), concatDocs(corpus, val), train.length, val.length, 'documents');
  }

  const N = all.length;
  const W = windowCount(N, T);
  if (W < 2) {
    return result(all.slice(), empty, 1, 0, 'window',
      `The corpus is a single document of ${N} tokens: ${W} window${W === 1 ? '' : 's'} at T=${T}, too few to hold out a validation window. Training on all of it without validation; add more text or more documents for a validation split.`);
  }
  const valW = Math.min(W - 1, Math.max(1, Math.round(W * f)));
  const cut = (W - valW) * T;
  return result(all.slice(0, cut + 1), all.slice(cut), 1, 1, 'window',
    `The corpus is a single document, so it was split inside it at a window boundary: the first ${W - valW} windows of T=${T} train, the last ${valW} validate (tokens ${cut}..${N - 1}).`);
}
