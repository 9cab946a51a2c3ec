// The PyTorch continuation's train.py (src/io/torch-project/train.py) against facts that do not
// need our GPU engine: the studio's window permutation and learning-rate schedules (the
// TypeScript functions themselves), the PyTorch golden runs of test/goldens/ (full, frozen,
// accumulated, LoRA, rsLoRA), the float64 reference with cosine warmup, discriminative rates,
// gradual unfreezing and frozen embeddings, torchrun with two processes against one, a
// checkpoint it writes resumed by itself, and its refusals of bad input before any step.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { paramSpecs } from '../../../src/engine/model/params.ts';
import { refForward, refTrain } from '../../../src/engine/reference/gpt2.ts';
import { epochPermutation, WindowSampler } from '../../../src/engine/train/data.ts';
import { groupLrFactors, unfreezeSchedule } from '../../../src/engine/train/groups.ts';
import { lrMultiplier, type ScheduleConfig } from '../../../src/engine/train/schedule.ts';
import { goldenTensor, loadGoldens } from '../../helpers/goldens.ts';
import { fractionOff, goldenCheckpoint, pyJson, readLog, readTensors, trainPy, type LogLine } from '../../helpers/torch-project.ts';

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'torch-train-'));
});
afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(1e-12, Math.abs(b));

describe('the window order', () => {
  it("train.py's permutation is the studio's epochPermutation on many (W, seed, epoch)", () => {
    const Ws = [1, 2, 3, 5, 17, 100, 1000, 4099];
    const seeds = [0, 1, 1337, 2 ** 32 - 1, 2 ** 32 + 5, 2 ** 40 + 123, Number.MAX_SAFE_INTEGER];
    const epochs = [0, 1, 7, 2 ** 32 + 1];
    const cases = Ws.flatMap((W) => seeds.flatMap((seed) => epochs.map((epoch) => ({ W, seed, epoch }))));
    const got = pyJson<number[][]>(
      'cases = json.load(sys.stdin)\nprint(json.dumps([train.epoch_permutation(c["W"], c["seed"], c["epoch"]).tolist() for c in cases]))',
      JSON.stringify(cases),
    );
    expect(got.length).toBe(cases.length);
    let identity = 0;
    cases.forEach((c, k) => {
      const want = [...epochPermutation(c.W, c.seed, c.epoch)];
      expect(got[k], `W=${c.W} seed=${c.seed} epoch=${c.epoch}`).toEqual(want);
      if (c.W > 16 && want.every((w, i) => w === i)) identity++;
    });
    expect(identity).toBe(0); // the cases really shuffle
  });

  it('rows across epoch boundaries read the windows WindowSampler reads', () => {
    const W = 13;
    const tokens = new Uint16Array(W * 4 + 1 + 2);
    const want = (seed: number, shuffle: boolean) => {
      const s = new WindowSampler({ tokens, T: 4, shuffle, seed });
      return Array.from({ length: 4 * W + 3 }, (_, j) => s.windowAt(j));
    };
    const got = pyJson<{ shuffled: number[]; sequential: number[] }>(
      `o = train.WindowOrder(${W}, True, 99); q = train.WindowOrder(${W}, False, 99)\n` +
        `print(json.dumps({"shuffled": [o.window_at(j) for j in range(${4 * W + 3})], "sequential": [q.window_at(j) for j in range(${4 * W + 3})]}))`,
    );
    expect(got.shuffled).toEqual(want(99, true));
    expect(got.sequential).toEqual(want(99, false));
  });
});

