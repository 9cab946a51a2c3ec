// The training step on the GPU: for every micro-batch forward, chunked LM head + cross-entropy,
// backward; then the global gradient norm, clipping and AdamW — all in ONE command buffer, with
// no buffer allocation and no waiting on the GPU in the steady state. Metrics (loss, grad norm)
// come back through a small ring of mappable buffers, read asynchronously.
//
// Semantics (docs/ARCHITECTURE.md, Training semantics): loss = mean cross-entropy over all B·T targets of
// all micro-batches; torch.optim.AdamW with per-parameter step counts, decay only on ≥2-D
// tensors; clip_grad_norm_ over all trainable gradients (logged norm before clipping); frozen
// parameters hold no gradient and no optimizer state and never change. With LoRA weights
// (model/lora.ts) the whole base model is frozen and only the LoRA factors hold gradients and state.
// exportState/importState carry everything but the weights from one trainer to another (a
// checkpoint), so the next steps are bit-identical; a non-finite step halts the updates of every
// step queued behind it, so the state stays that of the last good step.
import { NonFiniteLossError, ShapeError, StudioError } from '../errors.ts';
import type { GpuContext } from '../gpu/context.ts';
import { encode, type BufferRange, type Dispatch } from '../gpu/dispatch.ts';
import { profileDispatches, type ProfileMethod, type ProfileResult } from '../gpu/profile.ts';
import { adamwMulti, packAdamwRecords, ADAMW_RECORD_BYTES, type AdamwHyper } from '../kernels/adamw.ts';
import { createRngUniform, writeRng } from '../kernels/dropout.ts';
import { MAX_MICRO_BATCHES } from '../random.ts';
import { tokenBucketWords, writeTokenBuckets } from '../kernels/embedding.ts';
import { gradNorm, meanReduce, NORM_WORDS, type GradNorm } from '../kernels/reduce.ts';
import { Activations, firstSavedBlock } from '../model/activations.ts';
import { Arena, type TensorRange } from '../model/arena.ts';
import { buildBackward, buildForward, buildHead, type DropoutRates, type MicroInputs } from '../model/graph.ts';
import { LoraActivations, type LoraWeights } from '../model/lora.ts';
import type { HostParams, ParamSpec } from '../model/params.ts';
import { StagedCopy } from '../gpu/staging.ts';
import { arenaItems, type GpuWeights, type Precision } from '../model/weights.ts';
import type { OptimizerOptions } from './config.ts';

export interface TrainerOptions extends OptimizerOptions {
  /** rows per micro-batch */
  batch: number;
  /** tokens per row (T ≤ n_positions) */
  seq: number;
  /** micro-batches per optimizer step */
  gradAccum: number;
  dropout: DropoutRates;
  /** dropout RNG seed */
  seed: number;
  /** frozen depth groups (0 embeddings, i + 1 block i, L + 1 ln_f) */
  frozen: ReadonlySet<number>;
  /**
   * LoRA weights (model/lora.ts). When given, every base parameter is frozen (PEFT's default)
   * and only the LoRA factors train; `frozen` then applies to the LoRA factors by their block's group.
   */
  lora?: LoraWeights;
  /**
   * 'f16': the matmuls read f16 copies of their weights, accumulating in float32; the masters,
   * gradients and AdamW moments stay float32, and each AdamW update rewrites its tensor's copy
   * (model/weights.ts, docs/ARCHITECTURE.md "Mixed precision"). Default 'f32'.
   */
  precision?: Precision;
}

/** One micro-batch: (B·T) inputs and targets. */
export interface MicroBatch {
  inputs: Uint32Array;
  targets: Uint32Array;
}

export interface StepMetrics {
  /** 1-based optimizer step */
  step: number;
  /** mean loss over every target of the step, before its update */
  loss: number;
  /** global gradient norm before clipping */
  gradNorm: number;
  /** factor the gradients were scaled by (1 = not clipped) */
  clipCoef: number;
}

