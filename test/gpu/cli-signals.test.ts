// `train` stopped by signals, in a child process as a user's shell or a job scheduler stops it:
// SIGTERM finishes the step in flight, writes checkpoint-<last finished step>/ whole, says how to
// resume and exits 143; a second SIGTERM within 2 s is the same stop (the checkpoint is still
// whole); a second one later than 2 s exits at once, and the checkpoints written before stay
// intact and loadable, with no temporary folder left behind.
//
// The last two need a stop that lasts longer than 2 s, so they train a model of GPT-2's width and
// vocabulary with 2 blocks (53.6M parameters, a 615 MiB checkpoint): writing its checkpoint takes
// seconds on a software adapter. Its weights are filled by a cheap generator (the values do not
// matter here, only that they are finite and small).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.ts';
import { GPT2_SMALL, type GPT2Config } from '../../src/engine/model/config.ts';
import { paramSpecs, type HostParams } from '../../src/engine/model/params.ts';
import { loadModelDir, nodeDirFiles, saveModelDir } from '../../src/io/node-model.ts';
import { readRunCheckpoint } from '../../src/io/run-checkpoint.ts';

const GOLD = new URL('../goldens/gpt2-tiny/', import.meta.url).pathname;
const ROOT = new URL('../../', import.meta.url).pathname;
const TINY = ['--model', join(GOLD, 'model'), '--data', join(GOLD, 'train.bin'), '--batch', '2', '--seq', '16', '--lr', '3e-3', '--order', 'shuffled', '--dropout', '0.1'];

const tmp = () => mkdtempSync(join(tmpdir(), 'cli-signals-'));
const logSteps = (p: string): number[] => (existsSync(p) ? readFileSync(p, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l).step) : []);

interface Child {
  proc: ChildProcess;
  stderr: () => string;
  /** stdout and stderr as they came */
  said: () => string;
  exit: Promise<number | null>;
}

function spawnTrain(args: string[]): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'train', ...args], { cwd: ROOT, env: process.env });
  let err = '';
  let all = '';
  proc.stderr!.on('data', (d) => ((err += d), (all += d)));
  proc.stdout!.on('data', (d) => (all += d));
  const exit = new Promise<number | null>((res) => proc.on('exit', (c) => res(c)));
  return { proc, stderr: () => err, said: () => all, exit };
}

