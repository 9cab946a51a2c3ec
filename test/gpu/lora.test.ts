// LoRA on the GPU (src/engine/model/lora.ts spliced into graph.ts, Trainer with `lora`):
//  - against PyTorch (test/goldens/lora-tiny): logits, step-0 gradients of every A and B,
//    5 clipped AdamW steps (losses, norms, final adapters); the base model never changes and
//    holds no gradient or optimizer state;
//  - against the float64 reference with model dropout, LoRA dropout, rsLoRA, gradient
//    accumulation, a frozen adapter group, discriminative rates and a schedule (runTraining);
//  - memory per step (Trainer.memory()) against full fine-tuning, and no allocation in the
//    steady-state step.
import { describe, expect, it } from 'vitest';
import { run } from '../../src/engine/gpu/dispatch.ts';
import { createRngUniform } from '../../src/engine/kernels/dropout.ts';
import { tokenBucketWords, writeTokenBuckets } from '../../src/engine/kernels/embedding.ts';
import { Activations } from '../../src/engine/model/activations.ts';
import { parseConfig } from '../../src/engine/model/config.ts';
import { buildForward, buildHead } from '../../src/engine/model/graph.ts';
import { initLoraParams, LoraActivations, loraSpecs, LoraWeights, type LoraConfig } from '../../src/engine/model/lora.ts';
import { paramSpecs, type HostParams } from '../../src/engine/model/params.ts';
import { GpuWeights } from '../../src/engine/model/weights.ts';
import { toF64Params } from '../../src/engine/reference/gpt2.ts';
import { refLoraTrain } from '../../src/engine/reference/lora.ts';
import { WindowSampler } from '../../src/engine/train/data.ts';
import { groupLrFactors } from '../../src/engine/train/groups.ts';
import { runTraining } from '../../src/engine/train/loop.ts';
import { lrMultiplier } from '../../src/engine/train/schedule.ts';
import { DEFAULT_SCHEDULE } from '../../src/engine/train/run-settings.ts';
import { Trainer } from '../../src/engine/train/trainer.ts';
import { gpuContext, upload } from '../helpers/gpu.ts';
import { loadLoraGoldens, loraConfigOf, loraInit, loraTensor } from '../helpers/lora-goldens.ts';
import { randn, relErr } from '../helpers/numeric.ts';

const G = loadLoraGoldens();
const NO_DROPOUT = { embd: 0, attn: 0, resid: 0 };

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

function fracOff(got: ArrayLike<number>, want: ArrayLike<number>, tol = 1e-4): number {
  let off = 0;
  for (let i = 0; i < want.length; i++) if (!(Math.abs(got[i] - want[i]) <= tol)) off++;
  return off / want.length;
}

describe('LoRA forward on the GPU matches PyTorch', () => {
  it("logits and loss of the first batch of case 'lora' (rel. error ≤ 1e-5)", async () => {
    const ctx = await gpuContext();
    const gc = G.cases[0];
    const config = G.base.config;
    const w = new GpuWeights(ctx, config, G.base.params);
    const lw = new LoraWeights(ctx, config, loraConfigOf(gc), loraInit(gc));
    const acts = new Activations(ctx, config, gc.B, gc.T, false);
    const lacts = new LoraActivations(ctx, lw, gc.B, gc.T, false);
    const batch = new WindowSampler({ tokens: G.base.tokens, T: gc.T, shuffle: false, seed: 0 }).nextBatch(gc.B);
    const N = gc.B * gc.T;
    const inp = { tokens: upload(ctx, batch.inputs), targets: upload(ctx, batch.targets), buckets: upload(ctx, new Uint32Array(tokenBucketWords(N))) };
    writeTokenBuckets(ctx, inp.buckets, batch.inputs, config.vocabSize);
    const g = { ctx, config, weights: w, acts, micro: 0, dropout: NO_DROPOUT, rng: createRngUniform(ctx), grad: () => undefined, lora: { weights: lw,
      acts: lacts } };
    await run(ctx, [...(await buildForward(g, inp)), ...(await buildHead(g, inp.targets, false, 1 / N))]);
    const logits = await ctx.readF32(acts.logits.buffer, 0, N * config.vocabSize);
    expect(relErr(logits, loraTensor(gc, 'logits'))).toBeLessThan(1e-5);
    const losses = await ctx.readF32(acts.losses.buffer, 0, N);
    expect(Math.abs(losses.reduce((a, b) => a + b, 0) / N - gc.first_micro_loss) / gc.first_micro_loss).toBeLessThan(1e-5);
    // without the adapters the logits differ: the test sees the LoRA path
    const plain = { ...g, lora: undefined };
    await run(ctx, [...(await buildForward(plain, inp)), ...(await buildHead(plain, inp.targets, false, 1 / N))]);
    expect(relErr(await ctx.readF32(acts.logits.buffer, 0, N * config.vocabSize), loraTensor(gc, 'logits'))).toBeGreaterThan(1e-3);
    lacts.destroy();
    acts.destroy();
    lw.destroy();
    w.destroy();
  });
});