/** AdamW state of one tensor (torch.optim.AdamW's state[p]). */
export interface TensorOptimizerState {
  /** first moment (exp_avg), the parameter's element count */
  m: Float32Array;
  /** second moment (exp_avg_sq) */
  v: Float32Array;
  /** updates this tensor has received since its state was created (≥ 1) */
  step: number;
}

/**
 * Everything a Trainer carries from one optimizer step to the next besides the weights: what a
 * checkpoint stores so that a fresh trainer continues bit for bit (export → import → same steps).
 */
export interface TrainerState {
  /**
   * Optimizer steps taken: the 0-based index of the next step, which is also the counter the
   * next dropout mask is drawn with (kernels/dropout.ts writeRng(seed, stepIndex)).
   */
  stepIndex: number;
  /** every tensor that holds AdamW state, by engine name (LoRA weights by their adapter name); absent = fresh */
  tensors: Map<string, TensorOptimizerState>;
}

/** Trainer.stageState's copy of the run at a step boundary. */
export interface StagedTrainerState {
  /** memory the copy holds until released */
  bytes: number;
  /**
   * The optimizer state, and with full fine-tuning the weights by Hugging Face name (null with
   * LoRA), as views into the mapped copies: valid until release().
   */
  read(): Promise<{ state: TrainerState; params: HostParams | null }>;
  release(): void;
}

/** A TrainerState that does not fit this trainer (a tensor that is frozen here, a wrong size …). */
export class TrainerStateError extends StudioError {}

export interface TrainerMemory {
  parameters: number;
  gradients: number;
  optimizer: number;
  activations: number;
  scratch: number;
}

interface Plan {
  grads: Arena | null;
  m: Arena | null;
  v: Arena | null;
  trainable: ParamSpec[];
  dispatches: Dispatch[];
  norm: GradNorm | null;
  /** the multi-range kernels' tables (kernels/adamw.ts adamwMulti, kernels/cast.ts castToF16) */
  tables: GPUBuffer[];
}

/** How a step is submitted. */
export interface SubmitOptions {
  /** time this step's kernels (gpu/profile.ts): 'auto' uses timestamp-query where the device has it */
  profile?: ProfileMethod | 'auto';
}

export interface SubmittedStep {
  metrics: Promise<StepMetrics>;
  /** with SubmitOptions.profile: time per kernel family of this step */
  profile?: ProfileResult;
}

const RING = 4;
const RING_BYTES = 32;
// metrics buffer (storage): [loss]; norm buffer: [norm, coef, nonFinite]
const METRIC_WORDS = 4;

/**
 * Bytes of the trainer's own small buffers as GpuContext allocates them (rng uniform, metrics,
 * norm, AdamW records for `recordCount` tensors, the metrics ring): train/memory.ts's estimate.
 */
export function trainerSmallBytes(recordCount: number): number {
  const round = (b: number) => Math.max(16, Math.ceil(b / 16) * 16);
  return round(16) + round(METRIC_WORDS * 4) + round(NORM_WORDS * 4) + round(Math.max(1, recordCount) * ADAMW_RECORD_BYTES) + RING * RING_BYTES;
}

export class Trainer {
  readonly ctx: GpuContext;
  readonly weights: GpuWeights;
  readonly opts: TrainerOptions;
  private acts: Activations;
  private loraActs: LoraActivations | null;
  private inputs: MicroInputs[] = [];
  private inputBuffers: GPUBuffer[] = [];
  private rng: GPUBuffer;
  private metrics: GPUBuffer;
  private normBuf: GPUBuffer;
  private records: GPUBuffer;
  private plan: Plan = { grads: null, m: null, v: null, trainable: [], dispatches: [], norm: null, tables: [] };
  private frozen: Set<number>;
  /** per-parameter AdamW step counts (torch's state['step']); absent = fresh state */
  private stepCounts = new Map<string, number>();
  private ring: Array<{ buffer: GPUBuffer; pending: Promise<void> | null }> = [];
  private ringNext = 0;
  private stepIndex = 0;
  /**
   * Set when a step came back non-finite: that step and every step queued behind it were skipped
   * on the GPU (the sticky flag of reduce.wgsl), so the weights and moments are those after
   * `lastGood` steps, with these step counts.
   */
  private halted: { lastGood: number; stepCounts: Map<string, number> } | null = null;

