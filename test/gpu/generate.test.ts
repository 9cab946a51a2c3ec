// KV-cache generation on the golden tiny GPT-2 (test/goldens/gpt2-tiny, V=311, C=48, NH=4, L=2,
// P=64): at every step the cached logits equal the last row of a full forward pass over the
// whole sequence so far (the GPU's own buildForward and the float64 reference, rel ≤ 1e-5), and
// the greedy token is the argmax of the full pass. Then EOS, the context limit, seeded sampling,
// and no GPU allocation in a decode step. One run with the `subgroups` kernel variant (the
// decode softmax and the LayerNorms reduce through subgroup operations) meets the same bounds.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.ts';
import { decodeIds, modelTokenizer } from '../../src/cli/commands/generate.ts';
import { nodeGpu } from '../../src/cli/webgpu-node.ts';
import { run } from '../../src/engine/gpu/dispatch.ts';
import { GpuContext } from '../../src/engine/gpu/context.ts';
import { ContextLengthError, Generator, GREEDY, PromptTokenError } from '../../src/engine/generate/generator.ts';
import { argmax } from '../../src/engine/generate/sampling.ts';
import { createRngUniform } from '../../src/engine/kernels/dropout.ts';
import { Activations } from '../../src/engine/model/activations.ts';
import { buildForward, buildHead } from '../../src/engine/model/graph.ts';
import type { GPT2Config } from '../../src/engine/model/config.ts';
import { paramSpecs, type HostParams } from '../../src/engine/model/params.ts';
import { GpuWeights } from '../../src/engine/model/weights.ts';
import { refForward, toF64Params } from '../../src/engine/reference/gpt2.ts';
import { refMergeLora } from '../../src/engine/reference/lora.ts';
import { initLoraParams, LoraWeights, loraTargets, type LoraConfig } from '../../src/engine/model/lora.ts';
import { loadGoldens } from '../helpers/goldens.ts';
import { gpuContext, upload } from '../helpers/gpu.ts';
import { randn, relErr } from '../helpers/numeric.ts';
import { writeTinyModelDir } from '../helpers/tiny-model.ts';

const G = loadGoldens();
const V = G.config.vocabSize;
const P = G.config.nPositions;
const REF = toF64Params(G.params);

let ctx: GpuContext;
let weights: GpuWeights;
let gen: Generator;

beforeAll(async () => {
  ctx = await gpuContext();
  weights = new GpuWeights(ctx, G.config, G.params);
  gen = await Generator.create(ctx, weights);
});

/** Last-position logits (V,) of the GPU's training-path forward over the whole sequence. */
async function gpuFullForward(seq: number[]): Promise<Float32Array> {
  const T = seq.length;
  const acts = new Activations(ctx, G.config, 1, T, false);
  const tokens = upload(ctx, Uint32Array.from(seq));
  const targets = upload(ctx, new Uint32Array(T));
  const g = { ctx, config: G.config, weights, acts, micro: 0, dropout: { embd: 0, attn: 0, resid: 0 }, rng: createRngUniform(ctx), grad: () => undefined };
  expect(acts.chunkRows).toBeGreaterThanOrEqual(T); // one head chunk: every row's logits stay in acts.logits
  await run(ctx, [...(await buildForward(g, { tokens, targets, buckets: tokens })), ...(await buildHead(g, targets, false, 1))]);
  const out = await ctx.readF32(acts.logits.buffer, (T - 1) * V * 4, V);
  acts.destroy();
  tokens.buffer.destroy();
  targets.buffer.destroy();
  return out;
}

/** Last-position logits of the float64 reference. */
function refLast(seq: number[]): Float64Array {
  const T = seq.length;
  const { logits } = refForward(G.config, REF, Int32Array.from(seq), null, 1, T);
  return logits.slice((T - 1) * V, T * V);
}

