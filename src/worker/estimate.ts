// GPU memory a run will take, before anything is allocated: the engine's own estimate
// (train/memory.ts, laid out as the allocators lay it out) at the run's widest point, plus the
// base-model copy the studio keeps for side-by-side samples and evaluation; and, when an
// allocation did not fit after all, the sentence that says what the run needed and what to change.
import { OutOfMemoryError } from '../engine/errors.ts';
import type { GpuContext } from '../engine/gpu/context.ts';
import type { GPT2Config } from '../engine/model/config.ts';
import type { LoraConfig } from '../engine/model/lora.ts';
import { loraSpecs } from '../engine/model/lora.ts';
import { describeMemory, estimateMemory, formatBytes, memoryLimitsOf, type MemoryLimits } from '../engine/train/memory.ts';
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
  const run = estimateMemory(config, { batch: s.batch, seq: s.seq, gradAccum: s.gradAccum, frozen: widestFrozen, lora, precision: s.precision }, limits);
  // The base copy is one more parameter arena of the full model.
  const baseCopy = estimateMemory(config, { batch: 1, seq: 1, gradAccum: 1, frozen: widestFrozen }, limits).parameters;
  const specs = lora ? loraSpecs(config, lora) : paramSpecs(config);
  const trainableParams = specs.filter((p) => open.has(p.group)).reduce((a, p) => a + p.numel, 0);
  return { memory: { ...run, baseCopy, total: run.total + baseCopy }, trainableParams };
}

/** An allocation that did not fit, with the run's estimate, the adapter's limits and what to change. */
export function explainOutOfMemory(
  e: OutOfMemoryError,
  config: GPT2Config,
  s: TrainSettings,
  frozen: ReadonlySet<number>,
  ctx: GpuContext | null,
): OutOfMemoryError {
  const est = estimateRun(config, s, frozen, ctx ? memoryLimitsOf(ctx) : undefined);
  const lim = ctx?.limits;
  const mb = formatBytes;
  const parts = [
    `The GPU ran out of memory while allocating ${e.what || 'the run\'s buffers'}.`,
    `This run needs about ${mb(est.memory.total)}: ${describeMemory(est.memory)}, plus ${mb(est.memory.baseCopy)} for the original weights kept for comparisons.`,
    lim
      ? `This adapter allows buffers of up to ${mb(lim.maxBufferSize)} and bindings of up to ${mb(lim.maxStorageBufferBindingSize)}; ` +
        'WebGPU does not tell a page how much memory the GPU has in all, and other tabs and programs share it.'
      : '',
    `To fit: lower the batch size (now ${s.batch}) or the sequence length (now ${s.seq}), freeze more layers in the Layers panel ` +
      `(frozen layers need no gradients or Adam moments)${s.lora.enabled ? ', or a lower LoRA rank' : ', or turn on LoRA (only the small LoRA matrices train)'}.`,
    'The model and the corpus stay loaded: change the settings and press Train again.',
  ];
  return new OutOfMemoryError(parts.filter(Boolean).join(' '), e.what);
}
