// Writes the Hugging Face folder of export.ts to disk (Node only: the CLI and tests). Each file is
// streamed to a temporary name and renamed when complete, so an interrupted export never leaves a
// half-written model.safetensors that looks whole.
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { hfFolderFiles, ExportError, type ExportFile, type ExportInput } from './export.ts';

export interface FolderExportOptions {
  signal?: AbortSignal;
  /** bytes written so far, of the folder's total */
  onProgress?: (p: { bytes: number; total: number; file: string }) => void;
}

/** Writes config.json, generation_config.json, tokenizer files, README.md and model.safetensors into `dir`. */
export async function writeHfFolder(dir: string, input: ExportInput, opts: FolderExportOptions = {}): Promise<string[]> {
  return writeExportFiles(dir, hfFolderFiles(input), opts);
}

/** Writes export files into `dir`; names may have '/'-separated subfolders (e.g. 'onnx/model.onnx'). */
export async function writeExportFiles(dir: string, files: ExportFile[], opts: FolderExportOptions = {}): Promise<string[]> {
  const total = files.reduce((a, f) => a + f.size, 0);
  try {
    await mkdir(dir, { recursive: true });
  } catch (e) {
    throw new ExportError(`Cannot create the export folder ${dir} (${(e as Error).message}). Choose a writable folder.`);
  }
  let bytes = 0;
  for (const f of files) {
    opts.signal?.throwIfAborted();
    const path = join(dir, f.name);
    if (f.name.includes('/')) await mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.partial`;
    const fh = await open(tmp, 'w');
    let written = 0;
    try {
      const chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array> = f.data instanceof Uint8Array ? [f.data] : f.data();
      for await (const chunk of chunks) {
        opts.signal?.throwIfAborted();
        let o = 0;
        while (o < chunk.length) o += (await fh.write(chunk, o, chunk.length - o)).bytesWritten;
        written += chunk.length;
        bytes += chunk.length;
        opts.onProgress?.({ bytes, total, file: f.name });
      }
      if (written !== f.size) throw new ExportError(`${f.name}: wrote ${written} bytes, expected ${f.size}.`);
      await fh.close();
      await rename(tmp, path);
    } catch (e) {
      await fh.close().catch(() => {});
      await rm(tmp, { force: true });
      throw e;
    }
  }
  return files.map((f) => f.name);
}
