// The formats of `export --format`: one entry per format, so a new one is a new row. Each writes
// a loaded model (merged LoRA weights included) into a fresh folder that the command then moves
// into place; a format that is listed but not built yet refuses before anything is read.
import { basename } from 'node:path';
import { StudioError } from '../engine/errors.ts';
import type { GPT2Config } from '../engine/model/config.ts';
import type { HostParams } from '../engine/model/params.ts';
import { onnxMetadataFiles, onnxModelFiles } from '../io/onnx-export.ts';
import { writeExportFiles, writeHfFolder } from '../io/node-export.ts';
import type { TokenizerFiles } from '../io/tokenizer.ts';
import { writeTorchProject } from './torch-export.ts';

/** A format that is named but cannot be written by this build. */
export class ExportFormatUnavailableError extends StudioError {}

/** What every format receives: the model as it will be exported. */
export interface ExportModel {
  config: GPT2Config;
  /** the weights to export: with a LoRA adapter, already merged (W + (B·A)ᵀ·s) */
  params: HostParams;
  /** the tokenizer's files when the model has one that fits its vocabulary */
  tokenizer?: TokenizerFiles;
  /** --model as given, and the folder it resolved to */
  modelArg: string;
  modelDir: string;
  /** a description of the LoRA adapter merged in, if any */
  lora?: string;
}

export interface ExportOptions {
  /** also the 8-bit ONNX file (onnx only; default true) */
  quantized: boolean;
}

export interface ExportFormat {
  summary: string;
  /** unset: the format is listed but not available; the text says why */
  unavailable?: string;
  /** writes the export into `dir` (fresh and empty) and returns the file names written */
  write?(dir: string, m: ExportModel, opts: ExportOptions, log: (line: string) => void): Promise<string[]>;
  /**
   * A format made from a whole training checkpoint (--model checkpoint-<step>) rather than from the
   * loaded weights: writes into `dir` (fresh and empty) and returns the file names written.
   */
  fromCheckpoint?(checkpointDir: string, dir: string, log: (line: string) => void): Promise<string[]>;
}

export const EXPORT_FORMATS: Record<string, ExportFormat> = {
  hf: {
    summary: 'Hugging Face folder: config.json, model.safetensors (F32, tied head), generation_config.json, tokenizer, model card',
    write: (dir, m) => writeHfFolder(dir, {
      config: m.config,
      params: m.params,
      tokenizer: m.tokenizer,
      card: { name: basename(dir), baseModel: m.modelArg + (m.lora ? ` with a merged LoRA adapter (${m.lora})` : '') },
    }),
  },
  onnx: {
    summary: 'transformers.js / onnxruntime layout: config.json, generation_config.json, tokenizer, '
      + 'onnx/decoder_model_merged.onnx and onnx/decoder_model_merged_quantized.onnx',
    // One ONNX file is built and written at a time, so memory holds the weights and one file.
    write: async (dir, m, opts) => {
      const input = { config: m.config, params: m.params, tokenizer: m.tokenizer };
      const names = await writeExportFiles(dir, onnxMetadataFiles(input));
      for (const quantize of opts.quantized ? [false, true] : [false]) names.push(...(await writeExportFiles(dir, await onnxModelFiles(input, quantize))));
      return names;
    },
  },
  torch: {
    summary: 'PyTorch project that continues a checkpoint\'s run under torchrun (train.py + checkpoint + data + README; --model must be a checkpoint-<step> folder)',
    fromCheckpoint: writeTorchProject,
  },
};
