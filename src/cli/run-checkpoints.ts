// What makes a `train` run durable on the command line: its checkpoint options (--save-every,
// --save-total-limit, --resume), stopping on SIGINT/SIGTERM after the step in flight, the --log
// file written and flushed line by line (and on resume cut back to the checkpoint's step), and
// the check that flags given with --resume agree with the checkpoint's settings.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { StudioError } from '../engine/errors.ts';
import type { GPT2Config } from '../engine/model/config.ts';
import { parseGroupList } from '../engine/model/params.ts';
import type { TrainerStateJson } from '../io/run-checkpoint.ts';
import { UsageError, type Args, type OptionSpec } from './args.ts';
import { describeFsError, OutputWriteError } from './paths.ts';

/** The run stopped on a signal after writing its checkpoint; main prints the message and exits with `exitCode` (130 SIGINT, 143 SIGTERM). */
export class RunInterruptedError extends StudioError {
  constructor(message: string, readonly exitCode: number) {
    super(message);
  }
}

/** A flag given with --resume disagrees with the checkpoint's settings (exit 2, like any usage error). */
export class ResumeConflictError extends UsageError {}

/** The data a resumed run would read is not the data the checkpoint was trained on. */
export class ResumeDataError extends StudioError {}

/** HF Trainer's save_steps default. */
export const DEFAULT_SAVE_EVERY = 500;

export const CHECKPOINT_OPTIONS: OptionSpec[] = [
  {
    name: 'resume', kind: 'string', optional: true, meta: 'path',
    help: 'continue a run from a checkpoint folder (checkpoint-<step>/) or the newest checkpoint-* in a folder; every setting comes from the checkpoint, ' +
      '--model and --data may be left out, and flags given must agree with it except --out, --log, --save-every, --save-total-limit, --eval-every and --steps (the new total)',
  },
  { name: 'save-every', kind: 'int', default: DEFAULT_SAVE_EVERY, help: 'write <out>/checkpoint-<step>/ every N optimizer steps (and always after the last step); 0 = only at the end' },
  { name: 'save-total-limit', kind: 'int', default: 0, help: 'keep only the newest N checkpoint folders in --out (0 = keep all)' },
];

/** Flags that may differ from the checkpoint's when resuming (outputs, cadence, the total). */
const FREE_ON_RESUME = new Set(['resume', 'out', 'log', 'save-every', 'save-total-limit', 'eval-every', 'steps', 'profile', 'endpoint', 'lora-export', 'model', 'data', 'eval-data', 'overwrite']);

const SIGNAL_CODES: Record<string, number> = { SIGINT: 130, SIGTERM: 143 };
/** One Ctrl-C reaches npm, the runner and node, which may pass it on: signals this close to the first count as one. */
export const SIGNAL_GRACE_MS = 2000;

/**
 * SIGINT/SIGTERM while training: the first aborts `signal` (the loop finishes the step in
 * flight and checkpoints); repeats within SIGNAL_GRACE_MS are the same Ctrl-C; a later one exits
 * at once (the checkpoints already written are whole: each was renamed into place).
 */
export class StopSignals {
  readonly controller = new AbortController();
  received: NodeJS.Signals | null = null;
  /** The newest whole checkpoint of the run (set by its owner as they are written): named when a later signal exits at once. */
  resumeFrom: string | null = null;
  private at = 0;
  private readonly handler = (sig: NodeJS.Signals) => this.on(sig);

  constructor(
    private readonly log: (line: string) => void,
    private readonly exit: (code: number) => void = (code) => process.exit(code),
    private readonly now: () => number = () => Date.now(),
  ) {}

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get exitCode(): number {
    return SIGNAL_CODES[this.received ?? 'SIGINT'] ?? 130;
  }

  install(): this {
    process.on('SIGINT', this.handler);
    process.on('SIGTERM', this.handler);
    return this;
  }

  uninstall(): void {
    process.off('SIGINT', this.handler);
    process.off('SIGTERM', this.handler);
  }

