// `train --resume`: a run continued from a checkpoint is bit-identical to one never interrupted
// (the same log lines, the same final weights bytes) for every feature that carries state from
// step to step; SIGINT in the middle of a child process ends in a checkpoint and exit 130, and
// resuming it reaches the same weights; a checkpoint loads as --model; and the refusals (another
// format version, changed data, a disagreeing flag) say what differs.
import { spawn } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadModelDir } from '../../src/io/node-model.ts';
import { runCli } from '../helpers/cli.ts';

const GOLD = new URL('../goldens/gpt2-tiny/', import.meta.url).pathname;
const ROOT = new URL('../../', import.meta.url).pathname;
const MODEL = join(GOLD, 'model');
const DATA = join(GOLD, 'train.bin');
const BASE = ['--model', MODEL, '--data', DATA, '--steps', '6', '--batch', '2', '--seq', '16', '--lr', '3e-3', '--save-every', '3'];

const cli = (args: string[]) => runCli(['train', ...args]);

afterEach(() => vi.restoreAllMocks());

const tmp = () => mkdtempSync(join(tmpdir(), 'cli-resume-'));
const lines = (p: string) => readFileSync(p, 'utf8').trim().split('\n');

interface Case {
  name: string;
  flags: string[];
  /** the file in --out whose bytes must match */
  weights: string;
}

const CASES: Case[] = [
  {
    name: 'shuffled windows, dropout, accumulation, gradual unfreezing, discriminative rates, warmup + cosine',
    flags: ['--order', 'shuffled', '--dropout', '0.1', '--grad-accum', '2', '--unfreeze-start', '2', '--unfreeze-every', '2', '--lr-decay', '1.3', '--schedule', 'cosine', '--warmup', '2', '--weight-decay', '0.01'],
    weights: 'model.safetensors',
  },
  {
    name: 'LoRA with dropout, slanted triangular schedule, evaluation every 2 steps',
    flags: ['--lora-r', '4', '--lora-alpha', '8', '--lora-dropout', '0.1', '--lora-targets', 'c_attn,c_fc', '--order', 'shuffled', '--dropout', '0.1', '--schedule', 'stlr', '--stlr-cut-frac', '0.3', '--eval-data', DATA, '--eval-every', '2'],
    weights: 'adapter_model.safetensors',
  },
];

describe('train --resume is bit-identical to an uninterrupted run', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      const dir = tmp();
      const whole = await cli([...BASE, ...c.flags, '--out', join(dir, 'a'), '--log', join(dir, 'a.jsonl')]);
      expect(whole.code, whole.errors).toBe(0);
      expect(readdirSync(join(dir, 'a')).filter((n) => n.startsWith('checkpoint-')).sort()).toEqual(['checkpoint-3', 'checkpoint-6']);
      // The interrupted run's log holds steps 1 … 5 (it was stopped after step 5, its last checkpoint is 3).
      const partial = lines(join(dir, 'a.jsonl')).filter((l) => JSON.parse(l).step <= 5);
      writeFileSync(join(dir, 'b.jsonl'), partial.map((l) => `${l}\n`).join(''));
      cpSync(join(dir, 'a', 'checkpoint-3'), join(dir, 'b', 'checkpoint-3'), { recursive: true });
      const resumed = await cli(['--resume', join(dir, 'b'), '--log', join(dir, 'b.jsonl')]);
      expect(resumed.code, resumed.errors).toBe(0);
      expect(resumed.printed).toMatch(/resuming from .*checkpoint-3/);
      // Lines past step 3 were dropped, and steps 4 … 6 logged again with the same numbers.
      expect(readFileSync(join(dir, 'b.jsonl'), 'utf8')).toBe(readFileSync(join(dir, 'a.jsonl'), 'utf8'));
      expect(readFileSync(join(dir, 'b', c.weights)).equals(readFileSync(join(dir, 'a', c.weights)))).toBe(true);
      for (const f of ['optimizer.safetensors', 'model.safetensors']) {
        expect(readFileSync(join(dir, 'b', 'checkpoint-6', f)).equals(readFileSync(join(dir, 'a', 'checkpoint-6', f))), f).toBe(true);
      }
      const sa = JSON.parse(readFileSync(join(dir, 'a', 'checkpoint-6', 'trainer_state.json'), 'utf8'));
      const sb = JSON.parse(readFileSync(join(dir, 'b', 'checkpoint-6', 'trainer_state.json'), 'utf8'));
      expect(sb.log_history).toEqual(sa.log_history);
      expect(sb.fingerprints).toEqual(sa.fingerprints);
      // The run trained something: the result differs from step 3's.
      const at3 = join(dir, 'a', 'checkpoint-3', c.weights === 'model.safetensors' ? 'model.safetensors' : 'adapter_model.safetensors');
      expect(readFileSync(join(dir, 'a', c.weights)).equals(readFileSync(at3))).toBe(false);
    });
  }

  it('--steps raised on resume continues to the new total; a finished run\'s last checkpoint resumes', async () => {
    const dir = tmp();
    expect((await cli([...BASE, '--out', join(dir, 'a')])).code).toBe(0);
    const more = await cli(['--resume', join(dir, 'a'), '--steps', '8']);
    expect(more.code, more.errors).toBe(0);
    expect(more.printed).toMatch(/step 8\/8/);
    expect(existsSync(join(dir, 'a', 'checkpoint-8'))).toBe(true);
    const st = JSON.parse(readFileSync(join(dir, 'a', 'checkpoint-8', 'trainer_state.json'), 'utf8'));
    expect(st.total_steps).toBe(8);
    expect(st.log_history.filter((l: { loss?: number }) => l.loss !== undefined).map((l: { step: number }) => l.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });
});