  private constructor(ctx: GpuContext, weights: GpuWeights, opts: TrainerOptions) {
    const c = weights.config;
    if (!(Number.isInteger(opts.batch) && opts.batch >= 1)) throw new ShapeError(`batch must be a positive integer, got ${opts.batch}.`);
    if (!(Number.isInteger(opts.seq) && opts.seq >= 1)) throw new ShapeError(`sequence length must be a positive integer, got ${opts.seq}.`);
    if (opts.seq > c.nPositions) throw new ShapeError(`sequence length ${opts.seq} exceeds the model's n_positions ${c.nPositions}; use --seq ${c.nPositions} or less.`);
    if (!(Number.isInteger(opts.gradAccum) && opts.gradAccum >= 1 && opts.gradAccum <= MAX_MICRO_BATCHES)) {
      throw new ShapeError(`gradient accumulation must be an integer from 1 to ${MAX_MICRO_BATCHES}, got ${opts.gradAccum}.`);
    }
    const lm = opts.lora?.model;
    if (lm && (lm.nLayer !== c.nLayer || lm.nEmbd !== c.nEmbd || lm.nInner !== c.nInner)) {
      throw new ShapeError(`The LoRA weights were built for L=${lm.nLayer} C=${lm.nEmbd} (MLP ${lm.nInner}), the model is L=${c.nLayer} C=${c.nEmbd} (MLP ${c.nInner}); build them from this model's config.`);
    }
    this.ctx = ctx;
    this.weights = weights;
    this.opts = opts;
    this.frozen = new Set(opts.frozen);
    this.acts = new Activations(ctx, c, opts.batch, opts.seq, true, { firstSavedBlock: this.savedFrom(this.frozen) });
    this.loraActs = opts.lora ? new LoraActivations(ctx, opts.lora, opts.batch, opts.seq, true) : null;
    const N = opts.batch * opts.seq;
    for (let m = 0; m < opts.gradAccum; m++) {
      const tokens = ctx.createBuffer(N * 4, `tokens${m}`);
      const targets = ctx.createBuffer(Math.ceil(N / 64) * 64 * 4, `targets${m}`);
      const buckets = ctx.createBuffer(tokenBucketWords(N) * 4, `buckets${m}`);
      this.inputBuffers.push(tokens, targets, buckets);
      this.inputs.push({
        tokens: { buffer: tokens, offset: 0, size: N * 4 },
        targets: { buffer: targets, offset: 0, size: N * 4 },
        buckets: { buffer: buckets, offset: 0, size: tokenBucketWords(N) * 4 },
      });
    }
    this.rng = createRngUniform(ctx, 'rng', opts.seed, 0);
    this.metrics = ctx.createBuffer(METRIC_WORDS * 4, 'metrics');
    this.normBuf = ctx.createBuffer(NORM_WORDS * 4, 'norm');
    this.records = ctx.createBuffer(Math.max(1, weights.specs.length + (opts.lora?.specs.length ?? 0)) * ADAMW_RECORD_BYTES, 'adamw.records');
    for (let i = 0; i < RING; i++) {
      this.ring.push({
        buffer: ctx.device.createBuffer({ size: RING_BYTES, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: `metrics.ring${i}` }),
        pending: null,
      });
    }
  }

  static async create(ctx: GpuContext, weights: GpuWeights, opts: TrainerOptions): Promise<Trainer> {
    return ctx.allocating("the trainer's gradients, Adam moments and activations", async () => {
      // Before the graph is built: its matmuls bind the masters or the copies.
      await weights.setPrecision(opts.precision ?? 'f32');
      const t = new Trainer(ctx, weights, opts);
      await t.rebuild();
      return t;
    }, (t) => t.destroy());
  }

  get frozenGroups(): ReadonlySet<number> {
    return this.frozen;
  }

