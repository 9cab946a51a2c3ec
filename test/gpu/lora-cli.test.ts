// `npm run cli -- train --lora-r …` end to end on the golden tiny GPT-2: the --log lines follow
// the float64 LoRA reference started from the same adapters (initLoraParams with --seed), and
// the export reloads: the PEFT adapter folder through loadLora, the merged folder through
// loadModelDir, equal to base + (B·A)ᵀ·α/r with every untargeted tensor bit-identical.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.ts';
import { initLoraParams, loraSpecs, loraTargets, type LoraConfig } from '../../src/engine/model/lora.ts';
import { paramSpecs } from '../../src/engine/model/params.ts';
import { toF64Params } from '../../src/engine/reference/gpt2.ts';
import { refLoraTrain } from '../../src/engine/reference/lora.ts';
import { nodeDirFiles, loadModelDir } from '../../src/io/node-model.ts';
import { loadLora, mergeLora } from '../../src/io/peft.ts';
import { loadGoldens } from '../helpers/goldens.ts';

const G = loadGoldens();
const GOLD = new URL('../goldens/gpt2-tiny/', import.meta.url).pathname;
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('cli train with LoRA', () => {
  it('--help lists the LoRA options', async () => {
    const printed: string[] = [];
    expect(await main(['train', '--help'], (l) => printed.push(l))).toBe(0);
    const help = printed.join('\n');
    for (const o of ['--lora-r', '--lora-alpha', '--lora-dropout', '--lora-targets', '--lora-rslora', '--lora-export']) expect(help).toContain(o);
  });

  it('trains the adapters as the float64 reference does and exports both an adapter and merged weights that reload', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-lora-'));
    dirs.push(dir);
    const log = join(dir, 'log.jsonl');
    const out = join(dir, 'out');
    const steps = 6, B = 2, T = 37, lr = 5e-3, seed = 4321;
    const cfg: LoraConfig = { r: 4, alpha: 16, dropout: 0, targets: ['c_attn', 'c_proj'], rslora: false };
    const args = [
      'train', '--model', join(GOLD, 'model'), '--data', join(GOLD, 'train.bin'), '--out', out,
      '--steps', String(steps), '--batch', String(B), '--seq', String(T), '--lr', String(lr), '--weight-decay', '0.01',
      '--grad-clip', '1', '--dropout', '0', '--seed', String(seed), '--log', log, '--schedule', 'constant', '--order', 'sequential',
      '--lora-r', '4', '--lora-alpha', '16', '--lora-targets', 'c_attn,c_proj', '--lora-export', 'both',
    ];
    const printed: string[] = [];
    expect(await main(args, (l) => printed.push(l))).toBe(0);
    const text = printed.join('\n');
    expect(text).toMatch(/LoRA: r=4 alpha=16 scaling=4\.000 dropout=0, targets c_attn,c_proj → 6 layers; trainable \d+ of \d+ parameters/);
    expect(text).toMatch(/GPU memory \(MiB\): parameters [\d.]+, gradients [\d.]+, optimizer [\d.]+/);
    expect(text).toMatch(/saved .*out\/config\.json, .*out\/model\.safetensors.*, .*out\/adapter\/adapter_config\.json, .*out\/adapter\/adapter_model\.safetensors after 6 steps/);

    const init = initLoraParams(G.config, cfg, seed);
    const ref = refLoraTrain({
      config: G.config, base: toF64Params(G.params), lora: { config: cfg, params: toF64Params(init) }, tokens: G.tokens,
      B, T, steps, lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1,
    });
    const lines = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(steps);
    lines.forEach((l, s) => {
      expect(Math.abs(l.loss - ref.log[s].loss) / ref.log[s].loss, `loss ${s + 1}`).toBeLessThan(1e-4);
      // B starts at 0, so step 0's norm is that of dB alone
      expect(Math.abs(l.grad_norm - ref.log[s].gradNorm) / ref.log[s].gradNorm, `grad norm ${s + 1}`).toBeLessThan(1e-4);
    });
    // training moved the loss
    expect(lines[steps - 1].loss).not.toBe(lines[0].loss);

    const adapter = await loadLora(G.config, await nodeDirFiles(join(out, 'adapter')));
    expect(adapter.config).toEqual(cfg);
    expect(adapter.baseModel).toBe(join(GOLD, 'model'));
    for (const s of loraSpecs(G.config, cfg)) {
      const got = adapter.params.get(s.name)!;
      const want = ref.lora.get(s.name)!;
      let off = 0;
      for (let i = 0; i < got.length; i++) if (!(Math.abs(got[i] - want[i]) <= 1e-4)) off++;
      expect(off / got.length, s.name).toBeLessThan(0.01);
    }
    const merged = await loadModelDir(out);
    const expected = mergeLora(G.config, G.params, cfg, adapter.params);
    const targeted = new Set(loraTargets(G.config, cfg).map((t) => `${t.name}.weight`));
    for (const s of paramSpecs(G.config)) {
      const got = merged.params.get(s.name)!;
      expect([...got], s.name).toEqual([...expected.get(s.name)!]);
      const same = Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(Buffer.from(G.params.get(s.name)!.buffer));
      expect(same, `${s.name} ${targeted.has(s.name) ? 'must differ (merged)' : 'must be the base tensor'}`).toBe(!targeted.has(s.name));
    }
  });

  it('bad LoRA flags end with a one-line usage error before any GPU work', async () => {
    const errors: string[] = [];
    const orig = console.error;
    console.error = (m: string) => errors.push(m);
    try {
      const base = ['train', '--model', join(GOLD, 'model'), '--data', join(GOLD, 'train.bin'), '--out', join(tmpdir(), 'never-written'), '--seq', '37'];
      expect(await main([...base, '--lora-r', '4', '--lora-targets', 'q_proj'])).toBe(2);
      expect(await main([...base, '--lora-alpha', '8'])).toBe(2);
    } finally {
      console.error = orig;
    }
    expect(errors[0]).toMatch(/^error: train: LoRA target 'q_proj' matches no linear layer/);
    expect(errors[1]).toMatch(/^error: train: --lora-alpha need --lora-r/);
  });
});