describe('a non-finite loss', () => {
  it('stops the run naming the step and leaves a checkpoint of the last good step', async () => {
    const dir = tmp();
    // An absurd rate without clipping blows the weights up within a few steps.
    const r = await cli(['--model', MODEL, '--data', DATA, '--steps', '30', '--batch', '2', '--seq', '16', '--lr', '1e30', '--grad-clip', '0', '--save-every', '0',
      '--out', join(dir, 'a'), '--log', join(dir, 'a.jsonl')]);
    expect(r.code).toBe(1);
    const m = /error: Step (\d+): the loss or gradient became .* The last good step is saved in (\S+)\.$/.exec(r.errors);
    expect(m, r.errors).not.toBeNull();
    const bad = Number(m![1]);
    expect(bad).toBeGreaterThan(1);
    expect(m![2]).toBe(join(dir, 'a', `checkpoint-${bad - 1}`));
    const st = JSON.parse(readFileSync(join(m![2], 'trainer_state.json'), 'utf8'));
    expect(st.step).toBe(bad - 1);
    expect(lines(join(dir, 'a.jsonl')).map((l) => JSON.parse(l).step)).toEqual(Array.from({ length: bad - 1 }, (_, i) => i + 1));
    // No final model was written over --out: only the checkpoint.
    expect(readdirSync(join(dir, 'a'))).toEqual([`checkpoint-${bad - 1}`]);
  });
});

describe('a checkpoint is a model folder', () => {
  it('loads as --model and with the model loader', async () => {
    const dir = tmp();
    expect((await cli([...BASE, '--out', join(dir, 'a')])).code).toBe(0);
    const ck = await loadModelDir(join(dir, 'a', 'checkpoint-6'));
    const fin = await loadModelDir(join(dir, 'a'));
    for (const [k, v] of fin.params) expect(Buffer.from(ck.params.get(k)!.buffer).equals(Buffer.from(v.buffer)), k).toBe(true);
    const again = await cli(['--model', join(dir, 'a', 'checkpoint-3'), '--data', DATA, '--steps', '1', '--batch', '2', '--seq', '16', '--out', join(dir, 'c')]);
    expect(again.code, again.errors).toBe(0);
  });
});

