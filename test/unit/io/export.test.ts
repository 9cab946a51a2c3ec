// The Hugging Face export: the folder (CLI) and the .zip (page) load back bit for bit, and an
// independent reader (Python's standard library: zipfile, struct, json) checks the archive, the
// safetensors names / shapes / dtypes against GPT-2's, and the config, generation config,
// tokenizer and model card. Weights given as a per-tensor reader are read lazily, once each.
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, type GPT2Config } from '../../../src/engine/model/config.ts';
import { paramSpecs, type HostParams } from '../../../src/engine/model/params.ts';
import type { TrainRunConfig } from '../../../src/engine/train/config.ts';
import { DEFAULT_SCHEDULE } from '../../../src/engine/train/run-settings.ts';
import { ExportError, hfExportZip, hfExportZipBlob, hfFolderFiles, modelCard, safeFolderName, type ExportInput } from '../../../src/io/export.ts';
import { checkpointTensors } from '../../../src/io/checkpoint.ts';
import { loadModelDir, nodeDirFiles } from '../../../src/io/node-model.ts';
import { writeSafetensors, type WriteTensor } from '../../../src/io/safetensors.ts';
import { zipReadableStream, type ZipEntry } from '../../../src/io/zip.ts';
import { writeHfFolder } from '../../../src/io/node-export.ts';
import { tokenizerFromJson, tokenizerFromModelFiles } from '../../../src/io/tokenizer.ts';
import { tinyTokenizer } from '../../helpers/hub-server.ts';
import { randn } from '../../helpers/numeric.ts';
import { hasCommand, runPython } from '../../helpers/python.ts';
import { spawnSync } from 'node:child_process';

let dir: string;
let config: GPT2Config;
let params: HostParams;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'export-test-'));
  config = parseConfig({ model_type: 'gpt2', vocab_size: 300, n_positions: 32, n_embd: 16, n_layer: 2, n_head: 4, bos_token_id: 256, eos_token_id: 256 });
  // Random values plus the awkward ones: −0, subnormals, the largest float32.
  params = new Map(paramSpecs(config).map((s, i) => {
    const a = Float32Array.from(randn(s.numel, 50 + i));
    a[0] = -0;
    if (a.length > 2) {
      a[1] = 1.4e-45;
      a[2] = 3.4028234663852886e38;
    }
    return [s.name, a];
  }));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const training: TrainRunConfig = {
  steps: 300, batch: 4, seq: 64, gradAccum: 2, lr: 3e-4,
  schedule: { ...DEFAULT_SCHEDULE, kind: 'cosine', warmup: 30, minLrRatio: 0.1 },
  lrDecay: 1.2, unfreeze: null, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, gradClip: 1,
  dropout: { embd: 0.1, attn: 0.1, resid: 0.1 }, seed: 1337, order: 'shuffled', frozen: new Set([0, 1]),
};

function input(extra: Partial<ExportInput> = {}): ExportInput {
  return {
    config,
    params,
    tokenizer: tinyTokenizer(),
    card: {
      name: 'tiny-shakespeare',
      baseModel: 'openai-community/gpt2',
      corpus: { names: ['input.txt'], files: 1, documents: 1, characters: 1_115_394, bytes: 1_115_394, tokens: 338_025, trainTokens: 304_222, valTokens: 33_804, contextLength: 64, windows: 5281 },
      training,
      metrics: { steps: 300, trainLoss: 3.21, valLoss: 3.5, tokensSeen: 153_600, seconds: 42 },
      date: new Date(2025, 0, 2, 3, 4, 6),
    },
    ...extra,
  };
}

function expectSameBits(got: HostParams, want: HostParams): void {
  expect([...got.keys()]).toEqual([...want.keys()]);
  for (const [name, w] of want) {
    const g = got.get(name)!;
    expect(Buffer.from(g.buffer, g.byteOffset, g.byteLength).equals(Buffer.from(w.buffer, w.byteOffset, w.byteLength)), name).toBe(true);
  }
}

async function streamToFile(stream: ReadableStream<Uint8Array>, path: string): Promise<number> {
  const bytes = new Uint8Array(await new Response(stream).arrayBuffer());
  await writeFile(path, bytes);
  return bytes.length;
}

