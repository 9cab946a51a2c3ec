// Output paths of the CLI, checked before any GPU work, and the final save that never leaves a
// mix. The rules (README "Nothing is overwritten"):
//
// - `--out` is never the model folder nor inside it, never an existing file, and must be
//   creatable and writable; a non-empty `--out` that is not an output of ours is refused unless
//   `--overwrite`. An input (model folder, data, evaluation data) is never at a path the save
//   writes.
// - `--log` never names an input, a file inside the model folder, a path the save replaces, or an
//   existing file that is not one of our logs (empty, or every line a JSON object with a numeric
//   `step`); its folder is created once every check has passed.
// - Free space on `--out`'s disk covers what the run will write (final model and checkpoints).
// - The save writes every new file into a temporary folder inside `--out`, then moves them into
//   place in one synchronous pass (no signal handler runs between two renames), rolling back if a
//   rename fails; entries of `--out` that are not part of the export stay where they are.
//   Temporaries are removed on error, on exit and on SIGINT/SIGTERM.
//
// `checkOutputFolder` and `writeOutputFolder` are what another command writing a folder (prepare,
// export) calls; `checkTrainPaths` is train's whole set.
import { randomBytes } from 'node:crypto';
import { constants, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { access, mkdir, readdir, readFile, realpath, rm, stat, statfs } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { StudioError } from '../engine/errors.ts';
import type { GPT2Config } from '../engine/model/config.ts';
import { countLoraParams, type LoraConfig } from '../engine/model/lora.ts';
import { countParams, paramSpecs } from '../engine/model/params.ts';

/** `--out` (or another output folder) cannot be used as given. */
export class OutputPathError extends StudioError {}
/** `--log` cannot be used as given. */
export class LogPathError extends StudioError {}
/** The disk holding `--out` has less free space than the run will write. */
export class DiskSpaceError extends StudioError {}
/** Writing the output failed (disk full, read-only, no permission …); the previous content is intact. */
export class OutputWriteError extends StudioError {}

/** Names a train export writes directly in `--out` (files and the `adapter/` folder of `--lora-export both`). */
export const TRAIN_EXPORT_NAMES: readonly string[] = [
  'config.json', 'model.safetensors', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'vocab.json', 'merges.txt',
  'README.md', 'adapter_config.json', 'adapter_model.safetensors', 'adapter',
];
/** `checkpoint-<step>/` folders (docs/checkpoint-format.md). */
const CHECKPOINT = /^checkpoint-\d+$/;
/** Our temporaries inside an output folder: the save's and the checkpoint writer's. */
const SAVE_TEMP = /^\.save\.tmp-[0-9a-f]+$/;
/** The tag our model card carries in its Hub metadata (io/export.ts). */
const CARD_TAG = '- webgpu-finetuning-studio';
/** A log larger than this is not read to decide whether it is ours (a run's log is far smaller). */
const MAX_LOG_PROBE = 256 * 2 ** 20;

// ---- paths -------------------------------------------------------------------------------------

/** `p` absolute with symbolic links of its existing part resolved, so two spellings of a path compare equal. */
export async function canonicalPath(p: string): Promise<string> {
  let head = resolve(p);
  const tail: string[] = [];
  for (;;) {
    try {
      return join(await realpath(head), ...tail.reverse());
    } catch {
      const up = dirname(head);
      if (up === head) return resolve(p);
      tail.push(basename(head));
      head = up;
    }
  }
}

/** True when `child` is `parent` or inside it (both canonical). */
export function isWithin(child: string, parent: string): boolean {
  const rel = relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/** The first path component of `p` below `dir`, or undefined when `p` is not strictly inside `dir`. */
function firstComponentIn(p: string, dir: string): string | undefined {
  const rel = relative(dir, p);
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) return undefined;
  return rel.split(sep)[0];
}

/** The nearest existing folder at or above `p` (the one a new folder would be created in). */
async function existingAncestor(p: string, what: () => string, E: new (m: string) => StudioError): Promise<string> {
  let cur = p;
  for (;;) {
    const st = await stat(cur).catch(() => null);
    if (st) {
      if (!st.isDirectory()) throw new E(`${what()}: ${cur} is a file, so no folder can be created under it. Choose another path.`);
      return cur;
    }
    const up = dirname(cur);
    if (up === cur) return cur;
    cur = up;
  }
}

async function checkWritable(dir: string, what: () => string, E: new (m: string) => StudioError): Promise<void> {
  try {
    await access(dir, constants.W_OK | constants.X_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException)?.code;
    const why = code === 'EROFS' ? `${dir} is on a read-only file system` : `${dir} is not writable (${code ?? (e as Error).message})`;
    throw new E(`${what()}: ${why}. Choose a folder you can write to.`);
  }
}

/** A file-system error as a sentence naming the path and what to do. */
export function describeFsError(e: unknown, path: string, doing = 'write'): string {
  const err = e as NodeJS.ErrnoException;
  const where = err?.path ?? path;
  const code = err?.code;
  switch (code) {
    case 'ENOSPC':
      return `Cannot ${doing} ${where}: the disk is full (ENOSPC). Free space, or point the output at another disk.`;
    case 'EDQUOT':
      return `Cannot ${doing} ${where}: your disk quota is used up (EDQUOT). Free space, or point the output at another disk.`;
    case 'EROFS':
      return `Cannot ${doing} ${where}: the file system is read-only (EROFS). Choose a writable folder.`;
    case 'EACCES':
    case 'EPERM':
      return `Cannot ${doing} ${where}: permission denied (${code}). Choose a folder you can write to, or change its permissions.`;
    case 'ENOTDIR':
      return `Cannot ${doing} ${where}: a part of the path is a file, not a folder (ENOTDIR). Choose another path.`;
    case 'EISDIR':
      return `Cannot ${doing} ${where}: it is a folder (EISDIR). Give a file name.`;
    case 'ENOENT':
      return `Cannot ${doing} ${where}: a folder on the way does not exist any more (ENOENT). Check the path and run again.`;
    default:
      return `Cannot ${doing} ${where}: ${code ?? err?.message ?? String(e)}.`;
  }
}

// ---- what is ours ------------------------------------------------------------------------------

/** True when `text` is one of our training logs: every non-empty line a JSON object with a numeric `step`. */
export function isOurLogText(text: string): boolean {
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      return false;
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v) || typeof (v as { step?: unknown }).step !== 'number') return false;
  }
  return true;
}

