// The train command's bad-input paths: each ends with one clear line on stderr and a non-zero
// exit code, before any GPU work. Table-driven.
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../../src/cli/main.ts';
import { writeSafetensors, readSafetensors } from '../../../src/io/safetensors.ts';

const GOLD = new URL('../../goldens/gpt2-tiny/', import.meta.url).pathname;
let dir: string;

function variant(name: string, edit: (cfg: Record<string, unknown>) => void, tensors?: (t: ReturnType<typeof readSafetensors>) => void): string {
  const d = join(dir, name);
  mkdirSync(d, { recursive: true });
  const cfg = JSON.parse(readFileSync(join(GOLD, 'model/config.json'), 'utf8'));
  edit(cfg);
  writeFileSync(join(d, 'config.json'), JSON.stringify(cfg));
  if (tensors) {
    const t = readSafetensors(new Uint8Array(readFileSync(join(GOLD, 'model/model.safetensors'))));
    tensors(t);
    writeFileSync(join(d, 'model.safetensors'), writeSafetensors([...t].map(([n, v]) => ({ name: n, shape: v.shape, data: v.data }))));
  } else {
    copyFileSync(join(GOLD, 'model/model.safetensors'), join(d, 'model.safetensors'));
  }
  return d;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'cli-errors-'));
  writeFileSync(join(dir, 'short.bin'), new Uint8Array(new Uint16Array([1, 2, 3, 4]).buffer));
});

afterEach(() => vi.restoreAllMocks());

async function runCli(args: string[]): Promise<{ code: number; err: string }> {
  const errs: string[] = [];
  vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void errs.push(a.join(' ')));
  const code = await main(args, () => {});
  return { code, err: errs.join('\n') };
}

const base = () => ['--model', join(GOLD, 'model'), '--data', join(GOLD, 'train.bin'), '--out', join(dir, 'out'), '--steps', '1', '--batch', '1', '--seq', '8'];

const cases: Array<{ name: string; args: () => string[]; expect: RegExp; code?: number }> = [
  { name: 'missing model folder', args: () => ['--model', join(dir, 'nope'), ...base().slice(2)], expect: /nope/ },
  { name: 'missing data file', args: () => [...base().slice(0, 2), '--data', join(dir, 'missing.bin'), ...base().slice(4)], expect: /missing\.bin.*no such file/ },
  { name: 'T above n_positions', args: () => [...base(), '--seq', '65'], expect: /--seq 65 exceeds the model's n_positions 64/, code: 2 },
  { name: 'data shorter than one window', args: () => [...base().slice(0, 2), '--data', join(dir, 'short.bin'), ...base().slice(4)], expect: /4 tokens, shorter than one window/, code: 2 },
  { name: 'unknown freeze name', args: () => [...base(), '--freeze', 'embeddings,7'], expect: /Unknown layer '7'.*0 … 1/ },
  { name: 'unknown option', args: () => [...base(), '--learning-rate', '1'], expect: /unknown option --learning-rate/, code: 2 },
  { name: 'non-numeric value', args: () => [...base(), '--lr', 'fast'], expect: /--lr must be a number/, code: 2 },
  { name: 'missing required option', args: () => base().slice(0, 4), expect: /--out is required/, code: 2 },
  { name: 'unsupported config', args: () => ['--model', variant('scaled', (c) => { c.scale_attn_by_inverse_layer_idx = true; }), ...base().slice(2)], expect: /scale_attn_by_inverse_layer_idx.*not supported/ },
  {
    name: 'tensor shape that does not match the config',
    args: () => ['--model', variant('wide', (c) => { c.n_embd = 64; c.n_head = 4; }), ...base().slice(2)],
    expect: /'transformer.wte.weight' in model.safetensors has shape \[311, 48\] but the config needs \[311, 64\]/,
  },
];

describe('train: bad input gets one clear line and a non-zero exit', () => {
  for (const c of cases) {
    it(c.name, async () => {
      const r = await runCli(['train', ...c.args()]);
      expect(r.code).toBe(c.code ?? 1);
      expect(r.err).toMatch(/^error: /);
      expect(r.err).toMatch(c.expect);
      expect(r.err.split('\n')).toHaveLength(1);
      expect(r.err).not.toMatch(/\n\s+at /);
    });
  }

  it('--help lists every option', async () => {
    const lines: string[] = [];
    expect(await main(['train', '--help'], (l) => lines.push(l))).toBe(0);
    const text = lines.join('\n');
    for (const o of ['steps', 'batch', 'seq', 'lr', 'weight-decay', 'beta1', 'beta2', 'eps', 'grad-clip', 'dropout', 'seed', 'freeze', 'order', 'log', 'model', 'data', 'out']) {
      expect(text).toContain(`--${o} `);
    }
  });

  it('as a process: exit code 1 and no stack trace', () => {
    const r = spawnSync('npx', ['tsx', 'src/cli/main.ts', 'train', '--model', join(dir, 'nope'), '--data', 'x', '--out', 'y'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^error: /);
  });
});
