// `generate`: continues a prompt with a GPT-2 folder on the WebGPU engine (KV-cache decoding,
// engine/generate/generator.ts) and prints the text and the speed. Sampling follows Hugging
// Face's generate(): temperature, then top-k, then top-p, from a seeded generator (the same seed
// gives the same text); temperature 0 is greedy decoding.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GpuContext } from '../../engine/gpu/context.ts';
import { Generator, type GenerateResult } from '../../engine/generate/generator.ts';
import { DEFAULT_SAMPLING, type SamplingConfig } from '../../engine/generate/sampling.ts';
import { GpuWeights } from '../../engine/model/weights.ts';
import type { GPT2Config } from '../../engine/model/config.ts';
import { loadModelDir } from '../../io/node-model.ts';
import { tokenizerFromModelFiles, type HfTokenizer, type TokenizerSource } from '../../io/tokenizer.ts';
import { Args, UsageError, type CommandSpec } from '../args.ts';
import { resolveModelDir } from '../model-arg.ts';
import { readTunedTiles, tuningFilePath } from '../tuning-file.ts';
import { nodeGpu } from '../webgpu-node.ts';

export const generateSpec: CommandSpec = {
  name: 'generate',
  summary: 'Continue a prompt with a GPT-2 model (KV-cache decoding on the WebGPU engine).',
  usage: 'npm run cli -- generate --model <dir|owner/name[@revision]> --prompt <text> [options]',
  options: [
    { name: 'model', kind: 'string', meta: 'dir|id', help: "Hugging Face model folder: config.json + model.safetensors (its tokenizer files when present, else GPT-2's); or a Hub id owner/name[@revision], downloaded to the cache as for train" },
    { name: 'endpoint', kind: 'string', optional: true, meta: 'url', help: 'Hub endpoint for a Hub id (default $HF_ENDPOINT or https://huggingface.co)' },
    { name: 'prompt', kind: 'string', meta: 'text', default: '', help: 'text to continue; empty starts from <|endoftext|> (BOS), as GPT-2\'s unconditional samples do' },
    { name: 'max-new-tokens', kind: 'int', default: 50, help: 'new tokens at most; prompt + new tokens must fit n_positions' },
    { name: 'temperature', kind: 'float', default: DEFAULT_SAMPLING.temperature, help: '0 = greedy (always the most likely token); < 1 sharper, > 1 flatter' },
    { name: 'top-k', kind: 'int', default: DEFAULT_SAMPLING.topK, help: 'sample among the k most likely tokens (0 = off)' },
    { name: 'top-p', kind: 'float', default: DEFAULT_SAMPLING.topP, help: 'sample among the most likely tokens whose probabilities sum to p (1 = off)' },
    { name: 'seed', kind: 'int', default: 1337, help: 'seed of the sampler: the same seed gives the same text' },
    { name: 'ignore-eos', kind: 'flag', help: 'keep going past <|endoftext|> (by default generation stops there)' },
  ],
  notes: 'Defaults are Hugging Face generate()\'s sampling defaults (temperature 1, top-k 50, top-p 1).',
};

/** The tokenizer of a model folder: its tokenizer.json (or vocab.json + merges.txt), else GPT-2's. */
export async function modelTokenizer(modelDir: string): Promise<{ tokenizer: HfTokenizer; source: TokenizerSource }> {
  const names = ['tokenizer.json', 'tokenizer_config.json', 'vocab.json', 'merges.txt'];
  const have = new Set(await readdir(modelDir).catch(() => [] as string[]));
  const files = await Promise.all(
    names.filter((n) => have.has(n)).map(async (n) => ({ name: n, bytes: async () => new Uint8Array(await readFile(join(modelDir, n))) })),
  );
  return tokenizerFromModelFiles(files);
}

/** Text of token ids; ids the tokenizer does not have (a model vocabulary padded past it) become U+FFFD. */
export function decodeIds(tokenizer: HfTokenizer, ids: readonly number[]): string {
  let text = '';
  let run: number[] = [];
  for (const id of ids) {
    if (id < tokenizer.vocabSize) {
      run.push(id);
      continue;
    }
    text += tokenizer.decode(run) + '\uFFFD';
    run = [];
  }
  return text + tokenizer.decode(run);
}

