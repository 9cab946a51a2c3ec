// The generate and eval commands' bad-input paths: each ends with one clear line on stderr and a
// non-zero exit code (2 for usage errors), before any GPU work. Table-driven, like
// train-errors.test.ts.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../../src/cli/main.ts';
import { writeTinyModelDir } from '../../helpers/tiny-model.ts';

const GOLD = new URL('../../goldens/gpt2-tiny/', import.meta.url).pathname;
let dir: string;
let tiny: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'cli-gen-eval-errors-'));
  tiny = writeTinyModelDir(join(dir, 'tiny'));
  writeFileSync(join(dir, 'short.bin'), new Uint8Array(new Uint16Array([1, 2, 3, 4]).buffer));
  writeFileSync(join(dir, 'twenty.bin'), new Uint8Array(Uint16Array.from({ length: 20 }, (_, i) => i).buffer));
});

afterEach(() => vi.restoreAllMocks());

async function runCli(args: string[]): Promise<{ code: number; err: string }> {
  const errs: string[] = [];
  vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void errs.push(a.join(' ')));
  const code = await main(args, () => {});
  return { code, err: errs.join('\n') };
}

const gen = (...extra: string[]) => ['generate', '--model', tiny, '--prompt', 'Once upon a time', ...extra];
const ev = (...extra: string[]) => ['eval', '--model', tiny, '--data', join(GOLD, 'train.bin'), '--seq', '16', ...extra];

const cases: Array<{ name: string; args: () => string[]; expect: RegExp; code?: number }> = [
  { name: 'generate: missing model folder', args: () => ['generate', '--model', join(dir, 'nope'), '--prompt', 'x'], expect: /nope/ },
  { name: 'generate: no new tokens', args: () => gen('--max-new-tokens', '0'), expect: /--max-new-tokens must be at least 1/, code: 2 },
  { name: 'generate: negative temperature', args: () => gen('--temperature', '-0.5'), expect: /--temperature must be ≥ 0 \(0 is greedy\)/, code: 2 },
  { name: 'generate: top-p 0', args: () => gen('--top-p', '0'), expect: /--top-p must be in \(0, 1\]/, code: 2 },
  { name: 'generate: top-p above 1', args: () => gen('--top-p', '1.5'), expect: /--top-p must be in \(0, 1\]/, code: 2 },
  { name: 'generate: negative top-k', args: () => gen('--top-k', '-1'), expect: /--top-k must be ≥ 0/, code: 2 },
  { name: 'generate: negative seed', args: () => gen('--seed', '-3'), expect: /--seed must be a whole number ≥ 0/, code: 2 },
  {
    name: 'generate: prompt + new tokens beyond n_positions',
    args: () => gen('--max-new-tokens', '60'),
    expect: /the prompt is 13 tokens; with --max-new-tokens 60 that is 73, more than the model's n_positions 64\. Use --max-new-tokens 51 or less/,
    code: 2,
  },
  {
    name: "generate: a tokenizer that does not fit the model's vocabulary",
    args: () => ['generate', '--model', join(GOLD, 'model'), '--prompt', 'Hello world'],
    expect: /encodes to token \d+, outside the model's vocabulary of 311; the tokenizer \(default\) does not belong to this model/,
    code: 2,
  },
  { name: 'generate: unknown option', args: () => gen('--max-tokens', '5'), expect: /unknown option --max-tokens/, code: 2 },
  { name: 'eval: missing data file', args: () => ['eval', '--model', tiny, '--data', join(dir, 'missing.bin')], expect: /missing\.bin.*no such file/ },
  { name: 'eval: missing --data', args: () => ['eval', '--model', tiny], expect: /--data is required/, code: 2 },
  { name: 'eval: seq above n_positions', args: () => ev('--seq', '65'), expect: /--seq 65 exceeds the model's n_positions 64/, code: 2 },
  { name: 'eval: data shorter than one window', args: () => ['eval', '--model', tiny, '--data', join(dir, 'short.bin'), '--seq', '8'], expect: /4 tokens, shorter than one window of --seq 8/, code: 2 },
  {
    name: 'eval: BLEU prompt + continuation beyond n_positions',
    args: () => ev('--bleu-prompt-tokens', '40', '--bleu-continuation-tokens', '30'),
    expect: /--bleu-prompt-tokens 40 \+ --bleu-continuation-tokens 30 = 70 exceeds the model's n_positions 64/,
    code: 2,
  },
  {
    name: 'eval: data shorter than one BLEU span',
    args: () => ['eval', '--model', tiny, '--data', join(dir, 'twenty.bin'), '--seq', '8'],
    expect: /20 tokens, shorter than one BLEU prompt and continuation \(64\).*--bleu-prompts 0/,
    code: 2,
  },
  { name: 'eval: negative BLEU prompts', args: () => ev('--bleu-prompts', '-1'), expect: /--bleu-prompts must be ≥ 0/, code: 2 },
  { name: 'eval: unknown smoothing', args: () => ev('--smoothing', 'method2'), expect: /--smoothing must be one of none, method1; got 'method2'/, code: 2 },
  { name: 'eval: batch 0', args: () => ev('--batch', '0'), expect: /--batch must be at least 1/, code: 2 },
];

describe('generate and eval: bad input gets one clear line and a non-zero exit', () => {
  for (const c of cases) {
    it(c.name, async () => {
      const [cmd, ...rest] = c.args();
      const r = await runCli([cmd, ...rest]);
      expect(r.err).toMatch(/^error: /);
      expect(r.err).toMatch(c.expect);
      expect(r.code).toBe(c.code ?? 1);
      expect(r.err.split('\n')).toHaveLength(1);
      expect(r.err).not.toMatch(/\n\s+at /);
    });
  }

  it('--help lists every option (and eval explains what its windows score)', async () => {
    for (const [cmd, opts] of [
      ['generate', ['model', 'prompt', 'max-new-tokens', 'temperature', 'top-k', 'top-p', 'seed', 'ignore-eos']],
      ['eval', ['model', 'data', 'seq', 'batch', 'bleu-prompts', 'bleu-prompt-tokens', 'bleu-continuation-tokens', 'smoothing', 'bleu-samples']],
    ] as const) {
      const lines: string[] = [];
      expect(await main([cmd, '--help'], (l) => lines.push(l))).toBe(0);
      const text = lines.join('\n');
      for (const o of opts) expect(text).toContain(`--${o} `);
      if (cmd === 'eval') expect(text).toMatch(/labels=input_ids scores seq-1 positions of a seq-token\s+block/);
    }
    const usage: string[] = [];
    await main(['--help'], (l) => usage.push(l));
    expect(usage.join('\n')).toMatch(/generate\s+Continue a prompt/);
    expect(usage.join('\n')).toMatch(/eval\s+Evaluate a GPT-2 model/);
  });

  it('as a process: exit code 2 and no stack trace', () => {
    const r = spawnSync('npx', ['tsx', 'src/cli/main.ts', 'eval', '--model', tiny, '--data', join(GOLD, 'train.bin'), '--seq', '99'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^error: eval: --seq 99 exceeds/);
  });
});
