// Dropping a checkpoint on the page: a saved run downloaded as a .zip resumes in a fresh page
// (its own corpus token ids and model files inside), and a checkpoint written by the command line
// resumes on the corpus loaded in the page (checked by fingerprint) and finishes with the same
// weights, bit for bit, as the command line's own run to the end.
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.ts';
import { RunStore } from '../../src/io/run-store.ts';
import { readSafetensors } from '../../src/io/safetensors.ts';
import type { WorkerEvent, WorkerRequest } from '../../src/worker/protocol.ts';
import { DEFAULT_SAMPLE, DEFAULT_TRAIN, type TrainSettings } from '../../src/worker/settings.ts';
import { Studio } from '../../src/worker/studio.ts';
import { nodeGpu } from '../../src/cli/webgpu-node.ts';
import { tinyModel } from '../e2e/tiny-model.ts';
import { fakeOpfs } from '../helpers/fake-opfs.ts';

type Ev<T extends WorkerEvent['type']> = Extract<WorkerEvent, { type: T }>;

const model = tinyModel(5);
const corpus = Array.from({ length: 80 }, (_, i) => `Row ${i}: a small corpus for a tiny model, read byte by byte.`).join('\n');
const SETTINGS: TrainSettings = {
  ...DEFAULT_TRAIN, steps: 8, batch: 2, seq: 16, lr: 1e-2, evalEvery: 0, sampleEvery: 0, dropout: 0.1, order: 'shuffled', valFraction: 0.1, schedule: 'cosine', warmup: 2,
  autosaveMinutes: 0,
};
const SAMPLE = { ...DEFAULT_SAMPLE, prompt: 'Row', maxNewTokens: 4 };
const work = mkdtempSync(join(tmpdir(), 'studio-import-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function session() {
  const store = new RunStore(fakeOpfs().root);
  const events: WorkerEvent[] = [];
  let onEvent: ((ev: WorkerEvent) => void) | null = null;
  const studio = new Studio((ev) => {
    events.push(ev);
    onEvent?.(ev);
  }, await nodeGpu(), { runStore: async () => store });
  const of = <T extends WorkerEvent['type']>(type: T): Array<Ev<T>> => events.filter((e): e is Ev<T> => e.type === type);
  return { store, events, of, send: (req: WorkerRequest) => studio.handle(req), on: (f: ((ev: WorkerEvent) => void) | null) => (onEvent = f) };
}
type Session = Awaited<ReturnType<typeof session>>;

async function load(s: Session, valFraction: number) {
  const files = Object.entries(model.files).map(([name, bytes]) => ({ path: `tiny/${name}`, file: new Blob([new Uint8Array(bytes)]) }));
  await s.send({ type: 'loadModel', source: { kind: 'files', files } });
  await s.send({ type: 'loadCorpus', source: { kind: 'files', files: [new File([corpus], 'rows.txt')] }, options: { jsonlField: 'text', csvColumn: 'text' }, valFraction, seed: SETTINGS.seed, contextLength: 16 });
}

async function exported(s: Session): Promise<Map<string, Uint8Array>> {
  await s.send({ type: 'export', format: 'safetensors' });
  return bitsOf(new Uint8Array(await s.of('exported').at(-1)!.blob.arrayBuffer()));
}

function bitsOf(file: Uint8Array): Map<string, Uint8Array> {
  return new Map([...readSafetensors(file)].map(([k, v]) => [k, new Uint8Array(v.data.buffer, v.data.byteOffset, v.data.byteLength)]));
}

describe('resuming a dropped checkpoint', () => {
  it('a saved run downloaded as a .zip resumes in a fresh page to the weights of a run never interrupted', async () => {
    const ref = await session();
    await load(ref, SETTINGS.valFraction);
    await ref.send({ type: 'train', settings: SETTINGS, frozen: [0], sample: SAMPLE });
    const reference = await exported(ref);

    const a = await session();
    await load(a, SETTINGS.valFraction);
    const saved = new Promise<void>((resolve) => a.on((ev) => {
      if (ev.type === 'step' && ev.step === 3) void a.send({ type: 'pause' });
      if (ev.type === 'saved') resolve();
    }));
    void a.send({ type: 'train', settings: SETTINGS, frozen: [0], sample: SAMPLE });
    await saved;
    a.on(null);
    await a.send({ type: 'runsList' });
    const id = a.of('runs')[0].runs[0].id;
    await a.send({ type: 'runDownload', id });
    const zip = a.of('runZip')[0];
    expect(zip.fileName).toMatch(/^tiny-checkpoint-\d+\.zip$/);
    await a.send({ type: 'loseDevice' });

    const b = await session();
    await b.send({ type: 'runImport', files: [{ path: zip.fileName, file: zip.blob }] });
    expect(b.of('error')).toEqual([]);
    expect(b.of('runState').map((e) => e.state)).toEqual(['starting', 'running', 'finished']);
    expect(b.of('step').map((e) => e.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(await exported(b)).toEqual(reference);
  });

  it("a command-line checkpoint resumes on the page's corpus to the command line's own final weights", async () => {
    const dir = join(work, 'tiny');
    mkdirSync(dir, { recursive: true });
    for (const [name, bytes] of Object.entries(model.files)) writeFileSync(join(dir, name), bytes);
    writeFileSync(join(work, 'rows.txt'), corpus);
    const out = join(work, 'out');
    const args = [
      'train', '--model', dir, '--data', join(work, 'rows.txt'), '--out', out, '--steps', '8', '--batch', '2', '--seq', '16', '--lr', '0.01',
      '--dropout', '0.1', '--order', 'shuffled', '--schedule', 'cosine', '--warmup', '2', '--seed', String(SETTINGS.seed), '--save-every', '4', '--freeze', 'embeddings',
    ];
    expect(await main(args, () => {})).toBe(0);
    expect(readdirSync(out).filter((n) => n.startsWith('checkpoint-')).sort()).toEqual(['checkpoint-4', 'checkpoint-8']);
    const cliFinal = bitsOf(new Uint8Array(readFileSync(join(out, 'checkpoint-8', 'model.safetensors'))));

    const s = await session();
    // Without the training data loaded, the page says which data to load.
    const ck4 = readdirSync(join(out, 'checkpoint-4')).map((name) => ({ path: `checkpoint-4/${name}`, file: new Blob([readFileSync(join(out, 'checkpoint-4', name))]) }));
    await s.send({ type: 'runImport', files: ck4 });
    expect(s.of('error').at(-1)).toMatchObject({ name: 'SavedRunError', message: expect.stringMatching(/trained on rows\.txt\. Load that data/) });
    await load(s, 0);
    await s.send({ type: 'runImport', files: ck4 });
    expect(s.of('error')).toHaveLength(1);
    expect(s.of('restored')[0]).toMatchObject({ frozen: [0], settings: { steps: 8, valFraction: 0, dropout: 0.1, order: 'shuffled', schedule: 'cosine' } });
    expect(s.of('runState').map((e) => e.state)).toEqual(['starting', 'running', 'finished']);
    expect(s.of('step').map((e) => e.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(await exported(s)).toEqual(cliFinal);
  });
});