async function fileText(path: string, max: number): Promise<string | null> {
  const st = await stat(path).catch(() => null);
  if (!st?.isFile() || st.size > max) return null;
  return readFile(path, 'utf8').catch(() => null);
}

/**
 * Whether a folder's entries show it is an output of `train`: a `checkpoint-<step>/` folder, our
 * model card (README.md with the studio's tag), or a non-empty log of ours directly in it.
 */
export async function isTrainOutput(dir: string, entries: readonly string[]): Promise<boolean> {
  for (const n of entries) {
    if (CHECKPOINT.test(n) && (await stat(join(dir, n)).catch(() => null))?.isDirectory()) return true;
  }
  if (entries.includes('README.md')) {
    const card = await fileText(join(dir, 'README.md'), 1 << 20);
    if (card?.split('\n').some((l) => l.trim() === CARD_TAG)) return true;
  }
  for (const n of entries) {
    if (!/\.(jsonl|log)$/i.test(n)) continue;
    const text = await fileText(join(dir, n), MAX_LOG_PROBE);
    if (text && text.trim() !== '' && isOurLogText(text)) return true;
  }
  return false;
}

// ---- --out -------------------------------------------------------------------------------------

export interface OutputFolderCheck {
  /** command name for messages ('train', 'prepare', 'export') */
  command: string;
  /** the flag naming the folder (default '--out') */
  flag?: string;
  out: string;
  /** the model folder the command reads (never written, never enclosing the output) */
  modelDir?: string;
  /** input files (data, evaluation data): never at a path the command writes */
  inputs?: readonly string[];
  /** names the command writes directly in the folder (files or folders) */
  writes: readonly string[];
  /** whether a non-empty folder is an output of this command (default: isTrainOutput) */
  isOurs?: (dir: string, entries: readonly string[]) => Promise<boolean>;
  /** write into a non-empty folder that is not ours (export files replaced, the rest kept) */
  overwrite?: boolean;
}

