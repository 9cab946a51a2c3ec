// Model folders on disk, for Node only (the CLI, tests, benchmarks): a file ByteSource over
// fs.promises, loading config.json + safetensors weights from a Hugging Face style folder, and
// saving one (config.json and model.safetensors, streamed to disk). The browser never imports this.
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { StudioError, UnsupportedConfigError } from '../engine/errors.ts';
import { configToJson, parseConfig, type GPT2Config } from '../engine/model/config.ts';
import type { HostParams } from '../engine/model/params.ts';
import { checkRange, type ByteSource } from './bytes.ts';
import {
  checkpointTensors,
  loadCheckpoint,
  MissingModelFileError,
  SAFE_WEIGHTS_NAME,
  type LoadProgress,
  type ModelFiles,
} from './checkpoint.ts';
import { CorruptCheckpointError, safetensorsStream } from './safetensors.ts';

/** A model folder cannot be written as asked (a bad extra file name, a path that is a file …). */
export class ModelDirError extends StudioError {}

function isNotFound(e: unknown): boolean {
  return (e as NodeJS.ErrnoException)?.code === 'ENOENT';
}

/** A ByteSource over a file on disk. Each read opens the file, so no handle is left open. */
export async function nodeFileSource(path: string): Promise<ByteSource> {
  let size: number;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new MissingModelFileError(`${path} is not a regular file.`);
    size = st.size;
  } catch (e) {
    if (isNotFound(e)) throw new MissingModelFileError(`${path} does not exist.`);
    throw e;
  }
  const name = basename(path);
  return {
    size,
    name,
    async read(offset, length) {
      checkRange(name, size, offset, length);
      // A fresh, 4-byte aligned array the caller owns (not a pooled Buffer).
      const out = new Uint8Array(length);
      const fh = await open(path, 'r');
      try {
        let got = 0;
        while (got < length) {
          const { bytesRead } = await fh.read(out, got, length - got, offset + got);
          if (bytesRead === 0) {
            throw new CorruptCheckpointError(`${path} ended at byte ${offset + got} while ${offset + length} bytes were expected: it was truncated or changed while being read.`);
          }
          got += bytesRead;
        }
      } finally {
        await fh.close();
      }
      return out;
    },
  };
}

/** The regular files of a folder (not its subfolders), as ModelFiles. */
export async function nodeDirFiles(dir: string): Promise<ModelFiles> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (e) {
    if (isNotFound(e)) throw new MissingModelFileError(`Model folder ${dir} does not exist.`);
    if ((e as NodeJS.ErrnoException)?.code === 'ENOTDIR') throw new MissingModelFileError(`${dir} is a file, not a model folder.`);
    throw e;
  }
  const map = new Map<string, ByteSource>();
  for (const n of entries.sort()) {
    const st = await stat(join(dir, n)).catch(() => null);
    if (st?.isFile()) map.set(n, await nodeFileSource(join(dir, n)));
  }
  return { get: (n) => map.get(n), names: () => [...map.keys()] };
}

/** Reads and checks config.json of a model folder. */
export async function loadConfigFile(path: string): Promise<GPT2Config> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if (isNotFound(e)) {
      throw new MissingModelFileError(`${path} not found: a model folder needs config.json (the Hugging Face GPT-2 config) next to its ${SAFE_WEIGHTS_NAME}.`);
    }
    throw e;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UnsupportedConfigError(`${path} is not valid JSON (${(e as Error).message}).`);
  }
  try {
    return parseConfig(json);
  } catch (e) {
    // Say which file was wrong (parseConfig says only 'config.json'); keep the error class.
    if (e instanceof StudioError) {
      e.message = e.message.startsWith('config.json') ? path + e.message.slice('config.json'.length) : `${path}: ${e.message}`;
    }
    throw e;
  }
}

/** Loads config.json and the weights of a Hugging Face GPT-2 folder. */
export async function loadModelDir(
  dir: string,
  onProgress?: (p: LoadProgress) => void,
): Promise<{ config: GPT2Config; params: HostParams }> {
  const files = await nodeDirFiles(dir);
  const config = await loadConfigFile(join(dir, 'config.json'));
  const params = await loadCheckpoint(config, files, onProgress);
  return { config, params };
}

const RESERVED = new Set(['config.json', SAFE_WEIGHTS_NAME]);

/** Writes chunks to `path` through a temporary file, so a failure never leaves half a file there. */
async function writeChunks(path: string, chunks: AsyncIterable<Uint8Array>): Promise<void> {
  const tmp = `${path}.partial`;
  const fh = await open(tmp, 'w');
  try {
    for await (const chunk of chunks) {
      let done = 0;
      while (done < chunk.byteLength) done += (await fh.write(chunk, done, chunk.byteLength - done)).bytesWritten;
    }
    await fh.close();
    await rename(tmp, path);
  } catch (e) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw e;
  }
}

/**
 * Saves a model folder that transformers' GPT2LMHeadModel.from_pretrained and this studio load:
 * model.safetensors (streamed, float32, tied head left out), config.json, then any extra files
 * (tokenizer.json, vocab.json, merges.txt, generation_config.json …) given by base name.
 */
export async function saveModelDir(
  dir: string,
  config: GPT2Config,
  params: HostParams,
  extraFiles: Record<string, string | Uint8Array> = {},
): Promise<void> {
  const tensors = checkpointTensors(config, params);
  for (const name of Object.keys(extraFiles)) {
    if (RESERVED.has(name) || name !== basename(name) || name === '' || name === '.' || name === '..' || name.includes('\\')) {
      throw new ModelDirError(`Cannot write extra file '${name}': give a plain file name other than config.json and ${SAFE_WEIGHTS_NAME}.`);
    }
  }
  try {
    await mkdir(dir, { recursive: true });
  } catch (e) {
    throw new ModelDirError(`Cannot create model folder ${dir}: ${(e as Error).message}`);
  }
  await writeChunks(join(dir, SAFE_WEIGHTS_NAME), safetensorsStream(tensors));
  await writeFile(join(dir, 'config.json'), `${JSON.stringify(configToJson(config), null, 2)}\n`);
  for (const [name, content] of Object.entries(extraFiles)) await writeFile(join(dir, name), content);
}
