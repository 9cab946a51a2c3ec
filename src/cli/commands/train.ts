// `train`: fine-tunes a GPT-2 folder on a corpus with the WebGPU engine and writes the result
// in Hugging Face layout (with --lora-r: LoRA adapters over the frozen model, written as a PEFT
// adapter folder and/or merged weights). Flags and defaults follow DESIGN.md's training semantics.
import { appendFile, writeFile } from 'node:fs/promises';
import { GpuContext } from '../../engine/gpu/context.ts';
import { profileTable } from '../../engine/gpu/profile.ts';
import { parseGroupList } from '../../engine/model/params.ts';
import { LoraWeights, initLoraParams } from '../../engine/model/lora.ts';
import { describeMemory, estimateMemory, formatBytes, memoryLimitsOf, withTotal } from '../../engine/model/memory.ts';
import { GpuWeights } from '../../engine/model/weights.ts';
import { describeGroupRates } from '../../engine/train/groups.ts';
import { runTraining } from '../../engine/train/loop.ts';
import { RUN_DEFAULTS, toRunConfig } from '../../engine/train/run-settings.ts';
import { loadModelDir } from '../../io/node-model.ts';
import { Args, UsageError, type CommandSpec } from '../args.ts';
import { loadTrainingTokens } from '../data.ts';
import { resolveModelDir } from '../model-arg.ts';
import { saveTrainedFolder } from '../save-folder.ts';
import { describeLora, exportLora, LORA_OPTIONS, parseLoraArgs } from '../lora.ts';
import { RUN_OPTIONS, runSettingsFromArgs } from '../train-settings.ts';
import { nodeGpu } from '../webgpu-node.ts';

export const trainSpec: CommandSpec = {
  name: 'train',
  summary: 'Fine-tune a GPT-2 model on a corpus with the WebGPU engine (Node + Dawn).',
  usage: 'npm run cli -- train --model <dir|owner/name[@revision]> --data <file> --out <dir> [options]',
  options: [
    { name: 'model', kind: 'string', meta: 'dir|id', help: 'Hugging Face model folder: config.json + model.safetensors (or a sharded set); or a Hub id owner/name[@revision], downloaded to the cache ($STUDIO_CACHE, default ~/.cache/webgpu-studio)' },
    { name: 'endpoint', kind: 'string', optional: true, meta: 'url', help: 'Hub endpoint for a Hub id (default $HF_ENDPOINT or https://huggingface.co)' },
    { name: 'data', kind: 'list', meta: 'file…', help: 'training data: nanoGPT/llm.c token files (.bin), or UTF-8 text (.txt .md .jsonl .csv; one file / line / row is one document, each followed by EOS)' },
    { name: 'out', kind: 'string', meta: 'dir', help: 'output folder for config.json + model.safetensors (HF layout)' },
    ...RUN_OPTIONS,
    { name: 'freeze', kind: 'list', optional: true, meta: 'list', help: 'frozen groups: embeddings, block indices 0 … L−1 (or ranges 0-5), ln_f' },
    { name: 'log', kind: 'string', optional: true, meta: 'file', help: 'JSON lines, one per step: {"step","loss","lr","grad_norm"}, and one per evaluation: {"step","eval_loss","eval_ppl","eval_acc"}' },
    { name: 'eval-data', kind: 'list', optional: true, meta: 'file…', help: 'held-out data (as --data): evaluated over every window (loss, perplexity, top-1 accuracy) at the end of training' },
    { name: 'eval-every', kind: 'int', default: RUN_DEFAULTS.evalEvery, help: 'with --eval-data: also evaluate every N optimizer steps (0 = only at the end)' },
    ...LORA_OPTIONS,
    {
      name: 'profile', kind: 'flag',
      help: 'print the time per kernel family of one optimizer step (the 2nd, after pipelines are compiled; the 1st with --steps 1), with GFLOP/s and GB/s, ' +
        'from timestamp-query where the adapter has it, else timing kernels one at a time; that step computes the same result',
    },
  ],
};

