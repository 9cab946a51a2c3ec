// Memory accounting before anything is allocated: the bytes a Trainer (with its GpuWeights and
// optional LoRA weights) will hold on the GPU, by category, for a model config, a run shape
// and a frozen set. It runs the same layout functions the allocators run (model/arena.ts
// arenaLayout, model/activations.ts planActivations) and applies GpuContext.createBuffer's
// rounding, so the estimate equals what Trainer.memory() then measures (test/gpu/memory.test.ts).
// Not counted on either side: the small uniform buffers of the prepared dispatches (a few KB)
// and the driver's own overhead.
//
// Precision f16 adds the f16 copies of the matmul weights (model/weights.ts f16CopyItems, 2 bytes
// each) to the parameters; gradients, moments and activations stay float32 (docs/ARCHITECTURE.md,
// Mixed precision).
//
// For scale (docs/ARCHITECTURE.md, Memory): full fine-tuning of GPT-2 124M in float32 holds parameters 0.5 GB,
// gradients 0.5 GB and Adam moments 1.0 GB before activations.
import type { GpuContext } from '../gpu/context.ts';
import { tokenBucketWords } from '../kernels/embedding.ts';
import { normPartialsCount } from '../kernels/reduce.ts';
import { trainerSmallBytes } from './trainer.ts';
import { bufferBytes, firstSavedBlock, planActivations, type BufferKind } from '../model/activations.ts';
import { arenaLayout, type ArenaLimits } from '../model/arena.ts';
import type { GPT2Config } from '../model/config.ts';
import { loraSpecs, loraTargets, type LoraConfig } from '../model/lora.ts';
import { paramSpecs, type ParamSpec } from '../model/params.ts';
import { arenaItems, f16CopyItems, type Precision } from '../model/weights.ts';

/** The device limits the layout depends on. */
export interface MemoryLimits extends ArenaLimits {
  maxComputeWorkgroupsPerDimension: number;
}

/**
 * WebGPU's default limits (an adapter that grants more binds more at once; the totals barely
 * move): 256-byte offsets, 128 MiB per binding, 65535 workgroups per dimension, and a 4 GiB
 * buffer ceiling (arenas are cut at 2 GiB anyway).
 */
export const DEFAULT_MEMORY_LIMITS: MemoryLimits = {
  alignment: 256,
  maxBinding: 128 * 2 ** 20,
  maxBuffer: 2 ** 32,
  maxComputeWorkgroupsPerDimension: 65535,
};

export function memoryLimitsOf(ctx: GpuContext): MemoryLimits {
  return {
    alignment: ctx.alignment,
    maxBinding: ctx.maxBinding,
    maxBuffer: ctx.limits.maxBufferSize,
    maxComputeWorkgroupsPerDimension: ctx.limits.maxComputeWorkgroupsPerDimension,
  };
}

export interface MemoryEstimateOptions {
  /** rows per micro-batch (B) */
  batch: number;
  /** tokens per row (T) */
  seq: number;
  /** micro-batches per optimizer step */
  gradAccum: number;
  /** frozen depth groups (0 embeddings, block i at i + 1, L + 1 ln_f) */
  frozen: Iterable<number>;
  /** LoRA weights: the base model is frozen whole and only the LoRA factors (of unfrozen groups) train */
  lora?: LoraConfig;
  /** 'f16' adds the f16 copies of the matmul weights; default 'f32' */
  precision?: Precision;
}

/** Bytes by category, as Trainer.memory() reports them, plus the total. */
export interface MemoryBreakdown {
  parameters: number;
  gradients: number;
  optimizer: number;
  activations: number;
  scratch: number;
  total: number;
}

/** Bytes a Trainer for `opts` will allocate, computed without a GPU. */
export function estimateMemory(config: GPT2Config, opts: MemoryEstimateOptions, limits: MemoryLimits = DEFAULT_MEMORY_LIMITS): MemoryBreakdown {
  const frozen = new Set(opts.frozen);
  const N = opts.batch * opts.seq;
  const base = paramSpecs(config);
  const loraSpecList = opts.lora ? loraSpecs(config, opts.lora) : [];
  const trainable: ParamSpec[] = (opts.lora ? loraSpecList : base).filter((s) => !frozen.has(s.group));

  let parameters = arenaLayout('params', arenaItems(base), limits).bytes;
  if (opts.precision === 'f16') parameters += arenaLayout('params.f16', f16CopyItems(base), limits, 2).bytes;
  if (opts.lora) {
    // LoraWeights: its arena (tensors unsplit) plus the (r, r) scale matrix.
    parameters += arenaLayout('lora', loraSpecList, limits).bytes + bufferBytes(opts.lora.r * opts.lora.r);
  }
  const trainLayout = trainable.length ? arenaLayout('grads', arenaItems(trainable), limits) : null;
  const gradients = trainLayout?.bytes ?? 0;
  const optimizer = 2 * gradients;

  const bytes: Record<BufferKind, number> = { activations: 0, scratch: 0 };
  planActivations(config, opts.batch, opts.seq, { withBackward: true, firstSavedBlock: firstSavedBlock(config, trainable.map((s) => s.group)) },
    limits, (_label, count, kind) => {
    bytes[kind] += bufferBytes(count);
  });
  if (opts.lora) {
    // LoraActivations: per target the kept s·dropout(x)·Aᵀ (N, r); shared t and gs (N, r); dropout(x) when lora dropout > 0.
    const r = opts.lora.r;
    const targets = loraTargets(config, opts.lora);
    bytes.activations += targets.length * bufferBytes(N * r);
    bytes.scratch += 2 * bufferBytes(N * r);
    if (opts.lora.dropout > 0) bytes.scratch += bufferBytes(N * Math.max(0, ...targets.map((t) => t.in)));
  }
  // Per micro-batch inputs: tokens, targets (padded to whole LM-head chunks), embedding buckets.
  bytes.scratch += opts.gradAccum * (bufferBytes(N) + bufferBytes(Math.ceil(N / 64) * 64) + bufferBytes(tokenBucketWords(N)));
  // Gradient-norm partial sums: a fixed count per bindable gradient range.
  if (trainLayout) {
    const ranges = trainLayout.buffers.reduce((a, b) => a + b.slots.reduce((x, s) => x + s.pieces.length, 0), 0);
    bytes.scratch += bufferBytes(normPartialsCount(ranges));
  }
  bytes.scratch += trainerSmallBytes(base.length + loraSpecList.length);

  const out = { parameters, gradients, optimizer, activations: bytes.activations, scratch: bytes.scratch };
  return { ...out, total: out.parameters + out.gradients + out.optimizer + out.activations + out.scratch };
}

/** Adds the total to a Trainer.memory() report. */
export function withTotal(m: Omit<MemoryBreakdown, 'total'>): MemoryBreakdown {
  return { ...m, total: m.parameters + m.gradients + m.optimizer + m.activations + m.scratch };
}

export function formatBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  return `${n} B`;
}

/** One line: "parameters 474.7 MiB, gradients …, total 1.94 GiB". */
export function describeMemory(m: MemoryBreakdown): string {
  const parts = (['parameters', 'gradients', 'optimizer', 'activations', 'scratch'] as const).map((k) => `${k} ${formatBytes(m[k])}`);
  return `${parts.join(', ')}; total ${formatBytes(m.total)}`;
}