  /** Trainable parameter count under the current frozen set. */
  get trainableParams(): number {
    return this.plan.trainable.reduce((a, s) => a + s.numel, 0);
  }

  /**
   * Bytes of the GPU buffers this trainer and its weights hold, by category, summed from the
   * buffers' own sizes (train/memory.ts estimateMemory predicts the same numbers). The small
   * uniform buffers of the prepared dispatches and the multi-tensor kernels' range tables
   * (32 bytes per tensor range: a few KB) are not counted.
   */
  memory(): TrainerMemory {
    const arenaBytes = (a: Arena | null) => a?.bytes ?? 0;
    const small = [this.rng, this.metrics, this.normBuf, this.records, ...this.ring.map((r) => r.buffer)];
    return {
      parameters: this.weights.bytes + (this.opts.lora?.bytes ?? 0),
      gradients: arenaBytes(this.plan.grads),
      optimizer: arenaBytes(this.plan.m) + arenaBytes(this.plan.v),
      activations: this.acts.bytes.activations + (this.loraActs?.bytes.activations ?? 0),
      scratch: this.acts.bytes.scratch + (this.loraActs?.bytes.scratch ?? 0) + this.inputBuffers.reduce((a, b) => a + b.size, 0) +
        (this.plan.norm?.partials.size ?? 0) +
        small.reduce((a, b) => a + b.size, 0),
    };
  }

  /** The first block whose activations are saved under `frozen` (the frozen prefix below it runs in scratch). */
  private savedFrom(frozen: ReadonlySet<number>): number {
    const specs = this.opts.lora ? this.opts.lora.specs : this.weights.specs;
    return firstSavedBlock(this.weights.config, specs.filter((s) => !frozen.has(s.group)).map((s) => s.group));
  }

  /** The first block whose forward activations are kept (blocks below share one scratch set). */
  get firstSavedBlock(): number {
    return this.acts.firstSavedBlock;
  }

  /**
   * Changes the frozen groups between steps (no model reload). Tensors that stay trainable keep
   * their AdamW state; newly trainable ones start fresh (step 0), as torch does for a parameter
   * it has never updated; newly frozen ones drop gradient and state.
   */
  async setFrozen(groups: ReadonlySet<number>): Promise<void> {
    const same = groups.size === this.frozen.size && [...groups].every((g) => this.frozen.has(g));
    if (same) return;
    this.frozen = new Set(groups);
    // Opening groups allocates their gradients and moments; a failure is named, not silent.
    await this.ctx.allocating('the gradients and Adam moments of the newly trainable layers', () => this.rebuild());
  }

