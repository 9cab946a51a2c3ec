// The ONNX export against our WebGPU engine: onnxruntime-node 1.14 and onnxruntime-web (wasm)
// give the engine's logits (within 1e-4 of the largest) for a prompt with no past — the last
// row, which the engine's prefill returns — and for each next token fed with the returned past,
// at the golden tiny shape and the demo shape (GPT-2's vocabulary). Then transformers.js, loading
// the folder `export --format onnx` wrote with env.localModelPath and no remote models, generates
// greedily the same tokens as our `generate --temperature 0` on five prompts; the generation
// speed of both runtimes at the demo shape is printed.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import ortNode from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.ts';
import { Generator, GREEDY } from '../../src/engine/generate/generator.ts';
import type { GpuContext } from '../../src/engine/gpu/context.ts';
import type { GPT2Config } from '../../src/engine/model/config.ts';
import type { HostParams } from '../../src/engine/model/params.ts';
import { GpuWeights } from '../../src/engine/model/weights.ts';
import { loadModelDir, saveModelDir } from '../../src/io/node-model.ts';
import { concatChunks, gpt2OnnxFiles } from '../../src/io/onnx.ts';
import { gpuContext } from '../helpers/gpu.ts';
import { ortLogits, relToLargest, type OrtLike, type SessionLike } from '../helpers/onnx.ts';

ortWeb.env.wasm.numThreads = 1;
const TINY = new URL('../goldens/gpt2-tiny/model/', import.meta.url).pathname;
const DEMO = new URL('../../public/models/demo-gpt2/', import.meta.url).pathname;

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await gpuContext();
});

/** The engine's logits for the same schedule as ortLogits: prefill `prompt` ids, then decode one at a time. */
async function engineLogits(config: GPT2Config, params: HostParams, ids: number[], prompt: number): Promise<Float32Array[]> {
  const w = new GpuWeights(ctx, config, params);
  const gen = await Generator.create(ctx, w);
  try {
    const rows = [await gen.prefill(ids.slice(0, prompt))];
    for (const t of ids.slice(prompt)) rows.push(await gen.decode(t));
    return rows;
  } finally {
    gen.destroy();
    w.destroy();
  }
}

describe.each([['tiny', TINY], ['demo', DEMO]])('%s shape: onnxruntime and the engine', (_, dir) => {
  it.each([
    ['onnxruntime-node 1.14', ortNode as unknown as OrtLike, async (b: Uint8Array) => (await ortNode.InferenceSession.create(b)) as unknown as SessionLike],
    ['onnxruntime-web (wasm)', ortWeb as unknown as OrtLike, async (b: Uint8Array) => (await ortWeb.InferenceSession.create(b, { executionProviders: ['wasm'] })) as unknown as SessionLike],
  ] as const)('%s: the prompt\'s last logits and every cached step match the engine', async (_, ort, open) => {
    const { config, params } = await loadModelDir(dir);
    const V = config.vocabSize;
    const ids = [11, 3, 290, 7, 101, 64, 5, 250, 42].map((t) => (t * 7919) % V);
    const prompt = 5;
    const [file] = await gpt2OnnxFiles(config, params);
    const { logits } = await ortLogits(ort, await open(concatChunks(file)), config, ids, prompt);
    const engine = await engineLogits(config, params, ids, prompt);
    // row k of `engine` is position prompt−1+k of the ONNX logits
    engine.forEach((row, k) => {
      const pos = prompt - 1 + k;
      expect(relToLargest(logits.subarray(pos * V, (pos + 1) * V), row), `position ${pos}`).toBeLessThan(1e-4);
    });
  });
});

/** transformers.js 2.x generate() returns one array of ids (numbers or bigints) per input row. */
function firstRow(out: unknown): number[] {
  return Array.from((out as Array<ArrayLike<number | bigint>>)[0], Number);
}

