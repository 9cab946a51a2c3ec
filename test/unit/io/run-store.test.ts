// The page's saved runs over an in-memory stand-in of OPFS: a save is whole or absent (a crash,
// an abort or a full quota mid-save leaves the previous save readable and nothing half-written
// listed), later saves replace earlier ones, asset groups are written once and kept, sizes,
// delete, clean-up of leftovers, and the zip layout a download uses.
import { describe, expect, it } from 'vitest';
import { RunStore, RunStoreError, StorageFullError, RUNS_FOLDER, type RunFile, type RunSummary } from '../../../src/io/run-store.ts';
import { zipChunks } from '../../../src/io/zip.ts';
import { fakeOpfs } from '../../helpers/fake-opfs.ts';

const bytes = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed * 7) & 0xff);
const summary = (step: number, state: RunSummary['state'] = 'running'): RunSummary => ({ model: 'gpt2', corpus: 'shakespeare', step, totalSteps: 100, state });
const ckpt = (step: number): RunFile[] => [
  { name: 'model.safetensors', data: bytes(100, step) },
  { name: 'trainer_state.json', data: new TextEncoder().encode(JSON.stringify({ step })) },
];
const text = async (b: Blob | undefined) => (b ? await b.text() : undefined);

function clockStore(root = fakeOpfs()) {
  let t = 1_800_000_000_000;
  return { fs: root, store: new RunStore(root.root, { now: () => (t += 1000) }) };
}

