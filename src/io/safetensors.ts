// The safetensors format (https://huggingface.co/docs/safetensors, "Format" section): an 8-byte
// little-endian u64 header length N, N bytes of UTF-8 JSON mapping tensor names to
// {dtype, shape, data_offsets: [begin, end]} (offsets relative to the data section, which must be
// covered exactly, with no holes and no overlaps) plus an optional "__metadata__" map of strings,
// then the data section. This module is the project's only reader and writer of the format:
//   - a validating header parser over a ByteSource, so a checkpoint streams tensor by tensor;
//   - readTensorF32, which converts F16 and BF16 to float32 exactly;
//   - readSafetensors, a synchronous convenience for small in-memory files;
//   - writeSafetensors and safetensorsStream, which write F32 tensors packed in the given order
//     with "__metadata__": {"format": "pt"} (transformers' from_pretrained refuses a file without it).
import { ShapeError, StudioError } from '../engine/errors.ts';
import type { ByteSource } from './bytes.ts';

/** A safetensors file whose header or offsets are malformed, truncated or hostile. */
export class CorruptCheckpointError extends StudioError {}

/** A tensor stored in a dtype the engine does not read (it reads F32, F16 and BF16). */
export class UnsupportedDtypeError extends StudioError {}

/** A tensor asked for by name that the file does not hold. */
export class TensorNotFoundError extends StudioError {}

/** Tensors that cannot be written as a valid file (duplicate or reserved names, bad shapes). */
export class SafetensorsWriteError extends StudioError {}

/**
 * Largest header we accept. The reference implementation caps it at 100 MB too
 * (safetensors' MAX_HEADER_SIZE); GPT-2 124M needs about 15 kB.
 */
export const MAX_HEADER_BYTES = 100_000_000;

/** The dtypes the engine converts to float32. */
const READABLE = new Set<string>(['F32', 'F16', 'BF16']);

// Element sizes of the dtypes the format defines (safetensors' `Dtype`), so a file holding, say,
// a BOOL causal-mask buffer can still be validated and the buffer skipped.
const DTYPE_BYTES: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  I64: 8, U64: 8, F64: 8,
};

/** One tensor entry of a parsed header. Offsets are relative to the data section. */
export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  numel: number;
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** file name, for messages */
  file: string;
  /** file size in bytes */
  size: number;
  /** N, the JSON header length (including padding) */
  headerLength: number;
  /** absolute offset of the data section: 8 + N */
  dataStart: number;
  metadata: Record<string, string>;
  /** every tensor, in the order its bytes appear in the data section */
  tensors: Map<string, TensorInfo>;
}

export interface HeaderOptions {
  /**
   * Accept tensors in other dtypes of the format (BOOL, I64, …) in the header, so a caller can skip
   * them (GPT-2 checkpoints may carry causal-mask buffers); reading one still fails. Default false:
   * any dtype other than F32/F16/BF16 is an UnsupportedDtypeError at parse time.
   */
  allowOtherDtypes?: boolean;
}

function corrupt(file: string, problem: string): CorruptCheckpointError {
  return new CorruptCheckpointError(
    `${file} is not a valid safetensors file: ${problem}. Download or export the checkpoint again.`,
  );
}

function unsupportedDtype(file: string, name: string, dtype: string): UnsupportedDtypeError {
  return new UnsupportedDtypeError(
    `${file}: tensor '${name}' is stored as ${dtype}; only F32, F16 and BF16 tensors are supported. ` +
      'Convert the checkpoint to float32, float16 or bfloat16 (in transformers: ' +
      'model.to(torch.float32).save_pretrained(dir, safe_serialization=True)).',
  );
}

/** Reads and checks the u64 header length from the first 8 bytes of a `size`-byte file. */
function headerLengthOf(file: string, size: number, first8: Uint8Array): number {
  if (size < 8 || first8.byteLength < 8) {
    throw corrupt(file, `it is ${size} bytes long, shorter than the 8-byte header length (truncated or not safetensors)`);
  }
  const dv = new DataView(first8.buffer, first8.byteOffset, 8);
  const n64 = dv.getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER_BYTES)) {
    throw corrupt(file, `the header length field says ${n64} bytes, more than the ${MAX_HEADER_BYTES}-byte limit`);
  }
  const n = Number(n64);
  if (n > size - 8) {
    throw corrupt(file, `the header length field says ${n} bytes but only ${size - 8} bytes follow it (the file is truncated)`);
  }
  if (n < 2) throw corrupt(file, `the header length field says ${n} bytes, too short for a JSON object`);
  return n;
}

function isNonNegInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function describe(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** Validates the JSON header of a `size`-byte file whose header is `n` bytes long. */
function parseHeaderJson(file: string, size: number, n: number, json: Uint8Array, opts: HeaderOptions): SafetensorsHeader {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(json);
  } catch {
    throw corrupt(file, 'the header is not valid UTF-8');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw corrupt(file, `the header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw corrupt(file, `the header must be a JSON object, got ${Array.isArray(parsed) ? 'an array' : describe(parsed)}`);
  }
  const dataLength = size - 8 - n;
  const metadata: Record<string, string> = {};
  const entries: TensorInfo[] = [];
  for (const [name, raw] of Object.entries(parsed as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw === null) continue;
      if (typeof raw !== 'object' || Array.isArray(raw)) throw corrupt(file, '"__metadata__" must be an object of strings');
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') throw corrupt(file, `"__metadata__" value for '${k}' must be a string, got ${describe(v)}`);
        metadata[k] = v;
      }
      continue;
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      throw corrupt(file, `the entry for tensor '${name}' must be an object with dtype, shape and data_offsets, got ${describe(raw)}`);
    }
    const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
    if (typeof dtype !== 'string') throw corrupt(file, `tensor '${name}' has no string dtype (got ${describe(dtype)})`);
    const elemBytes = DTYPE_BYTES[dtype];
    if (elemBytes === undefined || (!READABLE.has(dtype) && !opts.allowOtherDtypes)) throw unsupportedDtype(file, name, dtype);
    if (!Array.isArray(shape) || !shape.every(isNonNegInt)) {
      throw corrupt(file, `tensor '${name}' has shape ${describe(shape)}; a shape is a list of non-negative integers`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegInt) || offsets[0] > offsets[1]) {
      throw corrupt(file, `tensor '${name}' has data_offsets ${describe(offsets)}; they must be [begin, end] with 0 ≤ begin ≤ end`);
    }
    const numel = (shape as number[]).reduce((a, b) => a * b, 1);
    const [begin, end] = offsets as [number, number];
    if (!Number.isSafeInteger(numel * elemBytes) || numel * elemBytes !== end - begin) {
      throw corrupt(file, `tensor '${name}' of shape [${shape.join(', ')}] in ${dtype} needs ${numel * elemBytes} bytes but its data_offsets [${begin}, ${end}] span ${end - begin}`);
    }
    if (end > dataLength) {
      throw corrupt(file, `tensor '${name}' has data_offsets [${begin}, ${end}] outside the ${dataLength}-byte data section (the file may be truncated)`);
    }
    entries.push({ name, dtype, shape: shape as number[], numel, begin, end });
  }
  // The data section must be covered exactly: sort by position and walk it.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let prev = '';
  for (const t of entries) {
    if (t.begin < cursor) throw corrupt(file, `tensor '${t.name}' [${t.begin}, ${t.end}) overlaps tensor '${prev}', which ends at ${cursor}`);
    if (t.begin > cursor) throw corrupt(file, `bytes [${cursor}, ${t.begin}) of the data section belong to no tensor (a hole before '${t.name}')`);
    cursor = t.end;
    prev = t.name;
  }
  if (cursor !== dataLength) {
    throw corrupt(file, `bytes [${cursor}, ${dataLength}) at the end of the data section belong to no tensor`);
  }
  return { file, size, headerLength: n, dataStart: 8 + n, metadata, tensors: new Map(entries.map((t) => [t.name, t])) };
}

/** Reads and validates the header of a safetensors file without touching its data. */
export async function parseSafetensorsHeader(src: ByteSource, opts: HeaderOptions = {}): Promise<SafetensorsHeader> {
  const first = src.size >= 8 ? await src.read(0, 8) : new Uint8Array(0);
  const n = headerLengthOf(src.name, src.size, first);
  const json = await src.read(8, n);
  return parseHeaderJson(src.name, src.size, n, json, opts);
}

/** Synchronous header parse of an in-memory file. */
export function parseSafetensorsHeaderSync(bytes: Uint8Array, file = 'memory', opts: HeaderOptions = {}): SafetensorsHeader {
  const n = headerLengthOf(file, bytes.byteLength, bytes.subarray(0, 8));
  return parseHeaderJson(file, bytes.byteLength, n, bytes.subarray(8, 8 + n), opts);
}

// ---- dtype conversion ----------------------------------------------------------------------

/** True on little-endian hosts (every WebGPU platform in practice); the file format is LE. */
export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

let f16Table: Uint32Array | null = null;

/**
 * float16 bits → float32 bits, exactly (IEEE 754 binary16: 1 sign, 5 exponent bits with bias 15,
 * 10 mantissa bits). Subnormals are renormalised, Inf stays Inf, NaN keeps its payload.
 */
export function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp !== 0) return (sign | ((exp + 127 - 15) << 23) | (mant << 13)) >>> 0;
  if (mant === 0) return sign >>> 0;
  // Subnormal: value mant · 2^−24. Shift until the implicit bit appears, lowering the exponent.
  let e = 127 - 15 + 1;
  while ((mant & 0x400) === 0) {
    mant <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((mant & 0x3ff) << 13)) >>> 0;
}

function f16LookupTable(): Uint32Array {
  if (!f16Table) {
    f16Table = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToF32Bits(h);
  }
  return f16Table;
}

/**
 * Converts little-endian bytes of `dtype` to float32. `owned` says the bytes may be reused as the
 * result's storage (F32 on a little-endian host, 4-byte aligned), saving a copy of the tensor.
 */
export function bytesToF32(dtype: string, bytes: Uint8Array, owned = false, littleEndianHost = HOST_LITTLE_ENDIAN): Float32Array {
  if (dtype === 'F32') {
    const n = bytes.byteLength >> 2;
    if (littleEndianHost) {
      if (owned && bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, n);
      const out = new Float32Array(n);
      new Uint8Array(out.buffer).set(bytes.subarray(0, n * 4));
      return out;
    }
    const out = new Float32Array(n);
    const bits = new Uint32Array(out.buffer);
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < n; i++) bits[i] = dv.getUint32(4 * i, true);
    return out;
  }
  if (dtype === 'F16' || dtype === 'BF16') {
    const n = bytes.byteLength >> 1;
    const out = new Float32Array(n);
    // Writing bit patterns through a Uint32Array view keeps NaN payloads and −0 exactly.
    const bits = new Uint32Array(out.buffer);
    if (dtype === 'F16') {
      const table = f16LookupTable();
      for (let i = 0; i < n; i++) bits[i] = table[bytes[2 * i] | (bytes[2 * i + 1] << 8)];
    } else {
      // bfloat16 is the top half of a float32.
      for (let i = 0; i < n; i++) bits[i] = ((bytes[2 * i] << 16) | (bytes[2 * i + 1] << 24)) >>> 0;
    }
    return out;
  }
  throw new UnsupportedDtypeError(`Cannot convert ${dtype} to float32; only F32, F16 and BF16 tensors are supported.`);
}

function tensorInfo(header: SafetensorsHeader, name: string): TensorInfo {
  const info = header.tensors.get(name);
  if (!info) throw new TensorNotFoundError(`${header.file} holds no tensor named '${name}'.`);
  if (!READABLE.has(info.dtype)) throw unsupportedDtype(header.file, name, info.dtype);
  return info;
}

/** Reads one tensor as float32, reading only its bytes from the source. */
export async function readTensorF32(src: ByteSource, header: SafetensorsHeader, name: string): Promise<Float32Array> {
  const info = tensorInfo(header, name);
  if (src.size !== header.size) {
    throw corrupt(src.name, `it is ${src.size} bytes long but its header was parsed from a ${header.size}-byte file (it changed while being read)`);
  }
  const bytes = await src.read(header.dataStart + info.begin, info.end - info.begin);
  return bytesToF32(info.dtype, bytes, true);
}

export interface ReadTensor {
  dtype: string;
  shape: number[];
  data: Float32Array;
}

/** Reads a whole in-memory file (tests, small files). Tensors come in data order. */
export function readSafetensors(bytes: Uint8Array, file = 'memory'): Map<string, ReadTensor> {
  const header = parseSafetensorsHeaderSync(bytes, file);
  const out = new Map<string, ReadTensor>();
  for (const t of header.tensors.values()) {
    const slice = bytes.subarray(header.dataStart + t.begin, header.dataStart + t.end);
    out.set(t.name, { dtype: t.dtype, shape: [...t.shape], data: bytesToF32(t.dtype, slice, false) });
  }
  return out;
}

// ---- writer --------------------------------------------------------------------------------

/** The dtypes the writer produces: F32, and I64 for integer tensors such as AdamW step counts. */
export type WriteDtype = 'F32' | 'I64';
/** Tensor data: Float32Array for F32, BigInt64Array for I64. */
export type WriteData = Float32Array | BigInt64Array;

export interface WriteTensor {
  /** name written to the file, e.g. 'transformer.wte.weight' */
  name: string;
  shape: number[];
  /** row-major float32 data, numel(shape) elements */
  data: Float32Array;
  dtype?: 'F32';
}

/** An int64 tensor (e.g. a scalar step count: shape []). */
export interface I64Tensor {
  name: string;
  shape: number[];
  data: BigInt64Array;
  dtype: 'I64';
}

/** A tensor for the streaming writer: its data may be produced only when its turn comes. */
export type StreamTensor =
  | { name: string; shape: number[]; data: Float32Array | (() => Float32Array | Promise<Float32Array>); dtype?: 'F32' }
  | I64Tensor;

export interface SafetensorsStream extends AsyncIterable<Uint8Array> {
  /** the size of the whole file */
  totalBytes: number;
  /** the first 8 + N bytes: length field and padded JSON header */
  header: Uint8Array<ArrayBuffer>;
}

/** Largest chunk the stream yields, so consumers can report progress within big tensors. */
const CHUNK_BYTES = 16 * 1024 * 1024;

interface Layout {
  header: Uint8Array<ArrayBuffer>;
  offsets: number[];
  totalBytes: number;
}

function numelOf(t: { name: string; shape: number[] }): number {
  if (!Array.isArray(t.shape) || !t.shape.every(isNonNegInt)) {
    throw new SafetensorsWriteError(`Cannot write tensor '${t.name}': shape ${describe(t.shape)} is not a list of non-negative integers.`);
  }
  return t.shape.reduce((a, b) => a * b, 1);
}

/** Builds the padded header for F32 tensors packed in the given order. */
function layout(tensors: ReadonlyArray<{ name: string; shape: number[]; dtype?: WriteDtype }>, metadata: Record<string, string>): Layout {
  const seen = new Set<string>();
  // The JSON is assembled by hand so key order follows the data order even for integer-like names
  // (a JS object would move those first).
  const meta: Record<string, string> = {};
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== 'string') throw new SafetensorsWriteError(`Metadata value for '${k}' must be a string.`);
    meta[k] = v;
  }
  meta.format = 'pt';
  const parts = [`"__metadata__":${JSON.stringify(meta)}`];
  const offsets: number[] = [];
  let cursor = 0;
  for (const t of tensors) {
    if (typeof t.name !== 'string' || t.name === '' || t.name === '__metadata__') {
      throw new SafetensorsWriteError(`Cannot write a tensor named ${describe(t.name)}: names must be non-empty and not '__metadata__'.`);
    }
    if (seen.has(t.name)) throw new SafetensorsWriteError(`Tensor '${t.name}' appears twice; each name may be written once.`);
    seen.add(t.name);
    const dtype = t.dtype ?? 'F32';
    if (dtype !== 'F32' && dtype !== 'I64') throw new SafetensorsWriteError(`Cannot write tensor '${t.name}' as ${describe(dtype)}: the writer produces F32 and I64.`);
    const bytes = numelOf(t) * DTYPE_BYTES[dtype];
    offsets.push(cursor);
    parts.push(`${JSON.stringify(t.name)}:{"dtype":"${dtype}","shape":${JSON.stringify(t.shape)},"data_offsets":[${cursor},${cursor + bytes}]}`);
    cursor += bytes;
  }
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  // Pad with spaces so the data section starts 8-byte aligned (as the reference writer does).
  const n = Math.ceil(json.byteLength / 8) * 8;
  const header = new Uint8Array(8 + n).fill(0x20, 8);
  new DataView(header.buffer).setBigUint64(0, BigInt(n), true);
  header.set(json, 8);
  return { header, offsets, totalBytes: header.byteLength + cursor };
}

function checkLength(t: { name: string; shape: number[]; dtype?: WriteDtype }, data: WriteData): void {
  const numel = numelOf(t);
  const i64 = (t.dtype ?? 'F32') === 'I64';
  if (!(i64 ? data instanceof BigInt64Array : data instanceof Float32Array) || data.length !== numel) {
    throw new ShapeError(`Cannot write tensor '${t.name}': shape [${t.shape.join(', ')}] needs ${numel} ${i64 ? 'int64 (BigInt64Array)' : 'float32'} values but the data has ${data?.length}.`);
  }
}

/** The little-endian bytes of tensor data of either dtype. */
function leBytes(data: WriteData): Uint8Array {
  if (data instanceof Float32Array) return f32LeBytes(data);
  if (HOST_LITTLE_ENDIAN) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint8Array(data.byteLength);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < data.length; i++) dv.setBigInt64(8 * i, data[i], true);
  return out;
}

/** Reads an I64 tensor (e.g. a step count) as a BigInt64Array, reading only its bytes. */
export async function readTensorI64(src: ByteSource, header: SafetensorsHeader, name: string): Promise<BigInt64Array> {
  const info = header.tensors.get(name);
  if (!info) throw new TensorNotFoundError(`${header.file} holds no tensor named '${name}'.`);
  if (info.dtype !== 'I64') throw new UnsupportedDtypeError(`${header.file}: tensor '${name}' is stored as ${info.dtype}; an I64 tensor is expected here.`);
  const bytes = await src.read(header.dataStart + info.begin, info.end - info.begin);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new BigInt64Array(info.numel);
  for (let i = 0; i < out.length; i++) out[i] = dv.getBigInt64(8 * i, true);
  return out;
}

/** The little-endian bytes of `data`: a view on little-endian hosts, a converted copy otherwise. */
export function f32LeBytes(data: Float32Array, littleEndianHost = HOST_LITTLE_ENDIAN): Uint8Array {
  if (littleEndianHost) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint8Array(data.byteLength);
  const dv = new DataView(out.buffer);
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  for (let i = 0; i < bits.length; i++) dv.setUint32(4 * i, bits[i], true);
  return out;
}

/** Writes F32 (and I64) tensors, packed in the given order, into one new file image. */
export function writeSafetensors(tensors: Array<WriteTensor | I64Tensor>, metadata: Record<string, string> = {}): Uint8Array<ArrayBuffer> {
  const { header, offsets, totalBytes } = layout(tensors, metadata);
  tensors.forEach((t) => checkLength(t, t.data));
  const out = new Uint8Array(totalBytes);
  out.set(header, 0);
  tensors.forEach((t, i) => out.set(leBytes(t.data), header.byteLength + offsets[i]));
  return out;
}

/**
 * The same file as writeSafetensors, as a stream of chunks: the header, then each tensor's bytes
 * (views of the caller's arrays where possible, at most 16 MiB each). Tensor data given as a
 * function is produced only when its turn comes, so an export never holds two copies of a model.
 */
export function safetensorsStream(tensors: StreamTensor[], metadata: Record<string, string> = {}): SafetensorsStream {
  const { header, totalBytes } = layout(tensors, metadata);
  return {
    totalBytes,
    header,
    async *[Symbol.asyncIterator]() {
      yield header;
      for (const t of tensors) {
        const data = typeof t.data === 'function' ? await t.data() : t.data;
        checkLength(t, data);
        const bytes = leBytes(data);
        for (let o = 0; o < bytes.byteLength; o += CHUNK_BYTES) yield bytes.subarray(o, Math.min(o + CHUNK_BYTES, bytes.byteLength));
      }
    },
  };
}
