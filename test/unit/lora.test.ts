// LoRA layout (src/engine/model/lora.ts): PEFT's target matching by suffix, shapes of A (r, in)
// and B (out, r), depth groups and decay, scaling α/r and α/√r, the Kaiming-uniform init bound
// 1/√in with B = 0, the dropout-site numbering (shared with the float64 reference), and the
// errors for settings that cannot be applied.
import { describe, expect, it } from 'vitest';
import { parseConfig, type GPT2Config } from '../../src/engine/model/config.ts';
import {
  checkLoraParams, countLoraParams, initLoraParams, LORA_MODULES, LoraConfigError, loraDropoutSite,
  loraScaling, loraSpecs, loraTargets, matchesTarget, type LoraConfig,
} from '../../src/engine/model/lora.ts';
import { ShapeError } from '../../src/engine/errors.ts';
import { DEFAULT_LORA } from '../../src/engine/train/run-settings.ts';
import { LORA_SITE } from '../../src/engine/reference/lora.ts';
import { DROPOUT_SITE } from '../../src/engine/random.ts';

const model: GPT2Config = parseConfig({ vocab_size: 50, n_positions: 16, n_embd: 12, n_layer: 3, n_head: 3, n_inner: 20 });
const cfg = (over: Partial<LoraConfig> = {}): LoraConfig => ({ ...DEFAULT_LORA, r: 2, ...over });