  on(sig: NodeJS.Signals): void {
    if (!this.received) {
      this.received = sig;
      this.at = this.now();
      this.log(`${sig}: finishing the step in flight, then writing a checkpoint (another signal after ${SIGNAL_GRACE_MS / 1000} s exits at once)`);
      this.controller.abort();
      return;
    }
    if (this.now() - this.at < SIGNAL_GRACE_MS) return;
    const how = this.resumeFrom ? `. Resume with: npm run cli -- train --resume ${this.resumeFrom}` : '';
    this.log(`${sig} again: exiting now; the checkpoints written so far are intact${how}`);
    this.exit(SIGNAL_CODES[sig] ?? 130);
  }
}

/**
 * The --log file: one JSON line per optimizer step (and per evaluation), each written with its own
 * write(2) as the metrics arrive, so a killed run's log holds every step it reported. On resume
 * the lines past the checkpoint's step are dropped first (written beside and renamed), and new
 * lines are appended.
 */
export class StepLogFile {
  private fd: number | null;

  private constructor(fd: number, private readonly path: string) {
    this.fd = fd;
  }

  /** `resumeStep` null: a fresh run (the file starts empty); else keep the lines of steps ≤ resumeStep. */
  static open(path: string, resumeStep: number | null): StepLogFile {
    try {
      return StepLogFile.openOrThrow(path, resumeStep);
    } catch (e) {
      throw new OutputWriteError(`train: --log: ${describeFsError(e, path, 'open the log')}`);
    }
  }

  private static openOrThrow(path: string, resumeStep: number | null): StepLogFile {
    mkdirSync(dirname(resolve(path)), { recursive: true }); // it may sit inside an --out not made yet
    if (resumeStep === null) return new StepLogFile(openSync(path, 'w'), path);
    if (existsSync(path)) {
      const kept = readFileSync(path, 'utf8').split('\n').filter((l) => {
        if (!l.trim()) return false;
        try {
          const step = (JSON.parse(l) as { step?: unknown }).step;
          return !(typeof step === 'number' && step > resumeStep);
        } catch {
          return true; // not ours to judge: kept as it was
        }
      });
      const tmp = `${path}.resume-tmp`;
      const fd = openSync(tmp, 'w');
      writeSync(fd, kept.map((l) => `${l}\n`).join(''));
      fsyncSync(fd);
      closeSync(fd);
      renameSync(tmp, path);
    }
    return new StepLogFile(openSync(path, 'a'), path);
  }

