// GPT-2 checkpoints: name mapping (prefix, mask buffers, tied head), shape/dtype checks, sharded
// indexes, unsupported formats, streaming progress, and Node model folders on disk.
import { mkdtemp, mkdir, readFile, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ShapeError, UnsupportedConfigError } from '../../../src/engine/errors.ts';
import { parseConfig, type GPT2Config } from '../../../src/engine/model/config.ts';
import { paramSpecs, type HostParams } from '../../../src/engine/model/params.ts';
import { type ByteSource, bytesSource } from '../../../src/io/bytes.ts';
import {
  CheckpointMismatchError,
  checkpointTensors,
  filesFromSources,
  loadCheckpoint,
  MissingModelFileError,
  UnsupportedCheckpointFormatError,
  UntiedHeadError,
  type LoadProgress,
} from '../../../src/io/checkpoint.ts';
import { loadModelDir, ModelDirError, nodeDirFiles, nodeFileSource, saveModelDir } from '../../../src/io/node-model.ts';
import {
  CorruptCheckpointError,
  readSafetensors,
  UnsupportedDtypeError,
  writeSafetensors,
  type WriteTensor,
} from '../../../src/io/safetensors.ts';
import { randn } from '../../helpers/numeric.ts';

// V=11, P=6, C=4, L=2, NH=2: every dimension different, so a swapped shape shows.
const CONFIG: GPT2Config = parseConfig({ vocab_size: 11, n_positions: 6, n_embd: 4, n_layer: 2, n_head: 2 });

function randomParams(c: GPT2Config, seed: number): HostParams {
  return new Map(paramSpecs(c).map((s, i) => [s.name, Float32Array.from(randn(s.numel, seed * 1000 + i))]));
}

function bits(a: Float32Array): number[] {
  return [...new Uint32Array(a.buffer, a.byteOffset, a.length)];
}

function expectSameParams(got: HostParams, want: HostParams): void {
  expect([...got.keys()]).toEqual([...want.keys()]);
  for (const [k, v] of want) expect(bits(got.get(k)!), k).toEqual(bits(v));
}

/** HF tensors of `params`, optionally without the prefix, with extra or renamed tensors. */
function hfTensors(params: HostParams, prefix = 'transformer.'): WriteTensor[] {
  return paramSpecs(CONFIG).map((s) => ({ name: prefix + s.name, shape: [...s.shape], data: params.get(s.name)! }));
}

function single(tensors: WriteTensor[], name = 'model.safetensors'): ByteSource[] {
  return [bytesSource(writeSafetensors(tensors), name)];
}

/** A safetensors file with tensors of any dtype, given as raw little-endian bytes. */
function rawSafetensors(entries: Array<{ name: string; dtype: string; shape: number[]; bytes: Uint8Array }>): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let o = 0;
  for (const e of entries) {
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [o, o + e.bytes.byteLength] };
    o += e.bytes.byteLength;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const n = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + n + o).fill(0x20, 8, 8 + n);
  new DataView(out.buffer).setBigUint64(0, BigInt(n), true);
  out.set(json, 8);
  o = 8 + n;
  for (const e of entries) {
    out.set(e.bytes, o);
    o += e.bytes.byteLength;
  }
  return out;
}

const f32Bytes = (a: Float32Array) => new Uint8Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));

async function loadErr(sources: ByteSource[], c = CONFIG): Promise<Error> {
  return loadCheckpoint(c, filesFromSources(sources)).then(
    () => {
      throw new Error('expected loadCheckpoint to fail');
    },
    (e: Error) => e,
  );
}

describe('checkpointTensors', () => {
  it('lists HF names with the transformer. prefix in paramSpecs order, without lm_head', () => {
    const p = randomParams(CONFIG, 1);
    const t = checkpointTensors(CONFIG, p);
    expect(t.map((x) => x.name)).toEqual(paramSpecs(CONFIG).map((s) => `transformer.${s.name}`));
    expect(t.map((x) => x.name)).not.toContain('lm_head.weight');
    expect(t.find((x) => x.name === 'transformer.h.1.attn.c_attn.weight')!.shape).toEqual([4, 12]);
    expect(t.find((x) => x.name === 'transformer.h.0.mlp.c_proj.weight')!.shape).toEqual([16, 4]);
    expect(t[0].data).toBe(p.get('wte.weight'));
  });

  it('refuses parameters that do not fit the config', () => {
    const p = randomParams(CONFIG, 1);
    p.set('ln_f.bias', new Float32Array(3));
    expect(() => checkpointTensors(CONFIG, p)).toThrow(ShapeError);
    p.delete('ln_f.bias');
    expect(() => checkpointTensors(CONFIG, p)).toThrow(/Missing parameter ln_f.bias/);
  });
});

