// The page's state as a projection of worker events: `reduce` folds each WorkerEvent into plain
// data, so what the page shows is checked here without a browser.
import { describe, expect, it } from 'vitest';
import { initialData, MAX_POINTS, reduce, type StudioData } from '../../../src/ui/store.ts';
import { DEFAULT_ENDPOINT as DEFAULT_HUB_ENDPOINT } from '../../../src/io/hub.ts';
import type { EvalResult, MemoryBreakdown, ModelInfo, WorkerEvent } from '../../../src/worker/protocol.ts';

function apply(s: StudioData, ...events: WorkerEvent[]): StudioData {
  for (const ev of events) s = { ...s, ...reduce(s, ev) };
  return s;
}

const MODEL: ModelInfo = {
  name: 'tiny', source: 'hub', vocabSize: 257, nPositions: 64, nEmbd: 32, nLayer: 2, nHead: 2, nInner: 128, activation: 'gelu_new', dropout: 0.05,
  params: 1000, groups: [0, 1, 2, 3].map((i) => ({ index: i, label: `g${i}`, params: 250 })), tokenizer: 'tokenizer.json', pretrained: true,
};

const EVAL = (loss: number): EvalResult => ({ loss, perplexity: Math.exp(loss), accuracy: 0.25, bleu: 3, tokens: 100, windows: 2 });
const MEM = (total: number): MemoryBreakdown => ({ parameters: total, gradients: 0, optimizer: 0, activations: 0, scratch: 0, baseCopy: 0, total });