/** Resolves once `ready()` holds (polled); rejects if the child exits first. */
async function until(c: Child, ready: () => boolean, what: string): Promise<void> {
  let exited = false;
  void c.exit.then(() => (exited = true));
  for (;;) {
    if (ready()) return;
    if (exited) throw new Error(`the child exited before ${what}: ${c.stderr()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A whole checkpoint: every file its trainer_state names parses, the step matches the folder name, and it loads as a model folder. */
async function expectWholeCheckpoint(path: string, step: number): Promise<void> {
  const ck = await readRunCheckpoint(await nodeDirFiles(path));
  expect(ck.state.step).toBe(step);
  expect(ck.optimizer.tensors.size).toBeGreaterThan(0);
  const model = await loadModelDir(path);
  for (const [name, t] of model.params) expect(t.every(Number.isFinite), name).toBe(true);
}

const temporaries = (dir: string) => readdirSync(dir).filter((n) => n.startsWith('.'));

describe('SIGTERM', () => {
  it('finishes the step in flight, writes checkpoint-<step> whole, says how to resume, exits 143', async () => {
    const dir = tmp();
    const log = join(dir, 'run.jsonl');
    const c = spawnTrain([...TINY, '--steps', '60', '--save-every', '0', '--out', join(dir, 'out'), '--log', log]);
    await until(c, () => logSteps(log).some((s) => s >= 4), 'step 4');
    c.proc.kill('SIGTERM');
    const code = await c.exit;
    expect(code, c.stderr()).toBe(143);
    const m = /SIGTERM: stopped after step (\d+) of 60\. Checkpoint: (\S+)\. Resume with: npm run cli -- train --resume (\S+)/.exec(c.stderr());
    expect(m, c.stderr()).not.toBeNull();
    const stopped = Number(m![1]);
    expect(stopped).toBeGreaterThanOrEqual(4);
    expect(stopped).toBeLessThan(60);
    expect(m![2]).toBe(join(dir, 'out', `checkpoint-${stopped}`));
    expect(m![3]).toBe(m![2]);
    await expectWholeCheckpoint(m![2], stopped);
    expect(temporaries(join(dir, 'out'))).toEqual([]);
    // The log holds exactly the finished steps: the one in flight was finished, nothing after it.
    expect(logSteps(log)).toEqual(Array.from({ length: stopped }, (_, i) => i + 1));
    // The sentence's command works: the run continues from there.
    const errors: string[] = [];
    const spy = vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void errors.push(a.join(' ')));
    try {
      expect(await main(['train', '--resume', m![3], '--steps', String(stopped + 1)], () => {}), errors.join('\n')).toBe(0);
    } finally {
      spy.mockRestore();
    }
    await expectWholeCheckpoint(join(dir, 'out', `checkpoint-${stopped + 1}`), stopped + 1);
  }, 120_000);
});

describe('signals while a large checkpoint is being written', () => {
  let model: string;
  beforeAll(async () => {
    model = join(tmp(), 'model');
    const config: GPT2Config = { ...GPT2_SMALL, nLayer: 2 };
    // A linear congruential generator: fast enough for 53.6M values, deterministic.
    let x = 12345;
    const params: HostParams = new Map();
    for (const s of paramSpecs(config)) {
      const t = new Float32Array(s.numel); // s.shape
      if (/ln_[12f]\.weight$/.test(s.name)) t.fill(1);
      else if (!s.name.endsWith('.bias')) {
        for (let i = 0; i < t.length; i++) {
          x = (Math.imul(x, 1103515245) + 12345) >>> 0;
          t[i] = (x / 2 ** 32 - 0.5) * 0.04;
        }
      }
      params.set(s.name, t);
    }
    await saveModelDir(model, config, params);
    const tokens = new Uint16Array(4000);
    for (let i = 0; i < tokens.length; i++) tokens[i] = (i * 7919) % config.vocabSize;
    writeFileSync(join(model, 'train.bin'), tokens);
  }, 120_000);

  const flags = () => ['--model', model, '--data', join(model, 'train.bin'), '--steps', '40', '--batch', '1', '--seq', '16', '--lr', '1e-4'];

  it('two SIGTERMs within 2 s are one stop: the checkpoint of the last finished step is still whole', async () => {
    const dir = tmp();
    const log = join(dir, 'run.jsonl');
    const c = spawnTrain([...flags(), '--save-every', '0', '--out', join(dir, 'out'), '--log', log]);
    await until(c, () => logSteps(log).length >= 2, 'step 2');
    c.proc.kill('SIGTERM');
    const first = Date.now();
    // The repeat lands while the step in flight finishes or the checkpoint is written.
    await new Promise((r) => setTimeout(r, 1000));
    c.proc.kill('SIGTERM');
    const code = await c.exit;
    expect(code, c.stderr()).toBe(143);
    // The stop outlasted the repeat, so the repeat reached a process still stopping.
    expect(Date.now() - first).toBeGreaterThan(1000);
    expect(c.said()).not.toMatch(/again: exiting now/);
    const m = /SIGTERM: stopped after step (\d+) of 40\. Checkpoint: (\S+)\./.exec(c.stderr());
    expect(m, c.stderr()).not.toBeNull();
    const stopped = Number(m![1]);
    expect(m![2]).toBe(join(dir, 'out', `checkpoint-${stopped}`));
    await expectWholeCheckpoint(m![2], stopped);
    expect(temporaries(join(dir, 'out'))).toEqual([]);
    expect(logSteps(log)).toEqual(Array.from({ length: stopped }, (_, i) => i + 1));
  }, 180_000);

  it('a second SIGTERM after 2 s exits at once; earlier checkpoints stay whole and loadable, no temporary is left', async () => {
    const dir = tmp();
    const out = join(dir, 'out');
    const log = join(dir, 'run.jsonl');
    const c = spawnTrain([...flags(), '--save-every', '2', '--out', out, '--log', log]);
    await until(c, () => existsSync(join(out, 'checkpoint-2')) && logSteps(log).length >= 3, 'checkpoint-2 and step 3');
    c.proc.kill('SIGTERM');
    // Past the grace period, while the step in flight finishes or its checkpoint is written.
    await new Promise((r) => setTimeout(r, 2300));
    let exitedEarly = false;
    void c.exit.then(() => (exitedEarly = true));
    await new Promise((r) => setImmediate(r));
    expect(exitedEarly, `the stop ended within 2.3 s, too soon to test a late signal: ${c.stderr()}`).toBe(false);
    const second = Date.now();
    c.proc.kill('SIGTERM');
    const code = await c.exit;
    const took = Date.now() - second;
    expect(code, c.said()).toBe(143);
    const m = /SIGTERM again: exiting now; the checkpoints written so far are intact\. Resume with: npm run cli -- train --resume (\S+)/.exec(c.said());
    expect(m, c.said()).not.toBeNull();
    // At once: the stop in progress (the step in flight, its checkpoint) was not finished, and
    // the exit did not wait for it (seconds here; the bound allows for a loaded machine).
    expect(c.said()).not.toMatch(/stopped after step/);
    expect(took).toBeLessThan(10_000);
    expect(temporaries(out)).toEqual([]);
    const kept = readdirSync(out).filter((n) => n.startsWith('checkpoint-')).map((n) => Number(n.slice('checkpoint-'.length))).sort((a, b) => a - b);
    expect(kept[0]).toBe(2);
    for (const s of kept) await expectWholeCheckpoint(join(out, `checkpoint-${s}`), s);
    // The message names the newest whole checkpoint, and that one resumes.
    expect(m![1]).toBe(join(out, `checkpoint-${kept.at(-1)}`));
    const errors: string[] = [];
    const spy = vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void errors.push(a.join(' ')));
    try {
      const next = kept.at(-1)! + 1;
      expect(await main(['train', '--resume', m![1], '--steps', String(next), '--save-every', '0'], () => {}), errors.join('\n')).toBe(0);
      await expectWholeCheckpoint(join(out, `checkpoint-${next}`), next);
    } finally {
      spy.mockRestore();
    }
  }, 240_000);
});