describe('loadCheckpoint', () => {
  const params = randomParams(CONFIG, 2);

  it('reads back what checkpointTensors wrote, bit for bit, in paramSpecs order', async () => {
    const got = await loadCheckpoint(CONFIG, filesFromSources(single(checkpointTensors(CONFIG, params))));
    expectSameParams(got, params);
  });

  it('accepts names without the transformer. prefix (a bare GPT2Model)', async () => {
    expectSameParams(await loadCheckpoint(CONFIG, filesFromSources(single(hfTensors(params, '')))), params);
  });

  it('ignores exactly the causal-mask buffers h.{i}.attn.bias / masked_bias, whatever their dtype', async () => {
    const file = rawSafetensors([
      { name: 'transformer.h.0.attn.bias', dtype: 'BOOL', shape: [1, 1, 6, 6], bytes: new Uint8Array(36) },
      { name: 'h.1.attn.bias', dtype: 'F32', shape: [1, 1, 6, 6], bytes: new Uint8Array(144) },
      { name: 'transformer.h.1.attn.masked_bias', dtype: 'F32', shape: [], bytes: f32Bytes(new Float32Array([-1e4])) },
      ...hfTensors(params).map((t) => ({ name: t.name, dtype: 'F32', shape: t.shape, bytes: f32Bytes(t.data) })),
    ]);
    expectSameParams(await loadCheckpoint(CONFIG, filesFromSources([bytesSource(file, 'model.safetensors')])), params);
  });

  it('does not mistake attn.c_attn.bias for a mask buffer', async () => {
    const t = hfTensors(params).filter((x) => x.name !== 'transformer.h.0.attn.c_attn.bias');
    t.push({ name: 'transformer.h.0.attn.bias', shape: [1, 1, 6, 6], data: new Float32Array(36) });
    const e = await loadErr(single(t));
    expect(e).toBeInstanceOf(CheckpointMismatchError);
    expect(e.message).toMatch(/1 tensor is missing \('transformer\.h\.0\.attn\.c_attn\.bias'\)/);
  });

  it('accepts lm_head.weight equal to wte (also stored as F16 of the same values) and reports it in progress', async () => {
    const exact = new Map(params);
    // Values exactly representable in float16, so an F16 head equals the F32 wte.
    exact.set('wte.weight', Float32Array.from(params.get('wte.weight')!, (v) => Math.round(v * 64) / 64));
    const head = exact.get('wte.weight')!;
    const f16 = new Uint8Array(head.length * 2);
    // float16 bits of k/64 for small k: built with the IEEE formula, independent of the reader.
    head.forEach((v, i) => new DataView(f16.buffer).setUint16(2 * i, toF16Bits(v), true));
    const file = rawSafetensors([
      ...hfTensors(exact).map((t) => ({ name: t.name, dtype: 'F32', shape: t.shape, bytes: f32Bytes(t.data) })),
      { name: 'lm_head.weight', dtype: 'F16', shape: [11, 4], bytes: f16 },
    ]);
    const seen: LoadProgress[] = [];
    const got = await loadCheckpoint(CONFIG, filesFromSources([bytesSource(file, 'model.safetensors')]), (p) => seen.push(p));
    expectSameParams(got, exact);
    expect(seen.at(-1)).toMatchObject({ tensor: 'lm_head.weight', done: paramSpecs(CONFIG).length + 1, count: paramSpecs(CONFIG).length + 1 });
  });

  it('refuses an lm_head.weight that differs from wte (untied head)', async () => {
    const head = params.get('wte.weight')!.slice();
    head[17] += 0.5;
    const e = await loadErr(single([...hfTensors(params), { name: 'lm_head.weight', shape: [11, 4], data: head }]));
    expect(e).toBeInstanceOf(UntiedHeadError);
    expect(e.message).toMatch(/lm_head\.weight differs from wte\.weight \(first at element 17/);
  });

  it('refuses an lm_head.weight of the wrong shape before reading data', async () => {
    const e = await loadErr(single([...hfTensors(params), { name: 'lm_head.weight', shape: [4, 11], data: params.get('wte.weight')! }]));
    expect(e).toBeInstanceOf(ShapeError);
    expect(e.message).toMatch(/'lm_head\.weight' in model\.safetensors has shape \[4, 11\] but the config needs \[11, 4\]/);
  });

  it('names a tensor of the wrong shape, with the expected shape, and spots a transposed Conv1D weight', async () => {
    const t = hfTensors(params);
    t.find((x) => x.name === 'transformer.wpe.weight')!.shape = [4, 6];
    const qkv = t.find((x) => x.name === 'transformer.h.1.attn.c_attn.weight')!;
    qkv.shape = [12, 4];
    const e = await loadErr(single(t));
    expect(e).toBeInstanceOf(ShapeError);
    expect(e.message).toMatch(/2 tensors do not fit the config/);
    expect(e.message).toMatch(/'transformer\.wpe\.weight' in model\.safetensors has shape \[4, 6\] but the config needs \[6, 4\];/);
    expect(e.message).toMatch(/'transformer\.h\.1\.attn\.c_attn\.weight' .* has shape \[12, 4\] but the config needs \[4, 12\] \(it is stored transposed/);
  });

  it('catches a config that does not belong to the weights (wrong n_embd)', async () => {
    const other = parseConfig({ vocab_size: 11, n_positions: 6, n_embd: 8, n_layer: 2, n_head: 2 });
    const e = await loadErr(single(hfTensors(params)), other);
    expect(e).toBeInstanceOf(ShapeError);
    expect(e.message).toMatch(/'transformer\.wte\.weight' in model\.safetensors has shape \[11, 4\] but the config needs \[11, 8\]/);
  });

  it('lists missing and unexpected tensors', async () => {
    const t = hfTensors(params).filter((x) => !x.name.startsWith('transformer.h.1.mlp.'));
    t.push({ name: 'transformer.h.2.ln_1.weight', shape: [4], data: new Float32Array(4) });
    t.push({ name: 'score.weight', shape: [2, 4], data: new Float32Array(8) });
    const e = await loadErr(single(t));
    expect(e).toBeInstanceOf(CheckpointMismatchError);
    expect(e.message).toMatch(/4 tensors are missing \('transformer\.h\.1\.mlp\.c_fc\.weight', 'transformer\.h\.1\.mlp\.c_fc\.bias', 'transformer\.h\.1\.mlp\.c_proj\.weight', 'transformer\.h\.1\.mlp\.c_proj\.bias'\)/);
    expect(e.message).toMatch(/2 unexpected tensors \('transformer\.h\.2\.ln_1\.weight', 'score\.weight'\)/);
    expect(e.message).toMatch(/n_layer 2/);
  });

  it('refuses a tensor stored both with and without the prefix', async () => {
    const e = await loadErr(single([...hfTensors(params), { name: 'ln_f.bias', shape: [4], data: params.get('ln_f.bias')! }]));
    expect(e).toBeInstanceOf(CorruptCheckpointError);
    expect(e.message).toMatch(/holds 'ln_f\.bias' twice/);
  });

  it('converts F16 and BF16 checkpoints to float32', async () => {
    // Round values to what float16 and bfloat16 hold exactly, then store them in those dtypes.
    const f16 = new Map([...params].map(([k, v]) => [k, Float32Array.from(v, (x) => Math.round(x * 256) / 256)]));
    const bf16 = new Map([...params].map(([k, v]) => [k, Float32Array.from(v, (x) => Math.round(x * 32) / 32)]));
    const encode = (p: HostParams, dtype: 'F16' | 'BF16') =>
      rawSafetensors(
        hfTensors(p).map((t) => {
          const b = new Uint8Array(t.data.length * 2);
          t.data.forEach((v, i) => {
            const u = dtype === 'F16' ? toF16Bits(v) : new Uint32Array(new Float32Array([v]).buffer)[0] >>> 16;
            new DataView(b.buffer).setUint16(2 * i, u, true);
          });
          return { name: t.name, dtype, shape: t.shape, bytes: b };
        }),
      );
    expectSameParams(await loadCheckpoint(CONFIG, filesFromSources([bytesSource(encode(f16, 'F16'), 'model.safetensors')])), f16);
    expectSameParams(await loadCheckpoint(CONFIG, filesFromSources([bytesSource(encode(bf16, 'BF16'), 'model.safetensors')])), bf16);
  });

  it('refuses a parameter stored in an unsupported dtype, before reading data', async () => {
    const file = rawSafetensors(
      hfTensors(params).map((t) =>
        t.name === 'transformer.wpe.weight'
          ? { name: t.name, dtype: 'F64', shape: t.shape, bytes: new Uint8Array(8 * t.data.length) }
          : { name: t.name, dtype: 'F32', shape: t.shape, bytes: f32Bytes(t.data) },
      ),
    );
    const e = await loadErr([bytesSource(file, 'model.safetensors')]);
    expect(e).toBeInstanceOf(UnsupportedDtypeError);
    expect(e.message).toMatch(/'transformer\.wpe\.weight' is stored as F64/);
  });

  it('streams: reports progress per tensor in file order and never reads more than one tensor at a time', async () => {
    const file = writeSafetensors(checkpointTensors(CONFIG, params));
    const reads: number[] = [];
    const inner = bytesSource(file, 'model.safetensors');
    const src: ByteSource = { ...inner, read: (o, l) => (reads.push(l), inner.read(o, l)) };
    const seen: LoadProgress[] = [];
    await loadCheckpoint(CONFIG, filesFromSources([src]), (p) => seen.push({ ...p }));
    const specs = paramSpecs(CONFIG);
    expect(seen.map((p) => p.tensor)).toEqual(specs.map((s) => s.name));
    expect(seen.map((p) => p.done)).toEqual(specs.map((_, i) => i + 1));
    const total = specs.reduce((a, s) => a + 4 * s.numel, 0);
    expect(seen.every((p) => p.totalBytes === total && p.count === specs.length)).toBe(true);
    expect(seen.at(-1)!.loadedBytes).toBe(total);
    // After the length field and the header, one read per tensor, each exactly that tensor.
    expect(reads.length).toBe(2 + specs.length);
    expect(reads.slice(2)).toEqual(specs.map((s) => 4 * s.numel));
  });
});

describe('model files: sharding and formats', () => {
  const params = randomParams(CONFIG, 3);
  const all = checkpointTensors(CONFIG, params);
  const shard1 = all.filter((t) => !t.name.startsWith('transformer.h.1.') && !t.name.startsWith('transformer.ln_f'));
  const shard2 = all.filter((t) => !shard1.includes(t));
  const n1 = 'model-00001-of-00002.safetensors';
  const n2 = 'model-00002-of-00002.safetensors';
  const index = (map: Record<string, string>) =>
    bytesSource(new TextEncoder().encode(JSON.stringify({ metadata: { total_size: 0 }, weight_map: map })), 'model.safetensors.index.json');
  const goodMap = Object.fromEntries([...shard1.map((t) => [t.name, n1]), ...shard2.map((t) => [t.name, n2])]);
  const shards = () => [bytesSource(writeSafetensors(shard1), n1), bytesSource(writeSafetensors(shard2), n2)];

  it('loads a sharded checkpoint through model.safetensors.index.json', async () => {
    expectSameParams(await loadCheckpoint(CONFIG, filesFromSources([index(goodMap), ...shards()])), params);
  });

  it('prefers model.safetensors over an index, as from_pretrained does', async () => {
    const files = filesFromSources([index({ 'transformer.wte.weight': 'gone.safetensors' }), ...single(all)]);
    expectSameParams(await loadCheckpoint(CONFIG, files), params);
  });

  it('names a shard the index lists but the files lack', async () => {
    const e = await loadErr([index(goodMap), shards()[0]]);
    expect(e).toBeInstanceOf(MissingModelFileError);
    expect(e.message).toMatch(/model\.safetensors\.index\.json lists shard 'model-00002-of-00002\.safetensors' but the model files do not include it/);
  });

  it('refuses an index that disagrees with the shards', async () => {
    const wrong = { ...goodMap, 'transformer.wte.weight': n2 };
    const e1 = await loadErr([index(wrong), ...shards()]);
    expect(e1).toBeInstanceOf(CorruptCheckpointError);
    expect(e1.message).toMatch(/says 'transformer\.wte\.weight' is in model-00002-of-00002\.safetensors, but it is in model-00001/);
    const e2 = await loadErr([index({ ...goodMap, 'transformer.extra': n2 }), ...shards()]);
    expect(e2).toBeInstanceOf(CorruptCheckpointError);
    expect(e2.message).toMatch(/lists 'transformer\.extra' but no shard holds it/);
  });

  it('refuses an index that is not JSON or has no weight_map', async () => {
    const bad = bytesSource(new TextEncoder().encode('{"weight_map": '), 'model.safetensors.index.json');
    expect(await loadErr([bad, ...shards()])).toBeInstanceOf(CorruptCheckpointError);
    const noMap = bytesSource(new TextEncoder().encode('{"metadata": {}}'), 'model.safetensors.index.json');
    expect((await loadErr([noMap, ...shards()])).message).toMatch(/no "weight_map" object/);
    expect((await loadErr([index({ a: 3 as unknown as string }), ...shards()])).message).toMatch(/weight_map entry for 'a' is 3/);
  });

  it('finds a lone safetensors file of another name, and files dropped with a folder path', async () => {
    expectSameParams(await loadCheckpoint(CONFIG, filesFromSources(single(all, 'finetuned.safetensors'))), params);
    expectSameParams(await loadCheckpoint(CONFIG, filesFromSources(single(all, 'gpt2/model.safetensors'))), params);
    const nested = [index(goodMap), ...shards()].map((s) => ({ ...s, name: `gpt2/${s.name}` }));
    expectSameParams(await loadCheckpoint(CONFIG, filesFromSources(nested)), params);
  });

  it('refuses several safetensors files without an index', async () => {
    const e = await loadErr(shards());
    expect(e).toBeInstanceOf(MissingModelFileError);
    expect(e.message).toMatch(/several safetensors files .* but no model\.safetensors\.index\.json/);
  });

  const other = (name: string) => bytesSource(new Uint8Array(16), name);
  it.each([
    [['config.json', 'pytorch_model.bin'], UnsupportedCheckpointFormatError, /only PyTorch pickle weights \('pytorch_model\.bin'\).*refs\/pr.*safe_serialization=True/],
    [['pytorch_model.bin.index.json', 'pytorch_model-00001-of-00002.bin'], UnsupportedCheckpointFormatError, /pickle/],
    [['tf_model.h5'], UnsupportedCheckpointFormatError, /only 'tf_model\.h5'/],
    [['adapter_config.json', 'adapter_model.safetensors'], UnsupportedCheckpointFormatError, /LoRA adapter, not a full model/],
    [['config.json', 'vocab.json'], MissingModelFileError, /No model\.safetensors .* \('config\.json', 'vocab\.json'\)/],
    [[], MissingModelFileError, /No model\.safetensors/],
  ])('folder %j gives a named error', async (names, cls, msg) => {
    const e = await loadErr(names.map(other));
    expect(e).toBeInstanceOf(cls);
    expect(e.message).toMatch(msg);
  });
});

describe('Node model folders', () => {
  const tmp: string[] = [];
  const newDir = async () => {
    const d = await mkdtemp(join(tmpdir(), 'studio-io-'));
    tmp.push(d);
    return d;
  };
  afterAll(async () => {
    for (const d of tmp) await rm(d, { recursive: true, force: true });
  });
  const params = randomParams(CONFIG, 4);

  it('saves a folder that loads back bit for bit, with its config and extra files', async () => {
    const dir = join(await newDir(), 'out', 'model');
    await saveModelDir(dir, CONFIG, params, { 'vocab.json': '{"a": 0}', 'merges.bin': new Uint8Array([1, 2]) });
    expect((await readdir(dir)).sort()).toEqual(['config.json', 'merges.bin', 'model.safetensors', 'vocab.json']);
    const { config, params: back } = await loadModelDir(dir);
    expect(config).toEqual(CONFIG);
    expectSameParams(back, params);
    expect(await readFile(join(dir, 'vocab.json'), 'utf8')).toBe('{"a": 0}');
    expect([...(await readFile(join(dir, 'merges.bin')))]).toEqual([1, 2]);
    // The file on disk is exactly writeSafetensors' image of the same tensors.
    const onDisk = new Uint8Array(await readFile(join(dir, 'model.safetensors')));
    expect(Buffer.compare(onDisk, writeSafetensors(checkpointTensors(CONFIG, params)))).toBe(0);
    expect(readSafetensors(onDisk).has('transformer.ln_f.bias')).toBe(true);
  });

  it('nodeFileSource reads exact ranges into fresh arrays and refuses ranges past the end', async () => {
    const dir = await newDir();
    const path = join(dir, 'f.bin');
    await writeFile(path, Uint8Array.from({ length: 100 }, (_, i) => i));
    const src = await nodeFileSource(path);
    expect(src).toMatchObject({ size: 100, name: 'f.bin' });
    const r = await src.read(37, 5);
    expect([...r]).toEqual([37, 38, 39, 40, 41]);
    expect(r.byteOffset).toBe(0);
    expect(r.buffer.byteLength).toBe(5);
    await expect(src.read(98, 5)).rejects.toThrow(RangeError);
    await truncate(path, 50);
    await expect(src.read(40, 20)).rejects.toThrow(CorruptCheckpointError);
    await expect(nodeFileSource(join(dir, 'nope'))).rejects.toThrow(MissingModelFileError);
    await expect(nodeFileSource(dir)).rejects.toThrow(/is not a regular file/);
  });

  it('lists only the regular files of a folder', async () => {
    const dir = await newDir();
    await writeFile(join(dir, 'a.json'), '{}');
    await mkdir(join(dir, 'sub'));
    expect((await nodeDirFiles(dir)).names()).toEqual(['a.json']);
    await expect(nodeDirFiles(join(dir, 'a.json'))).rejects.toThrow(/is a file, not a model folder/);
  });

  it('names what is missing: the folder, config.json, the weights', async () => {
    const dir = await newDir();
    await expect(loadModelDir(join(dir, 'nope'))).rejects.toThrow(MissingModelFileError);
    await expect(loadModelDir(join(dir, 'nope'))).rejects.toThrow(/Model folder .*nope does not exist/);
    await saveModelDir(dir, CONFIG, params);
    await rm(join(dir, 'config.json'));
    await expect(loadModelDir(dir)).rejects.toThrow(new RegExp(`${join(dir, 'config.json').replace(/[.\\/]/g, '\\$&')} not found`));
    await writeFile(join(dir, 'config.json'), '{"vocab_size": 11,');
    await expect(loadModelDir(dir)).rejects.toThrow(UnsupportedConfigError);
    await writeFile(join(dir, 'config.json'), JSON.stringify({ model_type: 'llama' }));
    const e = await loadModelDir(dir).catch((x: Error) => x);
    expect(e).toBeInstanceOf(UnsupportedConfigError);
    expect((e as Error).message).toBe(`${join(dir, 'config.json')}: model_type is 'llama'; only GPT-2 ('gpt2') models can be fine-tuned here.`);
    await writeFile(join(dir, 'config.json'), JSON.stringify({ vocab_size: 11, n_positions: 6, n_embd: 4, n_layer: 2, n_head: 2 }));
    await rm(join(dir, 'model.safetensors'));
    await writeFile(join(dir, 'pytorch_model.bin'), 'x');
    await expect(loadModelDir(dir)).rejects.toThrow(UnsupportedCheckpointFormatError);
  });

  it('refuses unsafe extra file names and leaves no partial file when writing fails', async () => {
    const dir = await newDir();
    for (const bad of ['../x', 'a/b', 'config.json', 'model.safetensors', '..']) {
      await expect(saveModelDir(dir, CONFIG, params, { [bad]: '' })).rejects.toThrow(ModelDirError);
    }
    // model.safetensors is a folder: the final rename fails; the temporary file must be gone.
    await mkdir(join(dir, 'model.safetensors'));
    await expect(saveModelDir(dir, CONFIG, params)).rejects.toThrow();
    expect(await readdir(dir)).toEqual(['model.safetensors']);
    const file = join(dir, 'plain');
    await writeFile(file, '');
    await expect(saveModelDir(join(file, 'sub'), CONFIG, params)).rejects.toThrow(ModelDirError);
  });
});

/** float32 → float16 bits for values float16 holds exactly (normal range), by the IEEE layout. */
function toF16Bits(v: number): number {
  if (v === 0) return Object.is(v, -0) ? 0x8000 : 0;
  const sign = v < 0 ? 0x8000 : 0;
  const a = Math.abs(v);
  const e = Math.floor(Math.log2(a));
  if (e < -14 || e > 15) throw new Error(`${v} is outside float16's normal range`);
  const m = a / 2 ** e - 1;
  const mant = m * 1024;
  if (!Number.isInteger(mant)) throw new Error(`${v} is not exact in float16`);
  return sign | ((e + 15) << 10) | mant;
}
