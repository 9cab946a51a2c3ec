// PEFT adapter folders (src/io/peft.ts) and the CLI's LoRA export (src/cli/lora.ts): files that
// round-trip bit for bit, adapter_config.json's keys, an independent Python (stdlib) reader of
// the adapter (names, shapes, config keys, layout, checksums), merged weights equal to
// W + s·(B·A)ᵀ and to PyTorch's, and clear errors for adapters this studio cannot apply.
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Args, parseArgs, UsageError } from '../../src/cli/args.ts';
import { trainSpec } from '../../src/cli/commands/train.ts';
import { exportLora, parseLoraArgs } from '../../src/cli/lora.ts';
import { parseConfig, type GPT2Config } from '../../src/engine/model/config.ts';
import { initLoraParams, loraScaling, loraSpecs, loraTargets, type LoraConfig } from '../../src/engine/model/lora.ts';
import { paramSpecs, type HostParams } from '../../src/engine/model/params.ts';
import { bytesSource } from '../../src/io/bytes.ts';
import { filesFromSources } from '../../src/io/checkpoint.ts';
import { loadModelDir, nodeDirFiles } from '../../src/io/node-model.ts';
import {
  loraConfigJson, loraFiles, LoraFormatError, PEFT_CONFIG_NAME, PEFT_WEIGHTS_NAME, loadLora, mergeLora, PEFT_PREFIX,
} from '../../src/io/peft.ts';
import { writeSafetensors } from '../../src/io/safetensors.ts';
import { loadLoraGoldens, loraConfigOf, loraTensor } from '../helpers/lora-goldens.ts';
import { randn, relErr } from '../helpers/numeric.ts';

const model: GPT2Config = parseConfig({ vocab_size: 50, n_positions: 16, n_embd: 12, n_layer: 2, n_head: 3, n_inner: 20 });
const CFG: LoraConfig = { r: 3, alpha: 6, dropout: 0.05, targets: ['c_attn', 'c_proj', 'c_fc'], rslora: false };

function randomAdapters(c: GPT2Config, cfg: LoraConfig, seed: number): HostParams {
  return new Map(loraSpecs(c, cfg).map((s, i) => [s.name, Float32Array.from(randn(s.numel, seed + i, 0.2))]));
}

function randomBase(c: GPT2Config, seed: number): HostParams {
  return new Map(paramSpecs(c).map((s, i) => [s.name, Float32Array.from(randn(s.numel, seed + i, 0.1))]));
}

function folder(files: Record<string, string | Uint8Array>) {
  return filesFromSources(Object.entries(files).map(([n, d]) => bytesSource(typeof d === 'string' ? new TextEncoder().encode(d) : d, n)));
}

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function tmp(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'studio-lora-'));
  dirs.push(d);
  return d;
}

