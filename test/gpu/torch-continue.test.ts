// Continue on a cluster, end to end: the studio's CLI trains and writes checkpoint-4, exports it
// with `export --format torch`, and the project's train.py continues it under torchrun with two
// processes (gloo, CPU) and with one; every step's loss must be within 1e-4 (relative) of the
// studio continuing the same checkpoint itself (`train --resume`), and the final weights within
// 1e-4 in at least 99.9 % of each tensor's elements. Then a checkpoint train.py wrote resumes in
// the studio and reaches the studio's own numbers. Full fine-tuning with shuffled windows, cosine
// warmup, frozen embeddings, discriminative rates and accumulation; then the same with LoRA.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { fractionOff, readLog, readTensors, trainPy, type LogLine } from '../helpers/torch-project.ts';
import { runCli } from '../helpers/cli.ts';

const GOLD = new URL('../goldens/gpt2-tiny/', import.meta.url).pathname;
const MODEL = join(GOLD, 'model');
const DATA = join(GOLD, 'train.bin');
const COMMON = [
  '--model', MODEL, '--data', DATA, '--steps', '8', '--batch', '4', '--seq', '16', '--lr', '3e-3', '--save-every', '4',
  '--order', 'shuffled', '--schedule', 'cosine', '--warmup', '2', '--lr-decay', '1.3', '--dropout', '0', '--weight-decay', '0.01', '--seed', '7',
];

async function cli(args: string[]): Promise<string> {
  const r = await runCli(args);
  if (r.code !== 0) throw new Error(`cli ${args.join(' ')} exited ${r.code}:\n${r.errors}\n${r.printed}`);
  return r.printed;
}

afterEach(() => vi.restoreAllMocks());

const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(1e-12, Math.abs(b));

function expectSameSteps(got: LogLine[], want: LogLine[], what: string): void {
  expect(got.map((l) => l.step), what).toEqual(want.map((l) => l.step));
  got.forEach((l, i) => {
    expect(rel(l.loss, want[i].loss), `${what}: loss at step ${l.step}`).toBeLessThan(1e-4);
    expect(rel(l.grad_norm, want[i].grad_norm), `${what}: grad_norm at step ${l.step}`).toBeLessThan(1e-4);
    expect(rel(l.lr, want[i].lr), `${what}: lr at step ${l.step}`).toBeLessThan(1e-12);
  });
}

function expectSameTensors(got: Map<string, Float32Array>, want: Map<string, Float32Array>, what: string): void {
  expect([...got.keys()].sort(), what).toEqual([...want.keys()].sort());
  for (const [k, t] of want) expect(fractionOff(got.get(k)!, t), `${what}: ${k}`).toBeLessThanOrEqual(0.001);
}

const CASES = [
  { name: 'full fine-tuning: shuffled windows, cosine warmup, frozen embeddings, discriminative rates, accumulation',
    flags: ['--freeze', 'embeddings', '--grad-accum', '2'], weights: 'model.safetensors' },
  { name: 'LoRA (c_attn, c_fc) with shuffled windows, cosine warmup and discriminative rates',
    flags: ['--lora-r', '4', '--lora-alpha', '8', '--lora-targets', 'c_attn,c_fc'], weights: 'adapter_model.safetensors' },
];

describe('a studio checkpoint continued by the exported PyTorch project', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'torch-continue-'));
      // the studio: a run that saves checkpoint-4, and the studio continuing checkpoint-4 itself
      await cli(['train', ...COMMON, ...c.flags, '--out', join(dir, 'studio'), '--log', join(dir, 'studio.log')]);
      const ck4 = join(dir, 'studio', 'checkpoint-4');
      await cli(['train', '--resume', ck4, '--out', join(dir, 'studio-resumed'), '--log', join(dir, 'studio-resumed.log')]);
      const studio = readLog(join(dir, 'studio-resumed.log'));
      expect(studio.map((l) => l.step)).toEqual([5, 6, 7, 8]);
      const studioWeights = readTensors(join(dir, 'studio-resumed', 'checkpoint-8', c.weights));

      // the PyTorch project, under torchrun with two processes and with one
      const proj = join(dir, 'project');
      await cli(['export', '--model', ck4, '--format', 'torch', '--out', proj]);
      const two = trainPy(['--out', join(dir, 'torch-2')], 2, {}, join(proj, 'train.py'));
      expect(two.status, two.stderr).toBe(0);
      const one = trainPy(['--out', join(dir, 'torch-1'), '--save-every', '2'], 1, {}, join(proj, 'train.py'));
      expect(one.status, one.stderr).toBe(0);
      const torch2 = readLog(join(dir, 'torch-2', 'log.jsonl'));
      const torch1 = readLog(join(dir, 'torch-1', 'log.jsonl'));
      console.log(`${c.name}\nstep  studio loss          torchrun (2 processes) loss\n` +
        studio.map((l, i) => `${String(l.step).padEnd(5)} ${l.loss.toFixed(9).padEnd(20)} ${torch2[i]?.loss.toFixed(9)}`).join('\n'));
      expectSameSteps(torch2, studio, 'torchrun ×2 vs studio');
      expectSameSteps(torch1, torch2, 'one process vs two');
      expectSameTensors(readTensors(join(dir, 'torch-2', 'checkpoint-8', c.weights)), studioWeights, 'torchrun ×2 vs studio');
      expectSameTensors(readTensors(join(dir, 'torch-1', 'checkpoint-8', c.weights)), readTensors(join(dir, 'torch-2', 'checkpoint-8', c.weights)), 'one vs two');

      // back into the studio: train.py's checkpoint-6 resumes in the CLI and reaches the studio's numbers
      const t6 = join(dir, 'torch-1', 'checkpoint-6');
      expect(JSON.parse(readFileSync(join(t6, 'trainer_state.json'), 'utf8'))).toMatchObject({ writer: 'torch', step: 6, format_version: 1 });
      await cli(['train', '--resume', t6, '--out', join(dir, 'back'), '--log', join(dir, 'back.log')]);
      expectSameSteps(readLog(join(dir, 'back.log')), studio.slice(2), 'studio resuming train.py\'s checkpoint vs studio');
      expectSameTensors(readTensors(join(dir, 'back', 'checkpoint-8', c.weights)), studioWeights, 'studio resuming train.py\'s checkpoint vs studio');
    });
  }
});
