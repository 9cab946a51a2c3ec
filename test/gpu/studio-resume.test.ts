// Saved runs in the page's engine session, over Dawn and an in-memory stand-in of the browser's
// file system: a run paused at step 3 is saved; a fresh session (a reloaded tab) resumes it from
// the saved run alone (model files, corpus token ids, settings, layers, charts) and finishes with
// weights equal, bit for bit, to a run never interrupted (shuffled windows, dropout, a frozen
// group); saves at intervals are written while training goes on, and a crash resumes from the
// last complete one; where the staged copy does not fit, saves read back instead; a lost
// device mid-run resumes from its last save the same way.
import { describe, expect, it, vi } from 'vitest';
import { OutOfMemoryError } from '../../src/engine/errors.ts';
import { Trainer } from '../../src/engine/train/trainer.ts';
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
  ...DEFAULT_TRAIN, steps: 8, batch: 2, seq: 16, lr: 1e-2, evalEvery: 4, sampleEvery: 0, dropout: 0.1, order: 'shuffled', valFraction: 0.1, schedule: 'cosine', warmup: 2,
  autosaveMinutes: 0,
};
const SAMPLE = { ...DEFAULT_SAMPLE, prompt: 'Row', maxNewTokens: 4 };
const FROZEN = [0];

async function session(store: RunStore) {
  const events: WorkerEvent[] = [];
  let onEvent: ((ev: WorkerEvent) => void) | null = null;
  const studio = new Studio((ev) => {
    events.push(ev);
    onEvent?.(ev);
  }, await nodeGpu(), { runStore: async () => store });
  const of = <T extends WorkerEvent['type']>(type: T, from = 0): Array<Ev<T>> => events.slice(from).filter((e): e is Ev<T> => e.type === type);
  const send = (req: WorkerRequest) => studio.handle(req);
  return { events, of, send, studio, on: (f: ((ev: WorkerEvent) => void) | null) => (onEvent = f) };
}

async function load(s: Awaited<ReturnType<typeof session>>) {
  const files = Object.entries(model.files).map(([name, bytes]) => ({ path: `tiny/${name}`, file: new Blob([new Uint8Array(bytes)]) }));
  await s.send({ type: 'loadModel', source: { kind: 'files', files } });
  await s.send({ type: 'loadCorpus', source: { kind: 'files', files: [new File([corpus], 'rows.txt')] }, options: { jsonlField: 'text', csvColumn: 'text' }, valFraction: 0.1, seed: SETTINGS.seed, contextLength: 16 });
}

async function weights(s: Awaited<ReturnType<typeof session>>): Promise<Map<string, Float32Array>> {
  await s.send({ type: 'export', format: 'safetensors' });
  const ex = s.of('exported').at(-1)!;
  return new Map([...readSafetensors(new Uint8Array(await ex.blob.arrayBuffer()))].map(([k, v]) => [k, v.data as Float32Array]));
}

function expectSameBits(a: Map<string, Float32Array>, b: Map<string, Float32Array>) {
  expect([...b.keys()]).toEqual([...a.keys()]);
  for (const [k, v] of a) {
    const w = b.get(k)!;
    expect(Buffer.from(w.buffer, w.byteOffset, w.byteLength).equals(Buffer.from(v.buffer, v.byteOffset, v.byteLength)), k).toBe(true);
  }
}

