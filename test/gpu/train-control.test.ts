// The training loop's beforeStep hook, which the page's pause/resume uses: a host that waits
// there sees every step taken so far reported (settle), and frozen groups it hands back apply from
// that step on — checked against the float64 reference run with the same per-step frozen sets.
import { describe, expect, it } from 'vitest';
import { paramSpecs, type HostParams } from '../../src/engine/model/params.ts';
import { GpuWeights } from '../../src/engine/model/weights.ts';
import { runTraining } from '../../src/engine/train/loop.ts';
import { DEFAULT_SCHEDULE } from '../../src/engine/train/run-settings.ts';
import { refTrain, toF64Params } from '../../src/engine/reference/gpt2.ts';
import { loadGoldens } from '../helpers/goldens.ts';
import { gpuContext } from '../helpers/gpu.ts';

const G = loadGoldens();

describe('runTraining with a beforeStep host (pause, frozen-set change on resume)', () => {
  it('reports the steps in flight when asked, applies the new frozen groups from that step, and matches the reference', async () => {
    const ctx = await gpuContext();
    const config = G.config;
    const steps = 6;
    const B = 2;
    const T = 37;
    const lr = 3e-3;
    const pauseAt = 3;
    const later = new Set([0, 1]); // embeddings and block 0 freeze while "paused"
    const w = new GpuWeights(ctx, config, G.params);
    const reported: number[] = [];
    let snapshot: HostParams | null = null;
    let seenAtPause: number[] = [];
    const logs = await runTraining(ctx, w, G.tokens, {
      steps, batch: B, seq: T, gradAccum: 1, lr, schedule: { ...DEFAULT_SCHEDULE, kind: 'constant' }, lrDecay: 1, unfreeze: null,
      dropout: { embd: 0, attn: 0, resid: 0 }, seed: 1, order: 'sequential', frozen: new Set(),
      beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, gradClip: 1,
    }, {
      onStep: (l) => reported.push(l.step),
      beforeStep: async (s, settle) => {
        if (s !== pauseAt) return;
        await settle();
        seenAtPause = [...reported];
        snapshot = await w.download(); // the weights after `pauseAt` updates
        return later;
      },
    });
    expect(seenAtPause).toEqual([1, 2, 3]);
    expect(reported).toEqual([1, 2, 3, 4, 5, 6]);
    const final = await w.download();
    for (const s of paramSpecs(config)) {
      const same = final.get(s.name)!.every((v, i) => v === snapshot!.get(s.name)![i]);
      expect(same, `${s.name} ${later.has(s.group) ? 'frozen after the pause' : 'still training'}`).toBe(later.has(s.group));
    }
    const ref = refTrain({
      config, params: toF64Params(G.params), tokens: G.tokens, B, T, steps, lr,
      beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1,
      frozen: (s) => (s >= pauseAt ? later : new Set<number>()),
    });
    logs.forEach((l, s) => {
      expect(Math.abs(l.loss - ref.log[s].loss) / ref.log[s].loss, `loss of step ${s + 1}`).toBeLessThan(1e-4);
      expect(Math.abs(l.grad_norm - ref.log[s].gradNorm) / ref.log[s].gradNorm, `grad norm of step ${s + 1}`).toBeLessThan(1e-4);
    });
    w.destroy();
  });
});
