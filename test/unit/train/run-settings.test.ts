// The one table of run defaults (engine/train/run-settings.ts): the page's defaults and the
// CLI's equal it except the differences it lists, --help prints its values, and the one
// settings → TrainRunConfig mapping carries every setting across.
import { describe, expect, it } from 'vitest';
import { Args, helpText, parseArgs } from '../../../src/cli/args.ts';
import { trainSpec } from '../../../src/cli/commands/train.ts';
import { prepareSpec } from '../../../src/cli/commands/prepare.ts';
import { runSettingsFromArgs, SCHEDULE_NAMES } from '../../../src/cli/train-settings.ts';
import { GPT2_SMALL } from '../../../src/engine/model/config.ts';
import {
  DEFAULT_LORA, DEFAULT_SCHEDULE, loraConfigOf, PAGE_OVERRIDES, RUN_DEFAULTS, RunSettingsError, toRunConfig, UNTRAINED_MODEL_LR, type RunSettings,
} from '../../../src/engine/train/run-settings.ts';
import { DEFAULT_TRAIN, suggestedLr, validateTrain } from '../../../src/worker/settings.ts';

const KEYS = Object.keys(RUN_DEFAULTS) as Array<keyof RunSettings>;
const required = ['--model', 'm', '--data', 'd', '--out', 'o'];
const cliSettings = (extra: string[] = []) => runSettingsFromArgs(new Args(parseArgs(trainSpec, [...required, ...extra])), null);

describe('one table of run defaults', () => {
  it('the page starts from the table, except the listed page differences', () => {
    const overridden = new Set(Object.keys(PAGE_OVERRIDES));
    expect(overridden.size).toBeGreaterThan(0);
    for (const k of KEYS) {
      if (overridden.has(k)) {
        expect(DEFAULT_TRAIN[k], k).toEqual(PAGE_OVERRIDES[k as keyof typeof PAGE_OVERRIDES]);
        // a listed difference that is no difference would be a stale note
        expect(DEFAULT_TRAIN[k], k).not.toEqual(RUN_DEFAULTS[k]);
      } else if (k === 'lora') {
        expect({ ...DEFAULT_TRAIN.lora, targets: [...DEFAULT_TRAIN.lora.targets] }).toEqual({ ...RUN_DEFAULTS.lora, targets: [...RUN_DEFAULTS.lora.targets] });
      } else {
        expect(DEFAULT_TRAIN[k], k).toEqual(RUN_DEFAULTS[k]);
      }
    }
    // The page's defaults pass the page's own checks on GPT-2 124M.
    expect(validateTrain(DEFAULT_TRAIN, { nPositions: 1024, nLayer: 12, trainTokens: 100_000 })).toEqual({});
  });

  it('the CLI with no run flags runs exactly the table', () => {
    expect(cliSettings()).toEqual({ ...RUN_DEFAULTS, unfreeze: { ...RUN_DEFAULTS.unfreeze }, lora: { ...RUN_DEFAULTS.lora } });
  });

  it("--help shows the table's values as the defaults", () => {
    const help = helpText(trainSpec).split('\n');
    const line = (flag: string) => help.find((l) => l.startsWith(`  --${flag} `)) ?? '';
    const schedule = Object.keys(SCHEDULE_NAMES).find((n) => SCHEDULE_NAMES[n] === RUN_DEFAULTS.schedule);
    const want: Array<[string, string | number]> = [
      ['lr', RUN_DEFAULTS.lr], ['schedule', schedule!], ['steps', RUN_DEFAULTS.steps], ['batch', RUN_DEFAULTS.batch], ['seq', RUN_DEFAULTS.seq],
      ['seed', RUN_DEFAULTS.seed], ['order', RUN_DEFAULTS.order], ['beta2', RUN_DEFAULTS.beta2], ['eps', RUN_DEFAULTS.eps], ['grad-clip', RUN_DEFAULTS.gradClip],
      ['eval-every', RUN_DEFAULTS.evalEvery],
    ];
    for (const [flag, v] of want) expect(line(flag), flag).toMatch(new RegExp(`\\(default: ${String(v).replace(/[.+-]/g, '\\$&')}\\)$`));
    expect(line('lora-alpha')).toContain(`default ${RUN_DEFAULTS.lora.alpha}`);
    expect(line('lora-dropout')).toContain(`default ${RUN_DEFAULTS.lora.dropout}`);
    // prepare's validation split uses the run's seed, as the page's split does.
    expect(helpText(prepareSpec)).toMatch(new RegExp(`--seed <int>.*\\(default: ${RUN_DEFAULTS.seed}\\)`));
  });

  it('each flag reaches its setting', () => {
    const s = cliSettings(['--lr', '3e-4', '--schedule', 'stlr', '--seed', '7', '--order', 'sequential', '--dropout', '0', '--unfreeze-start', '2', '--unfreeze-every', '5', '--beta2', '0.95']);
    expect(s).toMatchObject({ lr: 3e-4, schedule: 'slanted', seed: 7, order: 'sequential', dropout: 0, unfreeze: { enabled: true, start: 2, every: 5 }, beta2: 0.95 });
  });

  it('the defaults are the documented sources', () => {
    // Hugging Face TrainingArguments, torch.optim.AdamW and PEFT's LoraConfig, as the table's comments say.
    expect(RUN_DEFAULTS).toMatchObject({ lr: 5e-5, schedule: 'linear', warmup: 0, weightDecay: 0, gradClip: 1, seed: 42, beta1: 0.9, beta2: 0.999, eps: 1e-8 });
    // float32 stays the default: the PyTorch parity and continuation are checked in it.
    expect(RUN_DEFAULTS.precision).toBe('f32');
    expect(DEFAULT_LORA).toEqual({ r: 8, alpha: 8, dropout: 0, targets: ['c_attn'], rslora: false });
    expect(DEFAULT_SCHEDULE).toEqual({ kind: 'linear', warmup: 0, minLrRatio: 0, cutFrac: 0.1, ratio: 32 });
    expect(suggestedLr(true)).toBe(RUN_DEFAULTS.lr);
    expect(suggestedLr(false)).toBe(UNTRAINED_MODEL_LR);
  });
});