describe('learning rates', () => {
  it("train.py's schedule multipliers are lrMultiplier's at every step", () => {
    const configs: Array<{ s: ScheduleConfig; total: number }> = [];
    for (const kind of ['constant', 'linear', 'cosine'] as const) {
      for (const warmup of [0, 3, 0.25, 0.5]) {
        for (const minLrRatio of [0, 0.1]) for (const total of [1, 7, 40]) configs.push({ s: { kind, warmup, minLrRatio, cutFrac: 0.1, ratio: 32 }, total });
      }
    }
    for (const cutFrac of [0.1, 0.3, 1]) {
      for (const ratio of [1, 32]) for (const total of [1, 7, 40]) configs.push({ s: { kind: 'slanted', warmup: 0, minLrRatio: 0, cutFrac, ratio }, total });
    }
    const asSettings = (s: ScheduleConfig) => ({ kind: s.kind, warmup: s.warmup, min_lr_ratio: s.minLrRatio, cut_frac: s.cutFrac, ratio: s.ratio });
    const got = pyJson<number[][]>(
      'cs = json.load(sys.stdin)\nprint(json.dumps([[train.lr_multiplier(c["s"], t, c["total"]) for t in range(c["total"] + 3)] for c in cs]))',
      JSON.stringify(configs.map((c) => ({ s: asSettings(c.s), total: c.total }))),
    );
    let varied = 0;
    configs.forEach((c, k) => {
      const want = Array.from({ length: c.total + 3 }, (_, t) => lrMultiplier(c.s, t, c.total));
      got[k].forEach((v, t) => expect(Math.abs(v - want[t]), `${JSON.stringify(c.s)} total ${c.total} step ${t}`).toBeLessThanOrEqual(1e-15));
      if (new Set(want).size > 2) varied++;
    });
    expect(varied).toBeGreaterThan(20);
  });

  it("discriminative factors and unfreezing turns are groups.ts's", () => {
    const L = 5;
    const unfreeze = { start: 2, every: 3 };
    const frozen = [0, 3];
    const got = pyJson<{ factors: number[]; opens: Array<number | null> }>(
      `print(json.dumps({"factors": train.group_lr_factors(${L}, 1.3), "opens": train.open_steps(${L}, {"start": 2, "every": 3}, {0, 3})}))`,
    );
    const want = [...groupLrFactors(L, 1.3)];
    got.factors.forEach((f, d) => expect(rel(f, want[d])).toBeLessThan(1e-15));
    expect(got.opens).toEqual(unfreezeSchedule({ L, ...unfreeze, userFrozen: new Set(frozen) }).openAt);
  });
});

describe('golden runs of PyTorch (test/goldens), continued from a step-0 checkpoint', () => {
  for (const kase of ['full', 'frozen', 'accum', 'lora', 'rslora']) {
    it(`${kase}: every step's loss and grad_norm, and the final tensors`, () => {
      const ck = join(root, `golden-${kase}`);
      const g = goldenCheckpoint(ck, kase);
      const out = join(root, `golden-${kase}-out`);
      const r = trainPy(['--checkpoint', ck, '--out', out]);
      expect(r.status, r.stderr).toBe(0);
      const log = readLog(join(out, 'log.jsonl'));
      expect(log.map((l) => l.step)).toEqual(g.losses.map((_, i) => i + 1));
      log.forEach((l, i) => {
        expect(rel(l.loss, g.losses[i]), `loss step ${i + 1}`).toBeLessThan(1e-5);
        expect(rel(l.grad_norm, g.grad_norms[i]), `grad_norm step ${i + 1}`).toBeLessThan(1e-4);
      });
      const lora = kase === 'lora' || kase === 'rslora';
      const G = loadGoldens(lora ? 'lora-tiny' : 'gpt2-tiny');
      const gc = G.cases.find((c) => c.name === kase)!;
      const finals = [...gc.tensors.keys()].filter((k) => k.startsWith('final.'));
      expect(finals.length).toBeGreaterThan(3);
      const ckpt = join(out, `checkpoint-${g.losses.length}`);
      const got = lora ? readTensors(join(ckpt, 'adapter_model.safetensors')) : readTensors(join(out, 'model.safetensors'));
      const prefix = lora ? 'base_model.model.transformer.' : 'transformer.';
      for (const k of finals) {
        const name = prefix + k.slice('final.'.length);
        expect(got.has(name), name).toBe(true);
        expect(fractionOff(got.get(name)!, goldenTensor(gc, k)), name).toBeLessThanOrEqual(0.001);
      }
      if (lora) {
        // the HF folder at <out>/ holds the merged weights W + (B·A)ᵀ·s; the checkpoint the base ones
        const merged = readTensors(join(out, 'model.safetensors'));
        const base = readTensors(join(ckpt, 'model.safetensors'));
        for (const k of gc.tensors.keys()) {
          if (!k.startsWith('merged.')) continue;
          const name = 'transformer.' + k.slice('merged.'.length);
          expect(fractionOff(merged.get(name)!, goldenTensor(gc, k)), name).toBeLessThanOrEqual(0.001);
          expect(fractionOff(base.get(name)!, readTensors(join(ck, 'model.safetensors')).get(name)!, 0), name).toBe(0);
        }
        expect(existsSync(join(out, 'adapter', 'adapter_model.safetensors'))).toBe(true);
      }
    });
  }
});