describe('adapter folder round trip', () => {
  it('loraFiles → loadLora gives the same settings and bit-identical A and B', async () => {
    for (const cfg of [CFG, { ...CFG, rslora: true, targets: ['mlp.c_proj'], r: 1 }]) {
      const params = randomAdapters(model, cfg, 3);
      const files = loraFiles(model, cfg, params, 'openai-community/gpt2');
      const back = await loadLora(model, folder(files));
      expect(back.config).toEqual(cfg);
      expect(back.baseModel).toBe('openai-community/gpt2');
      expect([...back.params.keys()]).toEqual([...params.keys()]);
      for (const [k, v] of params) expect(Buffer.from(back.params.get(k)!.buffer).equals(Buffer.from(v.buffer)), k).toBe(true);
    }
  });

  it("adapter_config.json carries PEFT's keys with GPT-2 Conv1D values", () => {
    const j = loraConfigJson(CFG, '/models/gpt2');
    expect(j).toMatchObject({
      peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 3, lora_alpha: 6, lora_dropout: 0.05, target_modules: ['c_attn', 'c_proj', 'c_fc'],
      fan_in_fan_out: true, bias: 'none', base_model_name_or_path: '/models/gpt2', use_rslora: false,
    });
  });

  it('tensor names carry the base_model.model.transformer. prefix; a bare base_model.model. prefix is read too', async () => {
    const params = randomAdapters(model, CFG, 5);
    const files = loraFiles(model, CFG, params, 'x');
    const { readSafetensors } = await import('../../src/io/safetensors.ts');
    const names = [...readSafetensors(files[PEFT_WEIGHTS_NAME]).keys()];
    expect(names[0]).toBe('base_model.model.transformer.h.0.attn.c_attn.lora_A.weight');
    expect(names.every((n) => n.startsWith(PEFT_PREFIX))).toBe(true);
    const bare = writeSafetensors(loraTargets(model, CFG).flatMap((t) => [
      { name: `base_model.model.${t.a}`, shape: [CFG.r, t.in], data: params.get(t.a)! },
      { name: `base_model.model.${t.b}`, shape: [t.out, CFG.r], data: params.get(t.b)! },
    ]));
    const back = await loadLora(model, folder({ [PEFT_CONFIG_NAME]: files[PEFT_CONFIG_NAME], [PEFT_WEIGHTS_NAME]: bare }));
    expect([...back.params.get('h.1.mlp.c_fc.lora_B.weight')!]).toEqual([...params.get('h.1.mlp.c_fc.lora_B.weight')!]);
  });

  it('a regular-expression target_modules is matched against whole module names, as PEFT does', async () => {
    const cfg1: LoraConfig = { ...CFG, targets: ['h.1.attn.c_attn', 'h.0.mlp.c_fc'] };
    const params = randomAdapters(model, cfg1, 9);
    const files = loraFiles(model, cfg1, params, 'x');
    const json = { ...JSON.parse(files[PEFT_CONFIG_NAME]), target_modules: String.raw`.*\.(1\.attn\.c_attn|0\.mlp\.c_fc)` };
    const back = await loadLora(model, folder({ ...files, [PEFT_CONFIG_NAME]: JSON.stringify(json) }));
    expect(loraTargets(model, back.config).map((t) => t.name)).toEqual(['h.0.mlp.c_fc', 'h.1.attn.c_attn']);
  });
});

describe('adapter folders this studio refuses, with the reason', () => {
  const params = randomAdapters(model, CFG, 7);
  const good = loraFiles(model, CFG, params, 'x');
  const withConfig = (patch: Record<string, unknown>) => folder({ ...good, [PEFT_CONFIG_NAME]: JSON.stringify({ ...JSON.parse(good[PEFT_CONFIG_NAME]),
    ...patch }) });
  const cases: Array<[string, () => ReturnType<typeof folder>, RegExp]> = [
    ['no adapter_config.json', () => folder({ [PEFT_WEIGHTS_NAME]: good[PEFT_WEIGHTS_NAME] }), /lacks adapter_config\.json/],
    ['no safetensors weights', () => folder({ [PEFT_CONFIG_NAME]: good[PEFT_CONFIG_NAME] }), /lacks adapter_model\.safetensors/],
    ['config not JSON', () => folder({ ...good, [PEFT_CONFIG_NAME]: '{r: 8' }), /not valid UTF-8 JSON/],
    ['another PEFT method', () => withConfig({ peft_type: 'IA3' }), /only LoRA weights/],
    ['another task', () => withConfig({ task_type: 'SEQ_CLS' }), /CAUSAL_LM/],
    ['bias trained', () => withConfig({ bias: 'lora_only' }), /bias "lora_only" is not supported/],
    ['DoRA', () => withConfig({ use_dora: true }), /DoRA/],
    ['per-layer ranks', () => withConfig({ rank_pattern: { 'h.0.attn.c_attn': 4 } }), /rank_pattern/],
    ['extra trained modules', () => withConfig({ modules_to_save: ['lm_head'] }), /modules_to_save/],
    ['a target no layer has', () => withConfig({ target_modules: ['q_proj'] }), /'q_proj' matches no linear layer/],
    ['rank that does not fit the tensors', () => withConfig({ r: 4 }), /shape \[3, 12\]; r = 4 on h\.0\.attn\.c_attn needs \[4, 12\]/],
    ['fewer targets than tensors', () => withConfig({ target_modules: ['c_attn'] }), /holds tensors adapter_config\.json does not explain/],
    [
      'more targets than tensors',
      () => {
        const small = loraFiles(model, { ...CFG, targets: ['c_attn'] }, randomAdapters(model, { ...CFG, targets: ['c_attn'] }, 8), 'x');
        return folder({ ...small, [PEFT_CONFIG_NAME]: JSON.stringify({ ...JSON.parse(small[PEFT_CONFIG_NAME]), target_modules: ['c_attn', 'c_fc'] }) });
      },
      /has no tensor 'base_model\.model\.transformer\.h\.0\.mlp\.c_fc\.lora_A\.weight'/,
    ],
  ];
  for (const [what, files, msg] of cases) {
    it(what, async () => {
      const err = await loadLora(model, files()).then(() => null, (e) => e);
      expect(err).toBeInstanceOf(LoraFormatError);
      expect(String(err.message)).toMatch(msg);
    });
  }

  it('an adapter for another model size is refused by its shapes', async () => {
    const bigger = parseConfig({ vocab_size: 50, n_positions: 16, n_embd: 24, n_layer: 2, n_head: 3 });
    await expect(loadLora(bigger, folder(good))).rejects.toThrow(/Were these LoRA weights made for another model size\?/);
  });
});

