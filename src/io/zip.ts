// A streaming ZIP writer (entries stored, not compressed) that never holds the archive: it yields
// the archive as a sequence of chunks, entry by entry, keeping only the central directory's few
// bytes per entry. Used to download a fine-tuned model folder from the page as one .zip.
//
// Format: PKWARE's APPNOTE.TXT, version 6.3.10 (https://pkware.cachefly.net/webdocs/casestudies/APPNOTE.TXT):
//   4.3.7  local file header           4.3.9  data descriptor (after data whose CRC was unknown)
//   4.3.12 central directory header    4.3.16 end of central directory record
//   4.3.14 / 4.3.15 ZIP64 end of central directory record and locator
//   4.5.3  ZIP64 extended information extra field (header id 0x0001)
//   4.4.4  general purpose flag bit 3 (CRC and sizes follow the data) and bit 11 (UTF-8 names)
// Model files are float32 noise to a compressor, so entries are stored (method 0): the archive is
// readable by every unzip tool and its size is known before the first byte is written.
//
// ZIP64 is used exactly when needed (an entry of 4 GiB or more, an offset past 4 GiB, more than
// 65,535 entries), or always with `zip64: 'always'`. A streamed entry whose size was not declared
// cannot grow past 4 GiB: its local header was written without ZIP64 fields, so that is an error.
// For a streamed entry that needs ZIP64 the local header carries 0xFFFFFFFF sizes and a ZIP64 extra
// field of zeros, and the data descriptor has 8-byte sizes: what CPython's zipfile writes for a
// stream opened with force_zip64=True.
import { StudioError } from '../engine/errors.ts';

/** A ZIP that cannot be written as asked: a bad or repeated name, a size that was not kept, … */
export class ZipError extends StudioError {}

export interface ZipEntry {
  /** path inside the archive, '/'-separated, e.g. 'gpt2-finetuned/model.safetensors' */
  name: string;
  /**
   * The entry's bytes, or a function giving its chunks, called when the entry's turn comes (so a
   * large entry is produced only while it is written). Chunks are passed on without a copy.
   */
  data: Uint8Array | (() => AsyncIterable<Uint8Array> | Iterable<Uint8Array>);
  /** size in bytes of a streamed entry: required above 4 GiB and for zipSize; checked when given */
  size?: number;
  /** modification time stored in the entry (MS-DOS resolution: 2 s); default: now */
  modified?: Date;
}

export interface ZipProgress {
  /** archive bytes yielded so far */
  bytes: number;
  /** the archive's size, when every entry's size is known; else null */
  total: number | null;
  /** the entry being written */
  entry: string;
}

export interface ZipOptions {
  /** 'auto' (default): ZIP64 records only where the format needs them; 'always': on every entry */
  zip64?: 'auto' | 'always';
  signal?: AbortSignal;
  /** called after each chunk is yielded */
  onProgress?: (p: ZipProgress) => void;
  /**
   * Sizes and offsets from this value up get ZIP64 fields. Default 0xFFFFFFFF, the format's limit;
   * tests lower it to run the ZIP64 paths on small archives (the output stays a valid ZIP64 file).
   */
  zip64Limit?: number;
}

// ---- CRC-32 (ISO 3309 / ITU-T V.42, polynomial 0xEDB88320 reflected), APPNOTE 4.4.7 ----------

/** Eight 256-entry tables for slicing-by-8 (Kounavis & Berry, "A Systematic Approach to Building
 * High Performance Software-based CRC Generators", 2005): 8 input bytes per step. */
const CRC_TABLES: Uint32Array[] = (() => {
  const t = Array.from({ length: 8 }, () => new Uint32Array(256));
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[0][n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    for (let k = 1; k < 8; k++) t[k][n] = (t[0][t[k - 1][n] & 0xff] ^ (t[k - 1][n] >>> 8)) >>> 0;
  }
  return t;
})();