describe('train --resume refusals', () => {
  async function checkpoint(): Promise<string> {
    const dir = tmp();
    expect((await cli([...BASE, '--out', join(dir, 'a')])).code).toBe(0);
    return join(dir, 'a', 'checkpoint-3');
  }

  it('a fresh run into an --out holding an earlier run\'s checkpoints', async () => {
    const ck = await checkpoint();
    const outDir = join(ck, '..');
    const before = readdirSync(outDir).sort();
    const r = await cli([...BASE, '--out', outDir]);
    expect(r.code).toBe(2);
    expect(r.errors).toMatch(/--out .* already holds checkpoint-3, checkpoint-6 of an earlier run\. Continue that run with --resume/);
    expect(readdirSync(outDir).sort()).toEqual(before);
  });

  it('another format version', async () => {
    const ck = await checkpoint();
    const p = join(ck, 'trainer_state.json');
    writeFileSync(p, readFileSync(p, 'utf8').replace('"format_version": 1', '"format_version": 2'));
    const r = await cli(['--resume', ck]);
    expect(r.code).toBe(1);
    expect(r.errors).toMatch(/trainer_state\.json: format_version is 2; this version of the studio reads format_version 1/);
  });

  it('changed training data', async () => {
    const ck = await checkpoint();
    const other = join(tmp(), 'train.bin');
    copyFileSync(DATA, other);
    const b = readFileSync(other);
    b[100] ^= 1; // one token id changes
    writeFileSync(other, b);
    const r = await cli(['--resume', ck, '--data', other]);
    expect(r.code).toBe(1);
    expect(r.errors).toMatch(/the training data .*train\.bin is not the data the checkpoint was trained on \(its token fingerprint sha256:[0-9a-f]{64} differs/);
  });

  it('a disagreeing flag, and a total below the checkpoint\'s step', async () => {
    const ck = await checkpoint();
    const r = await cli(['--resume', ck, '--lr', '1e-3', '--batch', '4']);
    expect(r.code).toBe(2);
    expect(r.errors).toMatch(/--batch 4 \(the checkpoint has batch 2\); --lr 0\.001 \(the checkpoint has lr 0\.003\)/);
    const s = await cli(['--resume', ck, '--steps', '2']);
    expect(s.code).toBe(2);
    expect(s.errors).toMatch(/--steps 2 is below the checkpoint's step 3/);
    // Flags that agree are accepted.
    expect((await cli(['--resume', ck, '--lr', '3e-3', '--batch', '2', '--out', join(tmp(), 'x')])).code).toBe(0);
  });
});

describe('SIGINT in the middle', () => {
  it('finishes the step in flight, writes checkpoint-<step>, exits 130; a second Ctrl-C within 2 s is the same one; resuming reaches the uninterrupted weights', async () => {
    const dir = tmp();
    const steps = 40;
    const flags = ['--model', MODEL, '--data', DATA, '--steps', String(steps), '--batch', '2', '--seq', '16', '--lr', '3e-3', '--order', 'shuffled', '--dropout', '0.1', '--save-every', '0'];
    const log = join(dir, 'b.jsonl');
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'train', ...flags, '--out', join(dir, 'b'), '--log', log], { cwd: ROOT, env: process.env });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.on('data', () => {});
    const k = 5;
    // Signal after step k's log line (written and flushed as its metrics arrive).
    await new Promise<void>((res, rej) => {
      const t = setInterval(() => {
        if (existsSync(log) && lines(log).some((l) => l && JSON.parse(l).step >= k)) {
          clearInterval(t);
          child.kill('SIGINT');
          setTimeout(() => child.kill('SIGINT'), 100); // the same Ctrl-C reaching the process again
          res();
        }
      }, 20);
      child.on('exit', () => {
        clearInterval(t);
        rej(new Error(`the child exited before step ${k}: ${stderr}`));
      });
    });
    const code = await new Promise<number | null>((res) => child.on('exit', (c) => res(c)));
    expect(code, stderr).toBe(130);
    const m = /stopped after step (\d+) of 40\. Checkpoint: (\S+)\. Resume with: npm run cli -- train --resume (\S+)/.exec(stderr);
    expect(m, stderr).not.toBeNull();
    const stoppedAt = Number(m![1]);
    expect(stoppedAt).toBeGreaterThanOrEqual(k);
    expect(stoppedAt).toBeLessThan(steps);
    expect(m![2]).toBe(join(dir, 'b', `checkpoint-${stoppedAt}`));
    expect(readdirSync(join(dir, 'b')).filter((n) => n.startsWith('.'))).toEqual([]); // no temporary left
    expect(lines(log).map((l) => JSON.parse(l).step)).toEqual(Array.from({ length: stoppedAt }, (_, i) => i + 1));

    const resumed = await cli(['--resume', m![3], '--log', log]);
    expect(resumed.code, resumed.errors).toBe(0);
    const whole = await cli([...flags, '--out', join(dir, 'a'), '--log', join(dir, 'a.jsonl')]);
    expect(whole.code, whole.errors).toBe(0);
    expect(readFileSync(join(dir, 'b', 'model.safetensors')).equals(readFileSync(join(dir, 'a', 'model.safetensors')))).toBe(true);
    expect(readFileSync(log, 'utf8')).toBe(readFileSync(join(dir, 'a.jsonl'), 'utf8'));
  }, 120_000);
});
