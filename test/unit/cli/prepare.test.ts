// `prepare` end to end through the CLI's main(): text and .jsonl corpora → train.bin / val.bin
// (nanoGPT and llm.c formats) with the model's own tokenizer, stats printed as JSON; a Hub id
// served by the local Hub-layout server (config and tokenizer only, cached: no request the second
// time); `train` taking a Hub id too; and bad input ending in one clear line.
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../../src/cli/main.ts';
import { readTokenFile } from '../../../src/io/token-files.ts';
import { tokenizerFromJson } from '../../../src/io/tokenizer.ts';
import { hubFixtures, startHubServer, tinyTokenizer, type HubServer } from '../../helpers/hub-server.ts';

let dir: string;
let server: HubServer;
let modelDir: string;
const fx = hubFixtures();
const tok = tinyTokenizer();
const tokenizer = tokenizerFromJson(tok.tokenizerJson, tok.tokenizerConfig);
const savedEnv = { STUDIO_CACHE: process.env.STUDIO_CACHE, HF_ENDPOINT: process.env.HF_ENDPOINT };

const DOCS = ['First document.\nWith two lines.', 'Second: ünïcode 日本 ok', 'Third one, the <|endoftext|> is special', 'Fourth', 'Fifth and last'];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'prepare-test-'));
  server = await startHubServer(fx.repos);
  modelDir = join(dir, 'tiny-model');
  await mkdir(modelDir);
  for (const [n, b] of Object.entries(fx.repos['tiny/gpt2'].files)) await writeFile(join(modelDir, n), b);
  for (const [i, d] of DOCS.entries()) await writeFile(join(dir, `doc${i}.txt`), d);
  await writeFile(join(dir, 'docs.jsonl'), DOCS.map((d) => JSON.stringify({ body: d })).join('\n') + '\n');
  process.env.STUDIO_CACHE = join(dir, 'cache');
  delete process.env.HF_ENDPOINT;
});
afterAll(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
  for (const [k, v] of Object.entries(savedEnv)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});
afterEach(() => vi.restoreAllMocks());

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const errs: string[] = [];
  vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void errs.push(a.join(' ')));
  const outs: string[] = [];
  const code = await main(args, (l) => outs.push(l));
  return { code, out: outs.join('\n'), err: errs.join('\n') };
}

const docTokens = (d: string) => [...tokenizer.encode(d), tokenizer.eosId];

