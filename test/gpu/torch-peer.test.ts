// bench/torch_peer.py — the PyTorch column of bench/gpu.sh — run here on the CPU (Debian's
// python3-torch) on a folder laid out as `bench:peer --keep-models` writes it, with an engine
// JSON made the way bench:peer makes it: the script must read both, train the same weights on
// the same batches (step-1 and step-2 losses equal to the engine's), generate the same greedy
// tokens after the same updates, and print the side-by-side table. Only the timings differ
// between this and a run on a real GPU.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Generator } from '../../src/engine/generate/generator.ts';
import { GPT2_SMALL, type GPT2Config } from '../../src/engine/model/config.ts';
import { GpuWeights } from '../../src/engine/model/weights.ts';
import { Trainer } from '../../src/engine/train/trainer.ts';
import { saveModelDir } from '../../src/io/node-model.ts';
import { randomGpt2Params, randomTokens } from '../../scripts/make-random-model.ts';
import { gpuContext } from '../helpers/gpu.ts';
import { py } from '../helpers/torch-project.ts';

const SCRIPT = fileURLToPath(new URL('../../bench/torch_peer.py', import.meta.url));
// bench/peer.ts's tiny shape: (V, C, heads, layers, T, B) = (311, 48, 3, 3, 37, 2), no dropout;
// torch_peer.py generates 48 tokens for a shape named tiny after an 8-token prompt.
const CONFIG: GPT2Config = {
  ...GPT2_SMALL, vocabSize: 311, nEmbd: 48, nHead: 3, nLayer: 3, nInner: 192, nPositions: 64, bosTokenId: 310, eosTokenId: 310,
  embdPdrop: 0, attnPdrop: 0, residPdrop: 0,
};
const [B, T, STEPS, PROMPT, GENERATE] = [2, 37, 2, 8, 48];

describe('bench/torch_peer.py on the CPU', () => {
  it('trains the engine\'s weights on its batches to the same losses, generates the same tokens, and prints the table', async () => {
    const root = mkdtempSync(join(tmpdir(), 'torch-peer-'));
    try {
      const dir = join(root, 'models', 'tiny');
      await saveModelDir(dir, CONFIG, randomGpt2Params(CONFIG, 1234));
      const N = B * T;
      const stream = randomTokens(N * (STEPS + 3) + 1, CONFIG.vocabSize, 7);
      writeFileSync(join(dir, 'tokens.bin'), stream);
      const batch = (k: number) => ({
        inputs: Uint32Array.from(stream.subarray(k * N, k * N + N)),
        targets: Uint32Array.from(stream.subarray(k * N + 1, k * N + 1 + N)),
      });

      // The engine's side as bench:peer runs it: Adam (AdamW without decay), lr 1e-4, no clipping.
      const ctx = await gpuContext();
      const weights = new GpuWeights(ctx, CONFIG, randomGpt2Params(CONFIG, 1234));
      const trainer = await Trainer.create(ctx, weights, {
        batch: B, seq: T, gradAccum: 1, frozen: new Set(), dropout: { embd: 0, attn: 0, resid: 0 }, seed: 1,
        beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, gradClip: 0,
      });
      const trained = [0, 1, ...Array.from({ length: STEPS }, (_, k) => 2 + k)];
      const losses: number[] = [];
      for (const k of trained) losses.push((await trainer.step([batch(k)], () => 1e-4)).loss);
      trainer.destroy();
      const generator = await Generator.create(ctx, weights);
      const gen = await generator.generate(Array.from(stream.subarray(0, PROMPT)), { maxNewTokens: GENERATE, eosTokenId: null });
      generator.destroy();
      weights.destroy();
      const engine = {
        shapes: [{
          shape: 'tiny', B, T, steps: STEPS,
          ours: {
            step1Loss: losses[0], step2Loss: losses[1], trainTokensPerSecond: 1000, forwardTokensPerSecond: 2000, generateTokensPerSecond: 100,
            generatedTokens: gen.tokens, trainedBatches: trained,
          },
        }],
        matmul: [],
      };
      writeFileSync(join(root, 'webgpu.json'), JSON.stringify(engine));

      const r = py([SCRIPT, '--models', join(root, 'models'), '--engine', join(root, 'webgpu.json'), '--json', join(root, 'torch.json'), '--device', 'cpu', '--no-matmul'], { timeoutMs: 300_000 });
      expect(r.status, r.stderr).toBe(0);
      const out = JSON.parse(readFileSync(join(root, 'torch.json'), 'utf8'));
      const s = out.shapes[0];
      expect(s.shape).toBe('tiny');
      expect(out.matmul).toEqual([]);
      // Same weights, same batches, the same Adam: the same losses to float32 rounding.
      expect(Math.abs(s.step1Loss - losses[0])).toBeLessThan(1e-5 * losses[0]);
      expect(Math.abs(s.step2Loss - losses[1])).toBeLessThan(1e-5 * losses[1]);
      expect(s.step2Loss).not.toBe(s.step1Loss);
      // Generation after the engine's updates (trainedBatches), greedy: the same tokens.
      expect(s.generatedTokens).toHaveLength(GENERATE);
      expect(s.generatedTokens).toEqual(gen.tokens);
      for (const k of ['trainTokensPerSecond', 'forwardTokensPerSecond', 'generateTokensPerSecond']) expect(s[k]).toBeGreaterThan(0);
      // The table, with the engine's numbers beside PyTorch's and the ratio.
      const row = r.stdout.split('\n').find((l) => l.startsWith('| tiny |'));
      expect(row, r.stdout).toBeDefined();
      const cells = row!.split('|').map((c) => c.trim());
      expect(cells[2]).toBe('1000.0');
      expect(cells[4]).toBe(`${(1000 / s.trainTokensPerSecond).toFixed(2)}×`);
      expect(cells[13]).toBe('yes');
      console.log(`[torch_peer] step-1 loss engine ${losses[0]} PyTorch ${s.step1Loss}; step 2 ${losses[1]} vs ${s.step2Loss}`);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }, 600_000);
});
