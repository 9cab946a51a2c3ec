// Reading a ZIP archive the user dropped (a saved run downloaded from the page, or a checkpoint
// folder zipped by hand) without holding it: the central directory is parsed from the end of the
// Blob, and each entry is a slice of it (stored entries) or is inflated when asked (deflated
// entries, through the platform's DecompressionStream('deflate-raw')).
//
// Format: PKWARE's APPNOTE.TXT 6.3.10 (https://pkware.cachefly.net/webdocs/casestudies/APPNOTE.TXT):
//   4.3.16 end of central directory record; 4.3.14 / 4.3.15 its ZIP64 record and locator;
//   4.3.12 central directory header; 4.3.7 local file header; 4.5.3 ZIP64 extra field (0x0001);
//   4.4.5 compression method (0 stored, 8 deflated); 4.4.4 bit 0 (encrypted).
import { StudioError } from '../engine/errors.ts';

/** The file is not a ZIP this reader handles (truncated, encrypted, an unknown compression). */
export class UnzipError extends StudioError {}

export interface UnzipEntry {
  /** path inside the archive, '/'-separated */
  name: string;
  /** uncompressed size in bytes */
  size: number;
  /** the entry's bytes (a slice of the archive when stored; inflated on demand when deflated) */
  blob(): Promise<Blob>;
}

const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;

async function bytesAt(blob: Blob, offset: number, length: number): Promise<DataView> {
  if (offset < 0 || offset + length > blob.size) throw new UnzipError(`The archive is truncated: it ends at byte ${blob.size}, a record needs bytes ${offset}–${offset + length}.`);
  return new DataView(await blob.slice(offset, offset + length).arrayBuffer());
}

const u64 = (v: DataView, o: number) => Number(v.getBigUint64(o, true));

/** The entries of a ZIP archive (folders left out), in central-directory order. */
export async function readZip(blob: Blob, name = 'the archive'): Promise<UnzipEntry[]> {
  // The end record is the last 22 bytes plus a comment of up to 65,535 bytes.
  const tailLen = Math.min(blob.size, 22 + 0xffff);
  const tail = await bytesAt(blob, blob.size - tailLen, tailLen);
  let eocd = -1;
  for (let i = tailLen - 22; i >= 0; i--) {
    if (tail.getUint32(i, true) === SIG_EOCD) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new UnzipError(`${name} is not a ZIP archive (no end of central directory record). Drop the .zip the page or a zip tool made, or the checkpoint folder itself.`);
  let count = tail.getUint16(eocd + 10, true);
  let cdSize = tail.getUint32(eocd + 12, true);
  let cdOffset = tail.getUint32(eocd + 16, true);
  const locAt = eocd - 20;
  if (locAt >= 0 && tail.getUint32(locAt, true) === SIG_ZIP64_LOCATOR) {
    const recOffset = u64(tail, locAt + 8);
    const rec = await bytesAt(blob, recOffset, 56);
    if (rec.getUint32(0, true) !== SIG_ZIP64_EOCD) throw new UnzipError(`${name}: the ZIP64 end record is not where its locator says.`);
    count = u64(rec, 32);
    cdSize = u64(rec, 40);
    cdOffset = u64(rec, 48);
  }
  const cd = await bytesAt(blob, cdOffset, cdSize);
  const out: UnzipEntry[] = [];
  const utf8 = new TextDecoder('utf-8', { fatal: false });
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (cd.getUint32(p, true) !== SIG_CENTRAL) throw new UnzipError(`${name}: central directory entry ${i} is damaged.`);
    const flags = cd.getUint16(p + 8, true);
    const method = cd.getUint16(p + 10, true);
    let csize = cd.getUint32(p + 20, true);
    let usize = cd.getUint32(p + 24, true);
    const nameLen = cd.getUint16(p + 28, true);
    const extraLen = cd.getUint16(p + 30, true);
    const commentLen = cd.getUint16(p + 32, true);
    let local = cd.getUint32(p + 42, true);
    const entryName = utf8.decode(new Uint8Array(cd.buffer, cd.byteOffset + p + 46, nameLen));
    // ZIP64: only the fields set to 0xFFFFFFFF appear, in the order usize, csize, offset.
    for (let e = p + 46 + nameLen; e < p + 46 + nameLen + extraLen;) {
      const id = cd.getUint16(e, true);
      const len = cd.getUint16(e + 2, true);
      if (id === 0x0001) {
        let q = e + 4;
        if (usize === 0xffffffff) {
          usize = u64(cd, q);
          q += 8;
        }
        if (csize === 0xffffffff) {
          csize = u64(cd, q);
          q += 8;
        }
        if (local === 0xffffffff) local = u64(cd, q);
      }
      e += 4 + len;
    }
    p += 46 + nameLen + extraLen + commentLen;
    if (entryName.endsWith('/')) continue;
    if (flags & 1) throw new UnzipError(`${name}: ${entryName} is encrypted; unzip it yourself and drop the folder.`);
    if (method !== 0 && method !== 8) throw new UnzipError(`${name}: ${entryName} uses compression method ${method}; only stored and deflated entries are read. Unzip it and drop the folder.`);
    out.push({
      name: entryName,
      size: usize,
      async blob() {
        const lh = await bytesAt(blob, local, 30);
        if (lh.getUint32(0, true) !== SIG_LOCAL) throw new UnzipError(`${name}: the local header of ${entryName} is damaged.`);
        const start = local + 30 + lh.getUint16(26, true) + lh.getUint16(28, true);
        const raw = blob.slice(start, start + csize);
        if (method === 0) return raw;
        const inflated = await new Response(raw.stream().pipeThrough(new DecompressionStream('deflate-raw'))).blob();
        if (inflated.size !== usize) throw new UnzipError(`${name}: ${entryName} inflates to ${inflated.size} bytes, not the ${usize} its header says.`);
        return inflated;
      },
    });
  }
  return out;
}