describe('transformers.js runs the export like our generate --temperature 0', () => {
  let exportDir: string;
  let modelDir: string;
  const PROMPTS = ['The quick brown fox', 'Once upon a time', 'In the beginning was', 'Dracula said', 'Hello, world! 42'];
  const NEW = 16;

  beforeAll(async () => {
    // The demo shape with its matrices scaled ×6, so greedy decoding wanders over the vocabulary
    // instead of repeating one token (as a freshly initialized model does), and a mismatch shows.
    const { config, params } = await loadModelDir(DEMO);
    for (const [n, t] of params) if (/weight$/.test(n) && !/ln_/.test(n)) params.set(n, t.map((v) => v * 6));
    const root = mkdtempSync(join(tmpdir(), 'onnx-tjs-'));
    modelDir = join(root, 'sharp-demo');
    await saveModelDir(modelDir, config, params, {
      'tokenizer.json': readFileSync(join(DEMO, 'tokenizer.json')),
      'tokenizer_config.json': readFileSync(join(DEMO, 'tokenizer_config.json')),
    });
    exportDir = join(root, 'sharp-demo-onnx');
    vi.spyOn(console, 'error').mockImplementation(() => {});
    const code = await main(['export', '--model', modelDir, '--format', 'onnx', '--out', exportDir], () => {});
    vi.restoreAllMocks();
    expect(code).toBe(0);
  });

  afterAll(() => vi.restoreAllMocks());

  it('the same greedy tokens on five prompts (float32 file), and the speed of both runtimes', async () => {
    const { env, AutoTokenizer, AutoModelForCausalLM } = await import('@xenova/transformers');
    env.localModelPath = dirname(exportDir);
    env.allowRemoteModels = false;
    const name = basename(exportDir);
    const tokenizer = await AutoTokenizer.from_pretrained(name);
    const model = await AutoModelForCausalLM.from_pretrained(name, { quantized: false });
    const { config, params } = await loadModelDir(modelDir);
    const w = new GpuWeights(ctx, config, params);
    const gen = await Generator.create(ctx, w);
    let tjsTokens = 0, tjsMs = 0, ourTokens = 0, ourMs = 0;
    const distinct = new Set<number>();
    try {
      for (const prompt of PROMPTS) {
        const { input_ids } = tokenizer(prompt);
        const promptIds = Array.from(input_ids.data as BigInt64Array, Number);
        const t0 = performance.now();
        const out = await model.generate(input_ids, { max_new_tokens: NEW, do_sample: false });
        tjsMs += performance.now() - t0;
        const theirs = firstRow(out).slice(promptIds.length);
        tjsTokens += theirs.length;
        const r = await gen.generate(promptIds, { maxNewTokens: NEW, sampling: GREEDY, eosTokenId: config.eosTokenId });
        ourTokens += r.tokens.length;
        ourMs += r.prefillMs + r.decodeMs;
        expect(theirs, prompt).toEqual(r.tokens);
        r.tokens.forEach((t) => distinct.add(t));
      }
    } finally {
      gen.destroy();
      w.destroy();
    }
    expect(distinct.size).toBeGreaterThan(10); // the comparison is not of one repeated token
    console.log(`demo shape, greedy: transformers.js (onnxruntime-node, float32) ${((1000 * tjsTokens) / tjsMs).toFixed(1)} tokens/s; our engine on ${ctx.adapter.vendor} ${((1000 * ourTokens) / ourMs).toFixed(1)} tokens/s`);
  });

  it('transformers.js loads the 8-bit file by default and generates from it', async () => {
    const { env, AutoTokenizer, AutoModelForCausalLM } = await import('@xenova/transformers');
    env.localModelPath = dirname(exportDir);
    env.allowRemoteModels = false;
    const tokenizer = await AutoTokenizer.from_pretrained(basename(exportDir));
    const model = await AutoModelForCausalLM.from_pretrained(basename(exportDir)); // quantized: true is the default
    const { input_ids } = tokenizer(PROMPTS[1]);
    const out = firstRow(await model.generate(input_ids, { max_new_tokens: NEW, do_sample: false }));
    expect(out.length).toBe(input_ids.data.length + NEW);
    expect(out.slice(input_ids.data.length).every((t) => Number.isInteger(t) && t >= 0 && t < 50257)).toBe(true);
  });

  it('our generate command prints the text transformers.js generates', async () => {
    const { env, AutoTokenizer, AutoModelForCausalLM } = await import('@xenova/transformers');
    env.localModelPath = dirname(exportDir);
    env.allowRemoteModels = false;
    const tokenizer = await AutoTokenizer.from_pretrained(basename(exportDir));
    const model = await AutoModelForCausalLM.from_pretrained(basename(exportDir), { quantized: false });
    const { input_ids } = tokenizer(PROMPTS[0]);
    const out = await model.generate(input_ids, { max_new_tokens: NEW, do_sample: false });
    const text = tokenizer.decode(firstRow(out), { skip_special_tokens: true });
    const lines: string[] = [];
    vi.spyOn(console, 'error').mockImplementation(() => {});
    const code = await main(['generate', '--model', modelDir, '--prompt', PROMPTS[0], '--temperature', '0', '--max-new-tokens', String(NEW)], (l) => lines.push(l));
    expect(code).toBe(0);
    expect(lines[0]).toBe(text);
  });
});