/** True when a name in an output folder is the command's: one it writes, a checkpoint, a temporary. */
const writtenBy = (writes: readonly string[], name: string) => writes.includes(name) || CHECKPOINT.test(name) || SAVE_TEMP.test(name);

/**
 * Checks an output folder before any work: not the model folder or inside it, not a file,
 * creatable and writable, no input at a path it writes, and (unless `overwrite`) empty or ours.
 * Creates nothing. Returns the canonical path.
 */
export async function checkOutputFolder(c: OutputFolderCheck): Promise<string> {
  const flag = c.flag ?? '--out';
  const what = () => `${c.command}: ${flag} ${c.out}`;
  const out = await canonicalPath(c.out);
  if (c.modelDir !== undefined) {
    const model = await canonicalPath(c.modelDir);
    if (isWithin(out, model)) {
      const where = out === model ? 'is the model folder' : `is inside the model folder ${c.modelDir}`;
      throw new OutputPathError(`${what()} ${where}: the model would be overwritten. Choose a new folder for the output, e.g. ${join(dirname(model), `${basename(model)}-finetuned`)}.`);
    }
    // A checkpoint of this output as the model (a resumed run) is fine: new checkpoints get new steps.
    const first = firstComponentIn(model, out);
    if (first !== undefined && (c.writes.includes(first) || SAVE_TEMP.test(first))) {
      throw new OutputPathError(`${what()}: the model folder ${c.modelDir} is at ${join(c.out, first)}, which the output replaces. Choose another ${flag}.`);
    }
  }
  for (const f of c.inputs ?? []) {
    const p = await canonicalPath(f);
    if (p === out) throw new OutputPathError(`${what()} is the input ${f}. Choose a new folder for the output.`);
    const first = firstComponentIn(p, out);
    if (first !== undefined && writtenBy(c.writes, first)) {
      throw new OutputPathError(`${what()}: the input ${f} is at ${join(c.out, first)}, which the output replaces. Move it or choose another ${flag}.`);
    }
  }
  const st = await stat(out).catch(() => null);
  if (st && !st.isDirectory()) throw new OutputPathError(`${what()} is an existing file, not a folder. Choose a folder name (new or empty).`);
  if (st) {
    await checkWritable(out, what, OutputPathError);
    const entries = await readdir(out);
    if (entries.length > 0 && !c.overwrite && !(await (c.isOurs ?? isTrainOutput)(out, entries))) {
      const shown = entries.slice(0, 5).join(', ') + (entries.length > 5 ? ` and ${entries.length - 5} more` : '');
      throw new OutputPathError(
        `${what()} is not empty (${shown}) and is not an output of ours. Choose a new or empty folder, or pass --overwrite to write into it ` +
          `(the files the output writes are replaced, everything else stays).`,
      );
    }
  } else {
    await checkWritable(await existingAncestor(out, what, OutputPathError), what, OutputPathError);
  }
  return out;
}

// ---- --log -------------------------------------------------------------------------------------

export interface LogFileCheck {
  command: string;
  log: string;
  /** the output folder (checked by checkOutputFolder) and the names its save writes */
  out: string;
  writes: readonly string[];
  modelDir?: string;
  /** input files by role, e.g. { '--data': [...], '--eval-data': [...] } */
  inputs: Record<string, readonly string[]>;
}