describe('reduce: worker events into page state', () => {
  it('keeps the choice after a non-finite loss while the run is paused, and drops it when the run moves on', () => {
    const paused: WorkerEvent = { type: 'runState', state: 'paused', step: 4, totalSteps: 10, message: 'Paused at step 5: the loss became non-finite.' };
    const d: WorkerEvent = { type: 'diverged', step: 5, lastGood: 4, lr: 0.01, message: 'Step 5: the loss or gradient became NaN', save: { id: 'r1', step: 3 } };
    let s = apply(initialData(), { type: 'runState', state: 'running', step: 0, totalSteps: 10 }, paused, d);
    expect(s.run.diverged).toEqual({ step: 5, lastGood: 4, lr: 0.01, message: 'Step 5: the loss or gradient became NaN', save: { id: 'r1', step: 3 } });
    expect(s.run.state).toBe('paused');
    s = apply(s, { ...paused }); // another paused state (e.g. a refused factor) keeps it
    expect(s.run.diverged?.step).toBe(5);
    s = apply(s, { type: 'runState', state: 'stopped', step: 4, totalSteps: 10 });
    expect(s.run.diverged).toBeNull();
  });

  it('marks WebGPU unavailable when the probe fails, and keeps the message', () => {
    const s = apply(initialData(), { type: 'error', name: 'NoWebGPUError', message: 'no adapter; use Chrome', request: 'probe' });
    expect(s.adapter).toEqual({ status: 'unavailable', reason: 'no adapter; use Chrome' });
    expect(s.errors).toEqual([]); // shown once, by the no-WebGPU notice
  });

  it('shows the tuning run\'s choice, or why it failed', () => {
    const done = apply(initialData(), { type: 'tuned', lines: ['nn: 32x64x32-8x8, 1.20× the default'] });
    expect(done.tune).toEqual({ status: 'done', lines: ['nn: 32x64x32-8x8, 1.20× the default'] });
    const failed = apply(initialData(), { type: 'error', name: 'StudioBusyError', message: 'A run is training.', request: 'tune' });
    expect(failed.tune).toEqual({ status: 'failed', message: 'A run is training.' });
  });

  it('records whether the Hub answered without ever switching the model choice (the built-in model stays the default)', () => {
    const hub: WorkerEvent = { type: 'hub', endpoint: DEFAULT_HUB_ENDPOINT, reachable: true, detail: 'ok' };
    const s = apply(initialData(), hub);
    expect(s.model.choice).toBe('builtin');
    expect(s.model.hub).toMatchObject({ reachable: true, detail: 'ok' });
    const off = apply(initialData(), { ...hub, reachable: false, detail: 'not reachable' });
    expect(off.model.choice).toBe('builtin');
    expect(off.model.hub).toMatchObject({ reachable: false, detail: 'not reachable' });
  });

  it('applies a model\'s suggested rate, dropout and length unless the user set them', () => {
    let s = apply(initialData(), { type: 'modelLoaded', model: { ...MODEL, pretrained: false } });
    expect(s.train.lr).toBe(3e-3);
    expect(s.train.seq).toBe(64);
    expect(s.train.dropout).toBe(0.05);
    s = { ...s, train: { ...s.train, lr: 1e-4, seq: 16 }, edited: ['lr', 'seq'] };
    s = apply(s, { type: 'modelLoaded', model: { ...MODEL, name: 'other', pretrained: true } });
    expect(s.train.lr).toBe(1e-4);
    expect(s.train.seq).toBe(16);
  });

  it('clears frozen layers and samples for a new model, keeps them when the same model is reset', () => {
    let s = apply(initialData(), { type: 'modelLoaded', model: MODEL });
    s = { ...s, frozen: [0, 1] };
    s = apply(s, { type: 'sample', step: 3, prompt: 'a', seed: 1, tuned: 'b', base: null, tokensPerSec: 10 });
    const reset = apply(s, { type: 'modelLoaded', model: MODEL });
    expect(reset.frozen).toEqual([0, 1]);
    expect(reset.samples).toHaveLength(1);
    const other = apply(s, { type: 'modelLoaded', model: { ...MODEL, name: 'other' } });
    expect(other.frozen).toEqual([]);
    expect(other.samples).toEqual([]);
  });

  it('starts a run with empty series, appends every step, and counts steps trained when it ends', () => {
    let s = apply(initialData(), { type: 'modelLoaded', model: MODEL });
    s = { ...s, run: { ...s.run, series: [{ step: 1, loss: 9, lr: 1, gradNorm: 1, tokensPerSec: 1 }] } };
    s = apply(s, { type: 'runState', state: 'starting', step: 0, totalSteps: 3 });
    expect(s.run.series).toEqual([]);
    for (let i = 1; i <= 3; i++) {
      s = apply(s, { type: 'step', step: i, totalSteps: 3, loss: 5 - i, lr: 0.1, gradNorm: 2, tokensPerSec: 100, elapsedMs: i * 10, etaMs: (3 - i) * 10 });
    }
    expect(s.run.series.map((p) => p.loss)).toEqual([4, 3, 2]);
    expect(s.run.step).toBe(3);
    s = apply(s, { type: 'runState', state: 'finished', step: 3, totalSteps: 3 });
    expect(s.model.trainedSteps).toBe(3);
    expect(s.run.series).toHaveLength(3);
  });

  it('keeps long series bounded, thinning old points and keeping the newest', () => {
    let s = apply(initialData(), { type: 'runState', state: 'starting', step: 0, totalSteps: 5000 });
    for (let i = 1; i <= MAX_POINTS + 10; i++) s = apply(s, { type: 'step', step: i, totalSteps: 5000, loss: 1, lr: 1, gradNorm: 1, tokensPerSec: 1, elapsedMs: 0, etaMs: 0 });
    expect(s.run.series.length).toBeLessThanOrEqual(MAX_POINTS);
    expect(s.run.series.at(-1)!.step).toBe(MAX_POINTS + 10);
    expect(s.run.series[0].step).toBe(1);
    const steps = s.run.series.map((p) => p.step);
    expect([...steps].sort((a, b) => a - b)).toEqual(steps);
  });

  it('shows only the answer to the latest estimate request', () => {
    let s = apply(initialData(), { type: 'estimate', id: 2, memory: MEM(200), trainableParams: 20 });
    s = apply(s, { type: 'estimate', id: 1, memory: MEM(100), trainableParams: 10 });
    expect(s.memory.estimate?.total).toBe(200);
    expect(s.memory.estimateTrainable).toBe(20);
  });

  it('puts evaluations before and after side by side, and validation points on the chart', () => {
    let s = apply(initialData(), { type: 'runState', state: 'starting', step: 0, totalSteps: 8 });
    s = apply(s, { type: 'eval', phase: 'before', step: 0, tuned: EVAL(5), base: null });
    s = apply(s, { type: 'eval', phase: 'during', step: 4, tuned: EVAL(4), base: null });
    s = apply(s, { type: 'eval', phase: 'after', step: 8, tuned: EVAL(3), base: EVAL(5) });
    expect(s.evaluation.before?.loss).toBe(5);
    expect(s.evaluation.after?.loss).toBe(3);
    expect(s.evaluation.afterStep).toBe(8);
    expect(s.run.evals.map((e) => [e.step, e.loss])).toEqual([[0, 5], [4, 4], [8, 3]]);
  });

  it('lists samples newest first', () => {
    const s = apply(initialData(),
      { type: 'sample', step: 0, prompt: 'p', seed: 1, tuned: 'x', base: null, tokensPerSec: 1 },
      { type: 'sample', step: 5, prompt: 'p', seed: 1, tuned: 'y', base: 'z', tokensPerSec: 1 });
    expect(s.samples.map((x) => [x.step, x.tuned, x.base])).toEqual([[5, 'y', 'z'], [0, 'x', null]]);
  });

  it('ends every pending task when its request fails, with the message on the page', () => {
    let s = initialData();
    s = { ...s, model: { ...s.model, status: 'loading' }, corpus: { ...s.corpus, status: 'loading' }, exports: { pending: 'hf-zip', last: null },
      progress: { model: { label: 'x', done: 1, total: 2, unit: 'bytes' }, export: { label: 'y', done: 1, total: 2, unit: 'bytes' } } };
    s = apply(s,
      { type: 'error', name: 'HubNotFoundError', message: 'no such repo', request: 'loadModel' },
      { type: 'error', name: 'CorpusEncodingError', message: 'not UTF-8 at byte 3', request: 'loadCorpus' },
      { type: 'error', name: 'ExportError', message: 'disk full', request: 'export' });
    expect(s.model.status).toBe('failed');
    expect(s.corpus.status).toBe('failed');
    expect(s.exports.pending).toBeNull();
    expect(s.progress).toEqual({});
    expect(s.errors.map((e) => e.message)).toEqual(['no such repo', 'not UTF-8 at byte 3', 'disk full']);
  });

  it('stops a run when the device is lost, so Start is offered again', () => {
    let s = apply(initialData(), { type: 'runState', state: 'running', step: 2, totalSteps: 8 });
    s = apply(s, { type: 'deviceLost', message: 'GPU gone.' });
    expect(s.run.state).toBe('stopped');
    expect(s.deviceLost).toBe('GPU gone.');
    s = apply(s, { type: 'runState', state: 'starting', step: 0, totalSteps: 2 });
    expect(s.deviceLost).toBe('GPU gone.');
    s = apply(s, { type: 'runState', state: 'running', step: 0, totalSteps: 2 });
    expect(s.deviceLost).toBeNull();
  });

  it('forgets fine-tuned steps lost with the device, also when the run reports its end afterwards', () => {
    let s = apply(initialData(), { type: 'runState', state: 'running', step: 0, totalSteps: 8 }, { type: 'runState', state: 'finished', step: 8, totalSteps: 8 });
    expect(s.model.trainedSteps).toBe(8);
    s = apply(s, { type: 'runState', state: 'running', step: 3, totalSteps: 8 }, { type: 'deviceLost', message: 'GPU gone.' }, { type: 'runState', state: 'stopped', step: 3, totalSteps: 8 });
    expect(s.model.trainedSteps).toBe(0);
  });
});
