// The whole GPU engine against PyTorch (test/goldens/gpt2-tiny, made by
// scripts/goldens/make_goldens.py): logits and loss of the first batch, every parameter
// gradient, and 10 clipped AdamW steps — with all parameters trainable, with the embeddings
// and block 0 frozen, and with gradient accumulation. Tolerances from docs/ARCHITECTURE.md.
import { describe, expect, it } from 'vitest';
import { run } from '../../src/engine/gpu/dispatch.ts';
import { writeTokenBuckets, tokenBucketWords } from '../../src/engine/kernels/embedding.ts';
import { createRngUniform } from '../../src/engine/kernels/dropout.ts';
import { Activations } from '../../src/engine/model/activations.ts';
import { buildForward, buildHead } from '../../src/engine/model/graph.ts';
import { paramSpecs } from '../../src/engine/model/params.ts';
import { GpuWeights } from '../../src/engine/model/weights.ts';
import { WindowSampler } from '../../src/engine/train/data.ts';
import { Trainer } from '../../src/engine/train/trainer.ts';
import { goldenTensor, loadGoldens } from '../helpers/goldens.ts';
import { gpuContext, upload } from '../helpers/gpu.ts';
import { relErr } from '../helpers/numeric.ts';

const G = loadGoldens();
const NO_DROPOUT = { embd: 0, attn: 0, resid: 0 };

describe('GPT-2 forward on the GPU matches PyTorch', () => {
  it('logits and loss of the first batch (rel. error ≤ 1e-5)', async () => {
    const ctx = await gpuContext();
    const c = G.cases[0];
    const w = new GpuWeights(ctx, G.config, G.params);
    const acts = new Activations(ctx, G.config, c.B, c.T, false);
    const batch = new WindowSampler({ tokens: G.tokens, T: c.T, shuffle: false, seed: 0 }).nextBatch(c.B);
    const N = c.B * c.T;
    const inp = {
      tokens: upload(ctx, batch.inputs),
      targets: upload(ctx, batch.targets),
      buckets: upload(ctx, new Uint32Array(tokenBucketWords(N))),
    };
    writeTokenBuckets(ctx, inp.buckets, batch.inputs, G.config.vocabSize);
    const g = { ctx, config: G.config, weights: w, acts, micro: 0, dropout: NO_DROPOUT, rng: createRngUniform(ctx), grad: () => undefined };
    expect(acts.chunkRows).toBeGreaterThanOrEqual(N); // one chunk holds every row's logits here
    await run(ctx, [...(await buildForward(g, inp)), ...(await buildHead(g, inp.targets, false, 1 / N))]);
    const logits = await ctx.readF32(acts.logits.buffer, 0, N * G.config.vocabSize);
    expect(relErr(logits, goldenTensor(c, 'logits'))).toBeLessThan(1e-5);
    const losses = await ctx.readF32(acts.losses.buffer, 0, N);
    const loss = losses.reduce((a, b) => a + b, 0) / N;
    expect(Math.abs(loss - c.first_micro_loss) / c.first_micro_loss).toBeLessThan(1e-5);
    acts.destroy();
    w.destroy();
  });
});

for (const c of G.cases) {
  describe(`training case '${c.name}' (B=${c.B}, accumulation ${c.grad_accum}, frozen groups [${c.frozen_groups}])`, () => {
    it('matches PyTorch: step-0 gradients, 10 losses and grad norms, final parameters; frozen tensors unchanged', async () => {
      const ctx = await gpuContext();
      const w = new GpuWeights(ctx, G.config, G.params);
      const trainer = await Trainer.create(ctx, w, {
        batch: c.B, seq: c.T, gradAccum: c.grad_accum, dropout: NO_DROPOUT, seed: 0,
        beta1: c.beta1, beta2: c.beta2, eps: c.eps, weightDecay: c.weight_decay, gradClip: c.max_grad_norm,
        frozen: new Set(c.frozen_groups),
      });
      const sampler = new WindowSampler({ tokens: G.tokens, T: c.T, shuffle: false, seed: 0 });
      const specs = paramSpecs(G.config);
      const frozenNames = specs.filter((s) => c.frozen_groups.includes(s.group)).map((s) => s.name);
      expect(trainer.optimizerTensors.filter((n) => frozenNames.includes(n))).toEqual([]);

      const pending = [];
      for (let s = 0; s < c.steps; s++) {
        const micro = [];
        for (let m = 0; m < c.grad_accum; m++) {
          const b = sampler.nextBatch(c.B);
          micro.push({ inputs: b.inputs.slice(), targets: b.targets.slice() });
        }
        pending.push((await trainer.submit(micro, () => c.lr)).metrics);
        if (s === 0) {
          await pending[0];
          for (const spec of specs) {
            const got = await trainer.readGradient(spec.name);
            if (c.frozen_groups.includes(spec.group)) {
              expect(got, `${spec.name} is frozen and must hold no gradient`).toBeNull();
            } else {
              expect(relErr(got!, goldenTensor(c, `grad.${spec.name}`)), `gradient of ${spec.name}`).toBeLessThan(1e-4);
            }
          }
        }
      }
      const metrics = await Promise.all(pending);
      metrics.forEach((m, s) => {
        expect(Math.abs(m.loss - c.losses[s]) / c.losses[s], `loss of step ${s + 1}`).toBeLessThan(1e-4);
        expect(Math.abs(m.gradNorm - c.grad_norms[s]) / c.grad_norms[s], `grad norm of step ${s + 1}`).toBeLessThan(1e-4);
        expect(m.clipCoef < 1, `clipping on step ${s + 1}`).toBe(c.clipped_steps.includes(s));
      });
      const final = await w.download();
      for (const spec of specs) {
        const got = final.get(spec.name)!;
        const ref = goldenTensor(c, `final.${spec.name}`);
        if (c.frozen_groups.includes(spec.group)) {
          // bit for bit: a frozen parameter never changes
          expect(Buffer.from(got.buffer).equals(Buffer.from(G.params.get(spec.name)!.buffer)), `${spec.name} changed while frozen`).toBe(true);
          continue;
        }
        let off = 0;
        for (let i = 0; i < ref.length; i++) if (!(Math.abs(got[i] - ref[i]) <= 1e-4)) off++;
        expect(off / ref.length, `fraction of ${spec.name} off by more than 1e-4`).toBeLessThan(0.01);
      }
      trainer.destroy();
      w.destroy();
    });
  });
}
