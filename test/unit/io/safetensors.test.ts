// safetensors reader/writer: bit-exact round trips, the streaming writer, exact F16/BF16
// conversion, and every kind of malformed or hostile file giving its named error.
import { describe, expect, it } from 'vitest';
import { type ByteSource, blobSource, bytesSource } from '../../../src/io/bytes.ts';
import {
  CorruptCheckpointError,
  MAX_HEADER_BYTES,
  SafetensorsWriteError,
  TensorNotFoundError,
  UnsupportedDtypeError,
  bytesToF32,
  f16BitsToF32Bits,
  f32LeBytes,
  parseSafetensorsHeader,
  parseSafetensorsHeaderSync,
  readSafetensors,
  readTensorF32,
  safetensorsStream,
  writeSafetensors,
} from '../../../src/io/safetensors.ts';
import { ShapeError } from '../../../src/engine/errors.ts';
import { randn } from '../../helpers/numeric.ts';

/** Builds a file by hand: length field (overridable), header JSON padded to 8, then `data`. */
function rawFile(header: unknown, data: Uint8Array = new Uint8Array(0), lengthField?: bigint): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const n = Math.ceil(json.byteLength / 8) * 8;
  const out = new Uint8Array(8 + n + data.byteLength).fill(0x20, 8, 8 + n);
  new DataView(out.buffer).setBigUint64(0, lengthField ?? BigInt(n), true);
  out.set(json, 8);
  out.set(data, 8 + n);
  return out;
}

function u16le(values: number[]): Uint8Array {
  const out = new Uint8Array(values.length * 2);
  values.forEach((v, i) => new DataView(out.buffer).setUint16(2 * i, v, true));
  return out;
}

function bitsOf(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((a, c) => a + c.byteLength, 0));
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.byteLength;
  }
  return out;
}

/** A source that records every read, to show that a tensor read touches only its bytes. */
function countingSource(u8: Uint8Array, name: string): ByteSource & { reads: Array<[number, number]> } {
  const inner = bytesSource(u8, name);
  const reads: Array<[number, number]> = [];
  return { size: inner.size, name, reads, read: (o, l) => (reads.push([o, l]), inner.read(o, l)) };
}

// Values that a lossy or sloppy writer would change: −0, NaN with a payload, ±Inf, subnormals.
function awkwardF32(n: number, seed: number): Float32Array {
  const a = Float32Array.from(randn(n, seed));
  const bits = bitsOf(a);
  bits[0] = 0x80000000; // −0
  bits[1] = 0x7fc12345; // NaN with payload
  bits[2] = 0x7f800000; // +Inf
  bits[3] = 0xff800000; // −Inf
  bits[4] = 0x00000001; // smallest subnormal
  bits[5] = 0x807fffff; // largest negative subnormal
  return a;
}