describe('LoRA targets (PEFT suffix matching)', () => {
  const table: Array<[string[], string[]]> = [
    [['c_attn'], ['attn.c_attn']],
    [['c_proj'], ['attn.c_proj', 'mlp.c_proj']], // PEFT matches the suffix: both projections
    [['c_fc'], ['mlp.c_fc']],
    [['attn.c_proj'], ['attn.c_proj']],
    [['mlp.c_proj', 'c_attn'], ['attn.c_attn', 'mlp.c_proj']],
    [['c_attn', 'c_proj', 'c_fc'], ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj']],
  ];
  for (const [targets, modules] of table) {
    it(`${targets.join(',')} adapts ${modules.join(', ')} in every block`, () => {
      const got = loraTargets(model, cfg({ targets }));
      const want = [0, 1, 2].flatMap((i) => modules.map((m) => `h.${i}.${m}`));
      expect(got.map((t) => t.name)).toEqual(want);
    });
  }

  it('a longer suffix picks one block; the full module name works as in PEFT', () => {
    expect(loraTargets(model, cfg({ targets: ['h.1.mlp.c_fc'] })).map((t) => t.name)).toEqual(['h.1.mlp.c_fc']);
    expect(loraTargets(model, cfg({ targets: ['transformer.h.2.attn.c_attn'] })).map((t) => t.name)).toEqual(['h.2.attn.c_attn']);
  });

  it('matching needs a dot boundary (proj is not c_proj)', () => {
    expect(matchesTarget('transformer.h.0.attn.c_proj', 'proj')).toBe(false);
    expect(matchesTarget('transformer.h.0.attn.c_proj', 'c_proj')).toBe(true);
    expect(() => loraTargets(model, cfg({ targets: ['proj'] }))).toThrow(LoraConfigError);
  });

  it('a target that matches nothing (a typo, a LayerNorm, the embeddings) is refused, naming it', () => {
    for (const t of ['c_atn', 'ln_1', 'wte', 'h.3.attn.c_attn']) {
      expect(() => loraTargets(model, cfg({ targets: ['c_attn', t] }))).toThrow(new RegExp(`'${t.replace(/\./g, '\\.')}' matches no linear layer`));
    }
  });
});

describe('LoRA shapes, groups, scaling', () => {
  it('A is (r, in), B is (out, r) with Conv1D (in, out) sizes; group = block + 1; both decay', () => {
    const specs = loraSpecs(model, cfg({ r: 3, targets: ['c_attn', 'c_proj', 'c_fc'] }));
    const byName = new Map(specs.map((s) => [s.name, s]));
    const C = 12, I = 20;
    expect(byName.get('h.0.attn.c_attn.lora_A.weight')!.shape).toEqual([3, C]);
    expect(byName.get('h.0.attn.c_attn.lora_B.weight')!.shape).toEqual([3 * C, 3]);
    expect(byName.get('h.1.attn.c_proj.lora_B.weight')!.shape).toEqual([C, 3]);
    expect(byName.get('h.1.mlp.c_fc.lora_B.weight')!.shape).toEqual([I, 3]);
    expect(byName.get('h.2.mlp.c_proj.lora_A.weight')!.shape).toEqual([3, I]);
    expect(byName.get('h.2.mlp.c_proj.lora_B.weight')!.shape).toEqual([C, 3]);
    for (const s of specs) {
      expect(s.group).toBe(Number(s.name.split('.')[1]) + 1);
      expect(s.decay).toBe(true);
      expect(s.numel).toBe(s.shape[0] * s.shape[1]);
    }
    expect(specs).toHaveLength(3 * 4 * 2);
    expect(countLoraParams(model, cfg({ r: 3, targets: ['c_attn', 'c_proj', 'c_fc'] }))).toBe(3 * 3 * ((C + 3 * C) + (C + C) + (C + I) + (I + C)));
  });

  it('scaling is α/r, or α/√r with rsLoRA', () => {
    expect(loraScaling(cfg({ r: 4, alpha: 8 }))).toBe(2);
    expect(loraScaling(cfg({ r: 4, alpha: 8, rslora: true }))).toBe(4);
    expect(loraScaling(cfg({ r: 2, alpha: 3, rslora: true }))).toBeCloseTo(3 / Math.SQRT2, 15);
  });

  it("PEFT's defaults: r 8, alpha 8, dropout 0, target c_attn for GPT-2", () => {
    expect(DEFAULT_LORA).toEqual({ r: 8, alpha: 8, dropout: 0, targets: ['c_attn'], rslora: false });
  });

  it('refuses a bad rank, alpha, dropout or an empty target list', () => {
    expect(() => loraTargets(model, cfg({ r: 0 }))).toThrow(/rank r must be a positive integer/);
    expect(() => loraTargets(model, cfg({ r: 1.5 }))).toThrow(LoraConfigError);
    expect(() => loraTargets(model, cfg({ r: 13 }))).toThrow(/exceeds the smallest layer width 12/);
    expect(() => loraTargets(model, cfg({ alpha: 0 }))).toThrow(/alpha must be a positive number/);
    expect(() => loraTargets(model, cfg({ dropout: 1 }))).toThrow(/dropout must be in \[0, 1\)/);
    expect(() => loraTargets(model, cfg({ targets: [] }))).toThrow(/at least one target/);
  });

  it('LoRA dropout refuses a model so deep that its sites would collide', () => {
    const deep = parseConfig({ vocab_size: 50, n_positions: 16, n_embd: 12, n_layer: 333, n_head: 3 });
    expect(() => loraTargets(deep, cfg({ dropout: 0.1 }))).toThrow(/at most 332 layers/);
    expect(loraTargets(deep, cfg({ dropout: 0 }))).toHaveLength(333);
    const ok = parseConfig({ vocab_size: 50, n_positions: 16, n_embd: 12, n_layer: 332, n_head: 3 });
    expect(loraTargets(ok, cfg({ dropout: 0.1 }))).toHaveLength(332);
  });
});

describe('LoRA dropout sites', () => {
  it('are 1000 + 4·layer + module index, the same in the engine and the reference, clear of the model sites', () => {
    const L = 332;
    const seen = new Set<number>();
    for (let i = 0; i < L; i++) for (const s of [DROPOUT_SITE.attnProbs(i), DROPOUT_SITE.attnResid(i), DROPOUT_SITE.mlpResid(i)]) seen.add(s);
    seen.add(DROPOUT_SITE.embedding);
    for (let i = 0; i < L; i++) {
      LORA_MODULES.forEach((_, m) => {
        const s = loraDropoutSite(i, m);
        expect(s).toBe(1000 + 4 * i + m);
        expect(s).toBe(LORA_SITE(i, m));
        expect(seen.has(s), `site ${s} used twice`).toBe(false);
        expect(s).toBeLessThan(4096);
        seen.add(s);
      });
    }
  });
});

describe('LoRA initialisation', () => {
  it('A ~ U(−1/√in, 1/√in) (PEFT kaiming_uniform_(a=√5)), B = 0; deterministic in the seed', () => {
    const c = cfg({ r: 4, targets: ['c_attn', 'c_proj', 'c_fc'] });
    const p = initLoraParams(model, c, 7);
    checkLoraParams(model, c, p);
    for (const t of loraTargets(model, c)) {
      const A = p.get(t.a)!;
      const bound = 1 / Math.sqrt(t.in);
      let max = 0;
      let sum = 0;
      let sq = 0;
      for (const v of A) {
        max = Math.max(max, Math.abs(v));
        sum += v;
        sq += v * v;
      }
      expect(max).toBeLessThanOrEqual(bound);
      expect(max).toBeGreaterThan(0.8 * bound); // it uses the whole range
      // variance of U(−b, b) is b²/3; with 48 … 80 samples stay within a factor ~2
      const variance = sq / A.length - (sum / A.length) ** 2;
      expect(variance).toBeGreaterThan((bound * bound) / 3 / 2.5);
      expect(variance).toBeLessThan((bound * bound) / 3 * 2.5);
      expect(p.get(t.b)!.every((v) => v === 0)).toBe(true);
    }
    const again = initLoraParams(model, c, 7);
    const other = initLoraParams(model, c, 8);
    const a0 = 'h.0.attn.c_attn.lora_A.weight';
    expect([...again.get(a0)!]).toEqual([...p.get(a0)!]);
    expect([...other.get(a0)!]).not.toEqual([...p.get(a0)!]);
    // different layers get different streams
    expect([...p.get('h.1.attn.c_attn.lora_A.weight')!]).not.toEqual([...p.get(a0)!]);
  });

  it('checkLoraParams names a missing, mis-sized or foreign tensor', () => {
    const c = cfg({ r: 2 });
    const p = initLoraParams(model, c, 1);
    const missing = new Map(p);
    missing.delete('h.1.attn.c_attn.lora_B.weight');
    expect(() => checkLoraParams(model, c, missing)).toThrow(/Missing LoRA tensor h\.1\.attn\.c_attn\.lora_B\.weight/);
    const short = new Map(p).set('h.0.attn.c_attn.lora_A.weight', new Float32Array(3));
    expect(() => checkLoraParams(model, c, short)).toThrow(ShapeError);
    const extra = new Map(p).set('h.0.mlp.c_fc.lora_A.weight', new Float32Array(24));
    expect(() => checkLoraParams(model, c, extra)).toThrow(/not a LoRA factor of this configuration/);
  });
});