describe('a run with cosine warmup, discriminative rates, gradual unfreezing and frozen embeddings', () => {
  const settings = {
    steps: 10, grad_accum: 2, lr: 2e-3, lr_decay: 1.3, frozen: [0], unfreeze: { start: 2, every: 3 },
    schedule: { kind: 'cosine', warmup: 3, min_lr_ratio: 0.1, cut_frac: 0.1, ratio: 32 },
  };
  let ck: string;
  let one: LogLine[];
  beforeAll(() => {
    ck = join(root, 'rich');
    goldenCheckpoint(ck, 'full', settings);
    const r = trainPy(['--checkpoint', ck, '--out', join(root, 'rich-1'), '--save-every', '4']);
    expect(r.status, r.stderr).toBe(0);
    one = readLog(join(root, 'rich-1', 'log.jsonl'));
  });

  it('matches the float64 reference step for step', () => {
    const G = loadGoldens();
    const L = G.config.nLayer;
    const init = new Map([...G.params].map(([k, v]) => [k, Float64Array.from(v)]));
    const sched = unfreezeSchedule({ L, ...settings.unfreeze, userFrozen: new Set(settings.frozen) });
    const factors = groupLrFactors(L, settings.lr_decay);
    const s = { kind: 'cosine', warmup: 3, minLrRatio: 0.1, cutFrac: 0.1, ratio: 32 } as const;
    const gc = G.cases.find((c) => c.name === 'full')!;
    const ref = refTrain({
      config: G.config, params: init, tokens: G.tokens, B: gc.B, T: gc.T, steps: 10, gradAccum: 2, lr: settings.lr,
      beta1: gc.beta1, beta2: gc.beta2, eps: gc.eps, weightDecay: gc.weight_decay, maxGradNorm: gc.max_grad_norm,
      frozen: (step) => new Set(Array.from({ length: L + 2 }, (_, d) => d).filter((d) => !sched.openGroupsAt(step).includes(d))),
      schedule: (step) => lrMultiplier(s, step, 10),
      groupLrMultiplier: (d) => factors[d],
    });
    expect(one.length).toBe(10);
    one.forEach((l, i) => {
      expect(rel(l.loss, ref.log[i].loss), `loss step ${i + 1}`).toBeLessThan(1e-4);
      expect(rel(l.grad_norm, ref.log[i].gradNorm), `grad_norm step ${i + 1}`).toBeLessThan(1e-4);
      expect(rel(l.lr, ref.log[i].lr * factors[L + 1])).toBeLessThan(1e-12);
    });
    const got = readTensors(join(root, 'rich-1', 'model.safetensors'));
    for (const spec of paramSpecs(G.config)) {
      const t = got.get('transformer.' + spec.name)!;
      expect(fractionOff(t, ref.params.get(spec.name)!), spec.name).toBeLessThanOrEqual(0.001);
      if (spec.group === 0) expect(fractionOff(t, G.params.get(spec.name)!, 0), `${spec.name} stays frozen`).toBe(0);
    }
  });

  it('torchrun with two processes (gloo) agrees with one process; only rank 0 writes', () => {
    const out = join(root, 'rich-2');
    const r = trainPy(['--checkpoint', ck, '--out', out], 2);
    expect(r.status, r.stderr).toBe(0);
    const two = readLog(join(out, 'log.jsonl'));
    expect(two.map((l) => l.step)).toEqual(one.map((l) => l.step));
    two.forEach((l, i) => {
      expect(rel(l.loss, one[i].loss), `loss step ${i + 1}`).toBeLessThan(1e-4);
      expect(rel(l.grad_norm, one[i].grad_norm), `grad_norm step ${i + 1}`).toBeLessThan(1e-4);
    });
    const a = readTensors(join(out, 'model.safetensors'));
    const b = readTensors(join(root, 'rich-1', 'model.safetensors'));
    for (const [k, t] of b) expect(fractionOff(a.get(k)!, t), k).toBeLessThanOrEqual(0.001);
    expect(readdirSync(out).filter((n) => n.startsWith('.'))).toEqual([]);
  });

  it('the checkpoint it writes continues to the same steps and weights (--steps is the total)', () => {
    const ck4 = join(root, 'rich-1', 'checkpoint-4');
    const state = JSON.parse(readFileSync(join(ck4, 'trainer_state.json'), 'utf8'));
    expect(state).toMatchObject({ format_version: 1, step: 4, rows_read: 4 * 2 * 2, writer: 'torch', total_steps: 10 });
    expect(state.log_history.map((l: LogLine) => l.step)).toEqual([1, 2, 3, 4]);
    expect(state.data.train[0].startsWith('/')).toBe(true);
    const out = join(root, 'rich-resumed');
    const r = trainPy(['--checkpoint', ck4, '--out', out, '--steps', '10']);
    expect(r.status, r.stderr).toBe(0);
    const log = readLog(join(out, 'log.jsonl'));
    expect(log.map((l) => l.step)).toEqual([5, 6, 7, 8, 9, 10]);
    log.forEach((l, i) => expect(rel(l.loss, one[i + 4].loss), `loss step ${l.step}`).toBeLessThan(1e-6));
    const a = readTensors(join(out, 'model.safetensors'));
    for (const [k, t] of readTensors(join(root, 'rich-1', 'model.safetensors'))) expect(fractionOff(a.get(k)!, t, 1e-6), k).toBeLessThanOrEqual(0.001);
  });
});