describe('writeSafetensors / readSafetensors', () => {
  const tensors = [
    { name: 'transformer.wte.weight', shape: [7, 3], data: awkwardF32(21, 1) },
    { name: 'scalar', shape: [], data: new Float32Array([Math.PI]) },
    { name: 'empty', shape: [0, 4], data: new Float32Array(0) },
    { name: '0', shape: [2, 3, 2], data: Float32Array.from(randn(12, 2)) },
    { name: 'naïve-ünïcode', shape: [5], data: Float32Array.from(randn(5, 3)) },
  ];

  it('round-trips names, shapes and every bit of the data', () => {
    const file = writeSafetensors(tensors, { source: 'test' });
    const back = readSafetensors(file);
    expect([...back.keys()].sort()).toEqual(tensors.map((t) => t.name).sort());
    for (const t of tensors) {
      const r = back.get(t.name)!;
      expect(r.dtype).toBe('F32');
      expect(r.shape).toEqual(t.shape);
      expect([...bitsOf(r.data)]).toEqual([...bitsOf(t.data)]);
    }
  });

  it('writes the layout transformers expects: padded header, format pt, packed data in order', () => {
    const file = writeSafetensors(tensors, { source: 'test' });
    const n = Number(new DataView(file.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const text = new TextDecoder().decode(file.subarray(8, 8 + n));
    expect(text).toMatch(/^\{.*\} *$/);
    const header = JSON.parse(text);
    expect(header.__metadata__).toEqual({ source: 'test', format: 'pt' });
    // Packed in the order given, whatever the key order of a JS object would be.
    let cursor = 0;
    for (const t of tensors) {
      expect(header[t.name]).toEqual({ dtype: 'F32', shape: t.shape, data_offsets: [cursor, cursor + 4 * t.data.length] });
      cursor += 4 * t.data.length;
    }
    expect(file.byteLength).toBe(8 + n + cursor);
    expect(Object.keys(JSON.parse(text.replace(/"0":/, '"zero":'))).indexOf('zero')).toBe(4);
    // The data is little-endian float32, not something that merely reads back the same.
    const dv = new DataView(file.buffer, 8 + n);
    expect(dv.getFloat32(4 * 21, true)).toBe(Math.fround(Math.PI));
  });

  it('forces format pt even when the caller passes another format', () => {
    const file = writeSafetensors([], { format: 'np' });
    expect(parseSafetensorsHeaderSync(file).metadata).toEqual({ format: 'pt' });
    expect(readSafetensors(file).size).toBe(0);
  });

  it('refuses duplicate or reserved names, bad shapes and data of the wrong length', () => {
    const d = new Float32Array(2);
    expect(() => writeSafetensors([{ name: 'a', shape: [2], data: d }, { name: 'a', shape: [2], data: d }])).toThrow(SafetensorsWriteError);
    expect(() => writeSafetensors([{ name: '__metadata__', shape: [2], data: d }])).toThrow(SafetensorsWriteError);
    expect(() => writeSafetensors([{ name: '', shape: [2], data: d }])).toThrow(SafetensorsWriteError);
    expect(() => writeSafetensors([{ name: 'a', shape: [-2], data: d }])).toThrow(SafetensorsWriteError);
    expect(() => writeSafetensors([{ name: 'a', shape: [1.5], data: d }])).toThrow(SafetensorsWriteError);
    expect(() => writeSafetensors([{ name: 'a', shape: [3], data: d }])).toThrow(ShapeError);
    expect(() => writeSafetensors([{ name: 'a', shape: [3], data: d }])).toThrow(/'a'.*needs 3 float32 values but the data has 2/);
  });
});

describe('safetensorsStream', () => {
  it('yields exactly the bytes of writeSafetensors, producing lazy tensors only when reached', async () => {
    const a = Float32Array.from(randn(10, 4));
    const b = awkwardF32(9, 5);
    const calls: string[] = [];
    const stream = safetensorsStream(
      [
        { name: 'a', shape: [2, 5], data: a },
        { name: 'b', shape: [9], data: async () => (calls.push('b'), b) },
      ],
      { k: 'v' },
    );
    const expected = writeSafetensors([{ name: 'a', shape: [2, 5], data: a }, { name: 'b', shape: [9], data: b }], { k: 'v' });
    expect(stream.totalBytes).toBe(expected.byteLength);
    expect([...stream.header]).toEqual([...expected.subarray(0, stream.header.byteLength)]);
    const chunks: Uint8Array[] = [];
    const it = stream[Symbol.asyncIterator]();
    chunks.push((await it.next()).value as Uint8Array); // header
    chunks.push((await it.next()).value as Uint8Array); // a
    expect(calls).toEqual([]);
    for (let r = await it.next(); !r.done; r = await it.next()) chunks.push(r.value);
    expect(calls).toEqual(['b']);
    expect([...concat(chunks)]).toEqual([...expected]);
  });

  it('splits a large tensor into chunks of at most 16 MiB that view the caller data', async () => {
    const big = new Float32Array((16 * 1024 * 1024) / 4 + 3);
    big[big.length - 1] = 7;
    const chunks: Uint8Array[] = [];
    for await (const c of safetensorsStream([{ name: 'big', shape: [big.length], data: big }])) chunks.push(c);
    expect(chunks.length).toBe(3);
    expect(chunks[1].byteLength).toBe(16 * 1024 * 1024);
    expect(chunks[2].byteLength).toBe(12);
    expect(chunks[1].buffer).toBe(big.buffer);
    const file = concat(chunks);
    expect(readSafetensors(file).get('big')!.data[big.length - 1]).toBe(7);
  });

  it('fails with a ShapeError when lazily produced data has the wrong length', async () => {
    const stream = safetensorsStream([{ name: 'x', shape: [4], data: () => new Float32Array(3) }]);
    await expect(async () => {
      for await (const _ of stream) void _;
    }).rejects.toThrow(ShapeError);
  });
});

describe('float16 / bfloat16 → float32', () => {
  // Independent definition from IEEE 754: (−1)^s · 2^(e−bias) · (1 + m/2^mbits), subnormals
  // (−1)^s · 2^(1−bias) · m/2^mbits, e all ones → Inf or NaN.
  function ieee(bits: number, ebits: number, mbits: number): number {
    const bias = (1 << (ebits - 1)) - 1;
    const s = bits >> (ebits + mbits) ? -1 : 1;
    const e = (bits >> mbits) & ((1 << ebits) - 1);
    const m = bits & ((1 << mbits) - 1);
    if (e === (1 << ebits) - 1) return m ? NaN : s * Infinity;
    if (e === 0) return s * 2 ** (1 - bias) * (m / 2 ** mbits);
    return s * 2 ** (e - bias) * (1 + m / 2 ** mbits);
  }

  it('converts all 65536 float16 values exactly', () => {
    const all = Array.from({ length: 65536 }, (_, i) => i);
    const got = bytesToF32('F16', u16le(all));
    let bad = 0;
    for (const h of all) if (!Object.is(got[h], ieee(h, 5, 10))) bad++;
    expect(bad).toBe(0);
  });

  it('converts all 65536 bfloat16 values exactly', () => {
    const all = Array.from({ length: 65536 }, (_, i) => i);
    const got = bytesToF32('BF16', u16le(all));
    let bad = 0;
    for (const h of all) if (!Object.is(got[h], ieee(h, 8, 7))) bad++;
    expect(bad).toBe(0);
  });

  it.each([
    // [float16 bits, value]
    [0x0000, 0],
    [0x8000, -0],
    [0x0001, 5.960464477539063e-8], // smallest subnormal, 2^−24
    [0x8001, -5.960464477539063e-8],
    [0x03ff, 6.097555160522461e-5], // largest subnormal
    [0x0400, 6.103515625e-5], // smallest normal, 2^−14
    [0x3c00, 1],
    [0xc000, -2],
    [0x3555, 0.333251953125],
    [0x7bff, 65504], // largest finite
    [0x7c00, Infinity],
    [0xfc00, -Infinity],
  ])('float16 %s → %s', (h, v) => {
    expect(Object.is(bytesToF32('F16', u16le([h]))[0], v)).toBe(true);
  });

  it.each([
    // [bfloat16 bits, value]
    [0x0000, 0],
    [0x8000, -0],
    [0x0001, 2 ** -133], // smallest subnormal
    [0x007f, 127 * 2 ** -133], // largest subnormal
    [0x0080, 2 ** -126], // smallest normal
    [0x3f80, 1],
    [0x4049, 3.140625],
    [0xc2f7, -123.5],
    [0x7f7f, 3.3895313892515355e38], // largest finite
    [0x7f80, Infinity],
    [0xff80, -Infinity],
  ])('bfloat16 %s → %s', (h, v) => {
    expect(Object.is(bytesToF32('BF16', u16le([h]))[0], v)).toBe(true);
  });

  it('keeps NaN (and its payload) as NaN', () => {
    expect(bitsOf(bytesToF32('F16', u16le([0x7e00, 0xfe01, 0x7c01])))).toEqual(new Uint32Array([0x7fc00000, 0xffc02000, 0x7f802000]));
    expect(bitsOf(bytesToF32('BF16', u16le([0x7fc0, 0xffc1])))).toEqual(new Uint32Array([0x7fc00000, 0xffc10000]));
    expect(f16BitsToF32Bits(0x7c00)).toBe(0x7f800000);
  });

  it('reads F32 the same way on the big-endian path, and writes the same bytes', () => {
    const a = awkwardF32(8, 9);
    const le = f32LeBytes(a);
    expect([...f32LeBytes(a, false)]).toEqual([...le]);
    expect([...bitsOf(bytesToF32('F32', le.slice(), false, false))]).toEqual([...bitsOf(a)]);
    expect([...bitsOf(bytesToF32('F32', le.slice(), true, true))]).toEqual([...bitsOf(a)]);
  });

  it('refuses to convert other dtypes', () => {
    expect(() => bytesToF32('I64', new Uint8Array(8))).toThrow(UnsupportedDtypeError);
  });

  it('reads F16 and BF16 tensors from a file as float32', () => {
    const file = rawFile(
      {
        h: { dtype: 'F16', shape: [2, 2], data_offsets: [0, 8] },
        b: { dtype: 'BF16', shape: [3], data_offsets: [8, 14] },
      },
      concat([u16le([0x3c00, 0xc000, 0x0001, 0x7c00]), u16le([0x3f80, 0x8000, 0x4049])]),
    );
    const r = readSafetensors(file);
    expect(r.get('h')).toEqual({ dtype: 'F16', shape: [2, 2], data: new Float32Array([1, -2, 2 ** -24, Infinity]) });
    expect([...r.get('b')!.data]).toEqual([1, -0, 3.140625]);
    expect(Object.is(r.get('b')!.data[1], -0)).toBe(true);
  });
});

describe('streaming reads over byte sources', () => {
  const tensors = [
    { name: 'a', shape: [3, 4], data: Float32Array.from(randn(12, 6)) },
    { name: 'b', shape: [5], data: awkwardF32(6, 7).subarray(0, 5) },
  ];
  const file = writeSafetensors(tensors);

  it('reads a tensor by touching only the header and its own bytes', async () => {
    const src = countingSource(file, 'model.safetensors');
    const header = await parseSafetensorsHeader(src);
    expect(src.reads).toEqual([
      [0, 8],
      [8, header.headerLength],
    ]);
    const b = await readTensorF32(src, header, 'b');
    expect(src.reads[2]).toEqual([header.dataStart + 48, 20]);
    expect([...bitsOf(b)]).toEqual([...bitsOf(tensors[1].data)]);
    // The result owns its memory: changing it does not change the file.
    b[0] = 123;
    expect(readSafetensors(file).get('b')!.data[0]).not.toBe(123);
  });

  it('gives the same tensors through a Blob source', async () => {
    const src = blobSource(new Blob([file]), 'dropped.safetensors');
    const header = await parseSafetensorsHeader(src);
    expect([...header.tensors.keys()]).toEqual(['a', 'b']);
    expect(header.tensors.get('a')).toMatchObject({ dtype: 'F32', shape: [3, 4], numel: 12, begin: 0, end: 48 });
    expect([...(await readTensorF32(src, header, 'a'))]).toEqual([...tensors[0].data]);
  });

  it('refuses out-of-range reads from a source', async () => {
    await expect(bytesSource(file, 'f').read(file.byteLength - 2, 4)).rejects.toThrow(RangeError);
    await expect(blobSource(new Blob([file]), 'f').read(-1, 4)).rejects.toThrow(RangeError);
  });

  it('names a missing tensor', async () => {
    const src = bytesSource(file, 'model.safetensors');
    const header = await parseSafetensorsHeader(src);
    await expect(readTensorF32(src, header, 'c')).rejects.toThrow(TensorNotFoundError);
    await expect(readTensorF32(src, header, 'c')).rejects.toThrow(/model\.safetensors holds no tensor named 'c'/);
  });

  it('notices that the file changed size since its header was parsed', async () => {
    const header = await parseSafetensorsHeader(bytesSource(file, 'm'));
    await expect(readTensorF32(bytesSource(file.subarray(0, file.length - 4), 'm'), header, 'a')).rejects.toThrow(CorruptCheckpointError);
  });
});

describe('hostile and malformed files', () => {
  const good = writeSafetensors([
    { name: 'x', shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) },
    { name: 'y', shape: [2], data: new Float32Array([5, 6]) },
  ]);
  const f32 = (n: number) => new Uint8Array(4 * n);
  const entry = (dtype: string, shape: unknown, offsets: unknown) => ({ dtype, shape, data_offsets: offsets });

  const cases: Array<[string, Uint8Array, new (m: string) => Error, RegExp]> = [
    ['an empty file', new Uint8Array(0), CorruptCheckpointError, /0 bytes long, shorter than the 8-byte header length/],
    ['a 5-byte file', new Uint8Array(5), CorruptCheckpointError, /shorter than the 8-byte/],
    ['a file cut inside the header', good.subarray(0, 40), CorruptCheckpointError, /only 32 bytes follow it \(the file is truncated\)/],
    ['a file cut inside the data', good.subarray(0, good.length - 4), CorruptCheckpointError, /tensor 'y' has data_offsets \[16, 24\] outside the 20-byte data section/],
    ['a header length of 2^60', rawFile({}, new Uint8Array(0), 2n ** 60n), CorruptCheckpointError, new RegExp(`says ${2n ** 60n} bytes, more than the ${MAX_HEADER_BYTES}-byte limit`)],
    ['a header length of 2^64 − 1', rawFile({}, new Uint8Array(0), 2n ** 64n - 1n), CorruptCheckpointError, /more than the .*-byte limit/],
    ['a header length larger than the file', rawFile({}, new Uint8Array(0), 1000n), CorruptCheckpointError, /says 1000 bytes but only 8 bytes follow/],
    ['a header length of 0', rawFile({}, new Uint8Array(8), 0n), CorruptCheckpointError, /too short for a JSON object/],
    ['a non-JSON header', rawFile('{"x": {dtype: F32}}'), CorruptCheckpointError, /header is not valid JSON/],
    ['a header that is not UTF-8', (() => { const f = rawFile('{"\u00e9": 1}'); f[11] = 0xff; return f; })(), CorruptCheckpointError, /not valid UTF-8/],
    ['a JSON array header', rawFile([1, 2]), CorruptCheckpointError, /must be a JSON object, got an array/],
    ['a JSON string header', rawFile('"hello"'), CorruptCheckpointError, /must be a JSON object, got "hello"/],
    ['a JSON null header', rawFile('null'), CorruptCheckpointError, /must be a JSON object, got null/],
    ['non-string metadata', rawFile({ __metadata__: { format: 1 } }), CorruptCheckpointError, /"__metadata__" value for 'format' must be a string/],
    ['metadata that is a list', rawFile({ __metadata__: ['pt'] }), CorruptCheckpointError, /"__metadata__" must be an object/],
    ['a tensor entry that is a number', rawFile({ x: 3 }), CorruptCheckpointError, /entry for tensor 'x' must be an object/],
    ['a tensor without dtype', rawFile({ x: { shape: [1], data_offsets: [0, 4] } }, f32(1)), CorruptCheckpointError, /tensor 'x' has no string dtype/],
    ['dtype I64', rawFile({ x: entry('I64', [1], [0, 8]) }, new Uint8Array(8)), UnsupportedDtypeError, /tensor 'x' is stored as I64; only F32, F16 and BF16/],
    ['an unknown dtype', rawFile({ x: entry('Q4_K', [1], [0, 4]) }, f32(1)), UnsupportedDtypeError, /stored as Q4_K/],
    ['a negative shape', rawFile({ x: entry('F32', [-1, 2], [0, 8]) }, f32(2)), CorruptCheckpointError, /shape \[-1,2\]; a shape is a list of non-negative integers/],
    ['a fractional shape', rawFile({ x: entry('F32', [1.5, 2], [0, 12]) }, f32(3)), CorruptCheckpointError, /shape \[1.5,2\]/],
    ['a shape that is not a list', rawFile({ x: entry('F32', '2', [0, 8]) }, f32(2)), CorruptCheckpointError, /shape "2"/],
    ['offsets of the wrong arity', rawFile({ x: entry('F32', [2], [0, 4, 8]) }, f32(2)), CorruptCheckpointError, /data_offsets \[0,4,8\]/],
    ['reversed offsets', rawFile({ x: entry('F32', [0], [8, 0]) }, f32(2)), CorruptCheckpointError, /they must be \[begin, end\]/],
    ['negative offsets', rawFile({ x: entry('F32', [2], [-8, 0]) }, f32(2)), CorruptCheckpointError, /data_offsets \[-8,0\]/],
    ['offsets outside the data', rawFile({ x: entry('F32', [2], [4, 12]) }, f32(2)), CorruptCheckpointError, /\[4, 12\] outside the 8-byte data section/],
    ['overlapping tensors', rawFile({ x: entry('F32', [2], [0, 8]), y: entry('F32', [2], [4, 12]) }, f32(3)), CorruptCheckpointError, /'y' \[4, 12\) overlaps tensor 'x', which ends at 8/],
    ['two tensors on the same bytes', rawFile({ x: entry('F32', [2], [0, 8]), y: entry('F32', [2], [0, 8]) }, f32(2)), CorruptCheckpointError, /overlaps/],
    ['a hole between tensors', rawFile({ x: entry('F32', [1], [0, 4]), y: entry('F32', [1], [8, 12]) }, f32(3)), CorruptCheckpointError, /bytes \[4, 8\) of the data section belong to no tensor \(a hole before 'y'\)/],
    ['a hole at the start', rawFile({ x: entry('F32', [1], [4, 8]) }, f32(2)), CorruptCheckpointError, /bytes \[0, 4\)/],
    ['trailing bytes after the last tensor', rawFile({ x: entry('F32', [1], [0, 4]) }, f32(2)), CorruptCheckpointError, /bytes \[4, 8\) at the end of the data section belong to no tensor/],
    ['a byte count that does not match the shape', rawFile({ x: entry('F32', [2, 2], [0, 12]) }, f32(3)), CorruptCheckpointError, /'x' of shape \[2, 2\] in F32 needs 16 bytes but its data_offsets \[0, 12\] span 12/],
    ['an F16 byte count given as F32', rawFile({ x: entry('F16', [4], [0, 16]) }, f32(4)), CorruptCheckpointError, /needs 8 bytes/],
    ['an absurd shape', rawFile({ x: entry('F32', [2 ** 40, 2 ** 40], [0, 8]) }, f32(2)), CorruptCheckpointError, /needs .* bytes/],
  ];

  it.each(cases)('%s', async (_what, bytes, cls, msg) => {
    expect(() => readSafetensors(bytes, 'evil.safetensors')).toThrow(cls);
    expect(() => readSafetensors(bytes, 'evil.safetensors')).toThrow(msg);
    // The streaming parser gives the same verdict, naming the file.
    const err = await parseSafetensorsHeader(bytesSource(bytes, 'evil.safetensors')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(cls);
    expect((err as Error).message).toMatch(/^evil\.safetensors/);
    expect((err as Error).name).toBe(cls.name);
  });

  it('accepts the good file these cases were derived from', () => {
    expect([...readSafetensors(good).get('x')!.data]).toEqual([1, 2, 3, 4]);
  });

  it('accepts a file with zero-size tensors, null metadata and no tensors at all', () => {
    expect(readSafetensors(rawFile({ __metadata__: null, z: entry('F32', [0], [0, 0]) })).get('z')!.data.length).toBe(0);
    expect(readSafetensors(rawFile({})).size).toBe(0);
  });

  it('with allowOtherDtypes, validates other dtypes in the header but refuses to read them', async () => {
    const file = rawFile({ mask: entry('BOOL', [2, 2], [0, 4]), x: entry('F32', [1], [4, 8]) }, new Uint8Array(8));
    const src = bytesSource(file, 'gpt2.safetensors');
    const header = await parseSafetensorsHeader(src, { allowOtherDtypes: true });
    expect(header.tensors.get('mask')).toMatchObject({ dtype: 'BOOL', numel: 4, begin: 0, end: 4 });
    expect([...(await readTensorF32(src, header, 'x'))]).toEqual([0]);
    await expect(readTensorF32(src, header, 'mask')).rejects.toThrow(UnsupportedDtypeError);
    // Byte counts are still checked for those dtypes.
    const bad = rawFile({ mask: entry('BOOL', [2, 2], [0, 8]) }, new Uint8Array(8));
    await expect(parseSafetensorsHeader(bytesSource(bad, 'b'), { allowOtherDtypes: true })).rejects.toThrow(/needs 4 bytes/);
    await expect(parseSafetensorsHeader(src)).rejects.toThrow(UnsupportedDtypeError);
  });
});
