// Exports a studio checkpoint as a PyTorch project that continues the run under torchrun
// (src/io/torch-project/project.ts describes the layout). The training data named by the
// checkpoint is read as the run read it (token files, or text tokenized with the model's
// tokenizer), checked against the checkpoint's fingerprint, and written into the project; the
// project is written into a temporary sibling folder and renamed into place, so it exists whole or
// not at all, and an existing folder is never written over.
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TokenArray } from '../io/corpus.ts';
import { writeNanoGptTokens } from '../io/token-files.ts';
import {
  checkTrainerState, PROJECT_EVAL_DATA, PROJECT_TRAIN_DATA, projectReadme, projectTrainerState, TorchExportError,
} from '../io/torch-project/project.ts';
import { loadTrainingTokens } from './data.ts';

export { TorchExportError };

const TRAIN_PY = fileURLToPath(new URL('../io/torch-project/train.py', import.meta.url));

/** The checkpoint format's token fingerprint: SHA-256 of the ids as little-endian uint32, in order. */
export function tokensFingerprint(tokens: ArrayLike<number>): string {
  const h = createHash('sha256');
  const chunk = 1 << 20;
  const buf = new Uint8Array(4 * chunk);
  const dv = new DataView(buf.buffer);
  for (let i = 0; i < tokens.length; i += chunk) {
    const n = Math.min(chunk, tokens.length - i);
    for (let k = 0; k < n; k++) dv.setUint32(4 * k, tokens[i + k], true);
    h.update(buf.subarray(0, 4 * n));
  }
  return 'sha256:' + h.digest('hex');
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(() => true, () => false);
}

async function readJson(path: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw new TorchExportError(`${path} is missing: ${what}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new TorchExportError(`${path} is not valid JSON (${(e as Error).message}); the checkpoint is damaged.`);
  }
}

interface PreparedProject {
  ck: string;
  stateJson: Record<string, unknown>;
  state: ReturnType<typeof checkTrainerState>;
  train: TokenArray;
  evalTokens: TokenArray | null;
}

/** Reads and checks everything the project needs, before anything is written. */
async function prepareProject(checkpointDir: string, log: (line: string) => void): Promise<PreparedProject> {
  const ck = resolve(checkpointDir);
  const stateJson = (await readJson(join(ck, 'trainer_state.json'),
    'a studio checkpoint folder (checkpoint-<step>/) holds trainer_state.json; a plain model folder cannot be continued. Export a checkpoint.')) as Record<string, unknown>;
  const state = checkTrainerState(stateJson, join(ck, 'trainer_state.json'));
  const config = (await readJson(join(ck, 'config.json'), 'the checkpoint is incomplete (no config.json).')) as { vocab_size?: number };
  if (!Number.isInteger(config.vocab_size)) throw new TorchExportError(`${join(ck, 'config.json')} has no vocab_size; the checkpoint is damaged.`);
  for (const f of ['model.safetensors', 'optimizer.safetensors']) {
    if (!(await exists(join(ck, f)))) throw new TorchExportError(`${join(ck, f)} is missing; the checkpoint is incomplete.`);
  }
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(ck, p));
  const readTokens = async (paths: string[], expected: string | undefined, what: string): Promise<TokenArray> => {
    const tokens = await loadTrainingTokens(paths.map(abs), config.vocab_size!, ck, log);
    const got = tokensFingerprint(tokens);
    if (expected && got !== expected) {
      throw new TorchExportError(`The ${what} data (${paths.map(abs).join(', ')}) is not what the run trained on: its fingerprint is ${got}, the checkpoint expects ${expected}. Restore the original files.`);
    }
    return tokens;
  };
  const train = await readTokens(state.data.train, state.fingerprints?.train_tokens, 'training');
  const evalTokens = state.data.eval?.length ? await readTokens(state.data.eval, state.fingerprints?.eval_tokens, 'evaluation') : null;
  return { ck, stateJson, state, train, evalTokens };
}

/** Writes the project into `dir` (an existing empty folder); returns the paths written, relative to it. */
async function writeProject(p: PreparedProject, dir: string, log: (line: string) => void): Promise<string[]> {
  const { ck, stateJson, state, train, evalTokens } = p;
  const written: string[] = [];
  await mkdir(join(dir, 'checkpoint'), { recursive: true });
  await mkdir(join(dir, 'data'), { recursive: true });
  for (const name of (await readdir(ck)).sort()) {
    if (name === 'trainer_state.json' || !(await stat(join(ck, name))).isFile()) continue;
    await copyFile(join(ck, name), join(dir, 'checkpoint', name));
    written.push(`checkpoint/${name}`);
  }
  await writeFile(join(dir, 'checkpoint', 'trainer_state.json'), JSON.stringify(projectTrainerState(stateJson, !!evalTokens), null, 2) + '\n');
  written.push('checkpoint/trainer_state.json');
  await writeFile(join(dir, PROJECT_TRAIN_DATA), writeNanoGptTokens(train));
  written.push(PROJECT_TRAIN_DATA);
  if (evalTokens) {
    await writeFile(join(dir, PROJECT_EVAL_DATA), writeNanoGptTokens(evalTokens));
    written.push(PROJECT_EVAL_DATA);
  }
  await copyFile(TRAIN_PY, join(dir, 'train.py'));
  written.push('train.py');
  const model = (stateJson.model as { source?: string } | undefined)?.source ?? 'the model';
  await writeFile(join(dir, 'README.md'), projectReadme(state, model));
  written.push('README.md');
  log(`PyTorch project of ${ck} (step ${state.step} of ${state.total_steps}, ${train.length} training tokens${evalTokens ? `, ${evalTokens.length} held-out` : ''}); see its README.md`);
  return written;
}

/**
 * `export --format torch`: writes the project of checkpoint `checkpointDir` into `dir`, a fresh
 * empty folder (the export command moves it into place). Everything is read and checked first.
 */
export async function writeTorchProject(checkpointDir: string, dir: string, log: (line: string) => void): Promise<string[]> {
  return writeProject(await prepareProject(checkpointDir, log), dir, log);
}

/**
 * Writes the PyTorch project of checkpoint `checkpointDir` to `outDir` (which must not exist),
 * through a temporary sibling folder. Returns the paths written, relative to `outDir`.
 */
export async function exportTorchProject(checkpointDir: string, outDir: string, log: (line: string) => void): Promise<string[]> {
  const out = resolve(outDir);
  const ck = resolve(checkpointDir);
  if (await exists(out)) throw new TorchExportError(`${out} already exists; nothing is written over. Choose a new --out folder.`);
  if (out === ck || out.startsWith(ck + '/')) throw new TorchExportError(`--out ${out} is inside the checkpoint; choose a folder outside it.`);
  const p = await prepareProject(ck, log);
  const tmp = join(dirname(out), `.${basename(out)}.tmp-${Math.random().toString(36).slice(2, 10)}`);
  try {
    await mkdir(tmp, { recursive: true });
    const written = await writeProject(p, tmp, log);
    await rename(tmp, out);
    return written;
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
}