describe('LoRA forward-only buffers (evaluation, generation)', () => {
  it('apply no LoRA dropout: adapters with lora_dropout 0.3 give the eval-mode logits', async () => {
    const ctx = await gpuContext();
    const gc = G.cases[0];
    const config = G.base.config;
    const w = new GpuWeights(ctx, config, G.base.params);
    const lw = new LoraWeights(ctx, config, { ...loraConfigOf(gc), dropout: 0.3 }, loraInit(gc));
    const acts = new Activations(ctx, config, gc.B, gc.T, false);
    const lacts = new LoraActivations(ctx, lw, gc.B, gc.T, false);
    expect(lacts.xd).toBeNull();
    const training = new LoraActivations(ctx, lw, 1, 1, true);
    expect(training.xd).not.toBeNull();
    training.destroy();
    const batch = new WindowSampler({ tokens: G.base.tokens, T: gc.T, shuffle: false, seed: 0 }).nextBatch(gc.B);
    const N = gc.B * gc.T;
    const inp = { tokens: upload(ctx, batch.inputs), targets: upload(ctx, batch.targets), buckets: upload(ctx, new Uint32Array(tokenBucketWords(N))) };
    const g = { ctx, config, weights: w, acts, micro: 0, dropout: NO_DROPOUT, rng: createRngUniform(ctx, 'rng', 5, 3), grad: () => undefined, lora: { weights: lw, acts: lacts } };
    await run(ctx, [...(await buildForward(g, inp)), ...(await buildHead(g, inp.targets, false, 1 / N))]);
    expect(relErr(await ctx.readF32(acts.logits.buffer, 0, N * config.vocabSize), loraTensor(gc, 'logits'))).toBeLessThan(1e-5);
    lacts.destroy();
    acts.destroy();
    lw.destroy();
    w.destroy();
  });
});

for (const gc of G.cases) {
  describe(`LoRA training case '${gc.name}' (r=${gc.r}, alpha=${gc.lora_alpha}${gc.use_rslora ? ', rsLoRA' : ''}, targets ${gc.target_modules}, accumulation ${gc.grad_accum})`, () => {
    it('matches PyTorch: step-0 gradients of A and B, 5 losses and grad norms, final adapters; the base model is untouched', async () => {
      const ctx = await gpuContext();
      const config = G.base.config;
      const cfg = loraConfigOf(gc);
      const w = new GpuWeights(ctx, config, G.base.params);
      const lw = new LoraWeights(ctx, config, cfg, loraInit(gc));
      const trainer = await Trainer.create(ctx, w, {
        batch: gc.B, seq: gc.T, gradAccum: gc.grad_accum, dropout: NO_DROPOUT, seed: 0,
        beta1: gc.beta1, beta2: gc.beta2, eps: gc.eps, weightDecay: gc.weight_decay, gradClip: gc.max_grad_norm,
        frozen: new Set(), lora: lw,
      });
      const specs = loraSpecs(config, cfg);
      expect(trainer.optimizerTensors.sort()).toEqual(specs.map((s) => s.name).sort());
      expect(trainer.trainableParams).toBe(specs.reduce((a, s) => a + s.numel, 0));
      const sampler = new WindowSampler({ tokens: G.base.tokens, T: gc.T, shuffle: false, seed: 0 });
      const pending = [];
      for (let s = 0; s < gc.steps; s++) {
        const micro = [];
        for (let m = 0; m < gc.grad_accum; m++) {
          const b = sampler.nextBatch(gc.B);
          micro.push({ inputs: b.inputs.slice(), targets: b.targets.slice() });
        }
        pending.push((await trainer.submit(micro, () => gc.lr)).metrics);
        if (s === 0) {
          await pending[0];
          for (const spec of specs) {
            const got = await trainer.readGradient(spec.name);
            expect(relErr(got!, loraTensor(gc, `grad.${spec.name}`)), `gradient of ${spec.name}`).toBeLessThan(1e-4);
          }
          for (const spec of paramSpecs(config)) expect(await trainer.readGradient(spec.name), `${spec.name} is frozen`).toBeNull();
        }
      }
      const metrics = await Promise.all(pending);
      metrics.forEach((m, s) => {
        expect(Math.abs(m.loss - gc.losses[s]) / gc.losses[s], `loss of step ${s + 1}`).toBeLessThan(1e-4);
        expect(Math.abs(m.gradNorm - gc.grad_norms[s]) / gc.grad_norms[s], `grad norm of step ${s + 1}`).toBeLessThan(1e-4);
        expect(m.clipCoef < 1, `clipping on step ${s + 1}`).toBe(gc.clipped_steps.includes(s));
      });
      const final = await lw.download();
      for (const spec of specs) {
        expect(fracOff(final.get(spec.name)!, loraTensor(gc, `final.${spec.name}`)), `fraction of ${spec.name} off by more than 1e-4`).toBeLessThan(0.01);
        expect(relErr(final.get(spec.name)!, loraTensor(gc, `final.${spec.name}`)), spec.name).toBeLessThan(1e-3);
      }
      const base = await w.download();
      for (const spec of paramSpecs(config)) expect(sameBits(base.get(spec.name)!, G.base.params.get(spec.name)!), `${spec.name} changed`).toBe(true);
      trainer.destroy();
      lw.destroy();
      w.destroy();
    });
  });
}

