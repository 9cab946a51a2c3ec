// Byte sources: random-access reads over an in-memory file or a browser Blob/File, so the
// safetensors reader can stream a checkpoint tensor by tensor instead of holding the whole file.
// The Node file source lives in node-model.ts, which the browser never imports.

/** A file that can be read in pieces. */
export interface ByteSource {
  /** total length in bytes */
  size: number;
  /** file name, used in error messages */
  name: string;
  /**
   * Reads `length` bytes starting at `offset`. The result is a fresh array the caller owns (it may
   * keep or modify it), starting at byte 0 of its own ArrayBuffer so it can be reinterpreted as
   * 4-byte elements without a copy. Reads past the end give a RangeError.
   */
  read(offset: number, length: number): Promise<Uint8Array>;
}

/** Throws a RangeError unless [offset, offset + length) lies inside a file of `size` bytes. */
export function checkRange(name: string, size: number, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw new RangeError(`${name}: cannot read ${length} bytes at offset ${offset} of a ${size}-byte file.`);
  }
}

/** An in-memory file. Reads copy, so the caller's array is never aliased. */
export function bytesSource(u8: Uint8Array, name = 'memory'): ByteSource {
  return {
    size: u8.byteLength,
    name,
    async read(offset, length) {
      checkRange(name, u8.byteLength, offset, length);
      return u8.slice(offset, offset + length);
    },
  };
}

/** A browser File or Blob; each read fetches only the requested slice. */
export function blobSource(blob: Blob, name: string): ByteSource {
  return {
    size: blob.size,
    name,
    async read(offset, length) {
      checkRange(name, blob.size, offset, length);
      return new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer());
    },
  };
}
