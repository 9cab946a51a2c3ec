// `export`: the ONNX folder transformers.js loads, the Hugging Face folder, LoRA adapters merged
// (checked against the reference's unmerged LoRA forward, not against our merge), and the bad
// inputs — an unsupported config, --format torch, an --out that is the model folder, inside it,
// or not empty — each refused with one clear line before anything is written.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ortNode from 'onnxruntime-node';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../../src/cli/main.ts';
import type { LoraConfig } from '../../../src/engine/model/lora.ts';
import { loraTargets } from '../../../src/engine/model/lora.ts';
import type { HostParams } from '../../../src/engine/model/params.ts';
import { refLoraForward } from '../../../src/engine/reference/lora.ts';
import { toF64Params } from '../../../src/engine/reference/gpt2.ts';
import { loadModelDir } from '../../../src/io/node-model.ts';
import { loraFiles } from '../../../src/io/peft.ts';
import { ortLogits, relToLargest, type OrtLike, type SessionLike } from '../../helpers/onnx.ts';
import { randn } from '../../helpers/numeric.ts';
import { writeTinyModelDir } from '../../helpers/tiny-model.ts';

let dir: string;
let tiny: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'cli-export-'));
  tiny = writeTinyModelDir(join(dir, 'tiny'));
});

afterEach(() => vi.restoreAllMocks());

async function runCli(args: string[]): Promise<{ code: number; err: string; out: string }> {
  const errs: string[] = [];
  const outs: string[] = [];
  vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void errs.push(a.join(' ')));
  const code = await main(['export', ...args], (l) => outs.push(l));
  return { code, err: errs.join('\n'), out: outs.join('\n') };
}

/** Entries of `parent` other than the ones named: a leftover temporary folder would show here. */
const others = (parent: string, known: string[]) => readdirSync(parent).filter((n) => !known.includes(n));

