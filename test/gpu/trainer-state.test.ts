// The trainer's state round trip, the base of checkpoints and exact resume: export → import into
// a fresh trainer (on fresh weights holding the exported step's values) → the next steps are
// identical bit for bit (losses, gradient norms, weights, moments). Checked on a context whose
// binding limit splits wte into row ranges, and through runTraining's resume for every feature
// that carries state between steps (shuffled windows, dropout, accumulation, gradual unfreezing,
// discriminative rates, a warmup + cosine schedule, LoRA); and a non-finite step leaves the state
// of the last good step. The staged copy (Trainer.stageState) read after later steps were
// submitted is the state and weights of the step it was taken at.
import { describe, expect, it } from 'vitest';
import { nodeGpu } from '../../src/cli/webgpu-node.ts';
import { NonFiniteLossError } from '../../src/engine/errors.ts';
import { GpuContext } from '../../src/engine/gpu/context.ts';
import { GPT2_SMALL, type GPT2Config } from '../../src/engine/model/config.ts';
import { initLoraParams, LoraWeights, type LoraConfig } from '../../src/engine/model/lora.ts';
import { paramSpecs, type HostParams } from '../../src/engine/model/params.ts';
import { GpuWeights } from '../../src/engine/model/weights.ts';
import type { StepLog, TrainRunConfig } from '../../src/engine/train/config.ts';
import { runTraining, type RunSnapshot } from '../../src/engine/train/loop.ts';
import { DEFAULT_SCHEDULE } from '../../src/engine/train/run-settings.ts';
import { Trainer, TrainerStateError, type MicroBatch, type TrainerState } from '../../src/engine/train/trainer.ts';
import { loadGoldens } from '../helpers/goldens.ts';
import { gpuContext } from '../helpers/gpu.ts';
import { randn, rng } from '../helpers/numeric.ts';

const G = loadGoldens();

/** 576 KiB: wte (2000 × 192 floats, 1.5 MB) is bound in row ranges, as GPT-2's is on lavapipe. */
const LIMIT = 192 * 768 * 4;
const SPLIT: GPT2Config = {
  ...GPT2_SMALL, vocabSize: 2000, nPositions: 64, nEmbd: 192, nLayer: 2, nHead: 4, nInner: 768,
  embdPdrop: 0.1, attnPdrop: 0.1, residPdrop: 0.1, bosTokenId: 1999, eosTokenId: 1999,
};

function initParams(c: GPT2Config, seed: number): HostParams {
  const out: HostParams = new Map();
  let s = seed;
  for (const spec of paramSpecs(c)) {
    const r = randn(spec.numel, s++, spec.shape.length >= 2 ? 0.02 : 0.05);
    if (/ln_\d\.weight|ln_f\.weight/.test(spec.name)) for (let i = 0; i < r.length; i++) r[i] += 1;
    out.set(spec.name, Float32Array.from(r));
  }
  return out;
}

const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

function expectSameParams(got: HostParams, want: HostParams): void {
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [k, v] of want) expect(bits(got.get(k)!).equals(bits(v)), k).toBe(true);
}

function expectSameState(got: TrainerState, want: TrainerState): void {
  expect(got.stepIndex).toBe(want.stepIndex);
  expect([...got.tensors.keys()].sort()).toEqual([...want.tensors.keys()].sort());
  for (const [k, t] of want.tensors) {
    const g = got.tensors.get(k)!;
    expect(g.step, k).toBe(t.step);
    expect(bits(g.m).equals(bits(t.m)), `${k}.exp_avg`).toBe(true);
    expect(bits(g.v).equals(bits(t.v)), `${k}.exp_avg_sq`).toBe(true);
  }
}