describe('toRunConfig: the one settings → run-config mapping', () => {
  const model = { ...GPT2_SMALL, embdPdrop: 0.1, attnPdrop: 0.2, residPdrop: 0.3 };

  it('carries every setting and takes the model\'s dropout when none is set', () => {
    const s: RunSettings = { ...RUN_DEFAULTS, lr: 1e-3, schedule: 'cosine', warmup: 5, minLrRatio: 0.1, stlrRatio: 16, cutFrac: 0.2, batch: 3, seq: 17, gradAccum: 2, weightDecay: 0.01, gradClip: 0.5, beta1: 0.8, beta2: 0.99, eps: 1e-6, seed: 9, order: 'sequential', lrDecay: 1.2, evalEvery: 4, unfreeze: { enabled: true, start: 2, every: 3 }, precision: 'f16' };
    const tokens = [1, 2, 3];
    const c = toRunConfig(s, model, { frozen: new Set([0]), evalTokens: tokens });
    expect(c).toEqual({
      steps: s.steps, batch: 3, seq: 17, gradAccum: 2, lr: 1e-3,
      schedule: { kind: 'cosine', warmup: 5, minLrRatio: 0.1, cutFrac: 0.2, ratio: 16 },
      lrDecay: 1.2, unfreeze: { start: 2, every: 3 }, beta1: 0.8, beta2: 0.99, eps: 1e-6, weightDecay: 0.01, gradClip: 0.5,
      dropout: { embd: 0.1, attn: 0.2, resid: 0.3 }, seed: 9, order: 'sequential', frozen: new Set([0]), precision: 'f16',
      evaluation: { every: 4, tokens },
    });
    const one = toRunConfig({ ...s, dropout: 0.05, unfreeze: { ...s.unfreeze, enabled: false } }, model, { frozen: new Set(), steps: 77 });
    expect(one.dropout).toEqual({ embd: 0.05, attn: 0.05, resid: 0.05 });
    expect(one.steps).toBe(77);
    expect(one.unfreeze).toBeNull();
    expect(one.evaluation).toBeNull();
  });

  it('refuses a frozen group the model lacks, and a run with nothing to train', () => {
    expect(() => toRunConfig(RUN_DEFAULTS, model, { frozen: new Set([14]) })).toThrow(RunSettingsError);
    expect(() => toRunConfig(RUN_DEFAULTS, model, { frozen: new Set([14]) })).toThrow(/group 14 does not exist.*0 … 13/);
    const all = new Set(Array.from({ length: 14 }, (_, g) => g));
    expect(() => toRunConfig(RUN_DEFAULTS, model, { frozen: all })).toThrow(/nothing would train/);
    // gradual unfreezing opens groups the user did not freeze, so the check is the engine's then
    expect(() => toRunConfig({ ...RUN_DEFAULTS, unfreeze: { enabled: true, start: 1, every: 2 } }, model, { frozen: all })).not.toThrow();
  });

  it('LoRA settings become the engine\'s LoraConfig only when enabled', () => {
    expect(loraConfigOf(RUN_DEFAULTS)).toBeNull();
    expect(loraConfigOf({ lora: { enabled: true, r: 4, alpha: 16, dropout: 0.1, targets: ['c_attn', 'c_fc'] } })).toEqual({ r: 4, alpha: 16, dropout: 0.1, targets: ['c_attn', 'c_fc'], rslora: false });
  });
});