describe('merging', () => {
  it('mergeLora is W + s·(B·A)ᵀ on targeted weights and leaves every other tensor as it was', () => {
    for (const cfg of [CFG, { ...CFG, rslora: true }]) {
      const base = randomBase(model, 100);
      const ad = randomAdapters(model, cfg, 200);
      const merged = mergeLora(model, base, cfg, ad);
      const s = loraScaling(cfg);
      const adapted = new Set(loraTargets(model, cfg).map((t) => `${t.name}.weight`));
      for (const t of loraTargets(model, cfg)) {
        const W = base.get(`${t.name}.weight`)!;
        const A = ad.get(t.a)!;
        const Bm = ad.get(t.b)!;
        const got = merged.get(`${t.name}.weight`)!;
        for (let i = 0; i < t.in; i++) {
          for (let o = 0; o < t.out; o++) {
            let d = 0;
            for (let k = 0; k < cfg.r; k++) d += Bm[o * cfg.r + k] * A[k * t.in + i];
            expect(got[i * t.out + o]).toBe(Math.fround(W[i * t.out + o] + s * d));
          }
        }
      }
      for (const sp of paramSpecs(model)) if (!adapted.has(sp.name)) expect(merged.get(sp.name)).toBe(base.get(sp.name));
      expect(adapted.size).toBe(2 * 4);
    }
  });

  it("fresh adapters (B = 0) merge to the base weights exactly", () => {
    const base = randomBase(model, 1);
    const merged = mergeLora(model, base, CFG, initLoraParams(model, CFG, 3));
    for (const [k, v] of base) expect([...merged.get(k)!]).toEqual([...v]);
  });

  it("equals PyTorch's merge of the golden run's final adapters", () => {
    const G = loadLoraGoldens();
    const gc = G.cases[0];
    const cfg = loraConfigOf(gc);
    const finals: HostParams = new Map(loraSpecs(G.base.config, cfg).map((s) => [s.name, loraTensor(gc, `final.${s.name}`)]));
    const merged = mergeLora(G.base.config, G.base.params, cfg, finals);
    let n = 0;
    for (const [k, t] of gc.tensors) {
      if (!k.startsWith('merged.')) continue;
      n++;
      expect(relErr(merged.get(k.slice('merged.'.length))!, t.data), k).toBeLessThan(1e-6);
    }
    expect(n).toBe(2);
  });
});

