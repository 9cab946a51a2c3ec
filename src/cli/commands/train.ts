// `train`: fine-tunes a GPT-2 folder on a corpus with the WebGPU engine and writes the result
// in Hugging Face layout (with --lora-r: LoRA weights over the frozen model, written as a PEFT LoRA
// folder and/or merged weights), with checkpoints every --save-every steps and after the
// last, --resume, and clean stops on SIGINT/SIGTERM and non-finite losses (run-checkpoints.ts).
// Flags and defaults are described in README.md (Command line).
import { basename, join, relative, resolve } from 'node:path';
import { GpuContext } from '../../engine/gpu/context.ts';
import { requireSubgroupReductions } from '../../engine/gpu/subgroup-layout.ts';
import { kernelsRecord, variantsFromRecord } from '../../engine/gpu/variants.ts';
import { profileTable } from '../../engine/gpu/profile.ts';
import { parseGroupList } from '../../engine/model/params.ts';
import { LoraWeights, initLoraParams } from '../../engine/model/lora.ts';
import { describeMemory, estimateMemory, formatBytes, memoryLimitsOf, withTotal } from '../../engine/train/memory.ts';
import { GpuWeights } from '../../engine/model/weights.ts';
import { describeGroupRates } from '../../engine/train/groups.ts';
import type { TrainRunConfig } from '../../engine/train/config.ts';
import { runTraining, type RunSnapshot } from '../../engine/train/loop.ts';
import { windowCount } from '../../engine/windows.ts';
import { MissingFeatureError, NonFiniteLossError } from '../../engine/errors.ts';
import type { HostParams } from '../../engine/model/params.ts';
import type { LoraConfig } from '../../engine/model/lora.ts';
import type { TrainerState } from '../../engine/train/trainer.ts';
import { nodeDirFiles } from '../../io/node-model.ts';
import { listCheckpoints, nodeSha256, removeStaleCheckpointTemps, resolveCheckpointPath, writeCheckpointFolder } from '../../io/node-run-checkpoint.ts';
import {
  CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_VERSION, checkpointFiles, readRunCheckpoint, runOf, settingsOf, tokensFingerprint, weightsFingerprint,
  type TrainerStateJson,
} from '../../io/run-checkpoint.ts';
import type { TokenizerFiles } from '../../io/tokenizer.ts';
import { RUN_DEFAULTS, toRunConfig } from '../../engine/train/run-settings.ts';
import { loadConfigFile, loadModelDir } from '../../io/node-model.ts';
import { Args, UsageError, type CommandSpec } from '../args.ts';
import type { GPT2Config } from '../../engine/model/config.ts';
import type { StepLog } from '../../engine/train/config.ts';
import { ResumeConflictError } from '../run-checkpoints.ts';
import { loadTrainingTokens } from '../data.ts';
import { resolveModelDir } from '../model-arg.ts';
import { readTunedTiles, tuningFilePath } from '../tuning-file.ts';
import { saveTrainedFolder, tokenizerFor } from '../save-folder.ts';
import {
  CHECKPOINT_OPTIONS, checkpointDataPath, checkResumeFlags, defaultResumeOut, ResumeDataError, RunInterruptedError, StepLogFile, StopSignals,
} from '../run-checkpoints.ts';
import { describeLora, exportLora, LORA_OPTIONS, parseLoraArgs, type LoraExport } from '../lora.ts';
import { checkTrainPaths, estimateTrainWrite, removeTemporariesOnExit, writeOutputFolder } from '../paths.ts';
import { checkRunFitsModel, RUN_OPTIONS, runSettingsFromArgs } from '../train-settings.ts';
import { nodeGpu } from '../webgpu-node.ts';