describe('Trainer.exportState / importState', () => {
  it('continues bit for bit in a fresh trainer, with wte split across bindings, dropout and accumulation', async () => {
    const ctx = await GpuContext.create(await nodeGpu(), 'high-performance', { maxStorageBufferBindingSize: LIMIT });
    expect(ctx.maxBinding).toBe(LIMIT);
    const B = 2;
    const T = 16;
    const r = rng(7);
    const batches: MicroBatch[][] = Array.from({ length: 5 }, () => Array.from({ length: 2 }, () => ({
      inputs: Uint32Array.from({ length: B * T }, () => Math.floor(r() * SPLIT.vocabSize)),
      targets: Uint32Array.from({ length: B * T }, () => Math.floor(r() * SPLIT.vocabSize)),
    })));
    const opts = {
      batch: B, seq: T, gradAccum: 2, dropout: { embd: 0.1, attn: 0.1, resid: 0.1 }, seed: 11, frozen: new Set([2]),
      beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, gradClip: 1,
    };
    const lr = (g: number) => 1e-3 * (1 + g / 10);
    const wA = new GpuWeights(ctx, SPLIT, initParams(SPLIT, 3));
    expect(wA.ranges('wte.weight').length).toBeGreaterThan(1);
    const a = await Trainer.create(ctx, wA, opts);
    for (let s = 0; s < 3; s++) await a.step(batches[s], lr);
    const state = await a.exportState();
    expect(state.stepIndex).toBe(3);
    // Group 2 (block 1) is frozen: no state; every other tensor has been stepped three times.
    const specs = paramSpecs(SPLIT);
    expect([...state.tensors.keys()].sort()).toEqual(specs.filter((s) => s.group !== 2).map((s) => s.name).sort());
    for (const t of state.tensors.values()) expect(t.step).toBe(3);
    const w3 = await wA.download();
    // A staged copy taken now and read after two more steps were submitted is still step 3's
    // state and weights (queue order), read straight from the mapped copies.
    const staged = await a.stageState();
    expect(staged.bytes).toBeGreaterThanOrEqual(wA.bytes);
    const tailA = [await a.step(batches[3], lr), await a.step(batches[4], lr)];
    const copy = await staged.read();
    expectSameState(copy.state, state);
    expectSameParams(copy.params!, w3);
    staged.release();
    const endA = await wA.download();
    const stateA = await a.exportState();
    expect(bits(stateA.tensors.get('wte.weight')!.m).equals(bits(state.tensors.get('wte.weight')!.m))).toBe(false);

    const wB = new GpuWeights(ctx, SPLIT, w3);
    const b = await Trainer.create(ctx, wB, opts);
    await b.importState(state);
    const tailB = [await b.step(batches[3], lr), await b.step(batches[4], lr)];
    expect(tailB).toEqual(tailA);
    expectSameParams(await wB.download(), endA);
    expectSameState(await b.exportState(), stateA);
    // Without the state the same two steps differ (so the comparison above can fail).
    const wC = new GpuWeights(ctx, SPLIT, w3);
    const c = await Trainer.create(ctx, wC, opts);
    const tailC = [await c.step(batches[3], lr), await c.step(batches[4], lr)];
    expect(tailC[1].loss).not.toBe(tailA[1].loss);
    for (const x of [a, b, c]) x.destroy();
    for (const w of [wA, wB, wC]) w.destroy();
    ctx.destroy();
  });

  it('refuses a state with moments for a tensor that is frozen here', async () => {
    const ctx = await gpuContext();
    const w = new GpuWeights(ctx, G.config, G.params);
    const base = {
      batch: 1, seq: 8, gradAccum: 1, dropout: { embd: 0, attn: 0, resid: 0 }, seed: 1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, gradClip: 1,
    };
    const a = await Trainer.create(ctx, w, { ...base, frozen: new Set() });
    const micro = [{ inputs: Uint32Array.from(G.tokens.subarray(0, 8)), targets: Uint32Array.from(G.tokens.subarray(1, 9)) }];
    await a.step(micro, () => 1e-3);
    const state = await a.exportState();
    const b = await Trainer.create(ctx, w, { ...base, frozen: new Set([0]) });
    await expect(b.importState(state)).rejects.toThrow(TrainerStateError);
    await expect(b.importState(state)).rejects.toThrow(/moments for wte\.weight, which is frozen in this run/);
    a.destroy();
    b.destroy();
    w.destroy();
  });
});

interface ResumeCase {
  name: string;
  cfg: Partial<TrainRunConfig>;
  lora?: LoraConfig;
}

const BASE: TrainRunConfig = {
  steps: 6, batch: 2, seq: 16, gradAccum: 1, lr: 3e-3, schedule: { ...DEFAULT_SCHEDULE, kind: 'constant' }, lrDecay: 1, unfreeze: null,
  dropout: { embd: 0, attn: 0, resid: 0 }, seed: 5, order: 'sequential', frozen: new Set(),
  beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, gradClip: 1,
};

const CASES: ResumeCase[] = [
  {
    name: 'shuffled windows, dropout, accumulation, gradual unfreezing, discriminative rates, warmup + cosine',
    cfg: {
      order: 'shuffled', dropout: { embd: 0.1, attn: 0.1, resid: 0.1 }, gradAccum: 2, unfreeze: { start: 2, every: 2 }, lrDecay: 1.3,
      schedule: { ...DEFAULT_SCHEDULE, kind: 'cosine', warmup: 2, minLrRatio: 0.1 }, frozen: new Set([0]),
    },
  },
  {
    name: 'LoRA with dropout on its input, shuffled, slanted triangular',
    cfg: { order: 'shuffled', dropout: { embd: 0.1, attn: 0, resid: 0.1 }, schedule: { ...DEFAULT_SCHEDULE, kind: 'slanted', cutFrac: 0.3, ratio: 8 } },
    lora: { r: 4, alpha: 8, dropout: 0.1, targets: ['c_attn', 'c_fc'], rslora: false },
  },
];

interface Captured {
  step: number;
  weights: HostParams;
  adapters: HostParams | null;
  state: TrainerState;
}

