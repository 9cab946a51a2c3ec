// The page's engine session (src/worker/studio.ts) driven through the worker protocol in Node over
// Dawn: requests in, typed events out, as the page sees them. A tiny GPT-2 with a byte-level
// tokenizer is loaded from "dropped" files, a corpus tokenized, a run paused (one more group
// frozen) and resumed, samples, evaluation, exports (full, LoRA and ONNX), the ONNX export run in
// onnxruntime-web next to the engine, readable errors, and a new
// device after a lost one.
import { afterAll, describe, expect, it } from 'vitest';
import { paramSpecs } from '../../src/engine/model/params.ts';
import { readSafetensors } from '../../src/io/safetensors.ts';
import type { WorkerEvent, WorkerRequest } from '../../src/worker/protocol.ts';
import { DEFAULT_SAMPLE, DEFAULT_TRAIN, type TrainSettings } from '../../src/worker/settings.ts';
import { Studio } from '../../src/worker/studio.ts';
import { nodeGpu } from '../../src/cli/webgpu-node.ts';
import { tinyModel } from '../e2e/tiny-model.ts';

type Ev<T extends WorkerEvent['type']> = Extract<WorkerEvent, { type: T }>;

const model = tinyModel(5);
const corpus = Array.from({ length: 80 }, (_, i) => `Row ${i}: a small corpus for a tiny model, read byte by byte.`).join('\n');
const SETTINGS: TrainSettings = { ...DEFAULT_TRAIN, steps: 6, batch: 2, seq: 16, lr: 1e-2, evalEvery: 3, sampleEvery: 3, dropout: 0, valFraction: 0.1 };
const SAMPLE = { ...DEFAULT_SAMPLE, prompt: 'Row', maxNewTokens: 8 };

