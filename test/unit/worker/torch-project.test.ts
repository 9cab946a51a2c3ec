// "Continue on a cluster" in the page: a run saved in the browser (an in-memory stand-in of OPFS)
// becomes the PyTorch project's zip entries: the run's training split as data/train.bin, its
// held-out split as data/eval.bin, the checkpoint naming them inside the project, train.py and
// the README; the project, written out as the zip would unpack, runs under PyTorch. A save whose
// corpus does not give the checkpoint's training tokens is refused.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { splitCorpus, type TokenizedCorpus } from '../../../src/io/corpus.ts';
import { tokensFingerprint } from '../../../src/io/run-checkpoint.ts';
import { RunStore, type RunFile } from '../../../src/io/run-store.ts';
import { Sha256 } from '../../../src/io/sha256.ts';
import { readTokenFile } from '../../../src/io/token-files.ts';
import type { ZipEntry } from '../../../src/io/zip.ts';
import { corpusAssets, PAGE_STATE_NAME } from '../../../src/worker/autosave.ts';
import { findCheckpoint, importedRun, type LoadedCorpus } from '../../../src/worker/import-run.ts';
import { torchProjectEntries } from '../../../src/worker/torch-project.ts';
import { fakeOpfs } from '../../helpers/fake-opfs.ts';
import { goldenCheckpoint, readLog, TRAIN_PY, trainPy } from '../../helpers/torch-project.ts';

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'torch-page-'));
});
afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

const GOLD_TOKENS = new URL('../../goldens/gpt2-tiny/train.bin', import.meta.url).pathname;
const T = 16;

/** A saved page run over the golden tiny model: 5 documents of the golden stream, a 0.2 validation split. */
async function savedRun(damage = false): Promise<{ store: RunStore; id: string; train: ArrayLike<number>; val: ArrayLike<number> }> {
  const all = readTokenFile(new Uint8Array(readFileSync(GOLD_TOKENS)), 'train.bin').tokens;
  const docStarts = Uint32Array.from([0, 150, 300, 450, 600, all.length]);
  const tokenized: TokenizedCorpus = { tokens: all, docStarts, stats: { files: 1, documents: 5, characters: 0, bytes: 0, tokens: all.length } as TokenizedCorpus['stats'] };
  const settings = { valFraction: 0.2, seed: 3, seq: T };
  const split = splitCorpus(tokenized, { valFraction: settings.valFraction, seed: settings.seed, contextLength: T });
  const ck = join(root, `ck-${Math.random().toString(36).slice(2)}`);
  goldenCheckpoint(ck, 'full', { seq: T, steps: 3 });
  const state = JSON.parse(readFileSync(join(ck, 'trainer_state.json'), 'utf8'));
  state.windows = Math.floor((split.train.length - 1) / T);
  state.data = { train: ['corpus.txt'], eval: [] }; // the page names the files the user dropped
  state.fingerprints.train_tokens = damage ? 'sha256:' + '1'.repeat(64) : tokensFingerprint(split.train, new Sha256());
  const file = (name: string, data: Uint8Array): RunFile => ({ name, data });
  const pageState = {
    format: 'webgpu-finetuning-studio/page-state', version: 1, model: { name: 'gpt2-tiny', source: { kind: 'builtin' } },
    corpus: { name: 'corpus.txt', names: ['corpus.txt'], options: {}, stats: tokenized.stats }, settings, frozen: [], sample: {}, events: [], evalBefore: null,
  };
  const checkpoint = [
    ...['config.json', 'model.safetensors', 'optimizer.safetensors'].map((n) => file(n, new Uint8Array(readFileSync(join(ck, n))))),
    file('trainer_state.json', new TextEncoder().encode(JSON.stringify(state))),
    file(PAGE_STATE_NAME, new TextEncoder().encode(JSON.stringify(pageState))),
  ];
  const store = new RunStore(fakeOpfs().root);
  const id = store.newRunId();
  await store.save(id, { summary: { model: 'gpt2-tiny', corpus: 'corpus.txt', step: 0, totalSteps: 3, state: 'paused' }, checkpoint, assets: { corpus: corpusAssets(tokenized) } });
  return { store, id, train: split.train, val: split.val };
}

