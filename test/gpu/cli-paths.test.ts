// train's output rules end to end on a real adapter: --log inside an --out that does not exist
// yet, a second run into the same --out (an output of ours) replacing the export while the log,
// a checkpoint folder and a file of the user's stay as they were, and a LoRA export into an
// earlier output. The refusals themselves are in test/unit/cli/paths.test.ts.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
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

    // Things of the user's and of earlier runs in the folder stay as they are.
    mkdirSync(join(out, 'checkpoint-900'));
    writeFileSync(join(out, 'checkpoint-900', 'trainer_state.json'), '{"step":900}');
    writeFileSync(join(out, 'notes.txt'), 'mine');
    const notesTime = statSync(join(out, 'notes.txt')).mtimeMs;
    const logBefore = readFileSync(log, 'utf8');
    const weightsBefore = statSync(join(out, 'model.safetensors')).mtimeMs;
    expect(await main(train(out, ['--lr', '1e-2', '--log', join(out, 'second.jsonl')]), () => {})).toBe(0);
    expect(readFileSync(join(out, 'notes.txt'), 'utf8')).toBe('mine');
    expect(statSync(join(out, 'notes.txt')).mtimeMs).toBe(notesTime);
    expect(readFileSync(log, 'utf8')).toBe(logBefore);
    expect(readFileSync(join(out, 'checkpoint-900', 'trainer_state.json'), 'utf8')).toBe('{"step":900}');
    expect(statSync(join(out, 'model.safetensors')).mtimeMs).not.toBe(weightsBefore);
    const second = await loadModelDir(out);
    const w = 'h.0.attn.c_attn.weight';
    expect(Buffer.from(second.params.get(w)!.buffer).equals(Buffer.from(first.params.get(w)!.buffer))).toBe(false);
    expect(readdirSync(out).filter((n) => n.startsWith('.'))).toEqual([]);
  });

  it('a LoRA export (merged + adapter) into an earlier output names the final paths', async () => {
    const out = join(dir, 'run');
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
