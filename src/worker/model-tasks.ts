// The requests that use the loaded model without training it: a sample (with the base model's
// beside it once the weights were fine-tuned), evaluation before or after fine-tuning, a download
// in one of the export formats, the ONNX export run by onnxruntime-web, and resetting the weights
// to the loaded ones. Each acts on the worker session (session.ts) and answers with WorkerEvents;
// the training run (run.ts) shares the sample and the base model's evaluation target.
import { mergeLora } from '../io/peft.ts';
import { corpusCard } from './corpus.ts';
import type { EvalTarget } from './evaluation.ts';
import { exportFromGpu, runCard } from './exporter.ts';
import { tryOnnxExport } from './onnx-try.ts';
import type { ExportFormat, SampleSettings, TrainSettings } from './protocol.ts';
import { SettingsError, StudioBusyError, stepsNow, type GpuModel, type Session } from './session.ts';
import { hasErrors, validateSample } from './settings.ts';

/** The loaded weights, unchanged. */
export function baseTarget(s: Session, gm: GpuModel): EvalTarget {
  return { ctx: gm.ctx, weights: gm.base, lora: null, tokenizer: s.model!.folder.tokenizer };
}

/** The weights that train, with the LoRA weights when LoRA trains. */
export function tunedTarget(s: Session, gm: GpuModel): EvalTarget {
  return { ctx: gm.ctx, weights: gm.tuned, lora: gm.lora?.weights ?? null, tokenizer: s.model!.folder.tokenizer };
}

/** Samples the fine-tuned weights (and the base model's when `compare`), as the sample at `step`. */
export async function postSample(s: Session, gm: GpuModel, sample: SampleSettings, step: number, compare: boolean): Promise<void> {
  const gens = s.evaluator.generators;
  const tuned = tunedTarget(s, gm);
  const t = await gens.sample(gm.ctx, tuned.weights, tuned.lora, tuned.tokenizer, sample);
  const base = compare ? (await gens.sample(gm.ctx, gm.base, null, tuned.tokenizer, sample)).text : null;
  s.post({ type: 'sample', step, prompt: sample.prompt, seed: sample.seed, tuned: t.text, base, tokensPerSec: t.tokensPerSec });
}

export async function generate(s: Session, sample: SampleSettings, compare: boolean): Promise<void> {
  const m = s.model;
  if (!m) throw new StudioBusyError('Load a model before sampling.');
  const errors = validateSample(sample, { nPositions: m.folder.config.nPositions });
  if (hasErrors(errors)) throw new SettingsError(`Fix the sample settings: ${Object.values(errors).join(' ')}`);
  const gm = await s.gpuModel();
  const step = stepsNow(s);
  s.post({ type: 'progress', task: 'generate', label: 'Generating', done: 0, total: 1, unit: 'items' });
  await postSample(s, gm, sample, step, compare && step > 0);
}

/** The base model's metrics before any training, or the fine-tuned model's beside them. */
export async function evaluateNow(s: Session, settings: TrainSettings): Promise<void> {
  const m = s.model;
  const c = s.corpus;
  if (!m || !c) throw new StudioBusyError('Load a model and a corpus before evaluating.');
  const gm = await s.gpuModel();
  const seq = Math.min(settings.seq, m.folder.config.nPositions);
  const split = s.splitFor(settings.valFraction, settings.seed, seq);
  if (split.valWindows < 1) throw new StudioBusyError('The validation split is empty: raise the validation fraction in the Data panel (or add text) and evaluate again.');
  const shape = { seq, batch: settings.batch };
  const before = await s.evaluator.base(baseTarget(s, gm), split.val, shape, c.version);
  const steps = stepsNow(s);
  if (steps === 0) {
    s.post({ type: 'eval', phase: 'before', step: 0, tuned: before, base: null });
    return;
  }
  s.post({ type: 'eval', phase: 'after', step: steps, tuned: await s.evaluator.tuned(tunedTarget(s, gm), split.val, shape), base: before });
}

export async function exportNow(s: Session, format: ExportFormat): Promise<void> {
  const m = s.model;
  if (!m) throw new StudioBusyError('Load a model (and fine-tune it) before exporting.');
  const gm = await s.gpuModel();
  // Only weights that trained are labelled fine-tuned, and only their own run's metrics are reported.
  const tuned = m.trainedSteps > 0;
  const out = await exportFromGpu(format, {
    weights: gm.tuned,
    lora: gm.lora,
    tokenizer: m.folder.tokenizer.files,
    card: {
      name: `${m.folder.name.split('/').pop()}${tuned ? '-finetuned' : ''}`,
      baseModel: m.folder.baseModel,
      ...(s.corpus && tuned ? { corpus: corpusCard(s.corpus) } : {}),
      ...runCard(tuned ? m.lastRun : null, m.trainedSteps),
    },
    onProgress: (done, total) => s.post({ type: 'progress', task: 'export', label: 'Writing the download', done, total, unit: 'bytes' }),
  });
  s.post({ type: 'exported', format, fileName: out.fileName, blob: out.blob });
}

/**
 * The fine-tuned model as the ONNX export writes it, run by onnxruntime-web in this worker
 * (WebGPU where the browser has it, else WASM) next to the engine, greedily from one prompt.
 */
export async function tryExport(s: Session, prompt: string, maxNewTokens: number): Promise<void> {
  const m = s.model;
  if (!m) throw new StudioBusyError('Load a model (and fine-tune it) before trying the export.');
  const gm = await s.gpuModel();
  const config = gm.tuned.config;
  const tokenizer = m.folder.tokenizer;
  const encoded = tokenizer.encode(prompt);
  // An empty prompt starts from BOS, as generate() does.
  const ids = encoded.length ? encoded : [config.bosTokenId];
  const maxNew = Math.min(maxNewTokens, config.nPositions - ids.length);
  if (!(maxNew >= 1)) {
    throw new SettingsError(`The prompt is ${ids.length} tokens; the model's context is ${config.nPositions}, so no token is left to generate. Shorten the prompt.`);
  }
  const lora = gm.lora;
  const params = lora ? mergeLora(config, await gm.tuned.download(), lora.config, await lora.weights.download()) : (name: string) => gm.tuned.read(name);
  s.post({ type: 'progress', task: 'export', label: 'Building the ONNX model and starting onnxruntime-web', done: 0, total: 0, unit: 'items' });
  const webgpu = typeof navigator !== 'undefined' && 'gpu' in navigator && !!navigator.gpu;
  const generator = await s.evaluator.generators.get(gm.ctx, gm.tuned, lora?.weights ?? null);
  s.post({ type: 'tryExport', result: await tryOnnxExport({ config, params, webgpu, generator, tokenizer, prompt, ids, maxNew }) });
}

/** The fine-tuned copy becomes the loaded weights again, and LoRA weights are dropped. */
export async function resetWeights(s: Session): Promise<void> {
  if (s.run) throw new StudioBusyError('Stop the run before resetting the weights.');
  const m = s.model;
  if (!m) return;
  const gm = await s.gpuModel();
  gm.tuned.copyFrom(gm.base);
  if (gm.lora) {
    s.evaluator.generators.forget(gm.lora.weights);
    gm.lora.weights.destroy();
    gm.lora = null;
  }
  await gm.ctx.device.queue.onSubmittedWorkDone();
  m.trainedSteps = 0;
  m.lastRun = null;
  s.post({ type: 'info', message: 'The fine-tuned weights were reset to the loaded model.' });
  s.post({ type: 'modelLoaded', model: m.info });
}
