// Writes a randomly initialized GPT-2-shaped model folder (config.json + model.safetensors, the
// Hugging Face layout `npm run cli -- train --model` reads) and a random-token training file, so
// the engine can be exercised at GPT-2 124M's real shape without downloading or committing
// weights. Initialization as transformers' GPT2PreTrainedModel._init_weights: Conv1D and
// embedding weights ~ N(0, initializer_range = 0.02), biases 0, LayerNorm weight 1 and bias 0,
// and every c_proj.weight ~ N(0, 0.02 / sqrt(2·n_layer)) (GPT-2 paper §2.3's residual scaling).
//
//   npx tsx scripts/make-random-model.ts <out-dir> [--layers 12] [--embd 768] [--heads 12]
//       [--vocab 50257] [--positions 1024] [--seed 1234] [--tokens 100000]
// Defaults: GPT-2 124M (openai-community/gpt2's config). Writes <out-dir>/config.json,
// <out-dir>/model.safetensors (≈ 475 MiB at the default shape) and <out-dir>/train.bin
// (nanoGPT uint16 tokens, uniform over the vocabulary).
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GPT2_SMALL, type GPT2Config } from '../src/engine/model/config.ts';
import { paramSpecs, type HostParams } from '../src/engine/model/params.ts';
import { saveModelDir } from '../src/io/node-model.ts';
import { uniformStream } from '../src/engine/random.ts';

/** GPT-2's initializer_range. */
const INIT_STD = 0.02;

/** N(0, std) by the Box–Muller transform. */
function fillNormal(out: Float32Array, std: number, next: () => number): void {
  for (let i = 0; i < out.length; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - next())) * std; // 1 − u ∈ (0, 1]: log never sees 0
    const a = 2 * Math.PI * next();
    out[i] = r * Math.cos(a);
    if (i + 1 < out.length) out[i + 1] = r * Math.sin(a);
  }
}

/** Parameters of a freshly initialized GPT2LMHeadModel (HF's _init_weights), deterministic in `seed`. */
export function randomGpt2Params(config: GPT2Config, seed: number): HostParams {
  const out: HostParams = new Map();
  const projStd = INIT_STD / Math.sqrt(2 * config.nLayer);
  paramSpecs(config).forEach((s, k) => {
    const t = new Float32Array(s.numel); // s.shape
    if (/(^|\.)ln_[12f]\.weight$/.test(s.name)) t.fill(1);
    else if (s.name.endsWith('.bias')) t.fill(0);
    else fillNormal(t, s.name.endsWith('c_proj.weight') ? projStd : INIT_STD, uniformStream(seed, k + 1));
    out.set(s.name, t);
  });
  return out;
}

/** `n` token ids uniform over [0, V), deterministic in `seed`. */
export function randomTokens(n: number, V: number, seed: number): Uint16Array {
  if (V > 65536) throw new Error(`vocabulary ${V} does not fit uint16 token files`);
  const next = uniformStream(seed, 0);
  return Uint16Array.from({ length: n }, () => Math.floor(next() * V));
}

function parseArgs(argv: string[]): { dir: string; config: GPT2Config; seed: number; tokens: number } {
  const [dir, ...rest] = argv;
  if (!dir || dir.startsWith('--')) throw new Error('usage: npx tsx scripts/make-random-model.ts <out-dir> [--layers N] [--embd C] [--heads H] [--vocab V] [--positions P] [--seed S] [--tokens N]');
  const opts: Record<string, number> = {};
  for (let i = 0; i < rest.length; i += 2) {
    const k = rest[i].replace(/^--/, '');
    const v = Number(rest[i + 1]);
    if (!['layers', 'embd', 'heads', 'vocab', 'positions', 'seed', 'tokens'].includes(k) || !Number.isInteger(v) || v < 1) {
      throw new Error(`bad option ${rest[i]} ${rest[i + 1] ?? ''}: give a known option and a positive integer`);
    }
    opts[k] = v;
  }
  const C = opts.embd ?? GPT2_SMALL.nEmbd;
  const config: GPT2Config = {
    ...GPT2_SMALL,
    nLayer: opts.layers ?? GPT2_SMALL.nLayer,
    nEmbd: C,
    nInner: 4 * C,
    nHead: opts.heads ?? GPT2_SMALL.nHead,
    vocabSize: opts.vocab ?? GPT2_SMALL.vocabSize,
    nPositions: opts.positions ?? GPT2_SMALL.nPositions,
  };
  if (C % config.nHead !== 0) throw new Error(`--embd ${C} must be divisible by --heads ${config.nHead}`);
  const V = config.vocabSize;
  config.bosTokenId = config.eosTokenId = Math.min(50256, V - 1);
  return { dir: resolve(dir), config, seed: opts.seed ?? 1234, tokens: opts.tokens ?? 100_000 };
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { dir, config, seed, tokens } = parseArgs(process.argv.slice(2));
  const t0 = performance.now();
  const params = randomGpt2Params(config, seed);
  await saveModelDir(dir, config, params);
  await writeFile(join(dir, 'train.bin'), randomTokens(tokens, config.vocabSize, seed));
  const n = paramSpecs(config).reduce((a, s) => a + s.numel, 0);
  console.log(
    `wrote ${dir}/config.json, model.safetensors (${n.toLocaleString('en')} parameters: L=${config.nLayer} C=${config.nEmbd} ` +
      `heads=${config.nHead} V=${config.vocabSize}) and train.bin (${tokens} random tokens) in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
}