describe('export --format onnx', () => {
  it('writes the transformers.js layout: config, generation config, tokenizer, both ONNX files', async () => {
    const out = join(dir, 'tiny-onnx');
    const r = await runCli(['--model', tiny, '--format', 'onnx', '--out', out]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(readdirSync(out).sort()).toEqual(['config.json', 'generation_config.json', 'onnx', 'tokenizer.json', 'tokenizer_config.json']);
    expect(readdirSync(join(out, 'onnx')).sort()).toEqual(['decoder_model_merged.onnx', 'decoder_model_merged_quantized.onnx']);
    const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    expect([cfg.model_type, cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.vocab_size]).toEqual(['gpt2', 2, 4, 48, 311]);
    expect(JSON.parse(readFileSync(join(out, 'generation_config.json'), 'utf8')).eos_token_id).toBe(310);
    expect(r.out).toMatch(/onnx\/decoder_model_merged\.onnx \(0\.\d\d MB\)/);
    expect(others(dir, ['tiny', 'tiny-onnx'])).toEqual([]);
  });

  it('--no-quantized leaves the 8-bit file out; an existing empty --out is filled', async () => {
    const out = join(dir, 'empty-out');
    mkdirSync(out);
    const r = await runCli(['--model', tiny, '--format', 'onnx', '--out', out, '--no-quantized']);
    expect(r.code).toBe(0);
    expect(readdirSync(join(out, 'onnx'))).toEqual(['decoder_model_merged.onnx']);
  });
});

describe('export --format hf', () => {
  it('writes a Hugging Face folder that loads back to the same weights', async () => {
    const out = join(dir, 'tiny-hf');
    expect((await runCli(['--model', tiny, '--format', 'hf', '--out', out])).code).toBe(0);
    const a = await loadModelDir(tiny);
    const b = await loadModelDir(out);
    expect(b.config).toEqual(a.config);
    for (const [n, t] of a.params) expect(b.params.get(n)).toEqual(t);
    expect(existsSync(join(out, 'tokenizer.json'))).toBe(true);
  });
});

describe('a LoRA model exports its merged weights', () => {
  const cfg: LoraConfig = { r: 2, alpha: 8, dropout: 0, targets: ['c_attn', 'c_proj', 'c_fc'], rslora: false };

  /** Adapters with every A and B non-zero, so the merge changes every targeted layer. */
  async function adapterParams(): Promise<HostParams> {
    const { config } = await loadModelDir(tiny);
    const p: HostParams = new Map();
    loraTargets(config, cfg).forEach((t, k) => {
      p.set(t.a, Float32Array.from(randn(cfg.r * t.in, 100 + k, 0.3)));
      p.set(t.b, Float32Array.from(randn(t.out * cfg.r, 200 + k, 0.3)));
    });
    return p;
  }

  async function expectLoraLogits(onnxPath: string, adapters: HostParams): Promise<void> {
    const { config, params } = await loadModelDir(tiny);
    const seq = [5, 17, 200, 3, 42, 7];
    const s = (await ortNode.InferenceSession.create(onnxPath)) as unknown as SessionLike;
    const { logits } = await ortLogits(ortNode as unknown as OrtLike, s, config, seq, 4);
    // the reference applies the adapters unmerged: x·W + s·(x·Aᵀ)·Bᵀ
    const lora = (alpha: number) => ({ config: { ...cfg, alpha }, params: toF64Params(adapters) });
    const tokens = Int32Array.from(seq);
    const ref = (alpha: number) => refLoraForward(config, toF64Params(params), lora(alpha), tokens, new Int32Array(seq.length), 1, seq.length).logits;
    expect(relToLargest(logits, ref(cfg.alpha))).toBeLessThan(1e-4);
    const plain = ref(1e-9);
    expect(relToLargest(logits, plain)).toBeGreaterThan(1e-3); // the adapters mattered
  }

  it('from a checkpoint-style folder: base weights plus adapter files', async () => {
    const adapters = await adapterParams();
    const { config } = await loadModelDir(tiny);
    const ck = join(dir, 'checkpoint-7');
    mkdirSync(ck);
    for (const f of readdirSync(tiny)) copyFileSync(join(tiny, f), join(ck, f));
    for (const [n, b] of Object.entries(loraFiles(config, cfg, adapters, tiny))) writeFileSync(join(ck, n), b);
    const out = join(dir, 'lora-onnx');
    const r = await runCli(['--model', ck, '--format', 'onnx', '--out', out]);
    expect(r.err).toBe('');
    expect(r.out).toMatch(/merged the LoRA adapter .*r=2, alpha=8/);
    await expectLoraLogits(join(out, 'onnx', 'decoder_model_merged.onnx'), adapters);
  });

  it('from an adapter folder alone, whose base model is named in adapter_config.json', async () => {
    const adapters = await adapterParams();
    const { config } = await loadModelDir(tiny);
    const ad = join(dir, 'adapter-only');
    mkdirSync(ad);
    for (const [n, b] of Object.entries(loraFiles(config, cfg, adapters, tiny))) writeFileSync(join(ad, n), b);
    const out = join(dir, 'adapter-onnx');
    const r = await runCli(['--model', ad, '--format', 'onnx', '--out', out]);
    expect(r.code).toBe(0);
    expect(existsSync(join(out, 'tokenizer.json'))).toBe(true); // the base model's
    await expectLoraLogits(join(out, 'onnx', 'decoder_model_merged.onnx'), adapters);
  });
});

describe('bad input is refused before anything is written', () => {
  it('an unsupported config', async () => {
    const m = join(dir, 'upcast');
    mkdirSync(m);
    for (const f of readdirSync(tiny)) copyFileSync(join(tiny, f), join(m, f));
    const cfg = JSON.parse(readFileSync(join(m, 'config.json'), 'utf8'));
    writeFileSync(join(m, 'config.json'), JSON.stringify({ ...cfg, reorder_and_upcast_attn: true }));
    const parent = mkdtempSync(join(dir, 'p-'));
    const r = await runCli(['--model', m, '--format', 'onnx', '--out', join(parent, 'x')]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^error: .*config\.json: reorder_and_upcast_attn = true is not supported/);
    expect(readdirSync(parent)).toEqual([]);
  });

  it.each([
    ['--format torch of a model folder (not a checkpoint)', () => ['--model', tiny, '--format', 'torch', '--out', join(dir, 'torch-out')], /is not a training checkpoint \(no trainer_state\.json\)/, 2],
    ['--out is the model folder', () => ['--model', tiny, '--format', 'onnx', '--out', tiny], /is the model folder itself/, 2],
    ['--out inside the model folder', () => ['--model', tiny, '--format', 'hf', '--out', join(tiny, 'sub')], /inside the model folder/, 2],
    ['--out holds the model folder', () => ['--model', tiny, '--format', 'hf', '--out', dir], /a folder that holds the model/, 2],
    ['--format missing', () => ['--model', tiny, '--out', join(dir, 'nf')], /--format is required/, 2],
    ['--format unknown', () => ['--model', tiny, '--format', 'gguf', '--out', join(dir, 'nf')], /--format must be one of hf, onnx, torch/, 2],
  ] as const)('%s', async (_, args, re, code) => {
    const before = readdirSync(tiny).sort();
    const r = await runCli([...args()]);
    expect(r.err).toMatch(re);
    expect(r.code).toBe(code);
    expect(readdirSync(tiny).sort()).toEqual(before);
    expect(existsSync(join(dir, 'torch-out'))).toBe(false);
  });

  it('an --out that already holds files: refused, and the files are untouched', async () => {
    const out = join(dir, 'full');
    mkdirSync(out);
    writeFileSync(join(out, 'mine.txt'), 'keep me');
    const r = await runCli(['--model', tiny, '--format', 'onnx', '--out', out]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/already holds 1 entry \(mine\.txt/);
    expect(readdirSync(out)).toEqual(['mine.txt']);
    expect(readFileSync(join(out, 'mine.txt'), 'utf8')).toBe('keep me');
  });
});
