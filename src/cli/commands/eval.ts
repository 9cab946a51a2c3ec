// `eval`: held-out evaluation of a GPT-2 folder on the WebGPU engine: mean loss, perplexity and
// next-token top-1 accuracy over every window of the data (engine/eval/evaluate.ts), and BLEU-4
// of greedy continuations of held-out prompts (engine/eval/bleu-eval.ts). Prints one JSON
// object on stdout; progress goes to stderr.
import { GpuContext } from '../../engine/gpu/context.ts';
import { bleuEval, DEFAULT_BLEU_EVAL, type BleuEvalOptions, type BleuEvalResult } from '../../engine/eval/bleu-eval.ts';
import { Evaluator, type EvalResult } from '../../engine/eval/evaluate.ts';
import { Generator } from '../../engine/generate/generator.ts';
import { GpuWeights } from '../../engine/model/weights.ts';
import { loadModelDir } from '../../io/node-model.ts';
import { Args, UsageError, type CommandSpec } from '../args.ts';
import { loadTrainingTokens } from '../data.ts';
import { resolveModelDir } from '../model-arg.ts';
import { readTunedTiles, tuningFilePath } from '../tuning-file.ts';
import { nodeGpu } from '../webgpu-node.ts';
import { decodeIds, modelTokenizer } from './generate.ts';

export const evalSpec: CommandSpec = {
  name: 'eval',
  summary: 'Evaluate a GPT-2 model on held-out data: loss, perplexity, top-1 accuracy, BLEU-4 (prints JSON).',
  usage: 'npm run cli -- eval --model <dir|owner/name[@revision]> --data <file> [options]',
  options: [
    { name: 'model', kind: 'string', meta: 'dir|id', help: "Hugging Face model folder: config.json + model.safetensors (its tokenizer files when present, else GPT-2's); or a Hub id owner/name[@revision], downloaded to the cache as for train" },
    { name: 'endpoint', kind: 'string', optional: true, meta: 'url', help: 'Hub endpoint for a Hub id (default $HF_ENDPOINT or https://huggingface.co)' },
    { name: 'data', kind: 'list', meta: 'file…', help: 'held-out data: nanoGPT/llm.c token files (.bin), or UTF-8 text (.txt .md .jsonl .csv) as for train' },
    { name: 'seq', kind: 'int', optional: true, help: "tokens per window (T ≤ n_positions), the same windows as train --seq (default: train's 128, or n_positions when smaller)" },
    { name: 'batch', kind: 'int', default: 4, help: 'windows per GPU batch (memory only: results do not depend on it)' },
    { name: 'bleu-prompts', kind: 'int', default: DEFAULT_BLEU_EVAL.prompts, help: 'BLEU: prompts at most, evenly spaced over the data (0 = no BLEU)' },
    { name: 'bleu-prompt-tokens', kind: 'int', default: DEFAULT_BLEU_EVAL.promptTokens, help: 'BLEU: tokens of each prompt' },
    { name: 'bleu-continuation-tokens', kind: 'int', default: DEFAULT_BLEU_EVAL.continuationTokens, help: 'BLEU: tokens of each true continuation, and the most the model generates (greedy)' },
    { name: 'smoothing', kind: 'string', default: DEFAULT_BLEU_EVAL.smoothing, choices: ['none', 'method1'], help: "BLEU smoothing: none (nltk's default) or nltk's method1" },
    { name: 'bleu-samples', kind: 'int', default: 0, help: 'include this many prompts with their continuations in the JSON' },
  ],
  notes: [
    'Output: {"loss", "perplexity", "accuracy", "bleu", "counts": {...}, ...}. Every window is scored, not a sample:',
    'N tokens make W = floor((N-1)/seq) windows of seq+1 tokens, each scoring seq next-token targets; loss is the',
    'mean cross-entropy (nats) over all W*seq targets, perplexity = exp(loss), accuracy = the fraction of targets',
    'that are the argmax of their logits. Hugging Face\'s labels=input_ids scores seq-1 positions of a seq-token',
    'block instead, so compare perplexities only on the same targets.',
    'BLEU-4 is nltk corpus_bleu on word tokens (\\w+|[^\\w\\s], case kept), 0-100: hypotheses are greedy continuations',
    'of prompts at evenly spaced positions of the data, references their true continuations (both end at <|endoftext|>).',
  ].join('\n'),
};

/** train --seq's default, so that eval scores the windows training read. */
const DEFAULT_SEQ = 128;

function round(x: number, digits = 6): number {
  return Number(x.toPrecision(digits + 2));
}

