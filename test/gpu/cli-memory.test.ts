// `npm run cli -- train` announces the GPU memory estimate before it allocates anything, then
// reports what it allocated against it: equal for a fixed frozen set, below it while gradual
// unfreezing has not yet opened every group (the estimate is for the widest point).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.ts';

const GOLD = new URL('../goldens/gpt2-tiny/', import.meta.url).pathname;

async function train(extra: string[]): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'cli-memory-'));
  const printed: string[] = [];
  const args = ['train', '--model', join(GOLD, 'model'), '--data', join(GOLD, 'train.bin'), '--out', join(dir, 'out'), '--steps', '2', '--batch', '2', '--seq', '37', '--dropout', '0', ...extra];
  expect(await main(args, (l) => printed.push(l))).toBe(0);
  return printed;
}

describe('cli train memory lines', () => {
  it('prints the estimate before allocating, and the allocation equals it', async () => {
    const printed = await train(['--freeze', 'embeddings,0']);
    const est = printed.findIndex((l) => l.startsWith('GPU memory estimate: '));
    const got = printed.findIndex((l) => l.startsWith('GPU memory allocated: '));
    expect(est).toBeGreaterThanOrEqual(0);
    expect(got).toBeGreaterThan(est);
    expect(printed[est]).toMatch(/^GPU memory estimate: parameters [\d.]+ KiB, gradients [\d.]+ KiB, optimizer [\d.]+ KiB, activations [\d.]+ KiB, scratch [\d.]+ KiB; total [\d.]+ (KiB|MiB)$/);
    expect(printed[got]).toMatch(/\(estimate [\d.]+ (KiB|MiB), 0\.00%\)$/);
  });

  it('with gradual unfreezing the first allocation is below the estimate for the widest point', async () => {
    const printed = await train(['--unfreeze-start', '1', '--unfreeze-every', '5']);
    const line = printed.find((l) => l.startsWith('GPU memory allocated: '))!;
    const pct = Number(/, (-?[\d.]+)%\)$/.exec(line)![1]);
    expect(pct).toBeLessThan(0);
  });
});