describe('prepare', () => {
  it('writes train.bin / val.bin split by documents and prints the stats as JSON', async () => {
    const out = join(dir, 'out-txt');
    const files = DOCS.map((_, i) => join(dir, `doc${i}.txt`));
    const r = await cli(['prepare', '--model', modelDir, '--data', ...files, '--out', out, '--val-fraction', '0.4', '--seed', '7', '--seq', '8']);
    expect(r.err).not.toMatch(/^error/m);
    expect(r.code).toBe(0);
    const stats = JSON.parse(r.out);
    const all = DOCS.map(docTokens);
    expect(stats).toMatchObject({
      tokenizer: 'tokenizer.json', vocabSize: 257, eosId: 256, format: 'nanogpt', files: 5, documents: 5,
      tokens: all.flat().length, trainDocuments: 3, valDocuments: 2, splitBy: 'documents', contextLength: 8,
      characters: DOCS.reduce((a, d) => a + [...d].length, 0),
    });
    const train = readTokenFile(new Uint8Array(await readFile(join(out, 'train.bin'))), 'train.bin', 257);
    const val = readTokenFile(new Uint8Array(await readFile(join(out, 'val.bin'))), 'val.bin', 257);
    expect(train.format).toBe('nanogpt');
    expect(train.tokens.length).toBe(stats.trainTokens);
    expect(val.tokens.length).toBe(stats.valTokens);
    expect(stats.trainWindows).toBe(Math.floor((stats.trainTokens - 1) / 8));
    // Each side is whole documents in corpus order, together all of them: find the partition.
    const joined = (idx: number[]) => idx.flatMap((i) => all[i]).join();
    const splits = [];
    for (let mask = 0; mask < 32; mask++) {
      const v = [0, 1, 2, 3, 4].filter((i) => mask & (1 << i));
      const t = [0, 1, 2, 3, 4].filter((i) => !(mask & (1 << i)));
      if (joined(t) === [...train.tokens].join() && joined(v) === [...val.tokens].join()) splits.push(v);
    }
    expect(splits).toHaveLength(1);
    expect(splits[0]).toHaveLength(2);
    // The literal <|endoftext|> in the third document is the special token, as in HF's tokenizer.
    expect(all[2].filter((x) => x === 256)).toHaveLength(2);
    // The same seed gives the same split; another seed (here) another one.
    const again = await cli(['prepare', '--model', modelDir, '--data', ...files, '--out', join(dir, 'out-txt2'), '--val-fraction', '0.4', '--seed', '7', '--seq', '8']);
    expect(await readFile(join(dir, 'out-txt2', 'val.bin'))).toEqual(await readFile(join(out, 'val.bin')));
    expect(JSON.parse(again.out).trainTokens).toBe(stats.trainTokens);
  });

  it('reads a .jsonl field and writes llm.c token files', async () => {
    const out = join(dir, 'out-llmc');
    const r = await cli(['prepare', '--model', modelDir, '--data', join(dir, 'docs.jsonl'), '--out', out, '--jsonl-field', 'body', '--format', 'llmc', '--val-fraction', '0']);
    expect(r.code).toBe(0);
    const stats = JSON.parse(r.out);
    expect(stats).toMatchObject({ documents: 5, valTokens: 0, format: 'llmc' });
    const train = readTokenFile(new Uint8Array(await readFile(join(out, 'train.bin'))), 'train.bin');
    expect(train.format).toBe('llmc');
    expect([...train.tokens]).toEqual(DOCS.flatMap(docTokens));
  });

  it('says when a single document is split at a window boundary', async () => {
    const long = join(dir, 'long.txt');
    await writeFile(long, 'abcdefghij'.repeat(20));
    const r = await cli(['prepare', '--model', modelDir, '--data', long, '--out', join(dir, 'out-single'), '--seq', '16']);
    expect(r.code).toBe(0);
    const stats = JSON.parse(r.out);
    expect(stats).toMatchObject({ singleDocument: true, splitBy: 'window' });
    expect(stats.message).toMatch(/single document/);
    expect(r.err).toMatch(/single document, so it was split inside it at a window boundary/);
  });

  it('takes a Hub id: downloads config and tokenizer only, and the second time makes no request', async () => {
    const out = join(dir, 'out-hub');
    const args = ['prepare', '--model', 'tiny/gpt2', '--endpoint', server.endpoint, '--data', join(dir, 'doc0.txt'), join(dir, 'doc1.txt'), '--out', out];
    server.requests.length = 0;
    const r = await cli(args);
    expect(r.err).not.toMatch(/^error/m);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ model: 'tiny/gpt2', tokenizer: 'tokenizer.json', documents: 2 });
    const paths = server.requests.map((q) => q.path);
    expect(paths).toContain('/tiny/gpt2/resolve/main/config.json');
    expect(paths).toContain('/tiny/gpt2/resolve/main/tokenizer.json');
    expect(paths.some((p) => p.includes('safetensors'))).toBe(false);
    expect(r.err).toMatch(/model tiny\/gpt2@main: downloaded/);
    server.requests.length = 0;
    const again = await cli(args);
    expect(again.code).toBe(0);
    expect(server.requests).toHaveLength(0);
    expect(again.err).toMatch(/model tiny\/gpt2@main: from the cache/);
    // HF_ENDPOINT is honoured as huggingface_hub does, when --endpoint is not given.
    process.env.HF_ENDPOINT = server.endpoint;
    try {
      const viaEnv = await cli(['prepare', '--model', 'tiny/gpt2@v1.0', '--data', join(dir, 'doc0.txt'), '--out', join(dir, 'out-env')]);
      expect(viaEnv.code).toBe(0);
      expect(server.requests.some((q) => q.path.startsWith('/tiny/gpt2/resolve/v1.0/'))).toBe(true);
    } finally {
      delete process.env.HF_ENDPOINT;
    }
  });

  const bad: Array<{ name: string; args: () => string[]; expect: RegExp; code?: number }> = [
    { name: 'a folder that does not exist', args: () => ['--model', join(dir, 'nope'), '--data', join(dir, 'doc0.txt'), '--out', join(dir, 'x')], expect: /Model folder .*nope does not exist \(read as a path: it starts with '\/'\)\. Give a folder/ },
    { name: 'neither a folder nor a Hub id', args: () => ['--model', 'gpt2', '--data', join(dir, 'doc0.txt'), '--out', join(dir, 'x')], expect: /Model folder gpt2 does not exist, and it is not a Hugging Face Hub id/ },
    { name: 'a Hub id the server does not have', args: () => ['--model', 'nobody/nothing', '--endpoint', server.endpoint, '--data', join(dir, 'doc0.txt'), '--out', join(dir, 'x')], expect: /Repository nobody\/nothing was not found/ },
    { name: 'a token file as data', args: () => ['--model', modelDir, '--data', join(dir, 'train.bin'), '--out', join(dir, 'x')], expect: /looks like a token file already/ },
    { name: 'a missing data file', args: () => ['--model', modelDir, '--data', join(dir, 'missing.txt'), '--out', join(dir, 'x')], expect: /missing\.txt: no such file/ },
    { name: 'a validation fraction of 1', args: () => ['--model', modelDir, '--data', join(dir, 'doc0.txt'), '--out', join(dir, 'x'), '--val-fraction', '1'], expect: /--val-fraction must be in \[0, 1\)/, code: 2 },
    { name: 'an unknown format', args: () => ['--model', modelDir, '--data', join(dir, 'doc0.txt'), '--out', join(dir, 'x'), '--format', 'npy'], expect: /--format must be one of nanogpt, llmc/, code: 2 },
  ];
  for (const c of bad) {
    it(`refuses ${c.name} with one line`, async () => {
      await writeFile(join(dir, 'train.bin'), new Uint8Array(4));
      const r = await cli(['prepare', ...c.args()]);
      expect(r.code).toBe(c.code ?? 1);
      const errLines = r.err.split('\n').filter((l) => l.startsWith('error:'));
      expect(errLines).toHaveLength(1);
      expect(errLines[0]).toMatch(c.expect);
    });
  }

  it('refuses a vocabulary that does not fit uint16 token files', async () => {
    const big = join(dir, 'big-vocab');
    await mkdir(big, { recursive: true });
    const vocab: Record<string, number> = { ...(tok.tokenizerJson.model as { vocab: Record<string, number> }).vocab };
    for (let i = 257; i < 70_000; i++) vocab[`tok${i}`] = i;
    await writeFile(join(big, 'tokenizer.json'), JSON.stringify({ ...tok.tokenizerJson, model: { ...(tok.tokenizerJson.model as object), vocab } }));
    await writeFile(join(big, 'tokenizer_config.json'), JSON.stringify(tok.tokenizerConfig));
    await writeFile(join(big, 'config.json'), JSON.stringify({ model_type: 'gpt2', vocab_size: 70_000, n_positions: 16, n_embd: 8, n_layer: 1, n_head: 2 }));
    const r = await cli(['prepare', '--model', big, '--data', join(dir, 'doc0.txt'), '--out', join(dir, 'x')]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/error: The tokenizer has 70000 ids; nanoGPT and llm\.c token files store uint16 ids, so at most 65536/);
  });

  it('--out follows train\'s rules: never the model folder, never a folder of other files unless --overwrite; a rerun replaces its own files', async () => {
    const snap = async (p: string) => ({ bytes: await readFile(p), mtime: (await stat(p)).mtimeMs });
    const doc = join(dir, 'doc0.txt');
    const modelBefore = await snap(join(modelDir, 'config.json'));
    const inModel = await cli(['prepare', '--model', modelDir, '--data', doc, '--out', modelDir]);
    expect(inModel.code).toBe(1);
    expect(inModel.err).toMatch(/prepare: --out .*tiny-model is the model folder: the model would be overwritten/);
    expect(await snap(join(modelDir, 'config.json'))).toEqual(modelBefore);
    expect(await readdir(modelDir)).not.toContain('train.bin');

    const mine = join(dir, 'mine');
    await mkdir(mine, { recursive: true });
    await writeFile(join(mine, 'notes.txt'), 'mine');
    const notes = await snap(join(mine, 'notes.txt'));
    const refused = await cli(['prepare', '--model', modelDir, '--data', doc, '--out', mine]);
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/mine is not empty \(notes\.txt\) and is not an output of ours.*--overwrite/);
    expect(await readdir(mine)).toEqual(['notes.txt']);
    expect((await cli(['prepare', '--model', modelDir, '--data', doc, '--out', mine, '--overwrite'])).code).toBe(0);
    expect((await readdir(mine)).sort()).toEqual(['notes.txt', 'train.bin', 'val.bin']);
    expect(await snap(join(mine, 'notes.txt'))).toEqual(notes);

    const own = join(dir, 'own-out');
    expect((await cli(['prepare', '--model', modelDir, '--data', doc, '--out', own, '--val-fraction', '0'])).code).toBe(0);
    const first = await readFile(join(own, 'train.bin'));
    expect((await cli(['prepare', '--model', modelDir, '--data', doc, join(dir, 'doc1.txt'), '--out', own, '--val-fraction', '0'])).code).toBe(0);
    expect((await readFile(join(own, 'train.bin'))).length).toBeGreaterThan(first.length);
    expect((await readdir(own)).sort()).toEqual(['train.bin', 'val.bin']);
  });

  it('--help lists the options', async () => {
    const lines: string[] = [];
    expect(await main(['prepare', '--help'], (l) => lines.push(l))).toBe(0);
    for (const o of ['model', 'data', 'out', 'val-fraction', 'seed', 'seq', 'format', 'endpoint']) expect(lines.join('\n')).toContain(`--${o} `);
  });
});

describe('train with a Hub id', () => {
  it('downloads the model into the cache before any GPU work', async () => {
    server.requests.length = 0;
    // --seq above n_positions fails right after the model is loaded, before the GPU is touched.
    const r = await cli(['train', '--model', 'tiny/gpt2', '--endpoint', server.endpoint, '--data', join(dir, 'doc0.txt'), '--out', join(dir, 'y'), '--seq', '65']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/error: train: --seq 65 exceeds the model's n_positions 64/);
    expect(server.requests.map((q) => q.path)).toContain('/cdn/tiny/gpt2/main/model.safetensors');
  });
});
