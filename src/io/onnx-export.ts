// The ONNX export as a folder transformers.js loads (from the Hub or, with env.localModelPath,
// from disk): config.json and generation_config.json as the Hugging Face export writes them, the
// tokenizer files when the model has a tokenizer that fits its vocabulary, and
// onnx/decoder_model_merged.onnx with its 8-bit variant onnx/decoder_model_merged_quantized.onnx
// (transformers.js 2.x loads `onnx/<name>_quantized.onnx` unless `quantized: false` is given,
// models.js constructSession). Listed as ExportFiles, so the CLI writes it to a folder
// (node-export.ts) and the page into a .zip (zip.ts) from the same description.
import type { GPT2Config } from '../engine/model/config.ts';
import type { HostParams } from '../engine/model/params.ts';
import { modelMetadataFiles, type ExportFile, type GenerationDefaults } from './export.ts';
import { gpt2OnnxFiles, type OnnxFile, type OnnxParamReader } from './onnx.ts';
import type { TokenizerFiles } from './tokenizer.ts';
import { zipReadableStream, zipSize, type ZipEntry } from './zip.ts';

export interface OnnxFolderInput {
  config: GPT2Config;
  params: HostParams | OnnxParamReader;
  /** the tokenizer's files (HfTokenizer.files); without them the folder has no tokenizer */
  tokenizer?: TokenizerFiles;
  generation?: GenerationDefaults;
  /** also the 8-bit file (default true) */
  quantized?: boolean;
  /** passed to gpt2OnnxFiles: initializer bytes above which weights go to external data */
  externalDataAbove?: number;
}

function asExportFile(f: OnnxFile): ExportFile {
  return {
    name: `onnx/${f.name}`,
    size: f.size,
    async *data() {
      yield* f.chunks;
    },
  };
}

/** The files of the ONNX folder, small ones first. Builds the ONNX files (the model's size, and a quarter of it for the 8-bit one). */
export async function onnxFolderFiles(input: OnnxFolderInput): Promise<ExportFile[]> {
  const files = onnxMetadataFiles(input);
  files.push(...(await onnxModelFiles(input, false)));
  if (input.quantized !== false) files.push(...(await onnxModelFiles(input, true)));
  return files;
}

/** One ONNX variant (float32, or 8-bit with `quantize`) with its external data file if any, as ExportFiles under onnx/. */
export async function onnxModelFiles(input: OnnxFolderInput, quantize: boolean): Promise<ExportFile[]> {
  return (await gpt2OnnxFiles(input.config, input.params, { externalDataAbove: input.externalDataAbove, quantize })).map(asExportFile);
}

/** config.json, generation_config.json and the tokenizer files of the ONNX folder. */
export function onnxMetadataFiles(input: OnnxFolderInput): ExportFile[] {
  return modelMetadataFiles(input.config, input.generation, input.tokenizer);
}

/** The ONNX folder as a streamed .zip under `folder/` (the page's download). */
export async function onnxExportZip(
  input: OnnxFolderInput, folder: string, opts: { signal?: AbortSignal; modified?: Date } = {},
): Promise<{ stream: ReadableStream<Uint8Array>; size: number; filename: string }> {
  const modified = opts.modified ?? new Date();
  const entries: ZipEntry[] = (await onnxFolderFiles(input)).map((f) => ({ name: `${folder}/${f.name}`, size: f.size, data: f.data, modified }));
  return { stream: zipReadableStream(entries, { signal: opts.signal }), size: zipSize(entries), filename: `${folder}.zip` };
}
