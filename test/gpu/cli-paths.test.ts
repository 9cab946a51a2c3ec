// train's output rules end to end on a real adapter: --log inside an --out that does not exist
// yet; a new run into an --out holding an earlier run's checkpoints refused with nothing touched;
// once those are gone, a second run into the same --out (an output of ours) replacing the export
// while the log and a file of the user's stay as they were; and a LoRA export into an earlier
// output. The refusals themselves are in test/unit/cli/paths.test.ts.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.ts';
import { loadModelDir } from '../../src/io/node-model.ts';

const GOLD = new URL('../goldens/gpt2-tiny/', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'cli-paths-gpu-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const train = (out: string, extra: string[]) => [
  'train', '--model', join(GOLD, 'model'), '--data', join(GOLD, 'train.bin'), '--out', out, '--steps', '2', '--batch', '1', '--seq', '16', '--dropout', '0', ...extra,
];

describe('train writes only where it may', () => {
  it('--log inside a new --out, then a second run into that output keeps what is not the export', async () => {
    const out = join(dir, 'run');
    const log = join(out, 'logs', 'train.jsonl');
    const printed: string[] = [];
    expect(await main(train(out, ['--log', log]), (l) => printed.push(l))).toBe(0);
    expect(readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l).step)).toEqual([1, 2]);
    const first = await loadModelDir(out);
    expect(readdirSync(out).filter((n) => n.startsWith('.'))).toEqual([]);

    // Things of the user's and of the earlier run in the folder stay as they are.
    writeFileSync(join(out, 'notes.txt'), 'mine');
    const notesTime = statSync(join(out, 'notes.txt')).mtimeMs;
    const logBefore = readFileSync(log, 'utf8');
    const weightsBefore = statSync(join(out, 'model.safetensors')).mtimeMs;
    const secondRun = ['--lr', '1e-2', '--log', join(out, 'second.jsonl')];
    // The first run's checkpoint-2 is there: a new run would mix its checkpoints with it.
    const errors: string[] = [];
    const spy = vi.spyOn(console, 'error').mockImplementation((m: unknown) => void errors.push(String(m)));
    try {
      expect(await main(train(out, secondRun), () => {})).toBe(2);
    } finally {
      spy.mockRestore();
    }
    expect(errors.join('\n')).toContain('already holds checkpoint-2 of an earlier run');
    expect(statSync(join(out, 'model.safetensors')).mtimeMs).toBe(weightsBefore);
    expect(existsSync(join(out, 'second.jsonl'))).toBe(false);
    // The user sets the earlier checkpoints aside; the next run replaces the export only.
    rmSync(join(out, 'checkpoint-2'), { recursive: true });
    expect(await main(train(out, secondRun), () => {})).toBe(0);
    expect(readFileSync(join(out, 'notes.txt'), 'utf8')).toBe('mine');
    expect(statSync(join(out, 'notes.txt')).mtimeMs).toBe(notesTime);
    expect(readFileSync(log, 'utf8')).toBe(logBefore);
    expect(statSync(join(out, 'model.safetensors')).mtimeMs).not.toBe(weightsBefore);
    const second = await loadModelDir(out);
    const w = 'h.0.attn.c_attn.weight';
    expect(Buffer.from(second.params.get(w)!.buffer).equals(Buffer.from(first.params.get(w)!.buffer))).toBe(false);
    expect(readdirSync(out).filter((n) => n.startsWith('.'))).toEqual([]);
  });

  it('a LoRA export (merged + adapter) into an earlier output names the final paths', async () => {
    const out = join(dir, 'run');
    for (const n of readdirSync(out)) if (n.startsWith('checkpoint-')) rmSync(join(out, n), { recursive: true });
    const printed: string[] = [];
    expect(await main(train(out, ['--lora-r', '2', '--lora-export', 'both']), (l) => printed.push(l))).toBe(0);
    expect(printed.join('\n')).toContain(`saved ${out}/config.json`);
    expect(printed.join('\n')).toContain(`${out}/adapter/adapter_model.safetensors`);
    expect(printed.join('\n')).not.toMatch(/\.save\.tmp/);
    expect(existsSync(join(out, 'adapter', 'adapter_config.json'))).toBe(true);
    expect(readFileSync(join(out, 'README.md'), 'utf8')).toContain('run');
    expect(readdirSync(out).filter((n) => n.startsWith('.'))).toEqual([]);
  });
});