const PY = String.raw`
import json, math, struct, sys, zipfile
path, folder, out = sys.argv[1], sys.argv[2], sys.argv[3]
z = zipfile.ZipFile(path)
assert z.testzip() is None
names = z.namelist()
want_files = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'README.md', 'model.safetensors']
assert names == [folder + '/' + n for n in want_files], names
assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())

cfg = json.loads(z.read(folder + '/config.json'))
for k in ['vocab_size', 'n_positions', 'n_embd', 'n_layer', 'n_head', 'layer_norm_epsilon', 'activation_function', 'bos_token_id', 'eos_token_id']:
    assert k in cfg, 'config.json lacks ' + k
assert cfg['model_type'] == 'gpt2' and cfg['architectures'] == ['GPT2LMHeadModel']
assert cfg.get('tie_word_embeddings', True) is True
V, P, C, L = cfg['vocab_size'], cfg['n_positions'], cfg['n_embd'], cfg['n_layer']
I = cfg.get('n_inner') or 4 * C

gen = json.loads(z.read(folder + '/generation_config.json'))
assert gen['bos_token_id'] == cfg['bos_token_id'] and gen['eos_token_id'] == cfg['eos_token_id'], gen

tok = json.loads(z.read(folder + '/tokenizer.json'))
assert tok['model']['type'] == 'BPE' and max(tok['model']['vocab'].values()) < V
tcfg = json.loads(z.read(folder + '/tokenizer_config.json'))
assert tcfg['eos_token'] == '<|endoftext|>'

card = z.read(folder + '/README.md').decode('utf-8')
assert card.startswith('---\n') and '\n---\n' in card[4:]
front = card[4:card.index('\n---\n', 4)]

raw = z.read(folder + '/model.safetensors')
(n,) = struct.unpack('<Q', raw[:8])
assert n % 8 == 0
header = json.loads(raw[8:8 + n].decode('utf-8'))
meta = header.pop('__metadata__')
assert meta == {'format': 'pt'}, meta
# GPT2LMHeadModel.state_dict() without the tied lm_head and the mask buffers (Conv1D: (in, out)).
want = {'transformer.wte.weight': [V, C], 'transformer.wpe.weight': [P, C], 'transformer.ln_f.weight': [C], 'transformer.ln_f.bias': [C]}
for i in range(L):
    p = 'transformer.h.%d.' % i
    want.update({p + 'ln_1.weight': [C], p + 'ln_1.bias': [C], p + 'attn.c_attn.weight': [C, 3 * C], p + 'attn.c_attn.bias': [3 * C],
                 p + 'attn.c_proj.weight': [C, C], p + 'attn.c_proj.bias': [C], p + 'ln_2.weight': [C], p + 'ln_2.bias': [C],
                 p + 'mlp.c_fc.weight': [C, I], p + 'mlp.c_fc.bias': [I], p + 'mlp.c_proj.weight': [I, C], p + 'mlp.c_proj.bias': [C]})
assert sorted(header) == sorted(want), (sorted(set(header) ^ set(want)))
data = raw[8 + n:]
cursor = 0
sums = {}
for name, e in sorted(header.items(), key=lambda kv: kv[1]['data_offsets']):
    assert e['dtype'] == 'F32' and e['shape'] == want[name], (name, e)
    b, end = e['data_offsets']
    assert b == cursor and end - b == 4 * math.prod(e['shape']), name
    vals = struct.unpack('<%df' % math.prod(e['shape']), data[b:end])
    sums[name] = math.fsum(v for v in vals if abs(v) < 1e30)
    cursor = end
assert cursor == len(data)
z.extractall(out)
print(json.dumps({'names': names, 'front': front, 'card': card, 'sums': sums, 'header_length': n}))
`;

