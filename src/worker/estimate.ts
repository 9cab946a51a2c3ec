// GPU memory a run will take, before anything is allocated: the engine's own estimate
// (model/memory.ts, laid out as the allocators lay it out) at the run's widest point, plus the
// base-model copy the studio keeps for side-by-side samples and evaluation.
import type { GPT2Config } from '../engine/model/config.ts';
import type { LoraConfig } from '../engine/model/lora.ts';
import { loraSpecs } from '../engine/model/lora.ts';
import { estimateMemory, type MemoryLimits } from '../engine/model/memory.ts';
import { paramSpecs } from '../engine/model/params.ts';
import { unfreezeSchedule } from '../engine/train/groups.ts';
import { loraConfigOf as engineLoraConfigOf } from '../engine/train/run-settings.ts';
import type { MemoryBreakdown } from './protocol.ts';
import type { TrainSettings } from './settings.ts';

export interface Estimate {
  memory: MemoryBreakdown;
  /** parameters that train at the run's widest point (every group open under gradual unfreezing) */
  trainableParams: number;
}

/** The depth groups that train at the widest point of the run. */
export function trainableGroups(config: GPT2Config, s: TrainSettings, frozen: ReadonlySet<number>): Set<number> {
  const L = config.nLayer;
  const open = new Set<number>();
  if (s.unfreeze.enabled) {
    unfreezeSchedule({ L, start: s.unfreeze.start, every: s.unfreeze.every, userFrozen: frozen }).openAt.forEach((at, g) => {
      if (at !== null) open.add(g);
    });
  } else {
    for (let g = 0; g < L + 2; g++) if (!frozen.has(g)) open.add(g);
  }
  return open;
}

/** The engine's LoraConfig for the page's LoRA settings (the engine's one mapping), or undefined without LoRA. */
export function loraConfigOf(s: TrainSettings): LoraConfig | undefined {
  return engineLoraConfigOf(s) ?? undefined;
}

export function estimateRun(config: GPT2Config, s: TrainSettings, frozen: ReadonlySet<number>, limits?: MemoryLimits): Estimate {
  const open = trainableGroups(config, s, frozen);
  const widestFrozen = Array.from({ length: config.nLayer + 2 }, (_, g) => g).filter((g) => !open.has(g));
  const lora = loraConfigOf(s);
  const run = estimateMemory(config, { batch: s.batch, seq: s.seq, gradAccum: s.gradAccum, frozen: widestFrozen, lora }, limits);
  // The base copy is one more parameter arena of the full model.
  const baseCopy = estimateMemory(config, { batch: 1, seq: 1, gradAccum: 1, frozen: widestFrozen }, limits).parameters;
  const specs = lora ? loraSpecs(config, lora) : paramSpecs(config);
  const trainableParams = specs.filter((p) => open.has(p.group)).reduce((a, p) => a + p.numel, 0);
  return { memory: { ...run, baseCopy, total: run.total + baseCopy }, trainableParams };
}
