// Named files and their text: reading every byte of a file (in-memory, browser File/Blob, or a
// ByteSource), checking that it is UTF-8 text rather than a binary file, and decoding it.
// A byte-order mark is dropped; CRLF and every other character are kept as they are.
import { StudioError } from '../engine/errors.ts';
import type { ByteSource } from './bytes.ts';

/** A file that is not valid UTF-8; the message names the file and the first bad byte. */
export class CorpusEncodingError extends StudioError {
  readonly file: string;
  readonly offset: number;
  constructor(file: string, offset: number, message: string) {
    super(message);
    this.file = file;
    this.offset = offset;
  }
}

/** A file that looks binary (NUL bytes near the start), not text. */
export class BinaryCorpusError extends StudioError {
  readonly file: string;
  constructor(file: string, message: string) {
    super(message);
    this.file = file;
  }
}

/**
 * A named file as the page and the CLI hand it over: something with `bytes()` (Node's
 * readFile wrapped, newer browsers' File), a browser File/Blob (`arrayBuffer()`), a ByteSource,
 * or text already in memory.
 */
export type NamedFile =
  | { name: string; size?: number; bytes(): Promise<Uint8Array> }
  | { name: string; size?: number; arrayBuffer(): Promise<ArrayBuffer> }
  | ByteSource
  | { name: string; text: string };

/** How many leading bytes are searched for NUL to call a file binary. */
export const BINARY_SNIFF_BYTES = 1024;

/** The file name without any folder part ("gpt2/tokenizer.json" → "tokenizer.json"). */
export function baseName(name: string): string {
  const i = Math.max(name.lastIndexOf('/'), name.lastIndexOf('\\'));
  return i < 0 ? name : name.slice(i + 1);
}

/** The size in bytes when known without reading the file (UTF-8 length for in-memory text). */
export function knownSize(f: NamedFile): number | undefined {
  if ('text' in f && typeof f.text === 'string') return utf8Length(f.text);
  return 'size' in f && typeof f.size === 'number' ? f.size : undefined;
}

/** Every byte of the file. */
export async function readAllBytes(f: NamedFile): Promise<Uint8Array> {
  if ('text' in f && typeof f.text === 'string') return new TextEncoder().encode(f.text);
  if ('bytes' in f && typeof f.bytes === 'function') return f.bytes();
  if ('read' in f && typeof f.read === 'function') return f.read(0, f.size);
  if ('arrayBuffer' in f && typeof f.arrayBuffer === 'function') return new Uint8Array(await f.arrayBuffer());
  throw new TypeError(`${f.name}: not a readable file (expected bytes(), arrayBuffer(), read() or text).`);
}

/** The number of bytes `s` takes in UTF-8 (lone surrogates count as U+FFFD, 3 bytes). */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/**
 * Offset of the first byte that does not start a well-formed UTF-8 sequence, or -1 when all of
 * `bytes` is well formed. Well-formed sequences are those of the Unicode Standard, Table 3-7
 * (no overlong forms, no surrogates U+D800..DFFF, nothing above U+10FFFF); a sequence cut off by
 * the end of the data is ill formed at its first byte.
 */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  const n = bytes.length;
  let i = 0;
  while (i < n) {
    const b = bytes[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) need = 1;
    else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      if (b === 0xe0) lo = 0xa0; // overlong below U+0800
      else if (b === 0xed) hi = 0x9f; // surrogates
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      if (b === 0xf0) lo = 0x90; // overlong below U+10000
      else if (b === 0xf4) hi = 0x8f; // above U+10FFFF
    } else return i; // 80..C1 (continuation or overlong lead), F5..FF
    if (i + need > n - 1) return i; // cut off by the end of the data
    const b1 = bytes[i + 1];
    if (b1 < lo || b1 > hi) return i;
    for (let k = 2; k <= need; k++) {
      const bk = bytes[i + k];
      if (bk < 0x80 || bk > 0xbf) return i;
    }
    i += need + 1;
  }
  return -1;
}

/** The 1-based line of byte `offset` (count of '\n' before it, plus one), for messages. */
function lineOf(bytes: Uint8Array, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset; i++) if (bytes[i] === 0x0a) line++;
  return line;
}

const hex = (b: number): string => b.toString(16).toUpperCase().padStart(2, '0');

/**
 * The text of a file's bytes: refuses binary files (NUL in the first KB, or a UTF-16 byte-order
 * mark) and bytes that are not UTF-8, naming the file and the offset; drops a UTF-8 BOM.
 */
export function decodeUtf8(bytes: Uint8Array, file: string): string {
  if (bytes.length >= 2 && ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff))) {
    throw new CorpusEncodingError(file, 0, `${file} is UTF-16 text (it starts with a UTF-16 byte-order mark). Save it as UTF-8 and add it again.`);
  }
  const sniff = Math.min(bytes.length, BINARY_SNIFF_BYTES);
  for (let i = 0; i < sniff; i++) {
    if (bytes[i] === 0) {
      throw new BinaryCorpusError(file, `${file} looks like a binary file (a NUL byte at offset ${i}), not text. Add plain-text files (.txt, .md, .jsonl, .csv) in UTF-8.`);
    }
  }
  const start = bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
  const body = bytes.subarray(start);
  const bad = firstInvalidUtf8(body);
  if (bad >= 0) {
    const offset = bad + start;
    const shown = Array.from(bytes.subarray(offset, offset + 4), hex).join(' ');
    throw new CorpusEncodingError(file, offset,
      `${file} is not valid UTF-8: byte offset ${offset} (line ${lineOf(bytes, offset)}) starts an invalid sequence (${shown}). ` +
      'It may be Latin-1 or Windows-1252; re-save it as UTF-8 and add it again.');
  }
  // ignoreBOM: the leading BOM was dropped above; a second U+FEFF is text and stays.
  return new TextDecoder('utf-8', { ignoreBOM: true }).decode(body);
}

/** The text of a named file (see decodeUtf8); in-memory text only loses a leading BOM. */
export async function readText(f: NamedFile): Promise<string> {
  if ('text' in f && typeof f.text === 'string') return f.text.startsWith('\ufeff') ? f.text.slice(1) : f.text;
  return decodeUtf8(await readAllBytes(f), f.name);
}
