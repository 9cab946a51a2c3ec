// Downloads for the page, built on io/export.ts, io/onnx-export.ts and io/peft.ts: the Hugging
// Face folder as a .zip (config, weights, tokenizer, generation config, model card), the ONNX
// folder transformers.js loads as a .zip, model.safetensors alone, or
// the LoRA weights as PEFT's folder ( adapter_config.json + adapter_model.safetensors) as a .zip.
// Full weights are read from the GPU one tensor at a time, range by range (GpuWeights.read), as
// the file is written, so a tensor larger than one binding (GPT-2's wte) exports like any other.
import { StudioError } from '../engine/errors.ts';
import { formatPercent } from '../engine/eval/metrics.ts';
import type { GPT2Config } from '../engine/model/config.ts';
import type { LoraConfig, LoraWeights } from '../engine/model/lora.ts';
import type { HostParams } from '../engine/model/params.ts';
import type { GpuWeights } from '../engine/model/weights.ts';
import type { TrainRunConfig } from '../engine/train/config.ts';
import { hfExportZipBlob, hfFolderFiles, safeFolderName, type ExportInput, type ParamReader } from '../io/export.ts';
import { onnxExportZip } from '../io/onnx-export.ts';
import { PEFT_CONFIG_NAME, PEFT_WEIGHTS_NAME, loraFiles, mergeLora } from '../io/peft.ts';
import { zipReadableStream, zipSize, type ZipEntry } from '../io/zip.ts';
import type { ExportFormat } from './protocol.ts';

/** An export that cannot be made (LoRA weights when LoRA did not train, …). */
export class StudioExportError extends StudioError {}

export interface ExportRequest {
  config: GPT2Config;
  /** the fine-tuned weights: host tensors (LoRA merged) or a reader of the GPU copy */
  params: HostParams | ParamReader;
  /** the trained LoRA weights, when LoRA trained */
  lora: { config: LoraConfig; params: () => Promise<HostParams> } | null;
  card: ExportInput['card'];
  tokenizer: ExportInput['tokenizer'];
  onProgress?(done: number, total: number): void;
}

async function collect(stream: ReadableStream<Uint8Array>, total: number, onProgress?: (done: number, total: number) => void): Promise<Blob> {
  const parts: Uint8Array<ArrayBuffer>[] = [];
  let done = 0;
  const reader = stream.getReader();
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    parts.push(new Uint8Array(r.value));
    done += r.value.byteLength;
    onProgress?.(done, total);
  }
  return new Blob(parts);
}

/** The file the page downloads for `format`. */
async function exportFile(format: ExportFormat, req: ExportRequest): Promise<{ fileName: string; blob: Blob }> {
  const name = safeFolderName(req.card?.name ?? 'gpt2-finetuned');
  const input: ExportInput = { config: req.config, params: req.params, tokenizer: req.tokenizer, card: req.card };
  switch (format) {
    case 'hf-zip': {
      const z = await hfExportZipBlob(input, { onProgress: (p) => req.onProgress?.(p.bytes, p.total) });
      return { fileName: z.filename, blob: z.blob };
    }
    case 'safetensors': {
      const f = hfFolderFiles(input).find((x) => x.name === 'model.safetensors')!;
      const data = f.data;
      const stream = new ReadableStream<Uint8Array>({
        async start(controller) {
          if (data instanceof Uint8Array) controller.enqueue(data);
          else for await (const chunk of data()) controller.enqueue(chunk.slice());
          controller.close();
        },
      });
      return { fileName: `${name}.safetensors`, blob: await collect(stream, f.size, req.onProgress) };
    }
    case 'onnx-zip': {
      // the folder transformers.js loads: config, generation config, tokenizer, onnx/*.onnx
      const z = await onnxExportZip({ config: req.config, params: req.params, tokenizer: req.tokenizer }, `${name}-onnx`);
      return { fileName: z.filename, blob: await collect(z.stream, z.size, req.onProgress) };
    }
    case 'lora': {
      if (!req.lora) {
        throw new StudioExportError('There are no LoRA weights to export: the last run fine-tuned the full weights. Turn LoRA on in the settings and train to get a PEFT LoRA folder.');
      }
      const files = loraFiles(req.config, req.lora.config, await req.lora.params(), req.card?.baseModel ?? 'gpt2');
      const folder = `${name}-lora`;
      const enc = new TextEncoder();
      const entries: ZipEntry[] = [
        { name: `${folder}/${PEFT_CONFIG_NAME}`, data: enc.encode(files[PEFT_CONFIG_NAME]) },
        { name: `${folder}/${PEFT_WEIGHTS_NAME}`, data: files[PEFT_WEIGHTS_NAME] },
      ];
      return { fileName: `${folder}.zip`, blob: await collect(zipReadableStream(entries), zipSize(entries), req.onProgress) };
    }
  }
}

/** The last run's settings and results, for the model card. */
export interface RunSummary {
  cfg: TrainRunConfig;
  trainLoss: number;
  valLoss?: number;
  valAccuracy?: number;
  seconds: number;
  tokens: number;
}

/** The model card's training and metrics sections for `run` (nothing when the model was not trained). */
export function runCard(run: RunSummary | null, trainedSteps: number): Pick<NonNullable<ExportInput['card']>, 'training' | 'metrics'> {
  if (!run) return {};
  return {
    training: run.cfg,
    metrics: {
      steps: trainedSteps, trainLoss: run.trainLoss, valLoss: run.valLoss, tokensSeen: run.tokens, seconds: run.seconds,
      ...(run.valAccuracy !== undefined ? { extra: { 'validation next-token accuracy': formatPercent(run.valAccuracy) } } : {}),
    },
  };
}

export interface GpuExportSource {
  weights: GpuWeights;
  /** the LoRA weights training on top of `weights`, if any */
  lora: { config: LoraConfig; weights: LoraWeights } | null;
  card: ExportInput['card'];
  tokenizer: ExportInput['tokenizer'];
  onProgress?(done: number, total: number): void;
}

/**
 * The download of weights on the GPU. With LoRA, the full-weight formats hold the merged model
 * (W + (B·A)ᵀ·α/r, as PEFT's merge_and_unload) and 'lora' the LoRA weights alone.
 */
export async function exportFromGpu(format: ExportFormat, src: GpuExportSource): Promise<{ fileName: string; blob: Blob }> {
  const config = src.weights.config;
  const lora = src.lora;
  const params: HostParams | ParamReader = lora && format !== 'lora'
    ? mergeLora(config, await src.weights.download(), lora.config, await lora.weights.download())
    : (name: string) => src.weights.read(name);
  return exportFile(format, {
    config,
    params,
    lora: lora ? { config: lora.config, params: () => lora.weights.download() } : null,
    tokenizer: src.tokenizer,
    card: src.card,
    onProgress: src.onProgress,
  });
}
