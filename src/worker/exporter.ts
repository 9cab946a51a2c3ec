// Downloads for the page, built on io/export.ts and io/peft.ts: the Hugging Face folder as a
// .zip (config, weights, tokenizer, generation config, model card), model.safetensors alone, or
// a LoRA adapter folder (PEFT's adapter_config.json + adapter_model.safetensors) as a .zip.
// Full weights are read from the GPU one tensor at a time as the file is written.
import { StudioError } from '../engine/errors.ts';
import type { GPT2Config } from '../engine/model/config.ts';
import type { HostParams } from '../engine/model/params.ts';
import { hfExportZipBlob, hfFolderFiles, safeFolderName, type ExportInput, type ParamReader } from '../io/export.ts';
import { ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, adapterFiles } from '../io/peft.ts';
import type { LoraConfig } from '../engine/model/lora.ts';
import { zipReadableStream, zipSize, type ZipEntry } from '../io/zip.ts';
import type { ExportFormat } from './protocol.ts';

/** An export that cannot be made (a LoRA adapter without LoRA, …). */
export class StudioExportError extends StudioError {}

export interface ExportRequest {
  config: GPT2Config;
  /** the fine-tuned weights: host tensors (LoRA merged) or a reader of the GPU copy */
  params: HostParams | ParamReader;
  /** the trained adapter, when LoRA trained */
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
export async function exportFile(format: ExportFormat, req: ExportRequest): Promise<{ fileName: string; blob: Blob }> {
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
    case 'lora': {
      if (!req.lora) {
        throw new StudioExportError('There is no LoRA adapter to export: the last run fine-tuned the full weights. Turn LoRA on in the settings and train to get an adapter.');
      }
      const files = adapterFiles(req.config, req.lora.config, await req.lora.params(), req.card?.baseModel ?? 'gpt2');
      const folder = `${name}-lora`;
      const enc = new TextEncoder();
      const entries: ZipEntry[] = [
        { name: `${folder}/${ADAPTER_CONFIG_NAME}`, data: enc.encode(files[ADAPTER_CONFIG_NAME]) },
        { name: `${folder}/${ADAPTER_WEIGHTS_NAME}`, data: files[ADAPTER_WEIGHTS_NAME] },
      ];
      return { fileName: `${folder}.zip`, blob: await collect(zipReadableStream(entries), zipSize(entries), req.onProgress) };
    }
  }
}