  private async rebuild(): Promise<void> {
    const { ctx, weights, opts } = this;
    await this.drain();
    // LoRA mode: the base model is frozen whole; the LoRA factors follow the frozen groups.
    const lora = opts.lora;
    const trainable = (lora ? lora.specs : weights.specs).filter((s) => !this.frozen.has(s.group));
    // Bindable ranges of a parameter: wte may be split in row ranges (model/arena.ts); its gradient
    // and moments split the same way, so the k-th ranges of all four line up.
    const paramRanges = (name: string): TensorRange[] => (lora?.has(name) ? [{ ...lora.range(name), row0: 0, rows: 1 }] : weights.ranges(name));
    const old = this.plan;
    const items = arenaItems(trainable);
    const grads = items.length ? new Arena(ctx, 'grads', items) : null;
    const m = items.length ? new Arena(ctx, 'adam.m', items) : null;
    const v = items.length ? new Arena(ctx, 'adam.v', items) : null;
    // Carry the moments of tensors that stay trainable; forget the rest.
    const enc = ctx.device.createCommandEncoder();
    const kept = new Map<string, number>();
    for (const s of trainable) {
      if (old.m?.has(s.name) && old.v?.has(s.name) && m && v) {
        for (const [src, dst] of [[old.m, m], [old.v, v]] as const) {
          const a = src.range(s.name);
          const b = dst.range(s.name);
          enc.copyBufferToBuffer(a.buffer, a.offset, b.buffer, b.offset, a.size);
        }
        kept.set(s.name, this.stepCounts.get(s.name) ?? 0);
      }
    }
    ctx.device.queue.submit([enc.finish()]);
    await ctx.device.queue.onSubmittedWorkDone();
    this.stepCounts = kept;
    for (const a of [old.grads, old.m, old.v]) a?.destroy();
    old.norm?.partials.destroy();
    for (const b of [...(old.norm?.tables ?? []), ...old.tables]) b.destroy();
    // Saved activations follow the trainable set: a frozen prefix keeps none.
    const saved = this.savedFrom(this.frozen);
    if (saved !== this.acts.firstSavedBlock) {
      this.acts.destroy();
      this.acts = new Activations(ctx, weights.config, opts.batch, opts.seq, true, { firstSavedBlock: saved });
    }

    const dispatches: Dispatch[] = [];
    const grad = (name: string): BufferRange | undefined => (grads?.has(name) ? grads.range(name) : undefined);
    const gradRanges = (name: string): TensorRange[] | undefined => (grads?.has(name) ? grads.ranges(name) : undefined);
    const N = opts.batch * opts.seq;
    const lossScale = 1 / (N * opts.gradAccum);
    for (let micro = 0; micro < opts.gradAccum; micro++) {
      const g = {
        ctx, config: weights.config, weights, acts: this.acts, micro, dropout: opts.dropout, rng: this.rng, grad, gradRanges,
        lora: lora && this.loraActs ? { weights: lora, acts: this.loraActs } : undefined,
      };
      const inp = this.inputs[micro];
      dispatches.push(...(await buildForward(g, inp)));
      dispatches.push(...(await buildHead(g, inp.targets, trainable.length > 0, lossScale)));
      dispatches.push(await meanReduce(ctx, { label: `loss${micro}`, x: this.acts.losses, n: N, scale: lossScale, out: this.metrics, slot: 0, accumulate: micro > 0 }));
      dispatches.push(...(await buildBackward(g, inp)));
    }
    let norm: GradNorm | null = null;
    const tables: GPUBuffer[] = [];
    if (grads && m && v) {
      const normRange = { buffer: this.normBuf, offset: 0, size: NORM_WORDS * 4 };
      // Sticky: a non-finite step also skips the steps already queued behind it (see `halted`).
      norm = await gradNorm(ctx, { label: 'gradnorm', grads: trainable.flatMap((s) => grads.ranges(s.name)), norm: normRange, maxNorm: opts.gradClip, sticky: true });
      dispatches.push(...norm.dispatches);
      // Every trainable range in one table: one AdamW dispatch per span of the arenas that fits
      // a binding (the whole model on most adapters) instead of one per tensor, same results.
      const tensors = trainable.flatMap((s, k) => {
        const [pr, gr, mr, vr] = [paramRanges(s.name), grads.ranges(s.name), m.ranges(s.name), v.ranges(s.name)];
        return pr.map((p, j) => ({ param: p, grad: gr[j], m: mr[j], v: vr[j], record: k }));
      });
      const opt = await adamwMulti(ctx, { label: 'adamw', tensors, norm: normRange, records: this.records });
      dispatches.push(...opt.dispatches);
      tables.push(...opt.tables);
      // Precision f16: the matmuls of the next step read f16(updated master) (none in f32 or with
      // LoRA), every updated copy in one dispatch per span of the arenas.
      if (!lora) {
        const copies = await weights.copyAllDispatches(trainable.map((s) => s.name));
        dispatches.push(...copies.dispatches);
        tables.push(...copies.tables);
      }
    }
    this.plan = { grads, m, v, trainable, dispatches, norm, tables };
  }