describe('KV-cache generation matches full forward passes', () => {
  for (const [name, prompt] of [
    ['a 5-token prompt, up to the full context', Array.from(G.tokens.slice(0, 5))],
    ['an empty prompt (starts from BOS)', []],
  ] as const) {
    it(`greedy, ${name}: every step's logits and token`, async () => {
      const start = prompt.length ? [...prompt] : [G.config.bosTokenId];
      const maxNew = P - start.length; // fills every position of the context
      const steps: Float32Array[] = [];
      const r = await gen.generate(prompt, { maxNewTokens: maxNew, sampling: GREEDY, eosTokenId: null, onLogits: (l) => steps.push(l) });
      expect(r.stop).toBe('length');
      expect(r.tokens).toHaveLength(maxNew);
      expect(r.promptLength).toBe(start.length);
      expect(steps).toHaveLength(maxNew);
      let worstRef = 0;
      let worstGpu = 0;
      for (let i = 0; i < maxNew; i++) {
        const seq = [...start, ...r.tokens.slice(0, i)];
        const ref = refLast(seq);
        const full = await gpuFullForward(seq);
        worstRef = Math.max(worstRef, relErr(steps[i], ref));
        worstGpu = Math.max(worstGpu, relErr(steps[i], full));
        expect(r.tokens[i], `step ${i}: greedy token vs argmax of the float64 full forward`).toBe(argmax(ref));
        expect(r.tokens[i], `step ${i}: greedy token vs argmax of the GPU full forward`).toBe(argmax(full));
      }
      console.log(`[generate] ${name}: ${maxNew} steps, worst rel. error vs float64 ${worstRef.toExponential(2)}, vs GPU full forward ${worstGpu.toExponential(2)}, ${r.tokensPerSecond.toFixed(1)} tok/s`);
      expect(worstRef).toBeLessThan(1e-5);
      expect(worstGpu).toBeLessThan(1e-5);
    });
  }

  it('a second prompt of another length overwrites the cache correctly', async () => {
    const prompt = Array.from(G.tokens.slice(100, 117));
    const steps: Float32Array[] = [];
    const r = await gen.generate(prompt, { maxNewTokens: 8, eosTokenId: null, onLogits: (l) => steps.push(l) });
    for (let i = 0; i < 8; i++) {
      const ref = refLast([...prompt, ...r.tokens.slice(0, i)]);
      expect(relErr(steps[i], ref)).toBeLessThan(1e-5);
      expect(r.tokens[i]).toBe(argmax(ref));
    }
  });

  it('with the subgroups variant: every step within the same bound of the float64 model', async () => {
    expect(ctx.device.features.has('subgroups')).toBe(true);
    ctx.kernels = { ...ctx.kernels, subgroups: true };
    try {
      const g = await Generator.create(ctx, weights);
      const prompt = Array.from(G.tokens.slice(0, 5));
      const steps: Float32Array[] = [];
      const r = await g.generate(prompt, { maxNewTokens: 24, sampling: GREEDY, eosTokenId: null, onLogits: (l) => steps.push(l) });
      let offDiffers = false;
      const plain: Float32Array[] = [];
      await gen.generate(prompt, { maxNewTokens: 24, sampling: GREEDY, eosTokenId: null, onLogits: (l) => plain.push(l) });
      for (let i = 0; i < 24; i++) {
        const ref = refLast([...prompt, ...r.tokens.slice(0, i)]);
        expect(relErr(steps[i], ref), `step ${i}`).toBeLessThan(1e-5);
        expect(r.tokens[i]).toBe(argmax(ref));
        offDiffers ||= steps[i].some((v, k) => v !== plain[i][k]);
      }
      // The variant really ran: its sums are ordered otherwise, so some logit differs in its last bits.
      expect(offDiffers).toBe(true);
      g.destroy();
    } finally {
      ctx.kernels = { ...ctx.kernels, subgroups: false };
    }
  });
});