// An independent reader with Python's standard library: the adapter folder as PEFT's
// PeftModel.from_pretrained and load_peft_weights expect it for a GPT2LMHeadModel.
const PY = String.raw`
import json, math, os, struct, sys

d, base_cfg_path = sys.argv[1], sys.argv[2]
base = json.load(open(base_cfg_path))
C, L = base['n_embd'], base['n_layer']
I = base.get('n_inner') or 4 * C
cfg = json.load(open(os.path.join(d, 'adapter_config.json')))
need = ['peft_type', 'task_type', 'r', 'lora_alpha', 'lora_dropout', 'target_modules', 'fan_in_fan_out', 'bias', 'base_model_name_or_path', 'use_rslora']
missing = [k for k in need if k not in cfg]
assert not missing, 'adapter_config.json lacks %r' % missing
assert cfg['peft_type'] == 'LORA' and cfg['task_type'] == 'CAUSAL_LM', cfg
assert cfg['fan_in_fan_out'] is True and cfg['bias'] == 'none', cfg
r = cfg['r']
assert isinstance(r, int) and r >= 1
assert isinstance(cfg['target_modules'], list)

# peft check_target_module_exists: key == target or key ends with '.' + target
shapes = {'attn.c_attn': (C, 3 * C), 'attn.c_proj': (C, C), 'mlp.c_fc': (C, I), 'mlp.c_proj': (I, C)}
want = {}
for i in range(L):
    for m, (fin, fout) in shapes.items():
        key = 'transformer.h.%d.%s' % (i, m)
        if any(key == t or key.endswith('.' + t) for t in cfg['target_modules']):
            want['base_model.model.%s.lora_A.weight' % key] = [r, fin]
            want['base_model.model.%s.lora_B.weight' % key] = [fout, r]

raw = open(os.path.join(d, 'adapter_model.safetensors'), 'rb').read()
(n,) = struct.unpack('<Q', raw[:8])
assert n % 8 == 0, 'header length %d' % n
hb = raw[8:8 + n]
assert hb.rstrip(b' ').endswith(b'}')
header = json.loads(hb.decode('utf-8'))
assert header.pop('__metadata__', None) == {'format': 'pt'}
extra = sorted(set(header) - set(want))
missing = sorted(set(want) - set(header))
assert not extra and not missing, 'extra %r missing %r' % (extra, missing)
data = raw[8 + n:]
cursor = 0
out = {}
for name, e in sorted(header.items(), key=lambda kv: kv[1]['data_offsets']):
    assert e['dtype'] == 'F32', name
    assert e['shape'] == want[name], (name, e['shape'], want[name])
    b, end = e['data_offsets']
    assert b == cursor, name
    count = math.prod(e['shape'])
    assert end - b == 4 * count, name
    vals = struct.unpack('<%df' % count, data[b:end])
    out[name] = {'first': vals[:2], 'fsum': math.fsum(vals)}
    cursor = end
assert cursor == len(data)
print(json.dumps({'config': cfg, 'tensors': out}))
`;