/** Checks `--log` before any work (see the header). Creates nothing. Returns the canonical path. */
export async function checkLogFile(c: LogFileCheck): Promise<string> {
  const what = () => `${c.command}: --log ${c.log}`;
  const log = await canonicalPath(c.log);
  for (const [role, files] of Object.entries(c.inputs)) {
    for (const f of files) {
      if ((await canonicalPath(f)) === log) throw new LogPathError(`${what()} is the ${role} file ${f}: it would be overwritten. Give the log a new file name.`);
    }
  }
  if (c.modelDir !== undefined && isWithin(log, await canonicalPath(c.modelDir))) {
    throw new LogPathError(`${what()} is inside the model folder ${c.modelDir}. Write the log elsewhere, e.g. ${join(c.out, 'train-log.jsonl')}.`);
  }
  const out = await canonicalPath(c.out);
  if (log === out) throw new LogPathError(`${what()} is the output folder. Give the log a file name, e.g. ${join(c.out, 'train-log.jsonl')}.`);
  const first = firstComponentIn(log, out);
  if (first !== undefined && writtenBy(c.writes, first)) {
    throw new LogPathError(`${what()} is at ${join(c.out, first)}, which the output replaces. Give the log another name, e.g. ${join(c.out, 'train-log.jsonl')}.`);
  }
  const st = await stat(log).catch(() => null);
  if (st) {
    if (!st.isFile()) throw new LogPathError(`${what()} is a folder. Give a file name.`);
    if (st.size > 0) {
      const text = st.size <= MAX_LOG_PROBE ? await readFile(log, 'utf8').catch(() => null) : null;
      if (text === null || !isOurLogText(text)) {
        throw new LogPathError(
          `${what()} exists and is not a training log (every line a JSON object with a numeric "step"): it would be overwritten. ` +
            'Give the log a new file name.',
        );
      }
    }
    await checkWritable(dirname(log), what, LogPathError);
  } else {
    await checkWritable(await existingAncestor(dirname(log), what, LogPathError), what, LogPathError);
  }
  return log;
}

// ---- free space --------------------------------------------------------------------------------

/** Bytes free to an unprivileged writer on the disk holding `path` (or its nearest existing folder). */
export async function freeBytes(path: string): Promise<{ bytes: number; on: string }> {
  const on = await existingAncestor(resolve(path), () => path, OutputPathError);
  const s = await statfs(on);
  return { bytes: Number(s.bavail) * Number(s.bsize), on };
}

const fmt = (b: number) => (b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : b >= 2 ** 20 ? `${(b / 2 ** 20).toFixed(1)} MiB` : `${Math.ceil(b / 1024)} KiB`);

export interface WritePlan {
  /** bytes of the final export */
  final: number;
  /** bytes of one checkpoint */
  checkpoint: number;
  /** checkpoints on disk at the most (a new one is complete before the oldest is removed) */
  checkpoints: number;
  total: number;
}

/** Bytes of tokenizer files, model card and configs written next to the weights (GPT-2's tokenizer is ~3.5 MB). */
function sideFiles(config: GPT2Config): number {
  return (config.vocabSize >= 50257 ? 4 * 2 ** 20 : 2 ** 20) + 64 * 1024;
}

/**
 * What a train run writes, from the parameter count (float32 safetensors): the final model (and
 * with LoRA the adapter, the merged model or both) and its checkpoints (the model, the LoRA factors,
 * two AdamW moments per trainable value, tokenizer and state): one every `saveEvery` steps and
 * one after the last step, at most `saveTotalLimit` + 1 at once when a limit is set.
 */
export function estimateTrainWrite(o: {
  config: GPT2Config; steps: number; frozen: ReadonlySet<number>; lora?: LoraConfig | null; loraExport?: 'adapter' | 'merged' | 'both';
  saveEvery?: number; saveTotalLimit?: number;
}): WritePlan {
  const full = countParams(o.config) * 4;
  const side = sideFiles(o.config);
  const loraBytes = o.lora ? countLoraParams(o.config, o.lora) * 4 : 0;
  const exportAs = o.loraExport ?? 'adapter';
  const final = o.lora ? (exportAs !== 'merged' ? loraBytes + 64 * 1024 : 0) + (exportAs !== 'adapter' ? full + side : 0) : full + side;
  const trainable = o.lora ? loraBytes : paramSpecs(o.config).filter((p) => !o.frozen.has(p.group)).reduce((a, p) => a + p.numel * 4, 0);
  const checkpoint = full + loraBytes + 2 * trainable + side;
  const every = o.saveEvery ?? 0;
  // One every `every` steps and one after the last step (the only one when `every` is 0).
  let checkpoints = o.steps <= 0 ? 0 : every > 0 ? Math.ceil(o.steps / every) : 1;
  const limit = o.saveTotalLimit ?? 0;
  if (limit > 0) checkpoints = Math.min(checkpoints, limit + 1);
  return { final, checkpoint, checkpoints, total: final + checkpoints * checkpoint };
}