describe('LoRA against the float64 reference', () => {
  it('model dropout 0.1, LoRA dropout 0.1, rsLoRA, accumulation 2, block 1 adapters frozen, lr-decay 1.3, cosine schedule (runTraining)', async () => {
    const ctx = await gpuContext();
    const config = { ...G.base.config, embdPdrop: 0.1, attnPdrop: 0.1, residPdrop: 0.1 };
    const L = config.nLayer;
    const cfg: LoraConfig = { r: 3, alpha: 5, dropout: 0.1, targets: ['c_attn', 'c_proj', 'c_fc'], rslora: true };
    // B small and random (not zero) so that the LoRA input gradient of block 1 reaches block 0's adapters from step 0
    const init: HostParams = initLoraParams(config, cfg, 99);
    let k = 0;
    for (const s of loraSpecs(config, cfg)) if (s.name.includes('lora_B')) init.set(s.name, Float32Array.from(randn(s.numel, 500 + k++, 0.05)));
    const steps = 4, B = 1, T = 37, accum = 2, lr = 4e-3, seed = 777;
    const OPT = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.05, gradClip: 0.5 };
    const schedule = { ...DEFAULT_SCHEDULE, kind: 'cosine' as const, warmup: 1, minLrRatio: 0.1 };
    const frozen = new Set([2]); // block 1's adapters: no update, but their input gradient still flows to block 0
    const factors = groupLrFactors(L, 1.3);

    const w = new GpuWeights(ctx, config, G.base.params);
    const lw = new LoraWeights(ctx, config, cfg, init);
    const logs = await runTraining(ctx, w, G.base.tokens, {
      steps, batch: B, seq: T, gradAccum: accum, lr, schedule, lrDecay: 1.3, unfreeze: null,
      dropout: { embd: 0.1, attn: 0.1, resid: 0.1 }, seed, order: 'sequential', frozen, ...OPT,
    }, {}, lw);
    const ref = refLoraTrain({
      config, base: toF64Params(G.base.params), lora: { config: cfg, params: toF64Params(init) }, tokens: G.base.tokens,
      B, T, steps, gradAccum: accum, lr, beta1: OPT.beta1, beta2: OPT.beta2, eps: OPT.eps, weightDecay: OPT.weightDecay, maxGradNorm: OPT.gradClip,
      frozen: () => frozen, schedule: (s) => lrMultiplier(schedule, s, steps), groupLrMultiplier: (g) => factors[g], dropout: true, seed,
    });
    expect(logs).toHaveLength(steps);
    logs.forEach((l, s) => {
      expect(Math.abs(l.loss - ref.log[s].loss) / ref.log[s].loss, `loss of step ${s + 1}`).toBeLessThan(1e-4);
      expect(Math.abs(l.grad_norm - ref.log[s].gradNorm) / ref.log[s].gradNorm, `grad norm of step ${s + 1}`).toBeLessThan(1e-4);
    });
    const final = await lw.download();
    for (const s of loraSpecs(config, cfg)) {
      const got = final.get(s.name)!;
      if (s.group === 2) {
        expect(sameBits(got, init.get(s.name)!), `${s.name} is frozen`).toBe(true);
        continue;
      }
      expect(fracOff(got, ref.lora.get(s.name)!), s.name).toBeLessThan(0.01);
      expect(sameBits(got, init.get(s.name)!), `${s.name} trained`).toBe(false);
    }
    const base = await w.download();
    for (const spec of paramSpecs(config)) expect(sameBits(base.get(spec.name)!, G.base.params.get(spec.name)!), `${spec.name} changed`).toBe(true);
    lw.destroy();
    w.destroy();
  });
});