export const trainSpec: CommandSpec = {
  name: 'train',
  summary: 'Fine-tune a GPT-2 model on a corpus with the WebGPU engine (Node + Dawn).',
  usage: 'npm run cli -- train --model <dir|owner/name[@revision]> --data <file> --out <dir> [options]\n       npm run cli -- train --resume <checkpoint-dir|out-dir> [--steps N --out <dir> --log <file>]',
  options: [
    { name: 'model', kind: 'string', optional: true, meta: 'dir|id', help: 'Hugging Face model folder: config.json + model.safetensors (or a sharded set); or a Hub id owner/name[@revision], downloaded to the cache ($STUDIO_CACHE, default ~/.cache/webgpu-studio) (required unless --resume)' },
    { name: 'endpoint', kind: 'string', optional: true, meta: 'url', help: 'Hub endpoint for a Hub id (default $HF_ENDPOINT or https://huggingface.co)' },
    { name: 'data', kind: 'list', optional: true, meta: 'file…', help: 'training data: nanoGPT/llm.c token files (.bin), or UTF-8 text (.txt .md .jsonl .csv; one file / line / row is one document, each followed by EOS) (required unless --resume)' },
    { name: 'out', kind: 'string', optional: true, meta: 'dir', help: 'output folder for config.json + model.safetensors (HF layout) and the checkpoint-<step>/ folders: new, empty, or an earlier output of train, never the model folder (required unless --resume: then the folder holding the checkpoint)' },
    { name: 'overwrite', kind: 'flag', help: 'write into a non-empty --out that is not an output of train (files of the export are replaced, others kept)' },
    ...CHECKPOINT_OPTIONS,
    ...RUN_OPTIONS,
    { name: 'freeze', kind: 'list', optional: true, meta: 'list', help: 'frozen groups: embeddings, block indices 0 … L−1 (or ranges 0-5), ln_f' },
    { name: 'log', kind: 'string', optional: true, meta: 'file', help: 'JSON lines, one per step: {"step","loss","lr","grad_norm"}, and one per evaluation: {"step","eval_loss","eval_ppl","eval_acc"}' },
    { name: 'eval-data', kind: 'list', optional: true, meta: 'file…', help: 'held-out data (as --data): evaluated over every window (loss, perplexity, top-1 accuracy) at the end of training' },
    { name: 'eval-every', kind: 'int', default: RUN_DEFAULTS.evalEvery, help: 'with --eval-data: also evaluate every N optimizer steps (0 = only at the end)' },
    ...LORA_OPTIONS,
    {
      name: 'subgroups', kind: 'flag',
      help: "reduce rows (LayerNorm, cross-entropy, the gradient norm) with WebGPU subgroup operations; needs the adapter's 'subgroups' feature. " +
        'Sums then differ from the default in the last bits; the choice is recorded in every checkpoint and kept by --resume',
    },
    {
      name: 'profile', kind: 'flag',
      help: 'print the time per kernel family of one optimizer step (the 2nd, after pipelines are compiled; the 1st with --steps 1), with GFLOP/s and GB/s, ' +
        'from timestamp-query where the adapter has it, else timing kernels one at a time; that step computes the same result',
    },
  ],
};

/** Where a resumed run comes from. */
interface ResumeFrom {
  dir: string;
  state: TrainerStateJson;
  optimizer: TrainerState;
  lora: { config: LoraConfig; params: HostParams } | null;
}

const mib = (b: number) => (b / 2 ** 20).toFixed(1);

export async function runTrain(a: Args, out: (line: string) => void): Promise<void> {
  // Signals are caught from the start: a Ctrl-C while the model loads ends the run cleanly too.
  const stops = new StopSignals(out).install();
  try {
    await train(a, out, stops);
  } finally {
    // After a stop the process is on its way out with 130/143; the same Ctrl-C reaching it again
    // (npm, a shell) must not meet the default action and kill it first, so the handler stays.
    if (!stops.received) stops.uninstall();
  }
}