async function unpack(entries: ZipEntry[], dir: string): Promise<void> {
  for (const e of entries) {
    const parts: Uint8Array[] = [];
    if (e.data instanceof Uint8Array) parts.push(e.data);
    else for await (const c of e.data()) parts.push(c);
    mkdirSync(dirname(join(dir, e.name)), { recursive: true });
    writeFileSync(join(dir, e.name), Buffer.concat(parts));
  }
}

describe('the page\'s "Continue on a cluster" zip', () => {
  it('holds the run\'s splits, the checkpoint naming them, train.py and the README; the project runs', async () => {
    const { store, id, train, val } = await savedRun();
    const { entries, bytes } = await torchProjectEntries(store, id, 'gpt2-tiny-checkpoint-0-torch');
    const names = entries.map((e) => e.name.replace(/^gpt2-tiny-checkpoint-0-torch\//, '')).sort();
    expect(names).toEqual(['README.md', 'checkpoint/config.json', 'checkpoint/model.safetensors', 'checkpoint/optimizer.safetensors', 'checkpoint/trainer_state.json', 'data/eval.bin', 'data/train.bin', 'train.py']);
    expect(bytes).toBe(entries.reduce((a, e) => a + (e.size ?? 0), 0));
    const dir = join(root, 'unpacked');
    await unpack(entries, dir);
    const proj = join(dir, 'gpt2-tiny-checkpoint-0-torch');
    expect(readFileSync(join(proj, 'train.py'), 'utf8')).toBe(readFileSync(TRAIN_PY, 'utf8'));
    expect([...readTokenFile(new Uint8Array(readFileSync(join(proj, 'data/train.bin'))), 'train.bin').tokens]).toEqual(Array.from(train));
    expect([...readTokenFile(new Uint8Array(readFileSync(join(proj, 'data/eval.bin'))), 'eval.bin').tokens]).toEqual(Array.from(val));
    expect(val.length).toBeGreaterThan(T);
    const state = JSON.parse(readFileSync(join(proj, 'checkpoint/trainer_state.json'), 'utf8'));
    expect(state.data).toEqual({ train: ['../data/train.bin'], eval: ['../data/eval.bin'] });
    expect(readFileSync(join(proj, 'README.md'), 'utf8')).toContain('`gpt2-tiny`');
    const r = trainPy(['--out', join(proj, 'runs/continued')], 1, {}, join(proj, 'train.py'));
    expect(r.status, r.stderr).toBe(0);
    const log = readLog(join(proj, 'runs/continued/log.jsonl'));
    expect(log.filter((l) => l.loss !== undefined).map((l) => l.step)).toEqual([1, 2, 3]);
  });

  it('a checkpoint train.py wrote is taken by the page\'s "Resume from a checkpoint" like a command-line one', async () => {
    const ck = join(root, 'ck-back');
    goldenCheckpoint(ck, 'full', { steps: 4 });
    const out = join(root, 'back-out');
    const r = trainPy(['--checkpoint', ck, '--out', out, '--steps', '4', '--save-every', '2']);
    expect(r.status, r.stderr).toBe(0);
    const dir = join(out, 'checkpoint-2');
    const files = readdirSync(dir).map((n) => ({ path: `checkpoint-2/${n}`, file: new Blob([readFileSync(join(dir, n))]) }));
    const found = findCheckpoint(files);
    const all = readTokenFile(new Uint8Array(readFileSync(GOLD_TOKENS)), 'train.bin').tokens;
    const tokenized = { tokens: all, docStarts: Uint32Array.from([0, all.length]), stats: { files: 1, documents: 1, characters: 0, bytes: 0, tokens: all.length } as TokenizedCorpus['stats'] };
    const run = await importedRun(found, { name: 'train.bin', names: ['train.bin'], options: {} as LoadedCorpus['options'], tokenized });
    expect(run.summary).toMatchObject({ step: 2, totalSteps: 4, state: 'stopped' });
    const other = { ...tokenized, tokens: all.slice(1), docStarts: Uint32Array.from([0, all.length - 1]) };
    await expect(importedRun(found, { name: 'x', names: ['x'], options: {} as LoadedCorpus['options'], tokenized: other })).rejects.toThrow(/token fingerprints differ/);
  });

  it('refuses a save whose corpus does not give the checkpoint\'s training tokens', async () => {
    const { store, id } = await savedRun(true);
    await expect(torchProjectEntries(store, id, 'x')).rejects.toThrow(/fingerprints differ/);
  });
});