/** The JSON the command prints. */
export function evalJson(e: EvalResult, b: BleuEvalResult | null, dataTokens: number, samples: number): Record<string, unknown> {
  return {
    loss: round(e.loss),
    perplexity: round(e.perplexity),
    accuracy: round(e.accuracy),
    bleu: b ? round(b.score) : null,
    counts: {
      data_tokens: dataTokens,
      windows: e.windows,
      targets: e.tokens,
      correct: e.correct,
      unscored_tokens: e.unscored,
      batches: e.batches,
      ...(b ? { bleu_prompts: b.prompts, bleu_hypothesis_words: b.hypLength, bleu_reference_words: b.refLength } : {}),
    },
    settings: {
      seq: e.seq,
      batch: e.batch,
      ...(b ? { bleu_prompt_tokens: b.promptTokens, bleu_continuation_tokens: b.continuationTokens, smoothing: b.smoothing } : {}),
    },
    ...(b
      ? {
          bleu_detail: {
            precisions: b.precisions.map((p) => round(p)),
            matches: b.matches,
            totals: b.totals,
            brevity_penalty: round(b.brevityPenalty),
          },
        }
      : {}),
    ...(b && samples > 0 ? { bleu_samples: b.samples.slice(0, samples) } : {}),
    seconds: { eval: round(e.ms / 1000, 3), ...(b ? { bleu: round(b.ms / 1000, 3) } : {}) },
  };
}

export async function runEval(a: Args, out: (line: string) => void): Promise<void> {
  const log = (line: string) => console.error(line);
  const batch = a.num('batch');
  if (batch < 1) throw new UsageError('eval: --batch must be at least 1.');
  const bleuOpts: BleuEvalOptions = {
    prompts: a.num('bleu-prompts'),
    promptTokens: a.num('bleu-prompt-tokens'),
    continuationTokens: a.num('bleu-continuation-tokens'),
    smoothing: a.str('smoothing') === 'method1' ? 'method1' : 'none',
  };
  if (bleuOpts.prompts < 0) throw new UsageError('eval: --bleu-prompts must be ≥ 0 (0 turns BLEU off).');
  const withBleu = bleuOpts.prompts > 0;
  const samples = a.num('bleu-samples');
  if (samples < 0) throw new UsageError('eval: --bleu-samples must be ≥ 0.');
  const modelDir = await resolveModelDir(a.str('model'), { endpoint: a.optStr('endpoint'), weights: true, log });
  const { config, params } = await loadModelDir(modelDir);
  const seq = a.optNum('seq') ?? Math.min(DEFAULT_SEQ, config.nPositions);
  if (seq < 1) throw new UsageError('eval: --seq must be at least 1.');
  if (seq > config.nPositions) throw new UsageError(`eval: --seq ${seq} exceeds the model's n_positions ${config.nPositions}.`);
  if (withBleu) {
    if (bleuOpts.promptTokens < 1 || bleuOpts.continuationTokens < 1) throw new UsageError('eval: --bleu-prompt-tokens and --bleu-continuation-tokens must be at least 1.');
    const span = bleuOpts.promptTokens + bleuOpts.continuationTokens;
    if (span > config.nPositions) {
      throw new UsageError(
        `eval: --bleu-prompt-tokens ${bleuOpts.promptTokens} + --bleu-continuation-tokens ${bleuOpts.continuationTokens} = ${span} exceeds the model's n_positions ${config.nPositions}.`,
      );
    }
  }
  const tokens = await loadTrainingTokens(a.list('data'), config.vocabSize, modelDir, log);
  if (tokens.length < seq + 1) {
    throw new UsageError(`eval: the data has ${tokens.length} tokens, shorter than one window of --seq ${seq} (${seq + 1} tokens). Add data or lower --seq.`);
  }
  if (withBleu && tokens.length < bleuOpts.promptTokens + bleuOpts.continuationTokens) {
    throw new UsageError(
      `eval: the data has ${tokens.length} tokens, shorter than one BLEU prompt and continuation (${bleuOpts.promptTokens + bleuOpts.continuationTokens}). Lower --bleu-prompt-tokens/--bleu-continuation-tokens or use --bleu-prompts 0.`,
    );
  }
  const tok = withBleu ? await modelTokenizer(modelDir) : null;

  const ctx = await GpuContext.create(await nodeGpu());
  log(`adapter: ${ctx.adapter.vendor} ${ctx.adapter.architecture} ${ctx.adapter.description}`.trim());
  // This adapter's tuned matmul tiles, as train uses them (every tiling gives the same numbers).
  const tuned = await readTunedTiles(ctx.adapter, (l) => console.error(l));
  if (tuned) {
    ctx.kernels.matmul = tuned;
    console.error(`matmul tiles: tuned for this adapter (${tuningFilePath()})`);
  }
  const weights = new GpuWeights(ctx, config, params);
  try {
    const evaluator = await Evaluator.create(ctx, weights, { batch, seq });
    let last = -1;
    const e = await evaluator.evaluate(tokens, {
      onProgress: ({ windowsDone, windows }) => {
        const pct = Math.floor((100 * windowsDone) / windows);
        if (pct >= last + 10) {
          last = pct;
          log(`eval: ${windowsDone}/${windows} windows`);
        }
      },
    }).finally(() => evaluator.destroy());
    let b: BleuEvalResult | null = null;
    if (withBleu && tok) {
      const gen = await Generator.create(ctx, weights);
      try {
        b = await bleuEval(gen, tokens, (ids) => decodeIds(tok.tokenizer, ids), bleuOpts, {
          onProgress: (done, total) => {
            if (done === total || done % 10 === 0) log(`bleu: ${done}/${total} prompts`);
          },
        });
      } finally {
        gen.destroy();
      }
    }
    out(JSON.stringify(evalJson(e, b, tokens.length, samples), null, 2));
  } finally {
    weights.destroy();
    ctx.destroy();
  }
}