function pythonRead(dir: string, baseConfig: string): { config: Record<string, unknown>; tensors: Record<string, { first: number[]; fsum: number }> } {
  const r = spawnSync('python3', ['-c', PY, dir, baseConfig], { encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw new Error(`python3 could not be run (${r.error.message}); install Python 3 to run this independent reader test.`);
  if (r.status !== 0) throw new Error(`The Python reader rejected the adapter:\n${r.stderr}`);
  return JSON.parse(r.stdout);
}

describe('the CLI export read back', () => {
  const argsOf = (argv: string[]) => new Args(parseArgs(trainSpec, ['--model', 'm', '--data', 'd', '--out', 'o', ...argv]));

  it('--lora-export both: merged HF folder in --out, PEFT adapter in --out/adapter; Python reads the adapter; merged = base + (B·A)ᵀ·α/r', async () => {
    const dir = await tmp();
    const baseCfgPath = join(dir, 'base-config.json');
    const { configToJson } = await import('../../src/engine/model/config.ts');
    await writeFile(baseCfgPath, JSON.stringify(configToJson(model)));
    const lora = parseLoraArgs(argsOf(['--lora-r', '3', '--lora-alpha', '6', '--lora-dropout', '0.05', '--lora-targets', 'c_attn,c_proj,c_fc', '--lora-export', 'both']), model)!;
    expect(lora.config).toEqual(CFG);
    const base = randomBase(model, 11);
    const ad = randomAdapters(model, CFG, 12);
    const out = join(dir, 'out');
    const written = await exportLora(out, lora.exportAs, model, base, lora.config, ad, 'my/base-model');
    expect(written.map((p) => p.slice(out.length + 1)).sort()).toEqual(['adapter/adapter_config.json', 'adapter/adapter_model.safetensors', 'config.json', 'model.safetensors']);

    const py = pythonRead(join(out, 'adapter'), baseCfgPath);
    expect(py.config).toMatchObject({ r: 3, lora_alpha: 6, lora_dropout: 0.05, target_modules: ['c_attn', 'c_proj', 'c_fc'], base_model_name_or_path: 'my/base-model', use_rslora: false });
    expect(Object.keys(py.tensors)).toHaveLength(2 * 2 * 4);
    for (const [k, v] of ad) {
      const t = py.tensors[PEFT_PREFIX + k];
      expect(t.first, k).toEqual([...v.slice(0, 2)]);
      expect(Math.abs(t.fsum - v.reduce((a, b) => a + b, 0)), k).toBeLessThan(1e-9);
    }

    const saved = await loadModelDir(out);
    const reloaded = await loadLora(model, await nodeDirFiles(join(out, 'adapter')));
    const expected = mergeLora(model, base, reloaded.config, reloaded.params);
    const s = CFG.alpha / CFG.r;
    for (const sp of paramSpecs(model)) {
      const got = saved.params.get(sp.name)!;
      expect([...got], sp.name).toEqual([...expected.get(sp.name)!]);
    }
    // one element by hand: W[0, 0] + s·Σ_k B[0, k]·A[k, 0]
    const A = ad.get('h.0.attn.c_attn.lora_A.weight')!;
    const Bm = ad.get('h.0.attn.c_attn.lora_B.weight')!;
    const w00 = base.get('h.0.attn.c_attn.weight')![0] + s * (Bm[0] * A[0] + Bm[1] * A[12] + Bm[2] * A[24]);
    expect(saved.params.get('h.0.attn.c_attn.weight')![0]).toBeCloseTo(w00, 6);
  });

  it('--lora-export adapter (the default) writes only the two PEFT files into --out', async () => {
    const dir = await tmp();
    const lora = parseLoraArgs(argsOf(['--lora-r', '2']), model)!;
    expect(lora.exportAs).toBe('adapter');
    expect(lora.config).toEqual({ r: 2, alpha: 8, dropout: 0, targets: ['c_attn'], rslora: false });
    const written = await exportLora(dir, lora.exportAs, model, randomBase(model, 1), lora.config, initLoraParams(model, lora.config, 1), 'b');
    expect(written.map((p) => p.slice(dir.length + 1))).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    expect(JSON.parse(await readFile(join(dir, 'adapter_config.json'), 'utf8')).target_modules).toEqual(['c_attn']);
  });

  it('the Python reader is not a rubber stamp: it rejects an adapter whose B is stored transposed', async () => {
    const dir = await tmp();
    const baseCfgPath = join(dir, 'base-config.json');
    const { configToJson } = await import('../../src/engine/model/config.ts');
    await writeFile(baseCfgPath, JSON.stringify(configToJson(model)));
    const cfg: LoraConfig = { ...CFG, targets: ['c_attn'] };
    const ad = randomAdapters(model, cfg, 1);
    const files = loraFiles(model, cfg, ad, 'b');
    const wrong = writeSafetensors(loraTargets(model, cfg).flatMap((t) => [
      { name: PEFT_PREFIX + t.a, shape: [cfg.r, t.in], data: ad.get(t.a)! },
      { name: PEFT_PREFIX + t.b, shape: [cfg.r, t.out], data: ad.get(t.b)! },
    ]));
    await writeFile(join(dir, PEFT_CONFIG_NAME), files[PEFT_CONFIG_NAME]);
    await writeFile(join(dir, PEFT_WEIGHTS_NAME), wrong);
    expect(() => pythonRead(dir, baseCfgPath)).toThrow(/lora_B\.weight/);
  });

  it('LoRA flags: errors name what is wrong', () => {
    expect(parseLoraArgs(argsOf([]), model)).toBeNull();
    expect(() => parseLoraArgs(argsOf(['--lora-alpha', '16']), model)).toThrow(/--lora-alpha need --lora-r/);
    expect(() => parseLoraArgs(argsOf(['--lora-rslora']), model)).toThrow(UsageError);
    expect(() => parseLoraArgs(argsOf(['--lora-r', '0']), model)).toThrow(/--lora-r must be at least 1/);
    expect(() => parseLoraArgs(argsOf(['--lora-r', '2', '--lora-dropout', '1']), model)).toThrow(/--lora-dropout must be in \[0, 1\)/);
    expect(() => parseLoraArgs(argsOf(['--lora-r', '2', '--lora-alpha', '-1']), model)).toThrow(/--lora-alpha must be positive/);
    expect(() => parseLoraArgs(argsOf(['--lora-r', '2', '--lora-targets', 'c_attn,q_proj']), model)).toThrow(/train: LoRA target 'q_proj' matches no linear layer/);
    expect(() => argsOf(['--lora-r', '2', '--lora-export', 'zip'])).toThrow(/--lora-export must be one of adapter, merged, both/);
    const r = parseLoraArgs(argsOf(['--lora-r', '4', '--lora-rslora', '--lora-targets', 'attn.c_proj', '--lora-export', 'merged']), model)!;
    expect(r).toEqual({ config: { r: 4, alpha: 8, dropout: 0, targets: ['attn.c_proj'], rslora: true }, exportAs: 'merged' });
  });
});