describe('held-out evaluation', () => {
  it('every eval_every steps and at the end: loss, perplexity and accuracy over every window, as the float64 reference computes them', () => {
    const ck = join(root, 'eval');
    goldenCheckpoint(ck, 'full', { eval: true, eval_every: 4, steps: 6 });
    const out = join(root, 'eval-out');
    const r = trainPy(['--checkpoint', ck, '--out', out]);
    expect(r.status, r.stderr).toBe(0);
    const lines = readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const evals = lines.filter((l) => 'eval_loss' in l);
    expect(evals.map((l) => l.step)).toEqual([4, 6]);
    expect(lines.map((l) => l.step)).toEqual([1, 2, 3, 4, 4, 5, 6, 6]);
    const G = loadGoldens();
    const T = 37;
    const W = Math.floor((G.tokens.length - 1) / T);
    const final = readTensors(join(out, 'model.safetensors'));
    const params = new Map([...final].map(([k, v]) => [k.replace(/^transformer\./, ''), Float64Array.from(v)]));
    const inputs = new Int32Array(W * T);
    const targets = new Int32Array(W * T);
    for (let w = 0; w < W; w++) for (let t = 0; t < T; t++) {
      inputs[w * T + t] = G.tokens[w * T + t];
      targets[w * T + t] = G.tokens[w * T + t + 1];
    }
    const f = refForward(G.config, params, inputs, targets, W, T);
    const V = G.config.vocabSize;
    let correct = 0;
    for (let n = 0; n < W * T; n++) {
      let best = 0;
      for (let v = 1; v < V; v++) if (f.logits[n * V + v] > f.logits[n * V + best]) best = v;
      if (best === targets[n]) correct++;
    }
    const last = evals[1];
    expect(rel(last.eval_loss, f.loss!)).toBeLessThan(1e-5);
    expect(rel(last.eval_ppl, Math.exp(f.loss!))).toBeLessThan(1e-5);
    expect(Math.abs(last.eval_acc - correct / (W * T))).toBeLessThanOrEqual(1 / (W * T));
    const state = JSON.parse(readFileSync(join(out, 'checkpoint-6', 'trainer_state.json'), 'utf8'));
    expect(state.log_history.filter((l: { eval_loss?: number }) => l.eval_loss !== undefined).length).toBe(2);
    expect(state.data.eval).toEqual(state.data.train);
  });
});

