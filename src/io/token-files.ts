// Token files, as the two projects the studio is compared with write them (docs/ARCHITECTURE.md,
// "Corpora"):
//   - nanoGPT's train.bin / val.bin: raw little-endian uint16 ids, nothing else
//     (data/*/prepare.py: `np.array(ids, dtype=np.uint16).tofile(...)`);
//   - llm.c's: a header of 256 little-endian int32 (magic 20240520, version 1, token count,
//     the rest zero), then the ids as uint16 (dev/data/data_common.py, write_datafile).
// The format of a file is told by the header magic. prepare.ts turns corpus files into the
// train/validation id arrays these files hold (the CLI's `prepare` command writes them).
import { StudioError } from '../engine/errors.ts';

/** A token file whose byte length cannot be whole uint16 ids, or too short for its header. */
export class TokenFileLengthError extends StudioError {}

/** An llm.c file whose header count disagrees with the ids that follow. */
export class TokenCountMismatchError extends StudioError {}

/** An llm.c header with the right magic but a version this reader does not know. */
export class UnsupportedTokenFileError extends StudioError {}

/** A token id at or above the vocabulary size (or not a uint16 when writing). */
export class TokenIdRangeError extends StudioError {}

/** A vocabulary whose ids do not fit the uint16 token files. */
export class VocabTooLargeError extends StudioError {}

export type TokenFileFormat = 'nanogpt' | 'llmc';

export const LLMC_MAGIC = 20240520;
export const LLMC_VERSION = 1;
/** 256 int32 */
export const LLMC_HEADER_BYTES = 1024;
/** ids of a uint16 file are below this */
export const UINT16_VOCAB_LIMIT = 65536;

const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** 'llmc' when the file starts with llm.c's magic and is long enough for its header, else 'nanogpt'. */
export function detectTokenFileFormat(bytes: Uint8Array): TokenFileFormat {
  if (bytes.length < LLMC_HEADER_BYTES) return 'nanogpt';
  const magic = new DataView(bytes.buffer, bytes.byteOffset, 4).getInt32(0, true);
  // A nanoGPT file that began with this magic would start with ids 55432, 308; 55432 is no GPT-2
  // id (V = 50257), so for GPT-2 the test cannot mistake one format for the other.
  return magic === LLMC_MAGIC ? 'llmc' : 'nanogpt';
}

/** `count` little-endian uint16 at byte `offset`, as a fresh Uint16Array. */
function readU16(bytes: Uint8Array, offset: number, count: number): Uint16Array {
  if (HOST_LE) return new Uint16Array(bytes.buffer.slice(bytes.byteOffset + offset, bytes.byteOffset + offset + 2 * count));
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, 2 * count);
  const out = new Uint16Array(count);
  for (let i = 0; i < count; i++) out[i] = view.getUint16(2 * i, true);
  return out;
}

/** Throws TokenIdRangeError naming the first id ≥ vocabSize. */
export function checkTokenIds(tokens: ArrayLike<number>, vocabSize: number, name: string): void {
  for (let i = 0; i < tokens.length; i++) {
    if (tokens[i] >= vocabSize) {
      throw new TokenIdRangeError(`${name}: token ${i} is id ${tokens[i]}, but the vocabulary has ${vocabSize} ids. The file was made with another tokenizer; prepare it again with this model's tokenizer.`);
    }
  }
}

/**
 * Reads a token file of either format (told by the header magic). With `vocabSize`, every id is
 * checked against it.
 */
export function readTokenFile(bytes: Uint8Array, name: string, vocabSize?: number): { format: TokenFileFormat; tokens: Uint16Array } {
  const format = detectTokenFileFormat(bytes);
  let tokens: Uint16Array;
  if (format === 'llmc') {
    const header = new DataView(bytes.buffer, bytes.byteOffset, LLMC_HEADER_BYTES);
    const version = header.getInt32(4, true);
    if (version !== LLMC_VERSION) {
      throw new UnsupportedTokenFileError(`${name}: llm.c token file version ${version}; only version ${LLMC_VERSION} (uint16 ids, GPT-2) is read here.`);
    }
    const count = header.getInt32(8, true);
    const have = bytes.length - LLMC_HEADER_BYTES;
    if (count < 0 || have !== 2 * count) {
      throw new TokenCountMismatchError(`${name}: the llm.c header says ${count} tokens (${LLMC_HEADER_BYTES + 2 * count} bytes), but the file has ${bytes.length} bytes` +
        `${have < 2 * count ? ' (truncated: copy or download it again)' : ''}.`);
    }
    tokens = readU16(bytes, LLMC_HEADER_BYTES, count);
  } else {
    if (bytes.length % 2 !== 0) {
      throw new TokenFileLengthError(`${name}: ${bytes.length} bytes is an odd length, so it is not whole uint16 token ids (nanoGPT's .bin format). The file may be truncated.`);
    }
    tokens = readU16(bytes, 0, bytes.length / 2);
  }
  if (vocabSize !== undefined) checkTokenIds(tokens, vocabSize, name);
  return { format, tokens };
}

function checkU16(tokens: ArrayLike<number>, what: string): void {
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (!(Number.isInteger(t) && t >= 0 && t < UINT16_VOCAB_LIMIT)) {
      throw new TokenIdRangeError(`${what}: token ${i} is ${t}, which does not fit a uint16 token file (ids 0..65535).`);
    }
  }
}

function writeU16(out: Uint8Array, offset: number, tokens: ArrayLike<number>): void {
  const view = new DataView(out.buffer, out.byteOffset + offset, 2 * tokens.length);
  for (let i = 0; i < tokens.length; i++) view.setUint16(2 * i, tokens[i], true);
}

/** nanoGPT's format: the ids as raw little-endian uint16. */
export function writeNanoGptTokens(tokens: ArrayLike<number>): Uint8Array {
  checkU16(tokens, 'nanoGPT token file');
  const out = new Uint8Array(2 * tokens.length);
  writeU16(out, 0, tokens);
  return out;
}

/** llm.c's format: 256 int32 header (magic, version 1, count), then uint16 ids. */
export function writeLlmcTokens(tokens: ArrayLike<number>): Uint8Array {
  checkU16(tokens, 'llm.c token file');
  if (tokens.length > 0x7fffffff) throw new TokenCountMismatchError(`llm.c token files count tokens in an int32; ${tokens.length} is too many. Split the corpus.`);
  const out = new Uint8Array(LLMC_HEADER_BYTES + 2 * tokens.length);
  const header = new DataView(out.buffer, 0, LLMC_HEADER_BYTES);
  header.setInt32(0, LLMC_MAGIC, true);
  header.setInt32(4, LLMC_VERSION, true);
  header.setInt32(8, tokens.length, true);
  writeU16(out, LLMC_HEADER_BYTES, tokens);
  return out;
}