/** Refuses a run whose writes do not fit the free space of the disk holding `out`. */
export async function checkFreeSpace(command: string, out: string, plan: WritePlan): Promise<void> {
  const { bytes, on } = await freeBytes(out);
  // A margin for the log, directory entries and file-system rounding.
  const need = plan.total + Math.max(1 << 20, Math.ceil(plan.total * 0.01));
  if (bytes >= need) return;
  const parts = `the final model ${fmt(plan.final)}${plan.checkpoints ? ` + ${plan.checkpoints} checkpoint${plan.checkpoints > 1 ? 's' : ''} of ${fmt(plan.checkpoint)}` : ''}`;
  throw new DiskSpaceError(
    `${command}: --out ${out} needs about ${fmt(need)} (${parts}), but the disk holding ${on} has ${fmt(bytes)} free. ` +
      'Free space, point --out at another disk' + (plan.checkpoints ? ', or keep fewer checkpoints (--save-total-limit, --save-every).' : '.'),
  );
}

// ---- train's checks together -------------------------------------------------------------------

export interface TrainPathsCheck {
  out: string;
  log?: string;
  modelDir: string;
  data: readonly string[];
  evalData: readonly string[];
  overwrite: boolean;
  plan: WritePlan;
}

/**
 * Every path check of `train`, before any GPU work, in order: --out, --log, free space; then
 * creates --log's folder (which may sit inside a --out that does not exist yet). Nothing is
 * created or changed when a check fails.
 */
export async function checkTrainPaths(c: TrainPathsCheck): Promise<{ out: string; log?: string }> {
  const out = await checkOutputFolder({
    command: 'train', out: c.out, modelDir: c.modelDir, inputs: [...c.data, ...c.evalData], writes: TRAIN_EXPORT_NAMES, overwrite: c.overwrite,
  });
  const log = c.log === undefined ? undefined : await checkLogFile({
    command: 'train', log: c.log, out: c.out, writes: TRAIN_EXPORT_NAMES, modelDir: c.modelDir, inputs: { '--data': c.data, '--eval-data': c.evalData },
  });
  await checkFreeSpace('train', c.out, c.plan);
  if (log !== undefined) {
    try {
      await mkdir(dirname(log), { recursive: true });
    } catch (e) {
      throw new LogPathError(`train: --log ${c.log}: ${describeFsError(e, dirname(log), 'create the folder')}`);
    }
  }
  return { out, log };
}

// ---- the save ----------------------------------------------------------------------------------

const temporaries = new Set<string>();
let hooked = false;

function removeTemporaries(): void {
  for (const t of temporaries) {
    try {
      rmSync(t, { recursive: true, force: true });
    } catch {
      // best effort on the way out; the next save removes what is left (SAVE_TEMP)
    }
  }
  temporaries.clear();
}

function onSignal(sig: NodeJS.Signals): void {
  // Another handler (train's stop-and-checkpoint, run-checkpoints.ts) owns what happens next:
  // the save may go on, and if it exits instead the 'exit' hook removes the temporaries. Without
  // one, end as the signal's default action would, with its conventional exit code.
  if (process.listenerCount(sig) > 1) return;
  removeTemporaries();
  process.exit(sig === 'SIGINT' ? 130 : 143);
}