describe('LoRA memory and the steady-state step', () => {
  it('gradient and optimizer memory fall to the adapters; no allocation per step', async () => {
    const ctx = await gpuContext();
    // Wider than the goldens so the ratio means something, still small for a software adapter.
    const config = parseConfig({ vocab_size: 1000, n_positions: 64, n_embd: 128, n_layer: 4, n_head: 4, embd_pdrop: 0, attn_pdrop: 0, resid_pdrop: 0 });
    const params: HostParams = new Map(paramSpecs(config).map((s, i) => [s.name, Float32Array.from(randn(s.numel, i, 0.02))]));
    const cfg: LoraConfig = { r: 8, alpha: 16, dropout: 0.05, targets: ['c_attn', 'c_proj'], rslora: false };
    const opts = { batch: 2, seq: 64, gradAccum: 1, dropout: NO_DROPOUT, seed: 1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, gradClip: 1,
      frozen: new Set<number>() };
    const w = new GpuWeights(ctx, config, params);
    const full = await Trainer.create(ctx, w, opts);
    const fullMem = full.memory();
    const fullTrainable = full.trainableParams;
    full.destroy();
    const lw = new LoraWeights(ctx, config, cfg, initLoraParams(config, cfg, 1));
    const lora = await Trainer.create(ctx, w, { ...opts, lora: lw });
    const loraMem = lora.memory();
    const nLora = loraSpecs(config, cfg).reduce((a, s) => a + s.numel, 0);
    expect(lora.trainableParams).toBe(nLora);
    console.log(`[lora memory] C=128 L=4 V=1000 B=2 T=64 r=8 c_attn,c_proj: full ${JSON.stringify(fullMem)} (${fullTrainable} trainable); LoRA ${JSON.stringify(loraMem)} (${nLora} trainable)`);
    // gradients and both Adam moments hold only A and B (plus arena alignment padding)
    expect(loraMem.gradients).toBeLessThan(fullMem.gradients * 0.05);
    expect(loraMem.optimizer).toBeLessThan(fullMem.optimizer * 0.05);
    expect(loraMem.gradients).toBeGreaterThanOrEqual(nLora * 4);
    expect(loraMem.optimizer).toBeGreaterThanOrEqual(2 * nLora * 4);
    expect(loraMem.parameters).toBeGreaterThan(fullMem.parameters); // the adapters themselves
    const total = (m: typeof fullMem) => m.parameters + m.gradients + m.optimizer + m.activations + m.scratch;
    expect(total(loraMem)).toBeLessThan(total(fullMem) * 0.6);

    const tokens = Uint32Array.from({ length: 2 * 64 + 1 }, (_, i) => (i * 7919) % 1000);
    const micro = [{ inputs: tokens.slice(0, 128), targets: tokens.slice(1, 129) }];
    await lora.step(micro, () => 1e-3);
    await lora.step(micro, () => 1e-3);
    const dev = ctx.device;
    const counts = { createBuffer: 0, createBindGroup: 0 };
    const origBuffer = dev.createBuffer.bind(dev);
    const origBind = dev.createBindGroup.bind(dev);
    dev.createBuffer = (d: GPUBufferDescriptor) => { counts.createBuffer++; return origBuffer(d); };
    dev.createBindGroup = (d: GPUBindGroupDescriptor) => { counts.createBindGroup++; return origBind(d); };
    const pending = [];
    for (let s = 0; s < 3; s++) pending.push((await lora.submit(micro, () => 1e-3)).metrics);
    await Promise.all(pending);
    dev.createBuffer = origBuffer;
    dev.createBindGroup = origBind;
    expect(counts).toEqual({ createBuffer: 0, createBindGroup: 0 });
    lora.destroy();
    lw.destroy();
    w.destroy();
  });

  it('refuses adapters built for another model', async () => {
    const ctx = await gpuContext();
    const other = parseConfig({ vocab_size: 50, n_positions: 64, n_embd: 24, n_layer: 2, n_head: 4 });
    const cfg: LoraConfig = { r: 2, alpha: 2, dropout: 0, targets: ['c_attn'], rslora: false };
    const lw = new LoraWeights(ctx, other, cfg, initLoraParams(other, cfg, 1));
    const w = new GpuWeights(ctx, G.base.config, G.base.params);
    await expect(Trainer.create(ctx, w, {
      batch: 1, seq: 8, gradAccum: 1, dropout: NO_DROPOUT, seed: 0, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, gradClip: 0,
        frozen: new Set(), lora: lw,
    })).rejects.toThrow(/LoRA weights were built for L=2 C=24/);
    lw.destroy();
    w.destroy();
  });
});