describe('runTraining resume', () => {
  for (const c of CASES) {
    it(`a run resumed from its step-3 snapshot equals the uninterrupted run bit for bit: ${c.name}`, async () => {
      const ctx = await gpuContext();
      const cfg: TrainRunConfig = { ...BASE, ...c.cfg };
      const run = async (init: HostParams, adaptersInit: HostParams | null, resume?: TrainerState) => {
        const w = new GpuWeights(ctx, G.config, init);
        const lw = c.lora ? new LoraWeights(ctx, G.config, c.lora, adaptersInit!) : undefined;
        const snaps: Captured[] = [];
        const reasons: string[] = [];
        const logs: StepLog[] = await runTraining(ctx, w, G.tokens, cfg, {
          checkpointAt: (s) => s === 3,
          onCheckpoint: async (snap: RunSnapshot) => {
            reasons.push(`${snap.reason}@${snap.step}`);
            expect(snap.rowsRead).toBe(snap.step * cfg.batch * cfg.gradAccum);
            snaps.push({ step: snap.step, weights: await w.download(), adapters: lw ? await lw.download() : null, state: await snap.exportState() });
          },
        }, lw, resume ? { state: resume } : undefined);
        const final = { weights: await w.download(), adapters: lw ? await lw.download() : null };
        w.destroy();
        lw?.destroy();
        return { logs, snaps, reasons, final };
      };
      const adapters0 = c.lora ? initLoraParams(G.config, c.lora, cfg.seed) : null;
      const whole = await run(G.params, adapters0);
      expect(whole.reasons).toEqual(['interval@3', 'end@6']);
      expect(whole.logs.map((l) => l.step)).toEqual([1, 2, 3, 4, 5, 6]);
      const at3 = whole.snaps[0];
      expect(at3.state.stepIndex).toBe(3);
      const resumed = await run(at3.weights, at3.adapters, at3.state);
      expect(resumed.reasons).toEqual(['end@6']);
      expect(resumed.logs).toEqual(whole.logs.slice(3));
      expectSameParams(resumed.final.weights, whole.final.weights);
      if (c.lora) expectSameParams(resumed.final.adapters!, whole.final.adapters!);
      expectSameState(resumed.snaps[0].state, whole.snaps[1].state);
      // The run changed something (the comparisons above could fail).
      if (c.lora) expect(bits(whole.final.adapters!.get('h.0.attn.c_attn.lora_B.weight')!).equals(bits(adapters0!.get('h.0.attn.c_attn.lora_B.weight')!))).toBe(false);
      else expect(bits(whole.final.weights.get('ln_f.weight')!).equals(bits(G.params.get('ln_f.weight')!))).toBe(false);
    });
  }

  it('a stop through the signal settles the steps in flight and snapshots the last finished step', async () => {
    const ctx = await gpuContext();
    const w = new GpuWeights(ctx, G.config, G.params);
    const ac = new AbortController();
    const snaps: Array<{ reason: string; step: number }> = [];
    const logs = await runTraining(ctx, w, G.tokens, { ...BASE, steps: 20 }, {
      signal: ac.signal,
      onStep: (l) => {
        if (l.step === 2) ac.abort();
      },
      onCheckpoint: async (snap) => {
        snaps.push({ reason: snap.reason, step: snap.step });
        expect((await snap.exportState()).stepIndex).toBe(snap.step);
      },
    });
    expect(snaps).toHaveLength(1);
    expect(snaps[0].reason).toBe('stopped');
    // Steps queued before the stop was seen still finish and are reported.
    expect(snaps[0].step).toBe(logs.length);
    expect(logs.length).toBeGreaterThanOrEqual(2);
    expect(logs.length).toBeLessThan(20);
    w.destroy();
  });

  it('a non-finite step leaves the weights and state of the last good step, even with steps queued behind it', async () => {
    const ctx = await gpuContext();
    // An absurd rate with no clipping makes the weights blow up within a few steps.
    const cfg: TrainRunConfig = { ...BASE, steps: 30, lr: 1e30, gradClip: 0 };
    const w = new GpuWeights(ctx, G.config, G.params);
    let snap: Captured | null = null;
    let reason = '';
    const logs: StepLog[] = [];
    const err = await runTraining(ctx, w, G.tokens, cfg, {
      onStep: (l) => logs.push(l),
      onCheckpoint: async (s) => {
        reason = s.reason;
        snap = { step: s.step, weights: await w.download(), adapters: null, state: await s.exportState() };
      },
    }).catch((e) => e);
    expect(err).toBeInstanceOf(NonFiniteLossError);
    expect(reason).toBe('non-finite');
    const got = snap as unknown as Captured;
    expect(got.step).toBe(logs.length);
    expect(got.step).toBeGreaterThan(0);
    expect(got.state.stepIndex).toBe(got.step);
    expect((err as Error).message).toMatch(new RegExp(`^Step ${got.step + 1}:`));
    // The same run stopped after exactly that many steps holds the same weights and state.
    const w2 = new GpuWeights(ctx, G.config, G.params);
    let ref: TrainerState | null = null;
    await runTraining(ctx, w2, G.tokens, { ...cfg, steps: got.step }, { onCheckpoint: async (s) => void (ref = await s.exportState()) });
    expectSameParams(got.weights, await w2.download());
    expectSameState(got.state, ref!);
    w.destroy();
    w2.destroy();
  });
});