export async function runTrain(a: Args, out: (line: string) => void): Promise<void> {
  const modelDir = await resolveModelDir(a.str('model'), { endpoint: a.optStr('endpoint'), weights: true, log: out });
  const { config, params } = await loadModelDir(modelDir);
  const frozen = parseGroupList(config, a.list('freeze').join(','));
  const lora = parseLoraArgs(a, config);
  const settings = runSettingsFromArgs(a, lora ? { enabled: true, ...lora.config } : null);
  const seq = settings.seq;
  if (seq > config.nPositions) throw new UsageError(`train: --seq ${seq} exceeds the model's n_positions ${config.nPositions}.`);
  const cfg = toRunConfig(settings, config, { frozen });
  const evalEvery = a.num('eval-every');
  if (evalEvery < 0) throw new UsageError('train: --eval-every must be ≥ 0 (0 evaluates only at the end).');
  if (evalEvery > 0 && !a.has('eval-data')) throw new UsageError('train: --eval-every needs --eval-data <file> (the held-out data to evaluate on).');
  const tokens = await loadTrainingTokens(a.list('data'), config.vocabSize, modelDir, out);
  if (tokens.length < seq + 1) {
    throw new UsageError(`train: the data has ${tokens.length} tokens, shorter than one window of --seq ${seq} (${seq + 1} tokens). Add data or lower --seq.`);
  }
  if (a.has('eval-data')) {
    const evalTokens = await loadTrainingTokens(a.list('eval-data'), config.vocabSize, modelDir, out);
    if (evalTokens.length < seq + 1) {
      throw new UsageError(`train: the --eval-data has ${evalTokens.length} tokens, shorter than one window of --seq ${seq} (${seq + 1} tokens). Add held-out data or lower --seq.`);
    }
    cfg.evaluation = { every: evalEvery, tokens: evalTokens };
    out(`evaluation: ${evalTokens.length} held-out tokens, ${Math.floor((evalTokens.length - 1) / seq)} windows of ${seq}, ${evalEvery > 0 ? `every ${evalEvery} steps and ` : ''}at the end`);
  }
  const ctx = await GpuContext.create(await nodeGpu());
  out(`adapter: ${ctx.adapter.vendor} ${ctx.adapter.architecture} ${ctx.adapter.description}`.trim());
  out(`model: L=${config.nLayer} C=${config.nEmbd} heads=${config.nHead} V=${config.vocabSize}; data: ${tokens.length} tokens, ${Math.floor((tokens.length - 1) / seq)} windows of ${seq}`);
  if (cfg.lrDecay !== 1) out(`discriminative learning rates:\n${describeGroupRates(config.nLayer, cfg.lr, cfg.lrDecay)}`);
  // Before anything is allocated, for the run's widest trainable set (the user's frozen groups;
  // gradual unfreezing starts narrower and opens up to it).
  const estimate = estimateMemory(config, { batch: cfg.batch, seq, gradAccum: cfg.gradAccum, frozen, lora: lora?.config }, memoryLimitsOf(ctx));
  out(`GPU memory estimate: ${describeMemory(estimate)}`);
  const logFile = a.optStr('log');
  if (logFile) await writeFile(logFile, '');
  const weights = new GpuWeights(ctx, config, params);
  // LoRA: fresh adapters (A Kaiming-uniform from --seed, B = 0) over the frozen base model.
  const loraWeights = lora ? new LoraWeights(ctx, config, lora.config, initLoraParams(config, lora.config, cfg.seed)) : undefined;
  if (lora) out(describeLora(config, lora.config));
  const t0 = performance.now();
  let lines: string[] = [];
  const logs = await runTraining(ctx, weights, tokens, cfg, {
    onInfo: out,
    onTrainer: (t) => {
      const m = t.memory();
      const mib = (b: number) => (b / 2 ** 20).toFixed(1);
      out(`GPU memory (MiB): parameters ${mib(m.parameters)}, gradients ${mib(m.gradients)}, optimizer ${mib(m.optimizer)}, activations ${mib(m.activations)}, scratch ${mib(m.scratch)}; trainable parameters ${t.trainableParams}`);
      const total = withTotal(m).total;
      out(`GPU memory allocated: ${formatBytes(total)} (estimate ${formatBytes(estimate.total)}, ${((100 * (total - estimate.total)) / estimate.total).toFixed(2)}%)`);
    },
    onEval: (log, r) => {
      if (logFile) lines.push(JSON.stringify(log));
      out(`eval after step ${log.step}: loss ${log.eval_loss.toFixed(4)}  ppl ${log.eval_ppl.toFixed(2)}  accuracy ${(100 * log.eval_acc).toFixed(2)}% (${r.correct}/${r.tokens} targets, ${r.windows} windows)`);
    },
    profile: a.flag('profile') ? {
      step: 1,
      onProfile: (r, step) => out(`profile of step ${step} (${r.method}), time per kernel family, slowest first:\n${profileTable(r.rows, 10)}`),
    } : undefined,
    onStep: (log) => {
      if (logFile) lines.push(JSON.stringify(log));
      if (log.step === 1 || log.step % 10 === 0 || log.step === cfg.steps) {
        const tps = (log.step * cfg.batch * cfg.seq * cfg.gradAccum) / ((performance.now() - t0) / 1000);
        out(`step ${log.step}/${cfg.steps}  loss ${log.loss.toFixed(4)}  lr ${log.lr.toExponential(2)}  grad_norm ${log.grad_norm.toFixed(4)}  ${tps.toFixed(0)} tok/s`);
      }
    },
  }, loraWeights);
  if (logFile) await appendFile(logFile, lines.map((l) => l + '\n').join(''));
  lines = [];
  const outDir = a.str('out');
  if (lora && loraWeights) {
    const seconds = (performance.now() - t0) / 1000;
    const written = await exportLora(outDir, lora.exportAs, config, params, lora.config, await loraWeights.download(), a.str('model'), (dir, merged) =>
      saveTrainedFolder(dir, { config, params: merged, modelArg: a.str('model'), modelDir, training: cfg, logs, data: a.list('data'), tokens: tokens.length, seconds }, out));
    out(`saved ${written.join(', ')} after ${logs.length} steps (final loss ${logs.at(-1)?.loss.toFixed(4)})`);
    loraWeights.destroy();
  } else {
    const seconds = (performance.now() - t0) / 1000;
    const written = await saveTrainedFolder(outDir, { config, params: await weights.download(), modelArg: a.str('model'), modelDir, training: cfg, logs, data: a.list('data'), tokens: tokens.length, seconds }, out);
    out(`saved ${written.map((f) => `${outDir}/${f}`).join(', ')} after ${logs.length} steps (final loss ${logs.at(-1)?.loss.toFixed(4)})`);
  }
  weights.destroy();
  ctx.destroy();
}
