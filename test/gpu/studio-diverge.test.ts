// A non-finite loss in the page's engine session (over Dawn and an in-memory stand-in of the
// browser's file system): the run pauses at that step, with the step named; its update is not
// applied (the weights are exactly those before it); nothing is saved over the run's last save;
// going back resumes that save with the learning rate × the chosen factor and trains to the end.
// Without a save to go back to, only stopping is offered.
import { describe, expect, it } from 'vitest';
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
  ...DEFAULT_TRAIN, steps: 10, batch: 2, seq: 16, lr: 1e-2, evalEvery: 0, sampleEvery: 0, dropout: 0, order: 'sequential', valFraction: 0, schedule: 'constant', warmup: 0,
  autosaveMinutes: 0,
};
const SAMPLE = { ...DEFAULT_SAMPLE, prompt: 'Row', maxNewTokens: 4 };

async function session(store: RunStore | null) {
  const events: WorkerEvent[] = [];
  const waiters: Array<{ test: (ev: WorkerEvent) => boolean; resolve: (ev: WorkerEvent) => void }> = [];
  const studio = new Studio((ev) => {
    events.push(ev);
    for (const w of waiters.splice(0)) {
      if (w.test(ev)) w.resolve(ev);
      else waiters.push(w);
    }
  }, await nodeGpu(), { runStore: async () => store });
  const of = <T extends WorkerEvent['type']>(type: T): Array<Ev<T>> => events.filter((e): e is Ev<T> => e.type === type);
  /** the next event that passes `test` (from now on); fails naming what came instead after 60 s */
  const next = <T extends WorkerEvent['type']>(type: T, test: (ev: Ev<T>) => boolean = () => true) =>
    new Promise<Ev<T>>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no ${type} event; the last events: ${JSON.stringify(events.slice(-6).map((e) => ('message' in e ? [e.type, e.message] : e.type)))}`)), 60_000);
      waiters.push({ test: (ev) => ev.type === type && test(ev as Ev<T>), resolve: (ev) => (clearTimeout(t), resolve(ev as Ev<T>)) });
    });
  const send = (req: WorkerRequest) => studio.handle(req);
  return { events, of, next, send, studio };
}

async function load(s: Awaited<ReturnType<typeof session>>) {
  const files = Object.entries(model.files).map(([name, bytes]) => ({ path: `tiny/${name}`, file: new Blob([new Uint8Array(bytes)]) }));
  await s.send({ type: 'loadModel', source: { kind: 'files', files } });
  await s.send({ type: 'loadCorpus', source: { kind: 'files', files: [new File([corpus], 'rows.txt')] }, options: { jsonlField: 'text', csvColumn: 'text' }, valFraction: 0, seed: SETTINGS.seed, contextLength: 16 });
}

async function weights(s: Awaited<ReturnType<typeof session>>): Promise<Map<string, Uint8Array>> {
  await s.send({ type: 'export', format: 'safetensors' });
  return safetensorsBytes(new Uint8Array(await s.of('exported').at(-1)!.blob.arrayBuffer()));
}

function safetensorsBytes(file: Uint8Array): Map<string, Uint8Array> {
  return new Map([...readSafetensors(file)].map(([k, v]) => [k, new Uint8Array(v.data.buffer, v.data.byteOffset, v.data.byteLength)]));
}

function expectSameBits(got: Map<string, Uint8Array>, want: Map<string, Uint8Array>) {
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [k, v] of want) expect(Buffer.from(got.get(k)!).equals(Buffer.from(v)), k).toBe(true);
}

describe('a non-finite loss in the page session', () => {
  it('pauses at that step with its update not applied, keeps the last save, and going back resumes it at the scaled rate', async () => {
    const fs = fakeOpfs();
    const store = new RunStore(fs.root);
    const s = await session(store);
    await load(s);
    // Pause after a few steps (the pause is saved), then poison ln_f so the next step's loss is NaN
    // (the page's debug request).
    const firstStep = s.next('step', (e) => e.step >= 2);
    const paused = s.next('runState', (e) => e.state === 'paused');
    const training = s.send({ type: 'train', settings: SETTINGS, frozen: [], sample: SAMPLE });
    await firstStep;
    const pauseSaved = s.next('saved');
    await s.send({ type: 'pause' });
    const at = (await paused).step;
    expect((await pauseSaved).step).toBe(at);
    expect(at).toBeGreaterThanOrEqual(2);
    const good = await weights(s);
    const [saved] = await store.list();
    const savedModel = async () => safetensorsBytes(new Uint8Array(await (await store.open(saved.id)).checkpoint.get('model.safetensors')!.arrayBuffer()));
    expectSameBits(await savedModel(), good);
    await s.send({ type: 'poisonWeights' }); // ln_f.weight[0] = NaN
    const poisoned = await weights(s);
    const lnf = [...poisoned].find(([k]) => k.endsWith('ln_f.weight'))![1];
    expect(Number.isNaN(new Float32Array(lnf.slice().buffer)[0])).toBe(true);

    const diverged = s.next('diverged');
    await s.send({ type: 'resume', frozen: [] });
    const d = await diverged;
    expect(d.step).toBe(at + 1);
    expect(d.lastGood).toBe(at);
    expect(d.lr).toBe(SETTINGS.lr);
    expect(d.save).toEqual({ id: saved.id, step: at });
    expect(d.message).toMatch(new RegExp(`^Step ${at + 1}: the loss or gradient became NaN`));
    const state = s.of('runState').at(-1)!;
    expect(state.state).toBe('paused');
    expect(state.message).toMatch(new RegExp(`Paused at step ${at + 1}: the loss became non-finite`));
    expect(s.of('step').map((e) => e.step).at(-1)).toBe(at);
    // The update of the non-finite step was not applied: every tensor is as it was (a step of
    // AdamW would have moved every one of them), and the save still holds the good weights.
    expectSameBits(await weights(s), poisoned);
    expectSameBits(await savedModel(), good);
    expect((await store.list()).map((r) => r.summary.step)).toEqual([at]);
    await s.send({ type: 'divergedBack', lrScale: 0 });
    expect(s.of('error').at(-1)).toMatchObject({ request: 'divergedBack', name: 'SettingsError' });
    expect(s.of('error').at(-1)!.message).toMatch(/factor must be a number above 0/);
    expect(s.of('runState').at(-1)!.state).toBe('paused');

    // Go back with a quarter of the rate: the save at `at` is resumed and trains to the end.
    const restored = s.next('restored');
    await s.send({ type: 'divergedBack', lrScale: 0.25 });
    const r = await restored;
    expect(r.settings.lr).toBeCloseTo(SETTINGS.lr * 0.25, 12);
    await training;
    expect(s.of('error')).toHaveLength(1); // the refused factor above
    expect(s.of('runState').at(-1)!.state).toBe('finished');
    const after = s.of('step').filter((e) => e.step > at && s.events.indexOf(e) > s.events.indexOf(r));
    expect(after.map((e) => e.step)).toEqual(Array.from({ length: SETTINGS.steps - at }, (_, i) => at + 1 + i));
    for (const e of after) {
      expect(Number.isFinite(e.loss)).toBe(true);
      expect(e.lr).toBeCloseTo(SETTINGS.lr * 0.25, 12);
    }
    // It went on from the good weights, not the poisoned ones.
    const end = await weights(s);
    for (const [k, v] of end) expect(new Float32Array(v.slice().buffer).every(Number.isFinite), k).toBe(true);
    expect(s.of('info').some((e) => /with the learning rate × 0\.25/.test(e.message))).toBe(true);
  }, 120_000);

  it('without a save (no browser storage), offers only to stop', async () => {
    const s = await session(null);
    await load(s);
    const firstStep = s.next('step', (e) => e.step >= 2);
    const paused = s.next('runState', (e) => e.state === 'paused');
    const training = s.send({ type: 'train', settings: SETTINGS, frozen: [], sample: SAMPLE });
    await firstStep;
    await s.send({ type: 'pause' });
    const at = (await paused).step;
    await s.send({ type: 'poisonWeights' });
    const diverged = s.next('diverged');
    await s.send({ type: 'resume', frozen: [] });
    const d = await diverged;
    expect(d.step).toBe(at + 1);
    expect(d.save).toBeNull();
    await s.send({ type: 'divergedBack', lrScale: 0.5 });
    expect(s.of('error').at(-1)).toMatchObject({ request: 'divergedBack' });
    expect(s.of('error').at(-1)!.message).toMatch(/no save to go back to yet/);
    expect(s.of('runState').at(-1)!.state).toBe('paused');
    await s.send({ type: 'stop' });
    await training;
    const last = s.of('runState').at(-1)!;
    expect(last.state).toBe('stopped');
    expect(last.message).toBe(`Stopped after step ${at}: the loss became non-finite at step ${at + 1}.`);
    expect(s.of('restored')).toEqual([]);
  }, 120_000);
});
