// The page's memory estimate: the engine's estimateMemory at the run's widest point, plus the
// base copy kept for comparisons; trainable parameters under freezing, unfreezing and LoRA.
import { describe, expect, it } from 'vitest';
import { GPT2_SMALL } from '../../../src/engine/model/config.ts';
import { countLoraParams } from '../../../src/engine/model/lora.ts';
import { estimateMemory } from '../../../src/engine/train/memory.ts';
import { paramSpecs } from '../../../src/engine/model/params.ts';
import { estimateRun, trainableGroups } from '../../../src/worker/estimate.ts';
import { DEFAULT_TRAIN, type TrainSettings } from '../../../src/worker/settings.ts';

const C = { ...GPT2_SMALL, nPositions: 128, nEmbd: 64, nLayer: 4, nHead: 4, nInner: 256 };
const S = (patch: Partial<TrainSettings> = {}): TrainSettings => ({ ...DEFAULT_TRAIN, batch: 2, seq: 32, ...patch });
const groupParams = (gs: number[]) => paramSpecs(C).filter((s) => gs.includes(s.group)).reduce((a, s) => a + s.numel, 0);

describe('estimateRun', () => {
  it('is the engine estimate plus one more parameter arena', () => {
    const e = estimateRun(C, S(), new Set([0, 1]));
    const engine = estimateMemory(C, { batch: 2, seq: 32, gradAccum: 1, frozen: [0, 1] });
    expect(e.memory.gradients).toBe(engine.gradients);
    expect(e.memory.optimizer).toBe(engine.optimizer);
    expect(e.memory.activations).toBe(engine.activations);
    expect(e.memory.baseCopy).toBe(engine.parameters);
    expect(e.memory.total).toBe(engine.total + engine.parameters);
    expect(e.trainableParams).toBe(groupParams([2, 3, 4, 5]));
  });

  it('shrinks as layers are frozen', () => {
    const all = estimateRun(C, S(), new Set());
    const top = estimateRun(C, S(), new Set([0, 1, 2, 3]));
    expect(top.memory.gradients).toBeLessThan(all.memory.gradients);
    expect(top.memory.activations).toBeLessThan(all.memory.activations);
    expect(top.trainableParams).toBe(groupParams([4, 5]));
  });

  it('counts every group that will open under gradual unfreezing, but never one the user froze', () => {
    const s = S({ unfreeze: { enabled: true, start: 1, every: 10 } });
    expect([...trainableGroups(C, s, new Set([0]))].sort()).toEqual([1, 2, 3, 4, 5]);
    expect(estimateRun(C, s, new Set([0])).trainableParams).toBe(groupParams([1, 2, 3, 4, 5]));
  });

  it('counts only adapter parameters with LoRA', () => {
    const lora = { ...DEFAULT_TRAIN.lora, enabled: true, r: 4, targets: ['c_attn' as const] };
    const e = estimateRun(C, S({ lora }), new Set());
    expect(e.trainableParams).toBe(countLoraParams(C, { r: 4, alpha: lora.alpha, dropout: lora.dropout, targets: ['c_attn'], rslora: false }));
    expect(e.memory.gradients).toBeLessThan(estimateRun(C, S(), new Set()).memory.gradients);
  });
});