/** Continues a CRC-32 over `bytes`; start with crc = 0. */
export function crc32(bytes: Uint8Array, crc = 0): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = CRC_TABLES;
  let c = ~crc >>> 0;
  let i = 0;
  const n = bytes.length;
  for (; i + 8 <= n; i += 8) {
    const a = (c ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24))) >>> 0;
    c = t7[a & 0xff] ^ t6[(a >>> 8) & 0xff] ^ t5[(a >>> 16) & 0xff] ^ t4[a >>> 24]
      ^ t3[bytes[i + 4]] ^ t2[bytes[i + 5]] ^ t1[bytes[i + 6]] ^ t0[bytes[i + 7]];
  }
  for (; i < n; i++) c = t0[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

// ---- layout ----------------------------------------------------------------------------------

const SIG_LOCAL = 0x04034b50;
const SIG_DESCRIPTOR = 0x08074b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_EOCD = 0x06054b50;
const U32_MAX = 0xffffffff;
const U16_MAX = 0xffff;
/** "version made by": upper byte 3 = UNIX (so external attributes are Unix modes), 4.5 = ZIP64 */
const MADE_BY = (3 << 8) | 45;
/** -rw-r--r-- regular file, in the upper 16 bits of the external attributes (Info-ZIP's convention) */
const UNIX_FILE_MODE = 0o100644;
const FLAG_DESCRIPTOR = 1 << 3;
const FLAG_UTF8 = 1 << 11;

const utf8 = new TextEncoder();

/** Little-endian writer over a fixed-size buffer. */
class Bytes {
  readonly u8: Uint8Array<ArrayBuffer>;
  private readonly dv: DataView;
  private o = 0;
  constructor(n: number) {
    this.u8 = new Uint8Array(n);
    this.dv = new DataView(this.u8.buffer);
  }
  u16(v: number): this {
    this.dv.setUint16(this.o, v, true);
    this.o += 2;
    return this;
  }
  u32(v: number): this {
    this.dv.setUint32(this.o, v >>> 0, true);
    this.o += 4;
    return this;
  }
  u64(v: number): this {
    this.dv.setBigUint64(this.o, BigInt(v), true);
    this.o += 8;
    return this;
  }
  bytes(b: Uint8Array): this {
    this.u8.set(b, this.o);
    this.o += b.length;
    return this;
  }
  done(): Uint8Array<ArrayBuffer> {
    if (this.o !== this.u8.length) throw new ZipError(`zip: record of ${this.u8.length} bytes filled to ${this.o}`);
    return this.u8;
  }
}

/** MS-DOS time and date (APPNOTE 4.4.6), local time as DOS had it; clamped to 1980 … 2107. */
function dosDateTime(d: Date): { time: number; date: number } {
  const y = d.getFullYear();
  if (y < 1980) return { time: 0, date: (1 << 5) | 1 }; // 1980-01-01 00:00
  if (y > 2107) return { time: (23 << 11) | (59 << 5) | 29, date: (127 << 9) | (12 << 5) | 31 };
  return {
    time: (d.getHours() << 11) | (d.getMinutes() << 5) | (d.getSeconds() >> 1),
    date: ((y - 1980) << 9) | ((d.getMonth() + 1) << 5) | d.getDate(),
  };
}

function zip64Limit(o: Pick<ZipOptions, 'zip64Limit'>): number {
  const l = o.zip64Limit ?? U32_MAX;
  if (!(Number.isSafeInteger(l) && l >= 1 && l <= U32_MAX)) throw new ZipError(`zip64Limit must be a whole number in 1 … 0xFFFFFFFF, got ${l}.`);
  return l;
}

function checkName(name: string, seen: Set<string>): Uint8Array {
  const bad =
    typeof name !== 'string' || name === '' || name.startsWith('/') || name.includes('\\') || name.includes('\0')
    || name.split('/').some((part) => part === '..' || part === '.') || name.endsWith('/');
  if (bad) {
    throw new ZipError(`Cannot add ${JSON.stringify(name)} to a zip: entry names are relative '/'-separated file paths without '.', '..', '\\' or a trailing '/'.`);
  }
  if (seen.has(name)) throw new ZipError(`'${name}' is added to the zip twice; each entry name may appear once.`);
  seen.add(name);
  const b = utf8.encode(name);
  if (b.length > U16_MAX) throw new ZipError(`Entry name '${name.slice(0, 40)}…' is ${b.length} bytes; a zip entry name is at most 65,535 bytes.`);
  return b;
}

function checkSize(e: ZipEntry): number | undefined {
  if (e.data instanceof Uint8Array) {
    if (e.size !== undefined && e.size !== e.data.length) {
      throw new ZipError(`Entry '${e.name}' declares ${e.size} bytes but its data has ${e.data.length}.`);
    }
    return e.data.length;
  }
  if (e.size !== undefined && !(Number.isSafeInteger(e.size) && e.size >= 0)) {
    throw new ZipError(`Entry '${e.name}' declares size ${e.size}; a size is a whole number of bytes.`);
  }
  return e.size;
}

interface Planned {
  name: Uint8Array;
  /** size when known up front */
  size: number | undefined;
  /** streamed: CRC and sizes go in a data descriptor after the data */
  streamed: boolean;
  /** the local header carries ZIP64 fields (decided before the data is written) */
  localZip64: boolean;
  time: number;
  date: number;
  flags: number;
}

function plan(e: ZipEntry, seen: Set<string>, always: boolean, limit: number): Planned {
  const name = checkName(e.name, seen);
  const size = checkSize(e);
  const streamed = !(e.data instanceof Uint8Array);
  const { time, date } = dosDateTime(e.modified ?? new Date());
  // Bit 11 only when needed: every reader takes ASCII names, and some show the flag oddly.
  const ascii = name.every((b) => b < 0x80);
  return {
    name, size, streamed, localZip64: always || (size ?? 0) >= limit, time, date,
    flags: (streamed ? FLAG_DESCRIPTOR : 0) | (ascii ? 0 : FLAG_UTF8),
  };
}

function localHeader(p: Planned, crc: number): Uint8Array {
  const extra = p.localZip64 ? 20 : 0;
  const b = new Bytes(30 + p.name.length + extra)
    .u32(SIG_LOCAL).u16(p.localZip64 ? 45 : 20).u16(p.flags).u16(0).u16(p.time).u16(p.date);
  if (p.streamed) b.u32(0).u32(p.localZip64 ? U32_MAX : 0).u32(p.localZip64 ? U32_MAX : 0);
  else b.u32(crc).u32(p.localZip64 ? U32_MAX : p.size!).u32(p.localZip64 ? U32_MAX : p.size!);
  b.u16(p.name.length).u16(extra).bytes(p.name);
  // In a local header the ZIP64 field holds both sizes (APPNOTE 4.5.3); zero when they follow the data.
  if (p.localZip64) b.u16(0x0001).u16(16).u64(p.streamed ? 0 : p.size!).u64(p.streamed ? 0 : p.size!);
  return b.done();
}

function descriptor(p: Planned, crc: number, size: number): Uint8Array {
  if (p.localZip64) return new Bytes(24).u32(SIG_DESCRIPTOR).u32(crc).u64(size).u64(size).done();
  return new Bytes(16).u32(SIG_DESCRIPTOR).u32(crc).u32(size).u32(size).done();
}

interface Written {
  p: Planned;
  crc: number;
  size: number;
  offset: number;
}

function centralZip64(w: Written, always: boolean, limit: number): { bigSize: boolean; bigOffset: boolean; extra: number } {
  const bigSize = always || w.size >= limit;
  const bigOffset = always || w.offset >= limit;
  return { bigSize, bigOffset, extra: (bigSize ? 16 : 0) + (bigOffset ? 8 : 0) };
}

function centralHeader(w: Written, always: boolean, limit: number): Uint8Array {
  const { bigSize, bigOffset, extra } = centralZip64(w, always, limit);
  const extraLen = extra ? 4 + extra : 0;
  const b = new Bytes(46 + w.p.name.length + extraLen)
    .u32(SIG_CENTRAL).u16(MADE_BY).u16(extra || w.p.localZip64 ? 45 : 20).u16(w.p.flags).u16(0)
    .u16(w.p.time).u16(w.p.date).u32(w.crc)
    .u32(bigSize ? U32_MAX : w.size).u32(bigSize ? U32_MAX : w.size)
    .u16(w.p.name.length).u16(extraLen).u16(0) // comment length
    .u16(0).u16(0) // disk number start, internal attributes
    .u32(UNIX_FILE_MODE << 16)
    .u32(bigOffset ? U32_MAX : w.offset)
    .bytes(w.p.name);
  // Only the fields set to 0xFFFFFFFF above appear, in the fixed order: sizes, then offset.
  if (extra) {
    b.u16(0x0001).u16(extra);
    if (bigSize) b.u64(w.size).u64(w.size);
    if (bigOffset) b.u64(w.offset);
  }
  return b.done();
}

function endRecords(count: number, cdOffset: number, cdSize: number, always: boolean, limit: number): Uint8Array {
  const zip64 = always || count > U16_MAX || cdOffset >= limit || cdSize >= limit;
  const eocd = new Bytes(22)
    .u32(SIG_EOCD).u16(0).u16(0)
    .u16(zip64 ? U16_MAX : count).u16(zip64 ? U16_MAX : count)
    .u32(zip64 ? U32_MAX : cdSize).u32(zip64 ? U32_MAX : cdOffset)
    .u16(0)
    .done();
  if (!zip64) return eocd;
  const zip64Offset = cdOffset + cdSize;
  const rec = new Bytes(56)
    .u32(SIG_ZIP64_EOCD).u64(44) // size of the rest of this record
    .u16(MADE_BY).u16(45).u32(0).u32(0)
    .u64(count).u64(count).u64(cdSize).u64(cdOffset)
    .done();
  const loc = new Bytes(20).u32(SIG_ZIP64_LOCATOR).u32(0).u64(zip64Offset).u32(1).done();
  const out = new Uint8Array(56 + 20 + 22);
  out.set(rec, 0);
  out.set(loc, 56);
  out.set(eocd, 76);
  return out;
}

/**
 * The exact size of the archive zipChunks writes for these entries (every streamed entry must
 * declare its size), so a download can show a total before the first byte.
 */
export function zipSize(entries: readonly ZipEntry[], options: Pick<ZipOptions, 'zip64' | 'zip64Limit'> = {}): number {
  const always = options.zip64 === 'always';
  const limit = zip64Limit(options);
  const seen = new Set<string>();
  let offset = 0;
  let cdSize = 0;
  for (const e of entries) {
    const p = plan(e, seen, always, limit);
    if (p.size === undefined) throw new ZipError(`zipSize: entry '${e.name}' has no declared size.`);
    const w: Written = { p, crc: 0, size: p.size, offset };
    offset += 30 + p.name.length + (p.localZip64 ? 20 : 0) + p.size + (p.streamed ? (p.localZip64 ? 24 : 16) : 0);
    const { extra } = centralZip64(w, always, limit);
    cdSize += 46 + p.name.length + (extra ? 4 + extra : 0);
  }
  const zip64 = always || entries.length > U16_MAX || offset >= limit || cdSize >= limit;
  return offset + cdSize + (zip64 ? 56 + 20 : 0) + 22;
}

/**
 * Writes a ZIP archive as a sequence of chunks. Entries are written one after another, each as
 * its local header, its data (streamed entries: chunk by chunk, checksummed on the way, then a
 * data descriptor), and the central directory at the end. Only the central directory (about
 * 100 bytes per entry) is kept; entry data is yielded as given, without a copy, so the consumer
 * must use each chunk before pulling the next.
 */
export async function* zipChunks(entries: Iterable<ZipEntry> | AsyncIterable<ZipEntry>, options: ZipOptions = {}): AsyncGenerator<Uint8Array, void, undefined> {
  const always = options.zip64 === 'always';
  const limit = zip64Limit(options);
  const signal = options.signal;
  const seen = new Set<string>();
  const written: Written[] = [];
  let offset = 0;
  let total: number | null = null;
  if (Array.isArray(entries)) {
    try {
      total = zipSize(entries, options);
    } catch (e) {
      if (!(e instanceof ZipError && e.message.startsWith('zipSize:'))) throw e;
    }
  }
  let current = '';
  const progress = () => options.onProgress?.({ bytes: offset, total, entry: current });

  for await (const e of entries) {
    signal?.throwIfAborted();
    current = e.name;
    const p = plan(e, seen, always, limit);
    const start = offset;
    if (!p.streamed) {
      const data = e.data as Uint8Array;
      const crc = crc32(data);
      const header = localHeader(p, crc);
      offset += header.length;
      yield header;
      if (data.length) {
        offset += data.length;
        yield data;
      }
      progress();
      written.push({ p, crc, size: data.length, offset: start });
      continue;
    }
    const header = localHeader(p, 0);
    offset += header.length;
    yield header;
    let crc = 0;
    let size = 0;
    for await (const chunk of (e.data as () => AsyncIterable<Uint8Array> | Iterable<Uint8Array>)()) {
      signal?.throwIfAborted();
      if (!(chunk instanceof Uint8Array)) throw new ZipError(`Entry '${e.name}' produced a chunk that is not a Uint8Array.`);
      if (chunk.length === 0) continue;
      size += chunk.length;
      if (p.size !== undefined && size > p.size) {
        throw new ZipError(`Entry '${e.name}' declared ${p.size} bytes but produced more; the archive would be invalid.`);
      }
      if (!p.localZip64 && size >= limit) {
        throw new ZipError(`Entry '${e.name}' grew past 4 GiB without a declared size, so its header has no ZIP64 fields. Declare the entry's size (ZipEntry.size) to write it as ZIP64.`);
      }
      crc = crc32(chunk, crc);
      offset += chunk.length;
      yield chunk;
      progress();
    }
    if (p.size !== undefined && size !== p.size) {
      throw new ZipError(`Entry '${e.name}' declared ${p.size} bytes but produced ${size}; the archive would be invalid.`);
    }
    const desc = descriptor(p, crc, size);
    offset += desc.length;
    yield desc;
    written.push({ p, crc, size, offset: start });
    progress();
  }

  current = '';
  const cdOffset = offset;
  for (const w of written) {
    const h = centralHeader(w, always, limit);
    offset += h.length;
    yield h;
  }
  const end = endRecords(written.length, cdOffset, offset - cdOffset, always, limit);
  offset += end.length;
  yield end;
  progress();
}

/**
 * The archive as a ReadableStream (for a Response, a Blob, or a file writer in the page). Chunks
 * are produced as the consumer pulls, so backpressure holds memory to a chunk or two; each chunk
 * is copied once, because a stream's consumer may keep it after the writer moves on.
 */
export function zipReadableStream(entries: Iterable<ZipEntry> | AsyncIterable<ZipEntry>, options: ZipOptions = {}): ReadableStream<Uint8Array> {
  const it = zipChunks(entries, options);
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const r = await it.next();
        if (r.done) controller.close();
        else controller.enqueue(r.value.slice());
      } catch (e) {
        controller.error(e);
      }
    },
    async cancel() {
      await it.return(undefined);
    },
  }, { highWaterMark: 1 });
}