  /**
   * Submits one optimizer step. `micro` holds gradAccum micro-batches of (B·T) ids; `groupLr`
   * gives the learning rate of each depth group for this step (schedule × discriminative factor).
   * Resolves once the step's command buffer is queued (waiting only when RING steps are already
   * in flight), with a promise of the step's metrics, so callers can queue the next step before
   * reading this one's loss. With `options.profile` the step runs kernel by kernel under the
   * profiler (gpu/profile.ts) and resolves after it has run, with the time per kernel family.
   */
  async submit(micro: readonly MicroBatch[], groupLr: (group: number) => number, options: SubmitOptions = {}): Promise<SubmittedStep> {
    const { ctx, opts } = this;
    const N = opts.batch * opts.seq;
    if (micro.length !== opts.gradAccum) throw new ShapeError(`expected ${opts.gradAccum} micro-batches, got ${micro.length}.`);
    micro.forEach((mb, i) => {
      if (mb.inputs.length !== N || mb.targets.length !== N) throw new ShapeError(`micro-batch ${i} must hold B·T = ${N} inputs and targets.`);
    });
    const slot = this.ring[this.ringNext];
    this.ringNext = (this.ringNext + 1) % RING;
    if (slot.pending) await slot.pending;
    if (ctx.lost) throw ctx.lost;

    const V = this.weights.config.vocabSize;
    micro.forEach((mb, i) => {
      const inp = this.inputs[i];
      ctx.device.queue.writeBuffer(inp.tokens.buffer, 0, mb.inputs.buffer, mb.inputs.byteOffset, mb.inputs.byteLength);
      ctx.device.queue.writeBuffer(inp.targets.buffer, 0, mb.targets.buffer, mb.targets.byteOffset, mb.targets.byteLength);
      writeTokenBuckets(ctx, inp.buckets, mb.inputs, V);
    });
    writeRng(ctx, this.rng, opts.seed, this.stepIndex);
    const hyper: AdamwHyper[] = this.plan.trainable.map((s) => ({
      lr: groupLr(s.group),
      beta1: opts.beta1,
      beta2: opts.beta2,
      eps: opts.eps,
      weightDecay: s.decay ? opts.weightDecay : 0,
      step: (this.stepCounts.get(s.name) ?? 0) + 1,
    }));
    if (hyper.length) {
      const rec = packAdamwRecords(hyper);
      ctx.device.queue.writeBuffer(this.records, 0, rec.buffer, rec.byteOffset, rec.byteLength);
    }
    const countsBefore = new Map(this.stepCounts);
    for (const s of this.plan.trainable) this.stepCounts.set(s.name, (this.stepCounts.get(s.name) ?? 0) + 1);

    this.stepIndex++;
    const stepNo = this.stepIndex;
    const clear = (enc: GPUCommandEncoder) => this.plan.grads?.clear(enc);
    const copyMetrics = (enc: GPUCommandEncoder) => {
      enc.copyBufferToBuffer(this.metrics, 0, slot.buffer, 0, 4);
      enc.copyBufferToBuffer(this.normBuf, 0, slot.buffer, 16, NORM_WORDS * 4);
    };
    let profile: ProfileResult | undefined;
    if (options.profile) {
      // The same dispatches in the same order, timed one by one: the step's results are unchanged.
      await this.drain();
      profile = await profileDispatches(ctx, this.plan.dispatches, { method: options.profile, before: clear, after: copyMetrics });
    } else {
      const enc = ctx.device.createCommandEncoder({ label: `step${stepNo}` });
      clear(enc);
      const pass = enc.beginComputePass();
      encode(pass, this.plan.dispatches);
      pass.end();
      copyMetrics(enc);
      ctx.device.queue.submit([enc.finish()]);
    }

    const hasNorm = this.plan.trainable.length > 0;
    const metrics = (async () => {
      await slot.buffer.mapAsync(GPUMapMode.READ);
      const f = new Float32Array(slot.buffer.getMappedRange().slice(0));
      slot.buffer.unmap();
      const m: StepMetrics = { step: stepNo, loss: f[0], gradNorm: hasNorm ? f[4] : 0, clipCoef: hasNorm ? f[5] : 1 };
      if (!Number.isFinite(m.loss) || (hasNorm && f[6] !== 0)) {
        if (!this.halted || this.halted.lastGood > stepNo - 1) this.halted = { lastGood: stepNo - 1, stepCounts: countsBefore };
        throw new NonFiniteLossError(
          `Step ${stepNo}: the loss or gradient became ${Number.isNaN(m.loss) ? 'NaN' : 'infinite'} (loss ${m.loss}, grad norm ${f[4]}). ` +
            'The weights were left as they were before the step. Lower the learning rate, turn on gradient clipping, or check the data.',
          stepNo,
        );
      }
      return m;
    })();
    slot.pending = metrics.then(() => undefined, () => undefined);
    return { metrics, profile };
  }

