// Generates the studio's built-in offline model: a small GPT-2-shaped model with GPT-2's real
// tokenizer (V = 50257), initialized as Hugging Face initializes a fresh GPT2LMHeadModel, from a
// fixed seed, so no weights are committed and every build makes the same bytes. Written to
// public/models/demo-gpt2/ (config.json, model.safetensors, tokenizer.json,
// tokenizer_config.json, generation_config.json), which the page serves at /models/demo-gpt2/.
//   npx tsx scripts/make-demo-model.ts [out-dir]       (run by `npm run gen`)
// Idempotent: files whose bytes are already right are left untouched.
//
// Initialization (transformers' modeling_gpt2.py, GPT2PreTrainedModel._init_weights): Conv1D
// and Embedding weights ~ N(0, initializer_range = 0.02), biases 0, LayerNorm weight 1 and bias
// 0; then every `c_proj.weight` (attention and MLP) is re-drawn from N(0, 0.02 / sqrt(2·n_layer)),
// GPT-2 paper §2.3's scaling of residual-path weights by 1/sqrt(N).
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SeededRng } from '../src/engine/random.ts';
import { configToJson, type GPT2Config, GPT2_SMALL } from '../src/engine/model/config.ts';
import { paramSpecs, type HostParams } from '../src/engine/model/params.ts';
import { checkpointTensors } from '../src/io/checkpoint.ts';
import { writeSafetensors } from '../src/io/safetensors.ts';
import { ensureGpt2TokenizerFiles } from '../src/io/node-tokenizer.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Where the page finds the built-in model (served at `<base>models/demo-gpt2/`). */
export const DEMO_MODEL_DIR = join(ROOT, 'public', 'models', 'demo-gpt2');

/**
 * The demo's shape: GPT-2's vocabulary and tokenizer with a body small enough to train visibly
 * on a software adapter (SwiftShader): the LM head over 50257 tokens is most of each step.
 * Four blocks give the layer panel something to freeze; 256 positions allow useful samples.
 */
export const DEMO_CONFIG: GPT2Config = {
  ...GPT2_SMALL,
  nPositions: 256,
  nEmbd: 64,
  nLayer: 4,
  nHead: 4,
  nInner: 256,
};

export const DEMO_SEED = 20240520;

/** GPT-2's initializer_range. */
const INIT_STD = 0.02;

/** N(0, std) samples by the Box–Muller transform (Box & Muller 1958) from a seeded uniform stream. */
function fillNormal(out: Float32Array, std: number, rng: SeededRng): void {
  for (let i = 0; i < out.length; i += 2) {
    const u1 = 1 - rng.next(); // (0, 1]: log never sees 0
    const u2 = rng.next();
    const r = Math.sqrt(-2 * Math.log(u1)) * std;
    out[i] = r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < out.length) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
}

/** Parameters of a freshly initialized GPT2LMHeadModel (HF's _init_weights), one RNG stream per tensor. */
export function hfInitParams(config: GPT2Config, seed: number): HostParams {
  const out: HostParams = new Map();
  const projStd = INIT_STD / Math.sqrt(2 * config.nLayer);
  paramSpecs(config).forEach((s, k) => {
    const t = new Float32Array(s.numel); // s.shape
    if (/\.(weight)$/.test(s.name) && /(ln_1|ln_2|ln_f)\./.test(s.name)) t.fill(1);
    else if (s.name.endsWith('.bias')) t.fill(0);
    else fillNormal(t, /c_proj\.weight$/.test(s.name) ? projStd : INIT_STD, new SeededRng(seed, k));
    out.set(s.name, t);
  });
  return out;
}

/** The files of a model folder for `config`, HF-initialized from `seed`, with GPT-2's tokenizer. */
export async function demoModelFiles(config: GPT2Config = DEMO_CONFIG, seed = DEMO_SEED): Promise<Record<string, Uint8Array>> {
  const tok = await ensureGpt2TokenizerFiles();
  const enc = new TextEncoder();
  const json = (v: unknown) => enc.encode(`${JSON.stringify(v, null, 2)}\n`);
  const weights = writeSafetensors(checkpointTensors(config, hfInitParams(config, seed)));
  return {
    'config.json': json({ ...configToJson(config), _name_or_path: 'demo-gpt2' }),
    'model.safetensors': weights,
    'tokenizer.json': enc.encode(JSON.stringify(tok.tokenizerJson) + '\n'),
    'tokenizer_config.json': json(tok.tokenizerConfig),
    // transformers' GenerationConfig for GPT-2: bos/eos 50256.
    'generation_config.json': json({ bos_token_id: config.bosTokenId, eos_token_id: config.eosTokenId }),
  };
}

async function readIfExists(path: string): Promise<Uint8Array | undefined> {
  try {
    return new Uint8Array(await readFile(path));
  } catch {
    return undefined;
  }
}

function sameBytes(a: Uint8Array | undefined, b: Uint8Array): boolean {
  if (!a || a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Writes the files into `dir` unless they already hold exactly these bytes; returns the names written. */
export async function writeModelFolder(dir: string, files: Record<string, Uint8Array>): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const written: string[] = [];
  for (const [name, bytes] of Object.entries(files)) {
    const path = join(dir, name);
    if (sameBytes(await readIfExists(path), bytes)) continue;
    await writeFile(path, bytes);
    written.push(name);
  }
  return written;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const dir = process.argv[2] !== undefined ? resolve(process.argv[2]) : DEMO_MODEL_DIR;
  const t0 = performance.now();
  const written = await writeModelFolder(dir, await demoModelFiles());
  const c = DEMO_CONFIG;
  const params = paramSpecs(c).reduce((a, s) => a + s.numel, 0);
  console.log(`Demo GPT-2 (L=${c.nLayer} C=${c.nEmbd} NH=${c.nHead} P=${c.nPositions} V=${c.vocabSize}, ${(params / 1e6).toFixed(2)}M parameters) → ${dir} ` +
    `(${written.length === 0 ? 'already up to date' : `wrote ${written.join(', ')}`}; ${(performance.now() - t0).toFixed(0)} ms)`);
}
