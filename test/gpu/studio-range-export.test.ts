// The page's session exports a model whose wte is larger than one storage binding. GPT-2's wte
// (50257 × 768 floats, 147 MiB) does not fit the 128 MiB bindings of lavapipe and many laptop
// adapters; here a model with GPT-2's vocabulary and C = 96 (wte 19.3 MB) runs in a session whose
// device binds at most 16 MiB, so wte is bound in two row ranges while every other tensor (and the
// LM head's 64-row chunk of logits, 12.9 MB) fits one binding — the same situation at a size
// lavapipe runs in seconds. Every upload and download
// of parameters goes by ranges (Arena.write / Arena.read), so loading, training and exporting
// work, and the export holds the weights bit for bit.
import { describe, expect, it } from 'vitest';
import { nodeGpu } from '../../src/cli/webgpu-node.ts';
import { AdapterLimitError } from '../../src/engine/errors.ts';
import { GpuContext } from '../../src/engine/gpu/context.ts';
import { configToJson, GPT2_SMALL, type GPT2Config } from '../../src/engine/model/config.ts';
import { paramSpecs } from '../../src/engine/model/params.ts';
import { GpuWeights } from '../../src/engine/model/weights.ts';
import { checkpointTensors } from '../../src/io/checkpoint.ts';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.ts';
import type { WorkerEvent } from '../../src/worker/protocol.ts';
import { DEFAULT_SAMPLE, DEFAULT_TRAIN, type TrainSettings } from '../../src/worker/settings.ts';
import { Studio } from '../../src/worker/studio.ts';
import { hfInitParams } from '../../scripts/make-demo-model.ts';

/** 16 MiB: wte (50257 × 96 × 4 = 19.3 MB) needs two ranges of 43648 rows; the LM head's 64 × 50257 logits (12.9 MB) fit. */
const LIMIT = 16 << 20;

const CONFIG: GPT2Config = { ...GPT2_SMALL, nPositions: 64, nEmbd: 96, nLayer: 2, nHead: 2, nInner: 384, embdPdrop: 0, attnPdrop: 0, residPdrop: 0 };

type Ev<T extends WorkerEvent['type']> = Extract<WorkerEvent, { type: T }>;