  /**
   * Optimizer steps whose updates the weights hold once every submitted step has finished: the
   * steps submitted, or, after a non-finite step, the steps before it.
   */
  get stepsDone(): number {
    return this.halted ? this.halted.lastGood : this.stepIndex;
  }

  /**
   * The optimizer state after every submitted step (it waits for them): the moments of every
   * tensor holding state, read range by range from the GPU, the per-tensor step counts and the
   * step counter. After a non-finite step it is the state of the last good step, which the
   * weights also still hold (the skipped steps changed nothing).
   */
  async exportState(): Promise<TrainerState> {
    await this.drain();
    const counts = this.halted ? this.halted.stepCounts : this.stepCounts;
    const tensors = new Map<string, TensorOptimizerState>();
    const { m, v } = this.plan;
    if (!m || !v) return { stepIndex: this.stepsDone, tensors };
    // Each arena buffer is copied back whole, once (one mapping instead of one per tensor: the
    // moments of GPT-2 124M are 296 tensors), and every tensor is a view into it. Copies are not
    // bindings, so a tensor bound in row ranges (wte) comes back in one piece.
    const read = new Map<GPUBuffer, Promise<ArrayBuffer>>();
    const view = async (arena: Arena, name: string, numel: number) => {
      const r = arena.range(name);
      let ab = read.get(r.buffer);
      if (!ab) read.set(r.buffer, (ab = this.ctx.read(r.buffer)));
      return new Float32Array(await ab, r.offset, numel);
    };
    for (const s of this.plan.trainable) {
      const step = counts.get(s.name) ?? 0;
      if (step === 0) continue;
      tensors.set(s.name, { m: await view(m, s.name, s.numel), v: await view(v, s.name, s.numel), step });
    }
    return { stepIndex: this.stepsDone, tensors };
  }

  /**
   * exportState without waiting for the GPU: the moments, and with full fine-tuning the weights,
   * are copied in queue order right after the steps submitted so far (gpu/staging.ts), so the
   * copy is the state after `stepsDone` steps whatever is submitted next; `read` waits for the
   * copies and gives that state as views into them, valid until `release`. Meant at a step
   * boundary whose steps all came back finite (runTraining's interval checkpoints); throws
   * OutOfMemoryError when the copies do not fit beside the run (then use exportState).
   */
  async stageState(): Promise<StagedTrainerState> {
    const counts = new Map(this.halted ? this.halted.stepCounts : this.stepCounts);
    const stepIndex = this.stepsDone;
    const { m, v } = this.plan;
    const trainable = [...this.plan.trainable];
    // With LoRA the base weights are frozen: a reader may take them from the GPU whenever it likes.
    const weights = this.opts.lora ? null : this.weights;
    const arenas = [...(m && v ? [m, v] : []), ...(weights ? [weights.arena] : [])];
    const sources = arenas.flatMap((a) => a.buffers);
    const copy = await StagedCopy.take(this.ctx, sources, 'snapshot');
    return {
      bytes: copy.bytes,
      read: async () => {
        const mapped = await copy.map();
        const at = new Map(sources.map((b, i) => [b, mapped[i]]));
        const view = (arena: Arena, name: string, numel: number) => {
          const r = arena.range(name);
          return new Float32Array(at.get(r.buffer)!, r.offset, numel);
        };
        const tensors = new Map<string, TensorOptimizerState>();
        if (m && v) {
          for (const s of trainable) {
            const step = counts.get(s.name) ?? 0;
            if (step > 0) tensors.set(s.name, { m: view(m, s.name, s.numel), v: view(v, s.name, s.numel), step });
          }
        }
        const params = weights ? new Map(weights.specs.map((s) => [s.name, view(weights.arena, s.name, s.numel)])) : null;
        return { state: { stepIndex, tensors }, params };
      },
      release: () => copy.release(),
    };
  }

