// `npm run cli -- train` end to end on the golden model: the --log lines reproduce PyTorch's
// losses and gradient norms, and the saved folder loads back with the trained parameters
// (frozen groups bit-identical to the input).
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.ts';
import { paramSpecs } from '../../src/engine/model/params.ts';
import { loadModelDir } from '../../src/io/node-model.ts';
import { goldenTensor, loadGoldens } from '../helpers/goldens.ts';

const G = loadGoldens();
const GOLD = new URL('../goldens/gpt2-tiny/', import.meta.url).pathname;

describe('cli train', () => {
  for (const name of ['full', 'frozen']) {
    it(`reproduces the '${name}' golden run and writes a loadable HF folder`, async () => {
      const c = G.cases.find((x) => x.name === name)!;
      const dir = mkdtempSync(join(tmpdir(), 'cli-train-'));
      const log = join(dir, 'log.jsonl');
      const out = join(dir, 'out');
      const freeze = c.frozen_groups.map((g) => (g === 0 ? 'embeddings' : g === G.config.nLayer + 1 ? 'ln_f' : String(g - 1)));
      const args = [
        'train', '--model', join(GOLD, 'model'), '--data', join(GOLD, 'train.bin'), '--out', out,
        '--steps', String(c.steps), '--batch', String(c.B), '--seq', String(c.T), '--grad-accum', String(c.grad_accum),
        '--lr', String(c.lr), '--weight-decay', String(c.weight_decay), '--beta1', String(c.beta1), '--beta2', String(c.beta2),
        '--eps', String(c.eps), '--grad-clip', String(c.max_grad_norm), '--dropout', '0', '--log', log,
        // The goldens run at a constant rate over windows in order (not the defaults).
        '--schedule', 'constant', '--order', 'sequential',
        ...(freeze.length ? ['--freeze', freeze.join(',')] : []),
      ];
      const printed: string[] = [];
      expect(await main(args, (l) => printed.push(l))).toBe(0);
      const lines = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      expect(lines).toHaveLength(c.steps);
      lines.forEach((l, s) => {
        expect(Object.keys(l).sort()).toEqual(['grad_norm', 'loss', 'lr', 'step']);
        expect(l.step).toBe(s + 1);
        expect(l.lr).toBe(c.lr);
        expect(Math.abs(l.loss - c.losses[s]) / c.losses[s]).toBeLessThan(1e-4);
        expect(Math.abs(l.grad_norm - c.grad_norms[s]) / c.grad_norms[s]).toBeLessThan(1e-4);
      });
      const saved = await loadModelDir(out);
      expect(saved.config).toEqual(G.config);
      for (const spec of paramSpecs(G.config)) {
        const got = saved.params.get(spec.name)!;
        if (c.frozen_groups.includes(spec.group)) {
          expect(Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(Buffer.from(G.params.get(spec.name)!.buffer))).toBe(true);
        } else {
          const ref = goldenTensor(c, `final.${spec.name}`);
          let off = 0;
          for (let i = 0; i < ref.length; i++) if (!(Math.abs(got[i] - ref[i]) <= 1e-4)) off++;
          expect(off / ref.length).toBeLessThan(0.01);
        }
      }
      expect(printed.join('\n')).toMatch(/saved .*model\.safetensors after 10 steps/);
    });
  }
});