  write(record: object): void {
    if (this.fd === null) return;
    try {
      writeSync(this.fd, `${JSON.stringify(record)}\n`);
    } catch (e) {
      // A full disk or a vanished mount mid-run: say which file, and what to do.
      throw new OutputWriteError(`train: --log: ${describeFsError(e, this.path, 'append to the log')}`);
    }
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

/** A data path of trainer_state.json as a path to open: relative ones are relative to the checkpoint folder. */
export function checkpointDataPath(checkpointDir: string, p: string): string {
  return isAbsolute(p) ? p : resolve(checkpointDir, p);
}

/** The --out a resumed run writes to when none is given: the folder holding the checkpoint. */
export function defaultResumeOut(checkpointDir: string): string {
  return dirname(resolve(checkpointDir));
}

const same = (a: number, b: number) => a === b || Math.abs(a - b) <= 1e-12 * Math.max(Math.abs(a), Math.abs(b));

/**
 * Refuses run flags given with --resume that disagree with the checkpoint's settings, naming
 * each difference. Flags left out take the checkpoint's values.
 */
export function checkResumeFlags(a: Args, st: TrainerStateJson, config: GPT2Config): void {
  const s = st.settings;
  const diffs: string[] = [];
  const num = (flag: string, saved: number | undefined, label = flag.replace(/-/g, '_')) => {
    if (!a.given(flag)) return;
    const v = a.num(flag);
    if (saved === undefined || !same(v, saved)) diffs.push(`--${flag} ${v} (the checkpoint has ${label} ${saved ?? 'off'})`);
  };
  const str = (flag: string, given: string, saved: string | undefined, label: string) => {
    if (a.given(flag) && given !== saved) diffs.push(`--${flag} ${given} (the checkpoint has ${label} ${saved ?? 'off'})`);
  };
  num('batch', s.batch);
  num('seq', s.seq);
  num('grad-accum', s.grad_accum);
  num('lr', s.lr);
  str('schedule', a.str('schedule'), s.schedule.kind, 'schedule');
  num('warmup', s.schedule.warmup);
  num('min-lr-ratio', s.schedule.min_lr_ratio);
  num('stlr-cut-frac', s.schedule.cut_frac, 'cut_frac');
  num('stlr-ratio', s.schedule.ratio, 'ratio');
  num('lr-decay', s.lr_decay);
  num('unfreeze-start', s.unfreeze?.start, 'unfreeze.start');
  num('unfreeze-every', s.unfreeze?.every, 'unfreeze.every');
  num('weight-decay', s.weight_decay);
  num('beta1', s.beta1);
  num('beta2', s.beta2);
  num('eps', s.eps);
  num('grad-clip', s.grad_clip);
  num('seed', s.seed);
  str('order', a.str('order'), s.order, 'order');
  str('precision', a.str('precision'), s.precision, 'precision');
  if (a.given('dropout')) {
    const p = a.num('dropout');
    if (!(same(p, s.dropout.embd) && same(p, s.dropout.attn) && same(p, s.dropout.resid))) {
      diffs.push(`--dropout ${p} (the checkpoint has dropout embd ${s.dropout.embd}, attn ${s.dropout.attn}, resid ${s.dropout.resid})`);
    }
  }
  if (a.given('freeze')) {
    const got = [...parseGroupList(config, a.list('freeze').join(','))].sort((x, y) => x - y);
    if (got.join(',') !== s.frozen.join(',')) diffs.push(`--freeze ${a.list('freeze').join(',')} = groups [${got.join(', ')}] (the checkpoint froze groups [${s.frozen.join(', ')}])`);
  }
  num('lora-r', s.lora?.r, 'lora.r');
  num('lora-alpha', s.lora?.alpha, 'lora.alpha');
  num('lora-dropout', s.lora?.dropout, 'lora.dropout');
  if (a.given('lora-targets')) {
    const t = a.list('lora-targets').flatMap((x) => x.split(',')).map((x) => x.trim()).filter(Boolean);
    if (t.join(',') !== (s.lora?.targets ?? []).join(',')) diffs.push(`--lora-targets ${t.join(',')} (the checkpoint has lora.targets ${s.lora?.targets.join(',') ?? 'off'})`);
  }
  if (a.given('lora-rslora') && a.flag('lora-rslora') !== (s.lora?.rslora ?? false)) diffs.push(`--lora-rslora (the checkpoint has lora.rslora ${s.lora?.rslora ?? 'off'})`);
  // The kernels a resume runs are the recorded ones (variants.ts variantsFromRecord): --subgroups may only repeat them.
  if (a.given('subgroups') && a.flag('subgroups') !== (st.kernels?.subgroups ?? false)) diffs.push('--subgroups (the checkpoint has kernels.subgroups off)');
  if (diffs.length) {
    throw new ResumeConflictError(
      `train --resume: ${diffs.join('; ')}. A resumed run continues with the checkpoint's settings: leave these flags out ` +
        '(only --out, --log, --save-every, --save-total-limit, --eval-every and --steps may change), or start a new run from the checkpoint with --model.',
    );
  }
}

/** The run flags checkResumeFlags compares (for its test: every run option is either compared or free). */
export const RUN_FLAGS_CHECKED = [
  'batch', 'seq', 'grad-accum', 'lr', 'schedule', 'warmup', 'min-lr-ratio', 'stlr-cut-frac', 'stlr-ratio', 'lr-decay', 'unfreeze-start', 'unfreeze-every',
  'weight-decay', 'beta1', 'beta2', 'eps', 'grad-clip', 'seed', 'order', 'precision', 'dropout', 'freeze', 'lora-r', 'lora-alpha', 'lora-dropout', 'lora-targets', 'lora-rslora',
  'subgroups',
];

/** Options free to differ on resume (see FREE_ON_RESUME). */
export function freeOnResume(name: string): boolean {
  return FREE_ON_RESUME.has(name);
}