describe('KV-cache generation with LoRA adapters', () => {
  it('every step matches the float64 model with the adapters merged (dropout off)', async () => {
    const cfg: LoraConfig = { r: 4, alpha: 32, dropout: 0.3, targets: ['c_attn', 'c_proj', 'c_fc'], rslora: false };
    const lp = initLoraParams(G.config, cfg, 9);
    loraTargets(G.config, cfg).forEach((t, k) => lp.set(t.b, Float32Array.from(randn(t.out * cfg.r, 70 + k, 0.5))));
    const lora = new LoraWeights(ctx, G.config, cfg, lp);
    const g = await Generator.create(ctx, weights, lora);
    const merged = refMergeLora(G.config, REF, { config: cfg, params: toF64Params(lp) });
    const prompt = Array.from(G.tokens.slice(10, 17));
    const steps: Float32Array[] = [];
    const r = await g.generate(prompt, { maxNewTokens: 16, eosTokenId: null, onLogits: (l) => steps.push(l) });
    let moved = 0;
    for (let i = 0; i < 16; i++) {
      const seq = [...prompt, ...r.tokens.slice(0, i)];
      const last = (p: typeof REF) => refForward(G.config, p, Int32Array.from(seq), null, 1, seq.length).logits.slice((seq.length - 1) * V);
      const ref = last(merged);
      moved = Math.max(moved, relErr(last(REF), ref));
      expect(relErr(steps[i], ref), `step ${i}`).toBeLessThan(1e-5);
      expect(r.tokens[i]).toBe(argmax(ref));
    }
    expect(moved).toBeGreaterThan(1e-3); // the adapters change the logits far beyond the tolerance
    g.destroy();
    lora.destroy();
  });
});

describe('greedy decoding with the argmax on the GPU', () => {
  it('chooses the tokens the CPU argmax chooses, reading back one id per token', async () => {
    const prompt = Array.from(G.tokens.slice(0, 5));
    const maxNew = P - prompt.length;
    // With onLogits the logits come back and the CPU picks; without it the GPU does.
    const cpu = await gen.generate(prompt, { maxNewTokens: maxNew, eosTokenId: null, onLogits: () => undefined });
    const dev = ctx.device as GPUDevice & Record<string, unknown>;
    const copies: number[] = [];
    const orig = dev.createCommandEncoder;
    dev.createCommandEncoder = (...a: Parameters<GPUDevice['createCommandEncoder']>) => {
      const enc = orig.apply(dev, a);
      const copy = enc.copyBufferToBuffer.bind(enc);
      enc.copyBufferToBuffer = ((...c: [GPUBuffer, number, GPUBuffer, number, number]) => (copies.push(c[4]), copy(...c))) as GPUCommandEncoder['copyBufferToBuffer'];
      return enc;
    };
    let gpu;
    try {
      gpu = await gen.generate(prompt, { maxNewTokens: maxNew, eosTokenId: null });
    } finally {
      dev.createCommandEncoder = orig;
    }
    expect(gpu.tokens).toEqual(cpu.tokens);
    // Per token one 4-byte copy to the mappable buffer (the prefill also copies its last ln_f row).
    expect(copies.filter((n) => n === 4)).toHaveLength(maxNew);
    expect(copies.every((n) => n <= 4 * G.config.nEmbd)).toBe(true);
  });
});