describe('saved runs in the page session', () => {
  let reference: Map<string, Float32Array>;
  let referenceLosses: number[];

  it('a run never interrupted is saved when it finishes, with its final evaluation', async () => {
    const fs = fakeOpfs();
    const store = new RunStore(fs.root);
    const s = await session(store);
    await load(s);
    await s.send({ type: 'train', settings: SETTINGS, frozen: FROZEN, sample: SAMPLE });
    expect(s.of('error')).toEqual([]);
    referenceLosses = s.of('step').map((e) => e.loss);
    expect(referenceLosses).toHaveLength(8);
    reference = await weights(s);
    const saves = s.of('saved');
    expect(saves.map((e) => e.step)).toEqual([8]);
    const [run] = await store.list();
    expect(run.summary).toMatchObject({ model: 'tiny', corpus: 'rows.txt', step: 8, totalSteps: 8, state: 'finished' });
    const o = await store.open(run.id);
    const st = JSON.parse(await o.checkpoint.get('trainer_state.json')!.text());
    expect(st).toMatchObject({ step: 8, writer: 'page', rows_read: 16, dropout_step: 8 });
    expect(st.log_history.filter((l: { eval_loss?: number }) => l.eval_loss !== undefined).map((l: { step: number }) => l.step)).toEqual([4, 8]);
    expect([...o.assets.model.keys()].sort()).toContain(encodeURIComponent('tiny/config.json'));
  });

  it('a reloaded page resumes a run saved at a pause and finishes with the same weights, bit for bit', async () => {
    const fs = fakeOpfs();
    const store = new RunStore(fs.root);
    const a = await session(store);
    await load(a);
    let savedAt3: Ev<'saved'> | null = null;
    const paused = new Promise<void>((resolve) => {
      a.on((ev) => {
        if (ev.type === 'step' && ev.step === 3) void a.send({ type: 'pause' });
        if (ev.type === 'saved') {
          savedAt3 = ev;
          resolve();
        }
      });
    });
    void a.send({ type: 'train', settings: SETTINGS, frozen: FROZEN, sample: SAMPLE });
    await paused;
    a.on(null);
    expect(savedAt3!.step).toBeGreaterThanOrEqual(3);
    const at = savedAt3!.step;
    expect((await store.list())[0].summary).toMatchObject({ step: at, state: 'paused' });
    // The tab is reloaded: a new session, with nothing loaded, over the same storage.
    await a.send({ type: 'loseDevice' });
    const b = await session(new RunStore(fs.root));
    await b.send({ type: 'runsList' });
    const listed = b.of('runs')[0];
    expect(listed.runs).toHaveLength(1);
    await b.send({ type: 'runResume', id: listed.runs[0].id });
    expect(b.of('error')).toEqual([]);
    expect(b.of('modelLoaded')).toHaveLength(1);
    expect(b.of('corpusLoaded')[0].corpus.name).toBe('rows.txt');
    expect(b.of('restored')[0]).toMatchObject({ frozen: FROZEN, settings: { steps: 8, dropout: 0.1, order: 'shuffled' } });
    // The charts come back (steps 1 … at), then the run goes on from there.
    expect(b.of('step').map((e) => e.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(b.of('step').map((e) => e.loss)).toEqual(referenceLosses);
    expect(b.of('runState').map((e) => e.state)).toEqual(['starting', 'running', 'finished']);
    expectSameBits(reference, await weights(b));
    expect((await store.list())[0].summary).toMatchObject({ step: 8, state: 'finished' });
  });

  it('saves at intervals while training goes on, without changing what it trains, and a crash resumes from the last one', async () => {
    const fs = fakeOpfs();
    const store = new RunStore(fs.root);
    const s = await session(store);
    await load(s);
    // An interval of a few milliseconds: every step boundary is due, each save written in the background.
    const stepsSaved: number[] = [];
    const crashed = new Promise<void>((resolve) => {
      s.on((ev) => {
        if (ev.type === 'saved') stepsSaved.push(ev.step);
        if (ev.type === 'saved' && ev.step >= 5) resolve();
      });
    });
    const training = s.send({ type: 'train', settings: { ...SETTINGS, autosaveMinutes: 1e-5 }, frozen: FROZEN, sample: SAMPLE });
    await crashed;
    // The tab crashes: its open writes never reach their files; the last complete save is what a new page finds.
    fs.crash();
    s.on(null);
    await s.send({ type: 'loseDevice' });
    await training;
    expect(stepsSaved.length).toBeGreaterThanOrEqual(3);
    expect(stepsSaved).toEqual([...stepsSaved].sort((a, b) => a - b));
    // The interval saves were written from staged GPU copies (the read-back fallback says so in the log).
    expect(s.of('info').filter((e) => /^Autosave: a copy/.test(e.message))).toEqual([]);
    const [run] = await new RunStore(fs.root).list();
    expect(run.summary.step).toBeGreaterThanOrEqual(5);
    const b = await session(new RunStore(fs.root));
    await b.send({ type: 'runResume', id: run.id });
    expect(b.of('error')).toEqual([]);
    expect(b.of('runState').map((e) => e.state)).toEqual(['starting', 'running', 'finished']);
    expect(b.of('step').map((e) => e.loss)).toEqual(referenceLosses);
    expectSameBits(reference, await weights(b));
  });

  it('where the staged copy does not fit, interval saves read back instead (said once), and what it trains is unchanged', async () => {
    // The copy's allocation failing as WebGPU reports it (an out-of-memory error scope).
    const spy = vi.spyOn(Trainer.prototype, 'stageState').mockRejectedValue(new OutOfMemoryError('The GPU ran out of memory while allocating snapshot.', 'snapshot'));
    try {
      const fs = fakeOpfs();
      const store = new RunStore(fs.root);
      const s = await session(store);
      await load(s);
      await s.send({ type: 'train', settings: { ...SETTINGS, autosaveMinutes: 1e-5 }, frozen: FROZEN, sample: SAMPLE });
      expect(s.of('error')).toEqual([]);
      expect(spy).toHaveBeenCalledTimes(1); // not tried again after it failed
      expect(s.of('info').filter((e) => /^Autosave: a copy of the weights and optimizer state does not fit/.test(e.message))).toHaveLength(1);
      const saved = s.of('saved').map((e) => e.step);
      expect(saved.length).toBeGreaterThanOrEqual(3);
      expect(saved.at(-1)).toBe(8);
      expect(s.of('step').map((e) => e.loss)).toEqual(referenceLosses);
      expectSameBits(reference, await weights(s));
    } finally {
      spy.mockRestore();
    }
  });

  it('after a lost device, the run resumes from its last save on a new device', async () => {
    const fs = fakeOpfs();
    const store = new RunStore(fs.root);
    const s = await session(store);
    await load(s);
    const saved = new Promise<void>((resolve) => {
      s.on((ev) => {
        if (ev.type === 'step' && ev.step === 5) void s.send({ type: 'pause' });
        if (ev.type === 'saved') resolve();
      });
    });
    const training = s.send({ type: 'train', settings: SETTINGS, frozen: FROZEN, sample: SAMPLE });
    await saved;
    s.on(null);
    await s.send({ type: 'loseDevice' });
    await training;
    expect(s.of('deviceLost')).toHaveLength(1);
    const from = s.events.length;
    await s.send({ type: 'runResume', id: s.of('saved')[0].id });
    expect(s.of('error', from)).toEqual([]);
    expect(s.of('runState', from).map((e) => e.state)).toEqual(['starting', 'running', 'finished']);
    expectSameBits(reference, await weights(s));
  });

  it('the subgroup reductions setting: the run records them, and its resume after a pause keeps them, bit for bit', async () => {
    const settings = { ...SETTINGS, subgroups: true };
    // Uninterrupted, with subgroup reductions.
    const store = new RunStore(fakeOpfs().root);
    const s = await session(store);
    await load(s);
    await s.send({ type: 'train', settings, frozen: FROZEN, sample: SAMPLE });
    if (!s.studio.ctx!.device.features.has('subgroups')) {
      // An adapter without the feature refuses the setting by name, before any step.
      expect(s.of('error').map((e) => e.message).join(' ')).toMatch(/'subgroups'/);
      expect(s.of('step')).toEqual([]);
      return;
    }
    expect(s.of('error')).toEqual([]);
    const whole = await weights(s);
    const [run] = await store.list();
    const st = JSON.parse(await (await store.open(run.id)).checkpoint.get('trainer_state.json')!.text());
    expect(st.kernels.subgroups).toBe(true);
    // Paused at step 3 (and so saved), then resumed by a fresh session: the same weights.
    const store2 = new RunStore(fakeOpfs().root);
    const a = await session(store2);
    await load(a);
    a.on((ev) => {
      if (ev.type === 'step' && ev.step === 3) void a.send({ type: 'pause' });
    });
    const training = a.send({ type: 'train', settings, frozen: FROZEN, sample: SAMPLE });
    await new Promise<void>((resolve) => {
      const t = setInterval(() => {
        if (a.of('saved').length) {
          clearInterval(t);
          resolve();
        }
      }, 50);
    });
    a.on(null);
    await a.send({ type: 'stop' });
    await training;
    const b = await session(store2);
    await b.send({ type: 'runResume', id: a.of('saved')[0].id });
    expect(b.of('error')).toEqual([]);
    expect(b.of('runState').at(-1)?.state).toBe('finished');
    expectSameBits(whole, await weights(b));
  });
});
