// Trainer behaviour beyond the PyTorch goldens, checked against the float64 reference
// (src/engine/reference/gpt2.ts refTrain): dropout on every site with the shared counter-based
// RNG, gradual unfreezing (fresh AdamW state for opened groups), discriminative rates and a
// cosine schedule; changing the frozen set between steps; no allocation in the steady state.
import { describe, expect, it } from 'vitest';
import { paramSpecs } from '../../src/engine/model/params.ts';
import { GpuWeights } from '../../src/engine/model/weights.ts';
import { groupLrFactors, unfreezeSchedule } from '../../src/engine/train/groups.ts';
import { runTraining } from '../../src/engine/train/loop.ts';
import { lrMultiplier } from '../../src/engine/train/schedule.ts';
import { DEFAULT_SCHEDULE } from '../../src/engine/train/run-settings.ts';
import { Trainer } from '../../src/engine/train/trainer.ts';
import { WindowSampler } from '../../src/engine/train/data.ts';
import { refTrain, toF64Params } from '../../src/engine/reference/gpt2.ts';
import { loadGoldens } from '../helpers/goldens.ts';
import { gpuContext } from '../helpers/gpu.ts';

const G = loadGoldens();
const OPT = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.05, gradClip: 1.0 };

describe('training methods against the float64 reference', () => {
  it('dropout 0.1 everywhere, gradual unfreezing, lr-decay 1.3, cosine warmup schedule: losses, norms and parameters agree', async () => {
    const ctx = await gpuContext();
    const config = { ...G.config, embdPdrop: 0.1, attnPdrop: 0.1, residPdrop: 0.1 };
    const L = config.nLayer;
    const steps = 6;
    const B = 2;
    const T = 37;
    const lr = 2e-3;
    const schedule = { ...DEFAULT_SCHEDULE, kind: 'cosine' as const, warmup: 2, minLrRatio: 0.1 };
    const userFrozen = new Set<number>([1]); // block 0 stays frozen even when its turn comes
    const sched = unfreezeSchedule({ L, start: 1, every: 2, userFrozen });
    const factors = groupLrFactors(L, 1.3);
    const seed = 4242;

    const w = new GpuWeights(ctx, config, G.params);
    const logs = await runTraining(ctx, w, G.tokens, {
      steps, batch: B, seq: T, gradAccum: 1, lr, schedule, lrDecay: 1.3, unfreeze: { start: 1, every: 2 },
      dropout: { embd: 0.1, attn: 0.1, resid: 0.1 }, seed, order: 'sequential', frozen: userFrozen, ...OPT,
    });
    const ref = refTrain({
      config, params: toF64Params(G.params), tokens: G.tokens, B, T, steps, lr,
      beta1: OPT.beta1, beta2: OPT.beta2, eps: OPT.eps, weightDecay: OPT.weightDecay, maxGradNorm: OPT.gradClip,
      frozen: (s) => {
        const open = new Set(sched.openGroupsAt(s));
        return new Set([...Array(L + 2).keys()].filter((g) => !open.has(g)));
      },
      schedule: (s) => lrMultiplier(schedule, s, steps),
      groupLrMultiplier: (g) => factors[g],
      dropout: true, seed,
    });
    expect(logs).toHaveLength(steps);
    logs.forEach((l, s) => {
      expect(Math.abs(l.loss - ref.log[s].loss) / ref.log[s].loss, `loss of step ${s + 1}`).toBeLessThan(1e-4);
      expect(Math.abs(l.grad_norm - ref.log[s].gradNorm) / ref.log[s].gradNorm, `grad norm of step ${s + 1}`).toBeLessThan(1e-4);
      expect(l.lr).toBeCloseTo(lr * lrMultiplier(schedule, s, steps), 12);
    });
    const final = await w.download();
    for (const spec of paramSpecs(config)) {
      const got = final.get(spec.name)!;
      const want = ref.params.get(spec.name)!;
      let off = 0;
      for (let i = 0; i < got.length; i++) if (!(Math.abs(got[i] - want[i]) <= 1e-4)) off++;
      expect(off / got.length, `fraction of ${spec.name} off by more than 1e-4`).toBeLessThan(0.01);
      if (spec.group === 1 || sched.openAt[spec.group] === null || sched.openAt[spec.group]! >= steps) {
        expect(Buffer.from(got.buffer).equals(Buffer.from(G.params.get(spec.name)!.buffer)), `${spec.name} never opened and must be unchanged`).toBe(true);
      }
    }
    w.destroy();
  });

  it('freezing a group between steps keeps it bit-for-bit and drops its optimizer state; the steady-state step allocates nothing', async () => {
    const ctx = await gpuContext();
    const w = new GpuWeights(ctx, G.config, G.params);
    const trainer = await Trainer.create(ctx, w, {
      batch: 2, seq: 37, gradAccum: 2, dropout: { embd: 0, attn: 0, resid: 0 }, seed: 1, frozen: new Set(), ...OPT,
    });
    const sampler = new WindowSampler({ tokens: G.tokens, T: 37, shuffle: true, seed: 3 });
    const micro = () => [0, 1].map(() => {
      const b = sampler.nextBatch(2);
      return { inputs: b.inputs.slice(), targets: b.targets.slice() };
    });
    await trainer.step(micro(), () => 1e-3);
    await trainer.step(micro(), () => 1e-3);

    // Count allocations and bind-group creation over three steady-state steps.
    const dev = ctx.device;
    const counts = { createBuffer: 0, createBindGroup: 0 };
    const origBuffer = dev.createBuffer.bind(dev);
    const origBind = dev.createBindGroup.bind(dev);
    dev.createBuffer = (d: GPUBufferDescriptor) => { counts.createBuffer++; return origBuffer(d); };
    dev.createBindGroup = (d: GPUBindGroupDescriptor) => { counts.createBindGroup++; return origBind(d); };
    const pending = [];
    for (let s = 0; s < 3; s++) pending.push((await trainer.submit(micro(), () => 1e-3)).metrics);
    await Promise.all(pending);
    dev.createBuffer = origBuffer;
    dev.createBindGroup = origBind;
    expect(counts).toEqual({ createBuffer: 0, createBindGroup: 0 });

    const block1 = paramSpecs(G.config).filter((s) => s.group === 2).map((s) => s.name);
    const before = await w.download();
    await trainer.setFrozen(new Set([2]));
    expect(trainer.optimizerTensors.filter((n) => block1.includes(n))).toEqual([]);
    for (let s = 0; s < 2; s++) await trainer.step(micro(), () => 1e-3);
    const after = await w.download();
    for (const n of block1) expect(Buffer.from(after.get(n)!.buffer).equals(Buffer.from(before.get(n)!.buffer)), n).toBe(true);
    // others kept training
    expect(Buffer.from(after.get('ln_f.weight')!.buffer).equals(Buffer.from(before.get('ln_f.weight')!.buffer))).toBe(false);
    trainer.destroy();
    w.destroy();
  });

  it('gradient accumulation: 2 micro-batches of B=1 give the same steps as one batch of B=2', async () => {
    const ctx = await gpuContext();
    const run = async (batch: number, gradAccum: number) => {
      const w = new GpuWeights(ctx, G.config, G.params);
      const logs = await runTraining(ctx, w, G.tokens, {
        steps: 4, batch, seq: 37, gradAccum, lr: 1e-3, schedule: { ...DEFAULT_SCHEDULE, kind: 'constant' }, lrDecay: 1, unfreeze: null,
        dropout: { embd: 0, attn: 0, resid: 0 }, seed: 0, order: 'sequential', frozen: new Set(), ...OPT,
      });
      const params = await w.download();
      w.destroy();
      return { logs, params };
    };
    const big = await run(2, 1);
    const acc = await run(1, 2);
    acc.logs.forEach((l, s) => {
      expect(Math.abs(l.loss - big.logs[s].loss) / big.logs[s].loss, `loss of step ${s + 1}`).toBeLessThan(1e-5);
      expect(Math.abs(l.grad_norm - big.logs[s].grad_norm) / big.logs[s].grad_norm, `grad norm of step ${s + 1}`).toBeLessThan(1e-4);
    });
    for (const [name, p] of big.params) {
      const q = acc.params.get(name)!;
      let off = 0;
      for (let i = 0; i < p.length; i++) if (!(Math.abs(p[i] - q[i]) <= 1e-5)) off++;
      expect(off / p.length, name).toBeLessThan(0.01);
    }
  });
});