describe('stopping, limits and sampling', () => {
  it('stops at EOS and keeps it as the last token', async () => {
    const prompt = Array.from(G.tokens.slice(0, 5));
    const free = await gen.generate(prompt, { maxNewTokens: 12, eosTokenId: null });
    const k = 6;
    const eos = free.tokens[k];
    const first = free.tokens.indexOf(eos);
    const r = await gen.generate(prompt, { maxNewTokens: 12, eosTokenId: eos });
    expect(r.stop).toBe('eos');
    expect(r.tokens).toEqual(free.tokens.slice(0, first + 1));
    // By default the config's eos_token_id stops generation.
    expect(G.config.eosTokenId).toBe(310);
  });

  it('refuses prompt + new tokens beyond n_positions, and tokens outside the vocabulary', async () => {
    const prompt = Array.from(G.tokens.slice(0, 5));
    await expect(gen.generate(prompt, { maxNewTokens: P - 4 })).rejects.toThrow(ContextLengthError);
    await expect(gen.generate(prompt, { maxNewTokens: P - 4 })).rejects.toThrow(/5 tokens and 60 new tokens.*exceeds the model's context of n_positions = 64.*at most 59 new tokens/);
    await expect(gen.generate([1, V, 2], { maxNewTokens: 1 })).rejects.toThrow(PromptTokenError);
    await expect(gen.generate([1], { maxNewTokens: 0 })).rejects.toThrow(/max new tokens/);
  });

  it('sampling: the same seed gives the same tokens, another seed other tokens', async () => {
    const prompt = Array.from(G.tokens.slice(0, 5));
    const sampling = { temperature: 1.5, topK: 0, topP: 1 };
    const a = await gen.generate(prompt, { maxNewTokens: 30, sampling, seed: 7, eosTokenId: null });
    const b = await gen.generate(prompt, { maxNewTokens: 30, sampling, seed: 7, eosTokenId: null });
    const c = await gen.generate(prompt, { maxNewTokens: 30, sampling, seed: 8, eosTokenId: null });
    const greedy = await gen.generate(prompt, { maxNewTokens: 30, eosTokenId: null });
    expect(b.tokens).toEqual(a.tokens);
    expect(c.tokens).not.toEqual(a.tokens);
    expect(a.tokens).not.toEqual(greedy.tokens);
    // top-k 1 is greedy whatever the seed
    const k1 = await gen.generate(prompt, { maxNewTokens: 30, sampling: { temperature: 1, topK: 1, topP: 1 }, seed: 3, eosTokenId: null });
    expect(k1.tokens).toEqual(greedy.tokens);
  });

  it('reports timing and allocates nothing on the GPU in a decode step', async () => {
    const dev = ctx.device as GPUDevice & Record<string, unknown>;
    const counts = { createBuffer: 0, createBindGroup: 0 };
    const orig = { createBuffer: dev.createBuffer, createBindGroup: dev.createBindGroup };
    await gen.prefill(Array.from(G.tokens.slice(0, 5)));
    dev.createBuffer = (...a: Parameters<GPUDevice['createBuffer']>) => (counts.createBuffer++, orig.createBuffer.apply(dev, a));
    dev.createBindGroup = (...a: Parameters<GPUDevice['createBindGroup']>) => (counts.createBindGroup++, orig.createBindGroup.apply(dev, a));
    try {
      for (let i = 0; i < 5; i++) await gen.decode(G.tokens[5 + i]);
    } finally {
      dev.createBuffer = orig.createBuffer;
      dev.createBindGroup = orig.createBindGroup;
    }
    expect(counts).toEqual({ createBuffer: 0, createBindGroup: 0 });
    const r = await gen.generate([1, 2, 3], { maxNewTokens: 10, eosTokenId: null });
    expect(r.tokensPerSecond).toBeGreaterThan(0);
    expect(r.prefillMs).toBeGreaterThan(0);
    expect(r.decodeMs).toBeGreaterThan(0);
  });
});

describe('wte bound in row ranges', () => {
  it('embeds and scores tokens of every range (binding limit below the size of wte)', async () => {
    // C = 128, V = 1000: wte is 512000 bytes; with 256 KiB per binding it is bound as rows
    // [0, 512) and [512, 1000), while every other tensor and the 64-row logits chunk fit whole.
    const config: GPT2Config = {
      vocabSize: 1000, nPositions: 32, nEmbd: 128, nLayer: 2, nHead: 4, nInner: 512, layerNormEpsilon: 1e-5,
      activation: 'gelu_new', embdPdrop: 0, attnPdrop: 0, residPdrop: 0, bosTokenId: 999, eosTokenId: 999,
    };
    const host: HostParams = new Map();
    paramSpecs(config).forEach((sp, k) => {
      const isLn = /ln_\d\.weight$|ln_f\.weight$/.test(sp.name);
      host.set(sp.name, Float32Array.from(randn(sp.numel, 100 + k, 0.1), (x) => (isLn ? 1 + x : x)));
    });
    const small = await GpuContext.create(await nodeGpu(), 'high-performance', { maxStorageBufferBindingSize: 256 * 1024 });
    const w = new GpuWeights(small, config, host);
    expect(w.ranges('wte.weight').map((r) => [r.row0, r.rows])).toEqual([[0, 512], [512, 488]]);
    const g = await Generator.create(small, w);
    const prompt = [3, 700, 999, 512, 511];
    const steps: Float32Array[] = [];
    const r = await g.generate(prompt, { maxNewTokens: 12, eosTokenId: null, onLogits: (l) => steps.push(l) });
    const ref64 = toF64Params(host);
    for (let i = 0; i < 12; i++) {
      const seq = [...prompt, ...r.tokens.slice(0, i)];
      const ref = refForward(config, ref64, Int32Array.from(seq), null, 1, seq.length).logits.slice((seq.length - 1) * 1000);
      expect(relErr(steps[i], ref), `step ${i}`).toBeLessThan(1e-5);
      expect(r.tokens[i]).toBe(argmax(ref));
    }
    g.destroy();
    w.destroy();
    small.destroy();
  });
});

describe('cli generate', () => {
  const run = async (args: string[]) => {
    const lines: string[] = [];
    const code = await main(['generate', ...args], (l) => lines.push(l));
    return { code, lines };
  };

  it('prints the prompt and its continuation, then the speed; greedy equals the engine, seeds repeat', async () => {
    const dir = writeTinyModelDir(join(mkdtempSync(join(tmpdir(), 'cli-generate-')), 'tiny'));
    const { tokenizer } = await modelTokenizer(dir);
    const prompt = 'Once upon a time';
    const ids = tokenizer.encode(prompt);
    expect(ids.every((id) => id < V)).toBe(true);
    const expectedTokens = (await gen.generate(ids, { maxNewTokens: 12, eosTokenId: null })).tokens;

    const greedy = await run(['--model', dir, '--prompt', prompt, '--max-new-tokens', '12', '--temperature', '0', '--ignore-eos']);
    expect(greedy.code).toBe(0);
    expect(greedy.lines).toHaveLength(2);
    expect(greedy.lines[0]).toBe(prompt + decodeIds(tokenizer, expectedTokens));
    expect(greedy.lines[1]).toMatch(/^-- 12 new tokens in [\d.]+ s: [\d.]+ tokens\/s \(prompt \d+ tokens, prefill \d+ ms; stopped at --max-new-tokens 12; greedy; /);

    const a = await run(['--model', dir, '--prompt', prompt, '--max-new-tokens', '20', '--seed', '11', '--ignore-eos']);
    const b = await run(['--model', dir, '--prompt', prompt, '--max-new-tokens', '20', '--seed', '11', '--ignore-eos']);
    const c = await run(['--model', dir, '--prompt', prompt, '--max-new-tokens', '20', '--seed', '12', '--ignore-eos']);
    expect(a.lines[0]).toBe(b.lines[0]);
    expect(a.lines[0]).not.toBe(c.lines[0]);
    expect(a.lines[1]).toMatch(/temperature 1, top-k 50, top-p 1, seed 11/);

    // An empty prompt starts from <|endoftext|> (id 310 here).
    const fromBos = (await gen.generate([], { maxNewTokens: 5, eosTokenId: null })).tokens;
    const empty = await run(['--model', dir, '--max-new-tokens', '5', '--temperature', '0', '--ignore-eos']);
    expect(empty.lines[0]).toBe(decodeIds(tokenizer, fromBos));
    expect(empty.lines[1]).toMatch(/prompt 1 tokens/);
  });
});