describe('export as a Hugging Face folder', () => {
  it('writes the folder, and loading it gives bit-identical parameters and the same tokenizer', async () => {
    const out = join(dir, 'folder');
    const seen: number[] = [];
    const written = await writeHfFolder(out, input(), { onProgress: (p) => seen.push(p.bytes) });
    expect(written).toEqual(['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'README.md', 'model.safetensors']);
    expect((await readdir(out)).sort()).toEqual([...written].sort()); // no .partial left
    const back = await loadModelDir(out);
    expect(back.config).toEqual(config);
    expectSameBits(back.params, params);
    const files = await nodeDirFiles(out);
    const { tokenizer, source } = await tokenizerFromModelFiles(files.names().map((n) => files.get(n)!));
    expect(source).toBe('tokenizer.json');
    const original = tokenizerFromJson(tinyTokenizer().tokenizerJson, tinyTokenizer().tokenizerConfig);
    const text = 'Héllo, wörld!<|endoftext|> 日本';
    expect(tokenizer.encode(text)).toEqual(original.encode(text));
    for (let i = 1; i < seen.length; i++) expect(seen[i]).toBeGreaterThanOrEqual(seen[i - 1]);
    expect(JSON.parse(await readFile(join(out, 'generation_config.json'), 'utf8'))).toEqual({ _from_model_config: true, bos_token_id: 256, eos_token_id: 256 });
  });

  it('reads a per-tensor reader lazily, once per tensor, in order, as model.safetensors is written', async () => {
    const calls: string[] = [];
    const files = hfFolderFiles(input({ params: async (name) => { calls.push(name); return params.get(name)!; } }));
    expect(calls).toEqual([]);
    const weights = files.find((f) => f.name === 'model.safetensors')!;
    const chunks = (weights.data as () => AsyncIterable<Uint8Array>)();
    const it = chunks[Symbol.asyncIterator]();
    await it.next(); // the header
    expect(calls).toEqual([]);
    await it.next(); // the first tensor's bytes
    expect(calls).toEqual(['wte.weight']);
    for (let r = await it.next(); !r.done; r = await it.next());
    expect(calls).toEqual(paramSpecs(config).map((s) => s.name));
  });

  it('refuses a reader that gives the wrong size, and a tokenizer larger than the vocabulary', async () => {
    const bad = hfFolderFiles(input({ params: async () => new Float32Array(3) })).find((f) => f.name === 'model.safetensors')!;
    await expect((async () => { for await (const _ of (bad.data as () => AsyncIterable<Uint8Array>)()); })()).rejects.toThrow(ExportError);
    const small = parseConfig({ model_type: 'gpt2', vocab_size: 200, n_positions: 8, n_embd: 8, n_layer: 1, n_head: 2 });
    const smallParams = new Map(paramSpecs(small).map((s) => [s.name, new Float32Array(s.numel)]));
    expect(() => hfFolderFiles({ config: small, params: smallParams, tokenizer: tinyTokenizer() })).toThrow(/tokenizer has ids up to 256 but the model's vocabulary has 200/);
  });
});

describe('export as a .zip', () => {
  it('streams an archive of the exact announced size that Python reads, checks and extracts; it loads back bit for bit', async () => {
    const progress: number[] = [];
    const z = hfExportZip(input(), { onProgress: (p) => progress.push(p.bytes) });
    expect(z.filename).toBe('tiny-shakespeare.zip');
    const path = join(dir, z.filename);
    const n = await streamToFile(z.stream, path);
    expect(n).toBe(z.size);
    expect(progress.at(-1)).toBe(z.size);
    const out = join(dir, 'unzipped');
    const py = runPython<{ names: string[]; front: string; card: string; sums: Record<string, number> }>(PY, [path, 'tiny-shakespeare', out]);
    expect(py.front).toContain('base_model: "openai-community/gpt2"');
    expect(py.front).toContain('library_name: transformers');
    const back = await loadModelDir(join(out, 'tiny-shakespeare'));
    expectSameBits(back.params, params);
    if (hasCommand('unzip')) {
      const r = spawnSync('unzip', ['-tq', path], { encoding: 'utf8' });
      expect(r.status, r.stdout + r.stderr).toBe(0);
    }
  });

  it('the Python check is not a rubber stamp: a renamed tensor or a wrong shape fails it', async () => {
    // A valid archive of the folder whose model.safetensors has one tensor renamed or reshaped.
    const cases: Array<[string, (t: WriteTensor[]) => void, RegExp]> = [
      ['renamed', (t) => { t[2].name = 'transformer.h.0.ln_9.weight'; }, /ln_9/],
      ['reshaped', (t) => { const w = t.find((x) => x.name.endsWith('h.1.attn.c_proj.weight'))!; w.shape = [w.shape[1] * 2, w.shape[0] / 2]; }, /h\.1\.attn\.c_proj\.weight/],
    ];
    for (const [name, edit, why] of cases) {
      const tensors = checkpointTensors(config, params);
      edit(tensors);
      const entries: ZipEntry[] = hfFolderFiles(input()).map((f) => ({
        name: `${name}/${f.name}`,
        data: f.name === 'model.safetensors' ? writeSafetensors(tensors) : (f.data as Uint8Array),
      }));
      const path = join(dir, `${name}.zip`);
      await writeFile(path, new Uint8Array(await new Response(zipReadableStream(entries)).arrayBuffer()));
      expect(() => runPython(PY, [path, name, join(dir, `${name}-out`)])).toThrow(why);
    }
  });

  it('hfExportZipBlob without OPFS (as in Node) gathers the same archive into a Blob', async () => {
    expect((globalThis as { navigator?: { storage?: unknown } }).navigator?.storage).toBeUndefined();
    const { blob, filename, size } = await hfExportZipBlob(input());
    const direct = new Uint8Array(await new Response(hfExportZip(input()).stream).arrayBuffer());
    expect(filename).toBe('tiny-shakespeare.zip');
    expect(blob.size).toBe(size);
    expect(new Uint8Array(await blob.arrayBuffer())).toEqual(direct);
  });

  it('puts the files at the root with folder ""; the folder name is made safe', () => {
    expect(safeFolderName('../my model: v2!')).toBe('my-model-v2');
    expect(safeFolderName('')).toBe('model');
    const z = hfExportZip(input({ card: { name: 'x' } }), { folder: '' });
    expect(z.size).toBeGreaterThan(0);
  });
});

describe('the model card', () => {
  it('states the base model, corpus, settings and final metrics', () => {
    const card = modelCard(config, input().card);
    expect(card.split('\n')[0]).toBe('---');
    for (const s of [
      'base_model: "openai-community/gpt2"',
      'pipeline_tag: text-generation',
      '# tiny-shakespeare',
      '[openai-community/gpt2](https://huggingface.co/openai-community/gpt2)',
      '`input.txt`',
      '| tokens (with one end-of-text token per document) | 338,025 |',
      '| training tokens | 304,222 |',
      '| windows of 64 tokens | 5,281 |',
      '| batch (rows × tokens × accumulation) | 4 × 64 × 2 = 512 tokens per step |',
      '| schedule | cosine, warmup 30 steps, down to 0.1 of the peak |',
      '| discriminative rate factor (lr / f^(L+1−depth)) | 1.2 |',
      '| frozen | embeddings, 0 |',
      '| optimizer | AdamW (β1 0.9, β2 0.999, ε 1e-8, weight decay 0.01 on matrices only) |',
      '| training loss | 3.2100 |',
      `| training perplexity | ${Math.exp(3.21).toFixed(2)} |`,
      '| validation loss | 3.5000 |',
      `| validation perplexity | ${Math.exp(3.5).toFixed(2)} |`,
      'GPT2LMHeadModel.from_pretrained("./tiny-shakespeare")',
    ]) expect(card).toContain(s);
  });

  it('leaves out base_model when the base is not a Hub id, and escapes table cells', () => {
    const card = modelCard(config, { baseModel: 'my local | folder', metrics: { extra: { 'a|b': 'c' } } });
    expect(card).not.toContain('base_model:');
    expect(card).toContain('`my local | folder`');
    expect(card).toContain('| a\\|b | c |');
  });

  it('writes metrics as the page does: losses with 4 decimals, other numbers with 4 significant digits, never a long float', () => {
    const card = modelCard(config, { metrics: { trainLoss: 1 / 3, valLoss: 2, seconds: 12.3456, extra: { ratio: 0.06893382352941177, 'validation next-token accuracy': '6.89%' } } });
    expect(card).toContain('| training loss | 0.3333 |');
    expect(card).toContain('| validation loss | 2.0000 |');
    expect(card).toContain('| training time | 12.3 s |');
    expect(card).toContain('| ratio | 0.06893 |');
    expect(card).toContain('| validation next-token accuracy | 6.89% |');
    expect(card).not.toMatch(/\d\.\d{6,}/);
  });

  it('names no Hub repository for the built-in demo model', () => {
    const card = modelCard(config, { baseModel: "the studio's built-in demo GPT-2 (randomly initialized)" });
    expect(card).not.toContain('base_model:');
    expect(card).not.toContain('huggingface.co/');
  });
});