  /**
   * Replaces the optimizer state with `state` (from exportState, maybe of another trainer): the
   * next step is `state.stepIndex` + 1 with the same moments, step counts and dropout masks.
   * Every tensor in the state must be trainable under the current frozen set; trainable tensors
   * absent from it start fresh (zero moments, step 0). Clears a non-finite halt.
   */
  async importState(state: TrainerState): Promise<void> {
    await this.drain();
    if (!(Number.isSafeInteger(state.stepIndex) && state.stepIndex >= 0)) throw new TrainerStateError(`The saved step counter ${state.stepIndex} must be a whole number ≥ 0.`);
    const trainable = new Map(this.plan.trainable.map((s) => [s.name, s]));
    for (const [name, t] of state.tensors) {
      const s = trainable.get(name);
      if (!s) {
        throw new TrainerStateError(
          `The saved optimizer state has moments for ${name}, which is ${(this.opts.lora ? this.opts.lora.specs : this.weights.specs).some((x) => x.name === name) ? 'frozen' : 'not a tensor'} in this run; ` +
            'resume with the settings (frozen groups, unfreezing, LoRA) the state was saved with.',
        );
      }
      if (t.m.length !== s.numel || t.v.length !== s.numel) throw new TrainerStateError(`The saved moments of ${name} have ${t.m.length} and ${t.v.length} values; the tensor has ${s.numel} (${s.shape.join('×')}).`);
      if (!(Number.isSafeInteger(t.step) && t.step >= 1)) throw new TrainerStateError(`The saved step count of ${name} is ${t.step}; it must be a whole number ≥ 1.`);
    }
    const { m, v } = this.plan;
    const enc = this.ctx.device.createCommandEncoder();
    m?.clear(enc);
    v?.clear(enc);
    enc.clearBuffer(this.normBuf); // a sticky non-finite flag must not outlive the state it stopped
    this.ctx.device.queue.submit([enc.finish()]);
    for (const [name, t] of state.tensors) {
      // Arena.write: the one upload path, range by range.
      m!.write(name, t.m);
      v!.write(name, t.v);
    }
    await this.ctx.device.queue.onSubmittedWorkDone();
    this.stepCounts = new Map([...state.tensors].map(([n, t]) => [n, t.step]));
    this.stepIndex = state.stepIndex;
    this.halted = null;
  }

  /** Submits one step and waits for its metrics. */
  async step(micro: readonly MicroBatch[], groupLr: (group: number) => number): Promise<StepMetrics> {
    return (await this.submit(micro, groupLr)).metrics;
  }

  /** The current gradient of a trainable parameter (the last step's, before clipping); null when frozen. For tests and inspection. */
  async readGradient(name: string): Promise<Float32Array | null> {
    await this.drain();
    const g = this.plan.grads;
    if (!g?.has(name)) return null;
    return g.read(name);
  }

  /** Parameters holding AdamW state right now (for tests: frozen ones must hold none). */
  get optimizerTensors(): string[] {
    return this.plan.m?.names() ?? [];
  }

  /** Waits for every submitted step. */
  async drain(): Promise<void> {
    await Promise.all(this.ring.map((r) => r.pending));
  }

  destroy(): void {
    this.acts.destroy();
    this.loraActs?.destroy();
    for (const b of this.inputBuffers) b.destroy();
    for (const a of [this.plan.grads, this.plan.m, this.plan.v]) a?.destroy();
    this.plan.norm?.partials.destroy();
    for (const b of [...(this.plan.norm?.tables ?? []), ...this.plan.tables]) b.destroy();
    for (const b of [this.rng, this.metrics, this.normBuf, this.records]) b.destroy();
    for (const r of this.ring) r.buffer.destroy();
  }
}