function track(dir: string): void {
  temporaries.add(dir);
  if (!hooked) {
    hooked = true;
    process.on('exit', removeTemporaries);
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
}

function untrack(dir: string): void {
  temporaries.delete(dir);
  if (temporaries.size === 0 && hooked) {
    hooked = false;
    process.off('exit', removeTemporaries);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

const sweptOnExit = new Map<string, RegExp>();

/**
 * Removes the entries of `dir` whose names match `pattern` when the process exits (also through
 * process.exit from a signal handler), so a writer stopped mid-write, such as the checkpoint
 * writer's `.checkpoint-<step>.tmp-*` folders, leaves no temporary behind. Only temporaries:
 * never a pattern that could match a complete output.
 */
export function removeTemporariesOnExit(dir: string, pattern: RegExp): void {
  if (sweptOnExit.size === 0) {
    process.on('exit', () => {
      for (const [d, re] of sweptOnExit) {
        try {
          for (const n of readdirSync(d)) if (re.test(n)) rmSync(join(d, n), { recursive: true, force: true });
        } catch {
          // the folder may not exist (nothing was written)
        }
      }
    });
  }
  sweptOnExit.set(resolve(dir), pattern);
}

/** The most recently modified file under `dir`, if any. */
function newestFile(dir: string): string | undefined {
  let best: { path: string; mtime: number } | undefined;
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else {
        const m = statSync(p).mtimeMs;
        if (!best || m >= best.mtime) best = { path: p, mtime: m };
      }
    }
  };
  try {
    walk(dir);
  } catch {
    return undefined;
  }
  return best?.path;
}

/**
 * Moves every entry of `stage` into `out`, the replaced ones into `backup` first; synchronous, so
 * no signal handler runs in between. A failed rename puts everything back and rethrows.
 */
function commitSync(stage: string, out: string, backup: string): void {
  const names = readdirSync(stage);
  mkdirSync(backup);
  const replaced: string[] = [];
  const placed: string[] = [];
  try {
    for (const n of names) {
      if (existsSync(join(out, n))) {
        renameSync(join(out, n), join(backup, n));
        replaced.push(n);
      }
      renameSync(join(stage, n), join(out, n));
      placed.push(n);
    }
  } catch (e) {
    for (const n of placed.reverse()) renameSync(join(out, n), join(stage, n));
    for (const n of replaced.reverse()) renameSync(join(backup, n), join(out, n));
    throw e;
  }
}

/**
 * Writes a command's output into `out` so that it is never a mix: `write` fills a temporary
 * folder inside `out` (created with it), and only when it returns are its entries moved into
 * place, replacing same-named ones; every other entry of `out` stays. On failure or a signal the
 * temporary is removed and `out` holds what it held before. Returns what `write` returned.
 */
export async function writeOutputFolder<T>(command: string, out: string, write: (stage: string) => Promise<T>): Promise<T> {
  try {
    await mkdir(out, { recursive: true });
  } catch (e) {
    throw new OutputWriteError(`${command}: ${describeFsError(e, out, 'create the output folder')}`);
  }
  // What a killed save left behind: incomplete new files, never the user's.
  for (const n of await readdir(out).catch(() => [] as string[])) if (SAVE_TEMP.test(n)) await rm(join(out, n), { recursive: true, force: true });
  const id = randomBytes(4).toString('hex');
  const stage = join(out, `.save.tmp-${id}`);
  const backup = join(out, `.save.old-${id}`);
  track(stage);
  try {
    let result: T;
    try {
      await mkdir(stage);
      result = await write(stage);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      // Named errors and aborts pass through; a file-system error is told in terms of --out.
      if (typeof err?.code !== 'string' || !err.code.startsWith('E')) throw e;
      // A failed write() names no path: the file being written is the newest in the temporary.
      const path = typeof err.path === 'string' ? err.path : newestFile(stage);
      if (path !== undefined && isWithin(path, stage)) err.path = join(out, relative(stage, path)).replace(/\.partial$/, '');
      throw new OutputWriteError(`${command}: ${describeFsError(err, out)} Nothing in ${out} was changed.`);
    }
    track(backup);
    try {
      commitSync(stage, out, backup);
    } catch (e) {
      throw new OutputWriteError(`${command}: ${describeFsError(e, out, 'move the new files into')} The previous files are back in place.`);
    }
    return result;
  } finally {
    rmSync(stage, { recursive: true, force: true });
    rmSync(backup, { recursive: true, force: true });
    untrack(stage);
    untrack(backup);
  }
}