describe('the studio session behind the page', () => {
  const events: WorkerEvent[] = [];
  let onEvent: ((ev: WorkerEvent) => void) | null = null;
  let studio: Studio;
  const of = <T extends WorkerEvent['type']>(type: T): Array<Ev<T>> => events.filter((e): e is Ev<T> => e.type === type);
  const send = (req: WorkerRequest) => studio.handle(req);

  afterAll(() => {
    onEvent = null;
  });

  it('answers a request it cannot serve yet with a named, readable error event', async () => {
    studio = new Studio((ev) => {
      events.push(ev);
      onEvent?.(ev);
    }, await nodeGpu());
    await send({ type: 'train', settings: SETTINGS, frozen: [], sample: SAMPLE });
    expect(of('error')).toEqual([{ type: 'error', name: 'StudioBusyError', message: expect.stringMatching(/No model is loaded\. Load/), request: 'train' }]);
  });

  it('loads a model from dropped files and a corpus, and estimates memory as layers freeze', async () => {
    const files = Object.entries(model.files).map(([name, bytes]) => ({ path: `tiny/${name}`, file: new Blob([new Uint8Array(bytes)]) }));
    await send({ type: 'loadModel', source: { kind: 'files', files } });
    const loaded = of('modelLoaded')[0].model;
    expect(loaded).toMatchObject({ name: 'tiny', nLayer: 2, vocabSize: 257, tokenizer: 'tokenizer.json', pretrained: true });
    expect(loaded.groups.map((g) => g.label)).toEqual(['embeddings', 'block 0', 'block 1', 'ln_f']);
    await send({ type: 'loadCorpus', source: { kind: 'files', files: [new File([corpus], 'rows.txt')] }, options: { jsonlField: 'text', csvColumn: 'text' }, valFraction: 0.1, seed: 42, contextLength: 16 });
    const c = of('corpusLoaded')[0].corpus;
    expect(c.tokens).toBe(Buffer.byteLength(corpus) + 1);
    expect(c.valWindows).toBeGreaterThan(0);
    await send({ type: 'estimate', settings: SETTINGS, frozen: [], id: 1 });
    await send({ type: 'estimate', settings: SETTINGS, frozen: [0, 1], id: 2 });
    const [all, top] = of('estimate');
    expect(top.trainableParams).toBeLessThan(all.trainableParams);
    expect(top.memory.total).toBeLessThan(all.memory.total);
    expect(all.memory.baseCopy).toBe(all.memory.parameters);
  });

  it('trains with a pause that freezes one more group, then reports evaluation and samples', async () => {
    const from = events.length;
    let paused = false;
    onEvent = (ev) => {
      if (ev.type === 'step' && ev.step === 2) void send({ type: 'pause' });
      if (ev.type === 'runState' && ev.state === 'paused' && !paused) {
        paused = true;
        setTimeout(() => void send({ type: 'resume', frozen: [0, 3] }), 10);
      }
    };
    await send({ type: 'train', settings: SETTINGS, frozen: [0], sample: SAMPLE });
    onEvent = null;
    const run = events.slice(from);
    const states = run.filter((e): e is Ev<'runState'> => e.type === 'runState').map((e) => e.state);
    expect(states).toEqual(['starting', 'running', 'paused', 'running', 'finished']);
    expect(run.filter((e): e is Ev<'step'> => e.type === 'step').map((e) => e.step)).toEqual([1, 2, 3, 4, 5, 6]);
    const pausedAt = (run.find((e) => e.type === 'runState' && e.state === 'paused') as Ev<'runState'>).step;
    expect(pausedAt).toBeGreaterThanOrEqual(2); // every step taken is reported before the pause
    const evals = run.filter((e): e is Ev<'eval'> => e.type === 'eval');
    expect(evals.map((e) => [e.phase, e.step])).toEqual([['before', 0], ['during', 3], ['after', 6]]);
    const after = evals[2];
    expect(after.base?.loss).toBe(evals[0].tuned.loss);
    expect(after.tuned.loss).toBeLessThan(after.base!.loss);
    expect(after.tuned.accuracy).toBeGreaterThanOrEqual(0);
    expect(after.tuned.bleu).not.toBeNull();
    const samples = run.filter((e): e is Ev<'sample'> => e.type === 'sample');
    expect(samples.map((s) => s.step)).toEqual([0, 3, 6]);
    expect(samples[2].base).not.toBeNull();
    // After the resume the trainer holds fewer trainable parameters (ln_f frozen too).
    const memory = run.filter((e): e is Ev<'memory'> => e.type === 'memory');
    expect(memory.at(-1)!.trainableParams).toBeLessThan(memory[0].trainableParams);
  });

  it('exports model.safetensors: the embeddings (frozen throughout) are the originals, block 1 changed', async () => {
    await send({ type: 'export', format: 'safetensors' });
    const ex = of('exported').at(-1)!;
    expect(ex.fileName).toBe('tiny-finetuned.safetensors');
    const t = readSafetensors(new Uint8Array(await ex.blob.arrayBuffer()));
    for (const s of paramSpecs(model.config)) {
      const got = t.get(`transformer.${s.name}`)!.data;
      const orig = model.params.get(s.name)!;
      const same = got.every((v, i) => v === orig[i]);
      if (s.group === 0) expect(same, s.name).toBe(true);
      if (s.group === 2 && s.name.endsWith('weight')) expect(same, s.name).toBe(false);
    }
    await send({ type: 'export', format: 'hf-zip' });
    const zip = of('exported').at(-1)!;
    expect(zip.fileName).toBe('tiny-finetuned.zip');
    expect(new TextDecoder().decode(new Uint8Array(await zip.blob.slice(0, 2).arrayBuffer()))).toBe('PK');
    await send({ type: 'export', format: 'lora' });
    expect(of('error').at(-1)).toMatchObject({ name: 'StudioExportError', request: 'export', message: expect.stringMatching(/no LoRA weights/) });
  });

  it('samples base and fine-tuned side by side on demand, and evaluates before and after', async () => {
    const n = of('sample').length;
    await send({ type: 'generate', sample: { ...SAMPLE, seed: 9 }, compare: true });
    const s = of('sample').slice(n);
    expect(s).toHaveLength(1);
    expect(s[0]).toMatchObject({ step: 6, seed: 9 });
    expect(s[0].base).not.toBeNull();
    await send({ type: 'generate', sample: { ...SAMPLE, seed: 9 }, compare: true });
    expect(of('sample').at(-1)!.tuned).toBe(s[0].tuned); // same prompt and seed, same text
    await send({ type: 'evaluate', settings: SETTINGS });
    const ev = of('eval').at(-1)!;
    expect(ev.phase).toBe('after');
    expect(ev.base).not.toBeNull();
  });

  it('trains a LoRA adapter and exports it as a PEFT folder', async () => {
    const from = events.length;
    await send({ type: 'train', settings: { ...SETTINGS, steps: 2, evalEvery: 0, sampleEvery: 0, lora: { enabled: true, r: 2, alpha: 4, dropout: 0, targets: ['c_attn'] } }, frozen: [], sample: SAMPLE });
    const states = events.slice(from).filter((e): e is Ev<'runState'> => e.type === 'runState').map((e) => e.state);
    expect(states.at(-1)).toBe('finished');
    const mem = events.slice(from).find((e): e is Ev<'memory'> => e.type === 'memory')!;
    expect(mem.trainableParams).toBe(2 * (2 * 32 + 96 * 2)); // r·(in + out) per block's c_attn
    await send({ type: 'export', format: 'lora' });
    const ex = of('exported').at(-1)!;
    expect(ex.fileName).toBe('tiny-finetuned-lora.zip');
    const text = new TextDecoder('latin1').decode(new Uint8Array(await ex.blob.arrayBuffer()));
    expect(text).toContain('adapter_config.json');
    expect(text).toContain('"peft_type": "LORA"');
    expect(text).toContain('base_model.model.transformer.h.0.attn.c_attn.lora_A.weight');
  });

  it('tries the ONNX export of the LoRA model (merged) in onnxruntime-web: it agrees with the engine token for token', async () => {
    await send({ type: 'tryExport', prompt: 'Row 1', maxNewTokens: 10 });
    const r = of('tryExport').at(-1)!.result;
    expect(r.provider).toBe('wasm'); // Node has no navigator.gpu
    expect(r.engine.tokens).toHaveLength(10);
    expect(r.onnx.tokens).toEqual(r.engine.tokens);
    expect(r.firstDifference).toBeNull();
    expect(r.onnx.text).toBe(r.engine.text);
    expect(r.engine.tokensPerSec).toBeGreaterThan(0);
    expect(r.onnx.tokensPerSec).toBeGreaterThan(0);
    await send({ type: 'export', format: 'onnx-zip' });
    const ex = of('exported').at(-1)!;
    expect(ex.fileName).toBe('tiny-finetuned-onnx.zip');
    const text = new TextDecoder('latin1').decode(new Uint8Array(await ex.blob.arrayBuffer()));
    for (const n of ['config.json', 'tokenizer.json', 'onnx/decoder_model_merged.onnx', 'onnx/decoder_model_merged_quantized.onnx']) expect(text).toContain(`tiny-finetuned-onnx/${n}`);
  });

  it('comes back after a lost device: a new run starts without a new session', async () => {
    await send({ type: 'loseDevice' });
    await new Promise((r) => setTimeout(r, 50));
    expect(of('deviceLost')).toHaveLength(1);
    // The fine-tuned weights died with the device: an export now holds the loaded weights under
    // their own name, and its model card reports no training of weights that are gone.
    await send({ type: 'export', format: 'hf-zip' });
    const zip = of('exported').at(-1)!;
    expect(zip.fileName).toBe('tiny.zip');
    const bytes = new Uint8Array(await zip.blob.arrayBuffer());
    const text = new TextDecoder('latin1').decode(bytes);
    expect(text).toContain('tiny/README.md');
    expect(text).not.toContain('finetuned');
    expect(text).not.toContain('training loss');
    const from = events.length;
    await send({ type: 'train', settings: { ...SETTINGS, steps: 2, evalEvery: 0, sampleEvery: 0 }, frozen: [], sample: SAMPLE });
    const states = events.slice(from).filter((e): e is Ev<'runState'> => e.type === 'runState').map((e) => e.state);
    expect(states).toEqual(['starting', 'running', 'finished']);
    expect(events.slice(from).filter((e) => e.type === 'error')).toEqual([]);
  });
});