/** Prompt ids checked against the model: every id embeddable, prompt + new tokens within n_positions. */
export function promptIds(tokenizer: HfTokenizer, config: GPT2Config, prompt: string, maxNew: number, source: string): number[] {
  const ids = tokenizer.encode(prompt);
  const bad = ids.find((id) => id >= config.vocabSize);
  if (bad !== undefined) {
    throw new UsageError(`generate: the prompt encodes to token ${bad}, outside the model's vocabulary of ${config.vocabSize}; the tokenizer (${source}) does not belong to this model. Put the model's tokenizer.json in its folder.`);
  }
  const n = Math.max(1, ids.length);
  if (n + maxNew > config.nPositions) {
    throw new UsageError(
      `generate: the prompt is ${n} tokens; with --max-new-tokens ${maxNew} that is ${n + maxNew}, more than the model's n_positions ${config.nPositions}. ` +
        (n < config.nPositions ? `Use --max-new-tokens ${config.nPositions - n} or less, or a shorter prompt.` : 'Use a shorter prompt.'),
    );
  }
  return ids;
}

function describeStop(r: GenerateResult, maxNew: number): string {
  if (r.stop === 'eos') return 'stopped at <|endoftext|>';
  if (r.stop === 'aborted') return 'stopped early';
  return `stopped at --max-new-tokens ${maxNew}`;
}

export async function runGenerate(a: Args, out: (line: string) => void): Promise<void> {
  const maxNew = a.num('max-new-tokens');
  if (maxNew < 1) throw new UsageError('generate: --max-new-tokens must be at least 1.');
  const sampling: SamplingConfig = { temperature: a.num('temperature'), topK: a.num('top-k'), topP: a.num('top-p') };
  if (!(sampling.temperature >= 0)) throw new UsageError(`generate: --temperature must be ≥ 0 (0 is greedy), got ${sampling.temperature}.`);
  if (sampling.topK < 0) throw new UsageError(`generate: --top-k must be ≥ 0 (0 turns it off), got ${sampling.topK}.`);
  if (!(sampling.topP > 0 && sampling.topP <= 1)) throw new UsageError(`generate: --top-p must be in (0, 1] (1 turns it off), got ${sampling.topP}.`);
  const seed = a.num('seed');
  if (seed < 0) throw new UsageError(`generate: --seed must be a whole number ≥ 0, got ${seed}.`);
  // Download progress of a Hub id goes to stderr: stdout carries the text.
  const modelDir = await resolveModelDir(a.str('model'), { endpoint: a.optStr('endpoint'), weights: true, log: (l) => console.error(l) });
  const { config, params } = await loadModelDir(modelDir);
  const { tokenizer, source } = await modelTokenizer(modelDir);
  const prompt = a.str('prompt');
  const ids = promptIds(tokenizer, config, prompt, maxNew, source);

  const ctx = await GpuContext.create(await nodeGpu());
  // This adapter's tuned matmul tiles for the prompt's forward pass, as train uses them (every
  // tiling gives the same numbers).
  const tuned = await readTunedTiles(ctx.adapter, (l) => console.error(l));
  if (tuned) {
    ctx.kernels.matmul = tuned;
    console.error(`matmul tiles: tuned for this adapter (${tuningFilePath()})`);
  }
  const weights = new GpuWeights(ctx, config, params);
  const gen = await Generator.create(ctx, weights);
  try {
    const r = await gen.generate(ids, { maxNewTokens: maxNew, sampling, seed, eosTokenId: a.flag('ignore-eos') ? null : config.eosTokenId });
    const newText = decodeIds(tokenizer, r.stop === 'eos' ? r.tokens.slice(0, -1) : r.tokens);
    out(prompt + newText);
    out(
      `-- ${r.tokens.length} new tokens in ${((r.prefillMs + r.decodeMs) / 1000).toFixed(2)} s: ${r.tokensPerSecond.toFixed(1)} tokens/s ` +
        `(prompt ${r.promptLength} tokens, prefill ${r.prefillMs.toFixed(0)} ms; ${describeStop(r, maxNew)}; ` +
        `${sampling.temperature === 0 ? 'greedy' : `temperature ${sampling.temperature}, top-k ${sampling.topK}, top-p ${sampling.topP}, seed ${seed}`}; ` +
        `${ctx.adapter.vendor} ${ctx.adapter.architecture})`,
    );
  } finally {
    gen.destroy();
    weights.destroy();
    ctx.destroy();
  }
}