describe('the studio session with wte larger than one binding', () => {
  const params = hfInitParams(CONFIG, 3);
  const files = {
    'config.json': new TextEncoder().encode(JSON.stringify(configToJson(CONFIG))),
    'model.safetensors': writeSafetensors(checkpointTensors(CONFIG, params)),
  };

  it('the lowered limit really splits wte: a whole-tensor binding of it is refused', async () => {
    const ctx = await GpuContext.create(await nodeGpu(), 'high-performance', { maxStorageBufferBindingSize: LIMIT });
    const w = new GpuWeights(ctx, CONFIG, params);
    const wteBytes = CONFIG.vocabSize * CONFIG.nEmbd * 4;
    expect(wteBytes).toBeGreaterThan(ctx.maxBinding);
    expect(() => w.range('wte.weight')).toThrow(AdapterLimitError);
    expect(w.ranges('wte.weight').length).toBe(2);
    // The range path reads it back whole and exact.
    expect(Buffer.from((await w.read('wte.weight')).buffer).equals(Buffer.from(params.get('wte.weight')!.buffer))).toBe(true);
    w.destroy();
    ctx.destroy();
  });

  it('loads, exports bit-identical weights, trains wte, and exports again', async () => {
    const events: WorkerEvent[] = [];
    const of = <T extends WorkerEvent['type']>(type: T): Array<Ev<T>> => events.filter((e): e is Ev<T> => e.type === type);
    const studio = new Studio((ev) => events.push(ev), await nodeGpu(), { maxStorageBufferBindingSize: LIMIT });
    const dropped = Object.entries(files).map(([name, bytes]) => ({ path: `gpt2-vocab/${name}`, file: new Blob([new Uint8Array(bytes)]) }));
    await studio.handle({ type: 'loadModel', source: { kind: 'files', files: dropped } });
    expect(of('error')).toEqual([]);
    expect(of('modelLoaded')[0].model).toMatchObject({ vocabSize: 50257, nEmbd: 96 });

    const exported = async (): Promise<Map<string, Float32Array>> => {
      await studio.handle({ type: 'export', format: 'safetensors' });
      expect(of('error')).toEqual([]);
      const blob = of('exported').at(-1)!.blob;
      const t = readSafetensors(new Uint8Array(await blob.arrayBuffer()));
      return new Map(paramSpecs(CONFIG).map((s) => [s.name, t.get(`transformer.${s.name}`)!.data as Float32Array]));
    };
    const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

    const first = await exported();
    for (const s of paramSpecs(CONFIG)) expect(bits(first.get(s.name)!).equals(bits(params.get(s.name)!)), s.name).toBe(true);

    const corpus = Array.from({ length: 40 }, (_, i) => `Line ${i} of a corpus for a model with GPT-2's vocabulary.`).join('\n');
    await studio.handle({ type: 'loadCorpus', source: { kind: 'files', files: [new File([corpus], 'lines.txt')] }, options: { jsonlField: 'text', csvColumn: 'text' }, valFraction: 0, seed: 1, contextLength: 16 });
    const settings: TrainSettings = { ...DEFAULT_TRAIN, steps: 2, batch: 2, seq: 16, lr: 1e-2, evalEvery: 0, sampleEvery: 0, dropout: 0, valFraction: 0 };
    // Only the embeddings train: wte (split) must change, everything above must stay.
    await studio.handle({ type: 'train', settings, frozen: [1, 2, 3], sample: { ...DEFAULT_SAMPLE, prompt: 'Line', maxNewTokens: 4 } });
    expect(of('error')).toEqual([]);
    expect(of('runState').at(-1)!.state).toBe('finished');

    const second = await exported();
    for (const s of paramSpecs(CONFIG)) {
      const same = bits(second.get(s.name)!).equals(bits(params.get(s.name)!));
      expect(same, s.name).toBe(s.group !== 0);
    }
    // The hf-zip goes through the same reader.
    await studio.handle({ type: 'export', format: 'hf-zip' });
    expect(of('error')).toEqual([]);
    expect(of('exported').at(-1)!.fileName).toMatch(/\.zip$/);
  }, 300_000);

  it('exports GPT-2\'s own wte (50257 × 768, 147 MiB) from a session whose device binds 128 MiB, bit for bit', async () => {
    // The case at full width: one block is enough, wte is the tensor that does not fit.
    const big: GPT2Config = { ...CONFIG, nEmbd: 768, nHead: 12, nInner: 3072, nLayer: 1 };
    const bigParams = hfInitParams(big, 5);
    const dropped = [
      { path: 'gpt2-wide/config.json', file: new Blob([JSON.stringify(configToJson(big))]) },
      { path: 'gpt2-wide/model.safetensors', file: new Blob([new Uint8Array(writeSafetensors(checkpointTensors(big, bigParams)))]) },
    ];
    const events: WorkerEvent[] = [];
    const studio = new Studio((ev) => events.push(ev), await nodeGpu(), { maxStorageBufferBindingSize: 128 << 20 });
    await studio.handle({ type: 'loadModel', source: { kind: 'files', files: dropped } });
    await studio.handle({ type: 'export', format: 'safetensors' });
    expect(events.filter((e) => e.type === 'error')).toEqual([]);
    const ex = events.filter((e): e is Ev<'exported'> => e.type === 'exported').at(-1)!;
    const t = readSafetensors(new Uint8Array(await ex.blob.arrayBuffer()));
    const wte = t.get('transformer.wte.weight')!.data as Float32Array;
    expect(wte.byteLength).toBe(154389504); // more than 128 MiB = 134217728
    for (const s of paramSpecs(big)) {
      const got = t.get(`transformer.${s.name}`)!.data as Float32Array;
      expect(Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(Buffer.from(bigParams.get(s.name)!.buffer)), s.name).toBe(true);
    }
  }, 300_000);
});