describe('RunStore', () => {
  it('saves a run, lists it with its size, and opens its files', async () => {
    const { store } = clockStore();
    const id = store.newRunId();
    expect(id).toMatch(/^run-\d{8}T\d{6}-[0-9a-f]{8}$/);
    expect(await store.list()).toEqual([]);
    await store.save(id, { summary: summary(10), checkpoint: ckpt(10), assets: { tokens: [{ name: 'train.u32', data: bytes(40) }] } });
    const [r] = await store.list();
    expect(r.id).toBe(id);
    expect(r.summary).toEqual(summary(10));
    expect(r.bytes).toBe(100 + JSON.stringify({ step: 10 }).length + 40);
    const o = await store.open(id);
    expect([...o.checkpoint.keys()]).toEqual(['model.safetensors', 'trainer_state.json']);
    expect(new Uint8Array(await o.checkpoint.get('model.safetensors')!.arrayBuffer())).toEqual(bytes(100, 10));
    expect(new Uint8Array(await o.assets.tokens.get('train.u32')!.arrayBuffer())).toEqual(bytes(40));
  });

  it('streams chunked files and replaces the checkpoint at the next save, keeping assets not given again', async () => {
    const { fs, store } = clockStore();
    const id = store.newRunId();
    await store.save(id, { summary: summary(10), checkpoint: ckpt(10), assets: { tokens: [{ name: 'train.u32', data: bytes(40) }] } });
    const first = await store.list();
    await store.save(id, {
      summary: summary(20, 'paused'),
      checkpoint: [{ name: 'model.safetensors', data: function* () { yield bytes(30, 1); yield bytes(20, 2); } }],
    });
    const [r] = await store.list();
    expect(r.summary.step).toBe(20);
    expect(r.saved).toBeGreaterThan(first[0].saved);
    expect(r.created).toBe(first[0].created);
    const o = await store.open(id);
    const got = new Uint8Array(await o.checkpoint.get('model.safetensors')!.arrayBuffer());
    expect(got).toEqual(new Uint8Array([...bytes(30, 1), ...bytes(20, 2)]));
    expect(o.checkpoint.has('trainer_state.json')).toBe(false);
    expect(await text(o.assets.tokens.get('train.u32'))).toBe(await text(new Blob([bytes(40)])));
    // Only the manifest, the new checkpoint and the kept asset folder remain.
    expect(fs.paths().filter((p) => p.startsWith(`${RUNS_FOLDER}/${id}/`)).map((p) => p.split('/').slice(2).join('/'))).toEqual(['ckpt-2/model.safetensors', 'run.json', 'tokens-1/train.u32']);
  });

  it('keeps the previous save whole when a save fails part-way, and removes what it wrote', async () => {
    const { fs, store } = clockStore();
    const id = store.newRunId();
    await store.save(id, { summary: summary(10), checkpoint: ckpt(10) });
    const before = fs.paths();
    const failing: RunFile = { name: 'optimizer.safetensors', data: async function* () { yield bytes(10); throw new Error('disk went away'); } };
    await expect(store.save(id, { summary: summary(20), checkpoint: [...ckpt(20), failing] })).rejects.toThrow(/Saving run .* failed: disk went away/);
    expect(fs.paths()).toEqual(before);
    const o = await store.open(id);
    expect(o.manifest.summary.step).toBe(10);
    expect(await text(o.checkpoint.get('trainer_state.json'))).toBe(JSON.stringify({ step: 10 }));
  });

  it('lists nothing for a first save cut short by a closed tab, and cleans it up', async () => {
    const { fs, store } = clockStore();
    const id = store.newRunId();
    let release!: () => void;
    const stalled: RunFile = { name: 'optimizer.safetensors', data: async function* () { yield bytes(10); await new Promise<void>((r) => (release = r)); } };
    const saving = store.save(id, { summary: summary(5), checkpoint: [...ckpt(5), stalled] });
    await new Promise((r) => setTimeout(r, 10));
    fs.crash(); // the tab closes: the open write never reaches its file
    expect(await store.list()).toEqual([]);
    release();
    await saving.catch(() => {});
    // a fresh page (a new store over the same files) neither lists nor keeps the leftovers
    const again = new RunStore(fs.root);
    expect(await again.list()).toEqual([]);
    await again.cleanUp();
    expect(fs.paths()).toEqual([]);
  });

  it('an aborted save leaves the previous one', async () => {
    const { store } = clockStore();
    const id = store.newRunId();
    await store.save(id, { summary: summary(10), checkpoint: ckpt(10) });
    const ac = new AbortController();
    const slow: RunFile = { name: 'big', data: async function* () { yield bytes(10); ac.abort(); yield bytes(10); } };
    await expect(store.save(id, { summary: summary(11), checkpoint: [slow], signal: ac.signal })).rejects.toThrow();
    expect((await store.list())[0].summary.step).toBe(10);
  });

  it('a full quota says which saved runs to delete, and the earlier save survives', async () => {
    const { store } = clockStore();
    const other = store.newRunId();
    await store.save(other, { summary: { ...summary(50), model: 'distilgpt2', corpus: 'poems' }, checkpoint: [{ name: 'model.safetensors', data: bytes(3_000_000) }] });
    const id = `${other}-b`;
    const full: RunFile = { name: 'model.safetensors', data: async function* () { yield bytes(8); throw new DOMException('quota', 'QuotaExceededError'); } };
    const err = await store.save(id, { summary: summary(1), checkpoint: [full] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageFullError);
    expect((err as Error).message).toMatch(/storage for this site is full/);
    expect((err as Error).message).toContain('distilgpt2 on poems, step 50 (3 MB)');
    expect((err as Error).message).toMatch(/Delete saved runs/);
    expect((await store.list()).map((r) => r.id)).toEqual([other]);
  });

  it('deletes a run, refuses unknown ids and file names that are not plain names', async () => {
    const { fs, store } = clockStore();
    const id = store.newRunId();
    await store.save(id, { summary: summary(1), checkpoint: ckpt(1) });
    await expect(store.open('nope')).rejects.toBeInstanceOf(RunStoreError);
    await expect(store.open('../x')).rejects.toBeInstanceOf(RunStoreError);
    await expect(store.save(id, { summary: summary(2), checkpoint: [{ name: 'a/b', data: bytes(1) }] })).rejects.toThrow(/cannot hold a file named "a\/b"/);
    await expect(store.save(id, { summary: summary(2), checkpoint: [{ name: 'run.json', data: bytes(1) }] })).rejects.toBeInstanceOf(RunStoreError);
    expect((await store.list())[0].summary.step).toBe(1);
    await store.delete(id);
    expect(await store.list()).toEqual([]);
    expect(fs.paths()).toEqual([]);
    await expect(store.delete(id)).rejects.toBeInstanceOf(RunStoreError);
  });

  it('ignores folders whose manifest is not a saved run, and newest saves come first', async () => {
    const { fs, store } = clockStore();
    const a = store.newRunId();
    await store.save(a, { summary: summary(1), checkpoint: ckpt(1) });
    const b = `${a}-2`;
    await store.save(b, { summary: summary(2), checkpoint: ckpt(2) });
    const odd = await (await fs.root.getDirectoryHandle(RUNS_FOLDER)).getDirectoryHandle('odd', { create: true });
    const w = await (await odd.getFileHandle('run.json', { create: true })).createWritable();
    await w.write(new TextEncoder().encode('{"format":"something else"}'));
    await w.close();
    expect((await store.list()).map((r) => r.id)).toEqual([b, a]);
    await store.cleanUp();
    expect(fs.paths().some((p) => p.includes('/odd/'))).toBe(true); // not ours to remove
  });

  it('zips the checkpoint as checkpoint-<step>/ and the page assets under studio/', async () => {
    const { store } = clockStore();
    const id = store.newRunId();
    await store.save(id, { summary: summary(40), checkpoint: ckpt(40), assets: { tokens: [{ name: 'train.u32', data: bytes(12) }] } });
    const entries = await store.zipEntries(id, 'gpt2-run');
    expect(entries.map((e) => e.name)).toEqual(['gpt2-run/checkpoint-40/model.safetensors', 'gpt2-run/checkpoint-40/trainer_state.json', 'gpt2-run/studio/tokens/train.u32']);
    let size = 0;
    for await (const c of zipChunks(entries)) size += c.length;
    expect(size).toBeGreaterThan(100 + 12);
  });
});

describe('RunStore.updateCheckpointFile', () => {
  it('replaces one file of the current checkpoint and the summary, leaving the rest', async () => {
    const { store } = clockStore();
    const id = store.newRunId();
    await store.save(id, { summary: summary(8), checkpoint: ckpt(8) });
    await store.updateCheckpointFile(id, { name: 'trainer_state.json', data: new TextEncoder().encode('{"step":8,"final":true}') }, summary(8, 'finished'));
    const o = await store.open(id);
    expect(await text(o.checkpoint.get('trainer_state.json'))).toBe('{"step":8,"final":true}');
    expect(new Uint8Array(await o.checkpoint.get('model.safetensors')!.arrayBuffer())).toEqual(bytes(100, 8));
    expect(o.manifest.summary.state).toBe('finished');
    await expect(store.updateCheckpointFile(id, { name: '../x', data: bytes(1) })).rejects.toBeInstanceOf(RunStoreError);
  });
});
