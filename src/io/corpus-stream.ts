// Streaming decode of a corpus file that can be read in pieces (a ByteSource, or a browser
// Blob/File through blobSource): fixed-size byte chunks go through one streaming, fatal
// TextDecoder, so a file of hundreds of MB never exists whole as bytes or as one string. The
// checks of decodeUtf8 (src/io/utf8.ts) are kept with the same errors and messages: a UTF-16
// byte-order mark or a NUL in the first KB refuses the file, a UTF-8 BOM is dropped, and invalid
// UTF-8 is reported at its absolute byte offset in the file (and line), across chunk boundaries.
import type { ByteSource } from './bytes.ts';
import { blobSource } from './bytes.ts';
import { BINARY_SNIFF_BYTES, BinaryCorpusError, CorpusEncodingError, type NamedFile, firstInvalidUtf8 } from './utf8.ts';

/** Bytes read from a file at a time when it can be read in pieces. */
export const DEFAULT_READ_CHUNK_BYTES = 8 << 20;

/**
 * The file as a ByteSource when it can be read in pieces (a ByteSource, or anything Blob-like with
 * `slice`), else undefined: in-memory text and `{ bytes() }` files are read whole.
 */
export function chunkedSourceOf(f: NamedFile): ByteSource | undefined {
  if ('text' in f && typeof f.text === 'string') return undefined;
  if ('read' in f && typeof f.read === 'function' && typeof f.size === 'number') return f;
  const blob = f as Partial<Blob> & { name: string };
  if (typeof blob.slice === 'function' && typeof blob.size === 'number' && typeof blob.arrayBuffer === 'function') {
    return blobSource(blob as Blob, f.name);
  }
  return undefined;
}

/**
 * The bytes at the end of `prev ++ chunk` that begin a UTF-8 sequence the data does not finish
 * (0 to 3 bytes): what a streaming decoder holds back for the next chunk. `prev` is at most 3 bytes.
 */
function unfinishedTail(prev: Uint8Array, chunk: Uint8Array): Uint8Array {
  let tail = chunk.subarray(Math.max(0, chunk.length - 3));
  if (chunk.length < 3 && prev.length) {
    const both = new Uint8Array(prev.length + chunk.length);
    both.set(prev);
    both.set(chunk, prev.length);
    tail = both.subarray(Math.max(0, both.length - 3));
  }
  for (let k = 1; k <= tail.length; k++) {
    const b = tail[tail.length - k];
    if ((b & 0xc0) === 0x80) continue; // continuation byte: look further back for the lead
    const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    return need > k ? tail.slice(tail.length - k) : new Uint8Array(0);
  }
  return new Uint8Array(0);
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** '\n' bytes in u8[from, to). */
function countNewlines(u8: Uint8Array, from = 0, to = u8.length): number {
  let n = 0;
  for (let i = u8.indexOf(0x0a, from); i >= 0 && i < to; i = u8.indexOf(0x0a, i + 1)) n++;
  return n;
}

const hex = (b: number): string => b.toString(16).toUpperCase().padStart(2, '0');

/** One decoded chunk: its text (possibly empty) and the file's bytes read so far. */
export interface DecodedChunk {
  text: string;
  bytesRead: number;
}

/**
 * Decodes `src` chunk by chunk (each read at most `chunkBytes`, at least BINARY_SNIFF_BYTES so the
 * binary sniff sees the first KB in one piece). Concatenating the yielded texts gives exactly
 * decodeUtf8 of the whole file; the same files are refused with the same errors.
 */
export async function* decodeChunks(src: ByteSource, chunkBytes: number, signal?: AbortSignal): AsyncGenerator<DecodedChunk> {
  if (!(Number.isInteger(chunkBytes) && chunkBytes >= BINARY_SNIFF_BYTES)) {
    throw new RangeError(`The read chunk size must be an integer of at least ${BINARY_SNIFF_BYTES} bytes, got ${chunkBytes}.`);
  }
  const file = src.name;
  // fatal: invalid UTF-8 throws instead of becoming U+FFFD; ignoreBOM: the leading BOM is
  // dropped by hand below, and a later U+FEFF is text that stays (as in decodeUtf8).
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  let carry: Uint8Array = new Uint8Array(0); // the unfinished sequence the decoder holds back
  let newlines = 0; // '\n' bytes before the current chunk, for the line in error messages
  const fail = (bytes: Uint8Array, bytesStart: number): never => {
    // bytes = carry ++ chunk, starting at file offset bytesStart, holds the first bad sequence.
    let bad = firstInvalidUtf8(bytes);
    if (bad < 0) bad = 0; // not reached: the decoder refused these bytes
    const offset = bytesStart + bad;
    const line = newlines + countNewlines(bytes, 0, bad) + 1;
    const shown = Array.from(bytes.subarray(bad, bad + 4), hex).join(' ');
    throw new CorpusEncodingError(file, offset,
      `${file} is not valid UTF-8: byte offset ${offset} (line ${line}) starts an invalid sequence (${shown}). ` +
      'It may be Latin-1 or Windows-1252; re-save it as UTF-8 and add it again.');
  };

  for (let offset = 0; offset < src.size;) {
    signal?.throwIfAborted();
    const length = Math.min(chunkBytes, src.size - offset);
    let chunk = await src.read(offset, length);
    let chunkStart = offset;
    if (offset === 0) {
      if (chunk.length >= 2 && ((chunk[0] === 0xff && chunk[1] === 0xfe) || (chunk[0] === 0xfe && chunk[1] === 0xff))) {
        throw new CorpusEncodingError(file, 0, `${file} is UTF-16 text (it starts with a UTF-16 byte-order mark). Save it as UTF-8 and add it again.`);
      }
      const sniff = Math.min(chunk.length, BINARY_SNIFF_BYTES);
      for (let i = 0; i < sniff; i++) {
        if (chunk[i] === 0) {
          throw new BinaryCorpusError(file, `${file} looks like a binary file (a NUL byte at offset ${i}), not text. Add plain-text files (.txt, .md, .jsonl, .csv) in UTF-8.`);
        }
      }
      if (chunk.length >= 3 && chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf) {
        chunk = chunk.subarray(3);
        chunkStart = 3;
      }
    }
    offset += length;
    let text: string;
    try {
      text = decoder.decode(chunk, { stream: true });
    } catch {
      return fail(concat(carry, chunk), chunkStart - carry.length);
    }
    newlines += countNewlines(chunk);
    carry = unfinishedTail(carry, chunk);
    yield { text, bytesRead: offset };
  }
  // End of file: a sequence still unfinished is invalid at its first byte.
  try {
    const rest = decoder.decode();
    if (rest) yield { text: rest, bytesRead: src.size };
  } catch {
    fail(carry, src.size - carry.length);
  }
}