async function train(a: Args, out: (line: string) => void, stops: StopSignals): Promise<void> {
  const saveEvery = a.num('save-every');
  const saveTotalLimit = a.num('save-total-limit');
  if (saveEvery < 0) throw new UsageError('train: --save-every must be ≥ 0 (0 writes a checkpoint only after the last step).');
  if (saveTotalLimit < 0) throw new UsageError('train: --save-total-limit must be ≥ 0 (0 keeps every checkpoint).');

  // ---- what to train: a fresh run from --model, or a checkpoint ----
  let resume: ResumeFrom | null = null;
  let modelDir: string;
  let modelSource: string;
  let config: GPT2Config;
  let params!: HostParams; // a fresh run reads the weights once its paths are checked
  let frozen: ReadonlySet<number>;
  let cfg: TrainRunConfig;
  let lora: { config: LoraConfig; exportAs: LoraExport } | null;
  let evalEvery: number;
  let dataPaths: string[];
  let evalPaths: string[];
  if (a.has('resume')) {
    const dir = await resolveCheckpointPath(a.str('resume'));
    out(`resuming from ${dir}`);
    const ck = await readRunCheckpoint(await nodeDirFiles(dir));
    const st = ck.state;
    checkResumeFlags(a, st, ck.config);
    if (a.has('model')) {
      const given = resolve(a.str('model'));
      if (given !== resolve(st.model.dir) && given !== resolve(dir) && a.str('model') !== st.model.source) {
        throw new ResumeConflictError(`train --resume: --model ${a.str('model')} is not the model the checkpoint trained (${st.model.source}, in ${st.model.dir}). Leave --model out: the checkpoint holds the weights.`);
      }
    }
    resume = { dir, state: st, optimizer: ck.optimizer, lora: ck.lora };
    config = ck.config;
    params = ck.params;
    modelDir = dir;
    modelSource = st.model.source;
    const run = runOf(st.settings);
    frozen = run.cfg.frozen;
    // --steps is the new total; the schedule is then evaluated over it from the next step on.
    cfg = { ...run.cfg, steps: a.given('steps') ? a.num('steps') : st.total_steps };
    if (cfg.steps < st.step) throw new UsageError(`train --resume: --steps ${cfg.steps} is below the checkpoint's step ${st.step}; give the run's total (at least ${st.step}).`);
    lora = run.lora ? { config: run.lora, exportAs: (a.optStr('lora-export') ?? 'adapter') as LoraExport } : null;
    evalEvery = a.given('eval-every') ? a.num('eval-every') : run.evalEvery;
    dataPaths = a.has('data') ? a.list('data') : st.data.train.map((p) => checkpointDataPath(dir, p));
    evalPaths = a.has('eval-data') ? a.list('eval-data') : st.data.eval.map((p) => checkpointDataPath(dir, p));
  } else {
    if (!a.has('model')) throw new UsageError('train: --model is required (a model folder or Hub id), or --resume <checkpoint> to continue a run.');
    if (!a.has('data')) throw new UsageError('train: --data is required (the training data), or --resume <checkpoint> to continue a run.');
    if (!a.has('out')) throw new UsageError('train: --out is required (the folder for the model and its checkpoints).');
    // Flags wrong on their own are usage errors before anything is read.
    const flags = runSettingsFromArgs(a, null);
    modelSource = a.str('model');
    modelDir = await resolveModelDir(modelSource, { endpoint: a.optStr('endpoint'), weights: true, log: out });
    // The config alone first: what it rules out is refused before the weights are read.
    config = await loadConfigFile(join(modelDir, 'config.json'));
    checkRunFitsModel(flags, config);
    frozen = parseGroupList(config, a.list('freeze').join(','));
    lora = parseLoraArgs(a, config);
    const settings = lora ? { ...flags, lora: { enabled: true, ...lora.config } } : flags;
    cfg = toRunConfig(settings, config, { frozen });
    evalEvery = a.num('eval-every');
    dataPaths = a.list('data');
    evalPaths = a.list('eval-data');
  }
  const seq = cfg.seq;
  const outDir = a.has('out') ? a.str('out') : defaultResumeOut(resume!.dir);
  if (evalEvery < 0) throw new UsageError('train: --eval-every must be ≥ 0 (0 evaluates only at the end).');
  if (evalEvery > 0 && !evalPaths.length) throw new UsageError('train: --eval-every needs --eval-data <file> (the held-out data to evaluate on).');
  // Every path before the weights load or the GPU starts: nothing the user made is overwritten.
  await checkTrainPaths({
    out: outDir, log: a.optStr('log'), modelDir, data: dataPaths, evalData: evalPaths, overwrite: a.flag('overwrite'),
    plan: estimateTrainWrite({
      config, steps: cfg.steps - (resume?.state.step ?? 0), frozen, lora: lora?.config, loraExport: lora?.exportAs, saveEvery, saveTotalLimit,
    }),
  });
  if (!resume) ({ params } = await loadModelDir(modelDir));
  const tokens = await loadTrainingTokens(dataPaths, config.vocabSize, modelDir, out);
  if (tokens.length < seq + 1) {
    throw new UsageError(`train: the data has ${tokens.length} tokens, shorter than one window of --seq ${seq} (${seq + 1} tokens). Add data or lower --seq.`);
  }
  const trainPrint = tokensFingerprint(tokens, nodeSha256());
  if (resume && trainPrint !== resume.state.fingerprints.train_tokens) {
    throw new ResumeDataError(
      `train --resume: the training data ${dataPaths.join(', ')} is not the data the checkpoint was trained on (its token fingerprint ${trainPrint} differs from the checkpoint's ${resume.state.fingerprints.train_tokens}). ` +
        'Give the original data with --data, or start a new run from the checkpoint with --model.',
    );
  }
  let evalPrint: string | undefined;
  if (evalPaths.length) {
    const evalTokens = await loadTrainingTokens(evalPaths, config.vocabSize, modelDir, out);
    if (evalTokens.length < seq + 1) {
      throw new UsageError(`train: the --eval-data has ${evalTokens.length} tokens, shorter than one window of --seq ${seq} (${seq + 1} tokens). Add held-out data or lower --seq.`);
    }
    evalPrint = tokensFingerprint(evalTokens, nodeSha256());
    const savedEval = resume?.state.fingerprints.eval_tokens;
    if (resume && savedEval && evalPrint !== savedEval) {
      throw new ResumeDataError(`train --resume: the evaluation data ${evalPaths.join(', ')} is not the data the checkpoint evaluated on (fingerprint ${evalPrint}, the checkpoint's ${savedEval}). Give the original --eval-data.`);
    }
    cfg.evaluation = { every: evalEvery, tokens: evalTokens };
    out(`evaluation: ${evalTokens.length} held-out tokens, ${Math.floor((evalTokens.length - 1) / seq)} windows of ${seq}, ${evalEvery > 0 ? `every ${evalEvery} steps and ` : ''}at the end`);
  }
  // The weights the run started from: a fresh run hashes them now; a resumed one carries the hash on.
  const basePrint = resume ? resume.state.fingerprints.base_weights : await weightsFingerprint(config, params, nodeSha256());
  const tokenizer: TokenizerFiles | undefined = await tokenizerFor(modelDir, config, out);
  if (!resume) {
    // A fresh run beside an earlier run's checkpoints would mix the two: --resume would pick the
    // earlier run's newest, and --save-total-limit would prune the new ones first.
    const earlier = await listCheckpoints(outDir);
    if (earlier.length) {
      throw new UsageError(
        `train: --out ${outDir} already holds ${earlier.map((c) => `checkpoint-${c.step}`).join(', ')} of an earlier run. ` +
          `Continue that run with --resume ${outDir}, or give a new run its own --out.`,
      );
    }
  }
  await removeStaleCheckpointTemps(outDir);
  // A checkpoint being written when the process exits (a second signal) leaves no temporary.
  removeTemporariesOnExit(outDir, /^\.checkpoint-\d+\.tmp-[0-9a-f]+$/);

  const ctx = await GpuContext.create(await nodeGpu());
  out(`adapter: ${ctx.adapter.vendor} ${ctx.adapter.architecture} ${ctx.adapter.description}`.trim());
  // Kernel variants: a resumed run keeps the checkpoint's (refusing, with the reason, when this
  // adapter cannot run them); a new run takes this adapter's tuned tiles from the cache, or the
  // defaults, and subgroup reductions only with --subgroups. Training never tunes.
  if (resume) {
    ctx.kernels = variantsFromRecord(resume.state.kernels, ctx.limits, ctx.adapter.features);
    if (ctx.kernels.subgroups) await subgroupsOrDestroy(ctx, `train --resume (checkpoint-${resume.state.step} trained with subgroup reductions)`);
    out(`kernel variants: as checkpoint-${resume.state.step} recorded`);
  } else {
    const tuned = await readTunedTiles(ctx.adapter, (l) => console.error(l));
    if (tuned) {
      ctx.kernels.matmul = tuned;
      out(`matmul tiles: tuned for this adapter (${tuningFilePath()})`);
    }
    if (a.flag('subgroups')) {
      if (!ctx.device.features.has('subgroups')) {
        ctx.destroy();
        throw new MissingFeatureError(`train --subgroups needs the WebGPU feature 'subgroups', which this adapter (${`${ctx.adapter.vendor} ${ctx.adapter.description}`.trim()}) does not offer. Leave --subgroups out.`);
      }
      await subgroupsOrDestroy(ctx, 'train --subgroups');
      ctx.kernels.subgroups = true;
      out('subgroup reductions: on (LayerNorm, cross-entropy and gradient-norm sums in the subgroup order)');
    }
  }
  if (cfg.precision === 'f16') {
    // Before any weight reaches the GPU: an adapter without f16 is refused by name.
    try {
      ctx.requireF16(resume ? `train --resume (the checkpoint trained with precision f16)` : 'train --precision f16');
    } catch (e) {
      ctx.destroy();
      throw e;
    }
    out('precision f16: matmuls read f16 copies of the weights; sums, master weights, gradients and AdamW moments are float32');
  }
  out(`model: L=${config.nLayer} C=${config.nEmbd} heads=${config.nHead} V=${config.vocabSize}; data: ${tokens.length} tokens, ${windowCount(tokens.length, seq)} windows of ${seq}`);
  if (cfg.lrDecay !== 1) out(`discriminative learning rates:\n${describeGroupRates(config.nLayer, cfg.lr, cfg.lrDecay)}`);
  // Before anything is allocated, for the run's widest trainable set (the user's frozen groups;
  // gradual unfreezing starts narrower and opens up to it).
  const estimate = estimateMemory(config, {
    batch: cfg.batch, seq, gradAccum: cfg.gradAccum, frozen, lora: lora?.config, precision: cfg.precision,
  }, memoryLimitsOf(ctx));
  out(`GPU memory estimate: ${describeMemory(estimate)}`);
  const startStep = resume?.state.step ?? 0;
  const logFile = a.optStr('log');
  const logOut = logFile ? StepLogFile.open(logFile, resume ? startStep : null) : null;
  const weights = new GpuWeights(ctx, config, params);
  // LoRA: fresh LoRA factors (A Kaiming-uniform from --seed, B = 0) over the frozen base model, or the checkpoint's.
  const loraWeights = lora ? new LoraWeights(ctx, config, lora.config, resume?.lora?.params ?? initLoraParams(config, lora.config, cfg.seed)) : undefined;
  if (lora) out(describeLora(config, lora.config));
  // Every line logged so far, for trainer_state.json's log_history (a resumed run keeps its past).
  const history: Array<Record<string, unknown>> = resume ? resume.state.log_history.filter((l) => !(typeof l.step === 'number' && l.step > startStep)) : [];
  const absData = dataPaths.map((p) => resolve(p));
  const absEval = evalPaths.map((p) => resolve(p));
  let lastCheckpoint: string | null = null;
  let lastCheckpointStep = startStep;
  stops.resumeFrom = resume?.dir ?? null;

  const writeCheckpoint = async (snap: RunSnapshot) => {
    // Nothing new: no step yet, the checkpoint this run resumed from, or one just written.
    if (snap.step === 0 || (resume && snap.step === startStep) || (lastCheckpoint && snap.step === lastCheckpointStep)) return;
    const t = performance.now();
    const optimizer = await snap.exportState();
    const state: TrainerStateJson = {
      format: CHECKPOINT_FORMAT,
      format_version: CHECKPOINT_FORMAT_VERSION,
      step: snap.step,
      total_steps: cfg.steps,
      rows_read: snap.rowsRead,
      windows: windowCount(tokens.length, seq),
      dropout_step: optimizer.stepIndex,
      settings: settingsOf({ ...cfg, frozen: snap.userFrozen }, lora?.config ?? null, evalEvery),
      model: { source: modelSource, dir: resume ? resume.state.model.dir : resolve(modelDir) },
      data: { train: absData, eval: absEval },
      fingerprints: { base_weights: basePrint, train_tokens: trainPrint, ...(evalPrint ? { eval_tokens: evalPrint } : {}) },
      kernels: kernelsRecord(ctx.kernels, cfg.precision ?? 'f32'),
      log_history: [...history],
      created: new Date().toISOString(),
      writer: 'cli',
    };
    const files = checkpointFiles({
      config,
      // With LoRA the base weights never change: the host copy is written; else each tensor is read back from the GPU as its turn comes.
      params: lora ? params : (name) => weights.read(name),
      lora: lora && loraWeights ? { config: lora.config, params: await loraWeights.download(), baseModel: modelSource } : null,
      optimizer,
      state,
      tokenizer,
    });
    const bytes = files.reduce((x, f) => x + f.size, 0);
    lastCheckpoint = await writeCheckpointFolder(outDir, snap.step, files, { saveTotalLimit });
    lastCheckpointStep = snap.step;
    stops.resumeFrom = lastCheckpoint;
    out(`checkpoint: ${lastCheckpoint} (${mib(bytes)} MiB in ${((performance.now() - t) / 1000).toFixed(2)} s)`);
  };

  const t0 = performance.now();
  let logs;
  try {
    logs = await runTraining(ctx, weights, tokens, cfg, {
      signal: stops.signal,
      onInfo: out,
      onTrainer: (t) => {
        const m = t.memory();
        out(`GPU memory (MiB): parameters ${mib(m.parameters)}, gradients ${mib(m.gradients)}, optimizer ${mib(m.optimizer)}, activations ${mib(m.activations)}, scratch ${mib(m.scratch)}; trainable parameters ${t.trainableParams}`);
        const total = withTotal(m).total;
        out(`GPU memory allocated: ${formatBytes(total)} (estimate ${formatBytes(estimate.total)}, ${((100 * (total - estimate.total)) / estimate.total).toFixed(2)}%)`);
      },
      onEval: (log, r) => {
        history.push({ ...log });
        logOut?.write(log);
        out(`eval after step ${log.step}: loss ${log.eval_loss.toFixed(4)}  ppl ${log.eval_ppl.toFixed(2)}  accuracy ${(100 * log.eval_acc).toFixed(2)}% (${r.correct}/${r.tokens} targets, ${r.windows} windows)`);
      },
      profile: a.flag('profile') ? {
        step: 1,
        onProfile: (r, step) => out(`profile of step ${step} (${r.method}), time per kernel family, slowest first:\n${profileTable(r.rows, 10)}`),
      } : undefined,
      onStep: (log) => {
        history.push({ ...log });
        logOut?.write(log);
        if (log.step === startStep + 1 || log.step % 10 === 0 || log.step === cfg.steps) {
          const tps = ((log.step - startStep) * cfg.batch * cfg.seq * cfg.gradAccum) / ((performance.now() - t0) / 1000);
          out(`step ${log.step}/${cfg.steps}  loss ${log.loss.toFixed(4)}  lr ${log.lr.toExponential(2)}  grad_norm ${log.grad_norm.toFixed(4)}  ${tps.toFixed(0)} tok/s`);
        }
      },
      checkpointAt: (s) => saveEvery > 0 && s % saveEvery === 0,
      onCheckpoint: writeCheckpoint,
    }, loraWeights, resume ? { state: resume.optimizer } : undefined);
  } catch (e) {
    logOut?.close();
    loraWeights?.destroy();
    weights.destroy();
    ctx.destroy();
    if (e instanceof NonFiniteLossError) {
      const where = lastCheckpoint ? ` The last good step is saved in ${lastCheckpoint}.` : '';
      throw new NonFiniteLossError(`${e.message}${where}`);
    }
    throw e;
  }
  logOut?.close();
  const done = startStep + logs.length;
  if (stops.received && done < cfg.steps) {
    loraWeights?.destroy();
    weights.destroy();
    ctx.destroy();
    const where = lastCheckpoint ?? resume?.dir;
    throw new RunInterruptedError(
      `${stops.received}: stopped after step ${done} of ${cfg.steps}. ` +
        (where ? `Checkpoint: ${where}. Resume with: npm run cli -- train --resume ${where}` : 'No step had finished, so there is no checkpoint to resume from.'),
      stops.exitCode,
    );
  }
  const allLogs = history.filter((l) => typeof l.loss === 'number') as unknown as StepLog[];
  const dataNames = resume ? absData : a.list('data');
  const seconds = (performance.now() - t0) / 1000;
  // The final save goes through a temporary folder in --out (paths.ts): a failed or interrupted
  // save leaves the previous content whole; the log and checkpoints stay where they are.
  const cardName = basename(resolve(outDir));
  const saved = { config, modelArg: modelSource, modelDir, training: cfg, logs: allLogs, data: dataNames, tokens: tokens.length, seconds, cardName };
  if (lora && loraWeights) {
    const adapters = await loraWeights.download();
    const written = await writeOutputFolder('train', outDir, async (stage) => {
      const files = await exportLora(stage, lora.exportAs, config, params, lora.config, adapters, modelSource, (dir, merged) =>
        saveTrainedFolder(dir, { ...saved, params: merged }, out));
      return files.map((f) => join(outDir, relative(stage, f)));
    });
    out(`saved ${written.join(', ')} after ${done} steps (final loss ${allLogs.at(-1)?.loss.toFixed(4)})`);
    loraWeights.destroy();
  } else {
    const final = await weights.download();
    const written = await writeOutputFolder('train', outDir, (stage) => saveTrainedFolder(stage, { ...saved, params: final }, out));
    out(`saved ${written.map((f) => `${outDir}/${f}`).join(', ')} after ${done} steps (final loss ${allLogs.at(-1)?.loss.toFixed(4)})`);
  }
  weights.destroy();
  ctx.destroy();
}

/** requireSubgroupReductions (the device's subgroup layout probe), releasing the device when it refuses. */
async function subgroupsOrDestroy(ctx: GpuContext, what: string): Promise<void> {
  try {
    await requireSubgroupReductions(ctx, what);
  } catch (e) {
    ctx.destroy();
    throw e;
  }
}