describe('shuffled windows', () => {
  it('one and two processes agree, and differ from the sequential order', () => {
    const ck = join(root, 'shuffled');
    goldenCheckpoint(ck, 'full', { order: 'shuffled', seed: 7, steps: 6, batch: 4 });
    const r1 = trainPy(['--checkpoint', ck, '--out', join(root, 'shuffled-1')]);
    expect(r1.status, r1.stderr).toBe(0);
    const r2 = trainPy(['--checkpoint', ck, '--out', join(root, 'shuffled-2')], 2);
    expect(r2.status, r2.stderr).toBe(0);
    const a = readLog(join(root, 'shuffled-1', 'log.jsonl'));
    const b = readLog(join(root, 'shuffled-2', 'log.jsonl'));
    a.forEach((l, i) => expect(rel(b[i].loss, l.loss), `step ${l.step}`).toBeLessThan(1e-4));
    const seq = join(root, 'sequential');
    goldenCheckpoint(seq, 'full', { steps: 6, batch: 4 });
    expect(trainPy(['--checkpoint', seq, '--out', join(root, 'sequential-1')]).status).toBe(0);
    const c = readLog(join(root, 'sequential-1', 'log.jsonl'));
    expect(a.some((l, i) => rel(l.loss, c[i].loss) > 1e-4)).toBe(true);
  });
});

describe('bad input is refused before any step, writing nothing', () => {
  const refuse = (ck: string, args: string[], env: Record<string, string> = {}) => {
    const out = join(root, `refused-${Math.random().toString(36).slice(2)}`);
    const r = trainPy(['--checkpoint', ck, '--out', out, ...args], 1, env);
    expect(r.status).toBe(2);
    expect(existsSync(out)).toBe(false);
    return r.stderr;
  };
  let ck: string;
  beforeAll(() => {
    ck = join(root, 'bad-base');
    goldenCheckpoint(ck, 'full');
  });

  it('a checkpoint of another format version', () => {
    const d = join(root, 'bad-version');
    goldenCheckpoint(d, 'full');
    const p = join(d, 'trainer_state.json');
    writeFileSync(p, JSON.stringify({ ...JSON.parse(readFileSync(p, 'utf8')), format_version: 2 }));
    expect(refuse(d, [])).toMatch(/format version 2; this train\.py reads version 1/);
  });

  it('a missing data file, named with what to do', () => {
    const d = join(root, 'bad-data');
    goldenCheckpoint(d, 'full');
    const p = join(d, 'trainer_state.json');
    const s = JSON.parse(readFileSync(p, 'utf8'));
    writeFileSync(p, JSON.stringify({ ...s, data: { train: ['/nonexistent/corpus/train.bin'] } }));
    expect(refuse(d, [])).toMatch(/\/nonexistent\/corpus\/train\.bin does not exist.*data\.train/);
  });

  it('different data than the run trained on', () => {
    const d = join(root, 'bad-tokens');
    goldenCheckpoint(d, 'full');
    const p = join(d, 'trainer_state.json');
    const s = JSON.parse(readFileSync(p, 'utf8'));
    writeFileSync(p, JSON.stringify({ ...s, fingerprints: { ...s.fingerprints, train_tokens: 'sha256:' + 'f'.repeat(64) } }));
    expect(refuse(d, [])).toMatch(/not the data the run trained on/);
  });

  it('a batch that does not split across the processes', () => {
    // the check runs before the process group starts, so the environment torchrun sets is enough
    expect(refuse(ck, [], { WORLD_SIZE: '3', RANK: '0', LOCAL_RANK: '0' })).toMatch(/batch of 2 rows does not split across 3 processes/);
  });

  it('--steps not beyond the checkpoint, and an output that exists', () => {
    const d = join(root, 'bad-steps');
    goldenCheckpoint(d, 'full', { steps: 3 });
    const out = join(root, 'bad-steps-out');
    expect(trainPy(['--checkpoint', d, '--out', out]).status).toBe(0);
    const again = trainPy(['--checkpoint', d, '--out', out]);
    expect(again.status).toBe(2);
    expect(again.stderr).toMatch(/checkpoint-3 already exists; nothing is written over/);
    expect(refuse(join(out, 'checkpoint-3'), ['--steps', '3'])).toMatch(/already done 3 steps/);
  });
});
