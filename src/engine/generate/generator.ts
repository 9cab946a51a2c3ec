// Text generation with a key/value cache (batch 1), on the model's GPU weights:
//   1. prefill: the prompt's forward pass (model/graph.ts buildForward over (1, T)); each
//      layer's keys and values go into the cache, and the last position's logits come back;
//   2. decode: one token at a time, each step embedding the chosen token at the next position,
//      attending over the cache (shaders/decode.wgsl) and reading back one row of logits (V);
//   3. the next token is chosen on the CPU by generate/sampling.ts (greedy, temperature,
//      top-k, top-p; seeded, so the same seed gives the same tokens). Greedy decoding without
//      an onLogits callback takes the argmax on the GPU instead (shaders/argmax.wgsl, ties to
//      the lowest id as the CPU's argmax) and reads back the token id alone, not V logits; a
//      row holding NaN falls back to the CPU path, whose error names it.
// Stops after maxNewTokens, or at EOS (Hugging Face generate()'s eos_token_id). The prompt plus
// the new tokens must fit n_positions, as GPT-2's learned position table allows no more.
// The step's dispatches are built once and replayed; a step allocates nothing on the GPU.
// With LoRA weights (model/lora.ts), each targeted layer adds s·B·(A·x) to its output, in the
// prefill (graph.ts) and in every step, without dropout (evaluation mode), as PEFT's forward does.
import { ShapeError, StudioError } from '../errors.ts';
import { tokensPerSecond } from '../throughput.ts';
import type { GpuContext } from '../gpu/context.ts';
import { encode, type BufferRange, type Dispatch } from '../gpu/dispatch.ts';
import { argmaxRows, NO_ARGMAX } from '../kernels/argmax.ts';
import { createStepUniform, decodeAttend, decodeEmbed, fillCache, writeDecodeStep } from '../kernels/decode.ts';
import { gemv, gemvT } from '../kernels/gemv.ts';
import { createRngUniform } from '../kernels/dropout.ts';
import { geluForward } from '../kernels/gelu.ts';
import { layernormForward } from '../kernels/layernorm.ts';
import { residualLayernorm } from '../kernels/residual.ts';
import { Activations, rows } from '../model/activations.ts';
import type { GPT2Config } from '../model/config.ts';
import { buildForward } from '../model/graph.ts';
import { LoraActivations, type LoraWeights } from '../model/lora.ts';
import type { GpuWeights } from '../model/weights.ts';
import { argmax, TokenSampler, type SamplingConfig } from './sampling.ts';
import { KvCache } from './kvcache.ts';

/** The prompt plus the requested new tokens do not fit the model's context (n_positions). */
export class ContextLengthError extends StudioError {}

/** A prompt token that the model cannot embed (not an id below the vocabulary size). */
export class PromptTokenError extends StudioError {}

/** Greedy decoding: always the most likely token (lowest id among equals). */
export const GREEDY: SamplingConfig = { temperature: 0, topK: 0, topP: 1 };

export interface GenerateOptions {
  /** new tokens to generate at most (≥ 1) */
  maxNewTokens: number;
  /** token choice; default GREEDY */
  sampling?: SamplingConfig;
  /** seed of the sampler's random numbers (ignored when greedy); default 0 */
  seed?: number;
  /** stop when this token is chosen (kept as the last token); default the config's eos_token_id; null: never stop early */
  eosTokenId?: number | null;
  /** called with every new token as it is chosen */
  onToken?(token: number, index: number): void;
  /** the logits (V,) that new token `index` was chosen from (tests, inspection) */
  onLogits?(logits: Float32Array, index: number): void;
  signal?: AbortSignal;
}

export type StopReason = 'eos' | 'length' | 'aborted';

export interface GenerateResult {
  /** the new tokens (without the prompt), EOS included when generation stopped there */
  tokens: number[];
  stop: StopReason;
  /** tokens fed as the prompt (1 for an empty prompt: the BOS token) */
  promptLength: number;
  /** milliseconds of the prefill (up to the first token's logits) */
  prefillMs: number;
  /** milliseconds of the decode steps after it */
  decodeMs: number;
  /** new tokens per second over the whole call (prefill included) */
  tokensPerSecond: number;
}

interface PrefillPlan {
  T: number;
  acts: Activations;
  tokens: BufferRange; // (T) u32
  rng: GPUBuffer; // dropout uniform the forward binds (p = 0: never read)
  lora: LoraActivations | null;
  dispatches: Dispatch[];
}

function now(): number {
  return performance.now();
}

export class Generator {
  readonly ctx: GpuContext;
  readonly weights: GpuWeights;
  readonly config: GPT2Config;
  readonly cache: KvCache;
  /** LoRA factors applied on top of the weights, if any */
  readonly lora: LoraWeights | null;
  private readonly buffers: GPUBuffer[] = [];
  private readonly step: GPUBuffer;
  private readonly lnf: BufferRange; // (C) input of the LM head
  private readonly logits: BufferRange; // (V)
  private readonly staging: GPUBuffer; // (V) mappable copy of the logits
  private readonly pickOut: BufferRange; // (1) u32: the greedy token chosen on the GPU
  private readonly pickStaging: GPUBuffer; // (1) mappable copy of it
  private pick: Dispatch | null = null; // argmax of the logits
  private body: Dispatch[] = []; // embed … ln_f of one token
  private head: Dispatch[] = []; // lnf (1, C) → logits (1, V)
  private prefillPlan: PrefillPlan | null = null;

  private constructor(ctx: GpuContext, weights: GpuWeights, lora: LoraWeights | null) {
    this.ctx = ctx;
    this.weights = weights;
    this.lora = lora;
    this.config = weights.config;
    this.cache = new KvCache(ctx, this.config);
    this.step = createStepUniform(ctx);
    this.buffers.push(this.step);
    this.lnf = this.f32('decode.lnf', this.config.nEmbd);
    this.logits = this.f32('decode.logits', this.config.vocabSize);
    this.staging = ctx.device.createBuffer({ size: this.logits.size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: 'decode.staging' });
    this.buffers.push(this.staging);
    this.pickOut = this.f32('decode.pick', 1);
    this.pickStaging = ctx.device.createBuffer({ size: 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: 'decode.pickStaging' });
    this.buffers.push(this.pickStaging);
  }

  static async create(ctx: GpuContext, weights: GpuWeights, lora?: LoraWeights): Promise<Generator> {
    const g = new Generator(ctx, weights, lora ?? null);
    await g.build();
    return g;
  }

  /** GPU bytes this generator holds besides the weights (the cache dominates). */
  get bytes(): number {
    const prefill = this.prefillPlan ? this.prefillPlan.acts.bytes.activations + this.prefillPlan.acts.bytes.scratch : 0;
    return this.cache.bytes + this.buffers.reduce((a, b) => a + b.size, 0) + prefill;
  }

  private f32(label: string, count: number): BufferRange {
    const buffer = this.ctx.createBuffer(count * 4, label);
    this.buffers.push(buffer);
    return { buffer, offset: 0, size: count * 4 };
  }

  /** The one-token step: every buffer is (1, ·), reused by every layer in turn. */
  private async build(): Promise<void> {
    const { ctx, config: c, weights: w } = this;
    const C = c.nEmbd;
    const I = c.nInner;
    const shape = { C, NH: c.nHead, P: c.nPositions };
    const x = this.f32('decode.x', C); // residual stream: block input and output
    const r2 = this.f32('decode.resid2', C); // after the attention half
    const ln = this.f32('decode.ln', C);
    const mean = this.f32('decode.mean', 1);
    const rstd = this.f32('decode.rstd', 1);
    const qkv = this.f32('decode.qkv', 3 * C);
    const atty = this.f32('decode.atty', C);
    const proj = this.f32('decode.proj', C);
    const fch = this.f32('decode.fch', I);
    const fchGelu = this.f32('decode.fchGelu', I);
    const scores = this.f32('decode.scores', c.nHead * c.nPositions);
    const loraT = this.lora ? this.f32('decode.lora.t', this.lora.config.r) : null; // (r) s·A·x
    const eps = c.layerNormEpsilon;
    const body: Dispatch[] = [];
    // A Conv1D layer on one row, then its adapter's update when it has one.
    const linear = async (name: string, K: number, N: number, x: BufferRange, out: BufferRange) => {
      body.push(await gemv(ctx, { label: `decode.${name}`, K, N, x, w: w.range(`${name}.weight`), bias: w.range(`${name}.bias`), out }));
      const t = this.lora?.target(name);
      if (!t || !this.lora || !loraT) return;
      const r = this.lora.config.r;
      body.push(await gemvT(ctx, { label: `decode.${name}.lora_A`, K, N: r, x, w: this.lora.range(t.a), out: loraT, scale: this.lora.scaling }));
      body.push(await gemvT(ctx, { label: `decode.${name}.lora_B`, K: r, N, x: loraT, w: this.lora.range(t.b), out, accumulate: true }));
    };
    const wte = w.ranges('wte.weight'); // one range unless wte exceeds a storage binding
    for (const [k, wr] of wte.entries()) {
      body.push(await decodeEmbed(ctx, {
        label: `decode.embed${k}`, ...shape, V: c.vocabSize, step: this.step, wte: wr, wteRows: { start: wr.row0, count: wr.rows }, wpe: w.range('wpe.weight'), out: x,
      }));
    }
    // Each residual add runs fused with the LayerNorm after it (kernels/residual.ts), as in
    // training's forward: only block 0's ln_1 runs alone.
    if (c.nLayer > 0) {
      body.push(await layernormForward(ctx, { label: 'decode.h0.ln1', N: 1, C, eps, x, weight: w.range('h.0.ln_1.weight'), bias: w.range('h.0.ln_1.bias'), out: ln, mean, rstd }));
    }
    for (let i = 0; i < c.nLayer; i++) {
      const p = (n: string) => w.range(`h.${i}.${n}`);
      const l = `decode.h${i}`;
      await linear(`h.${i}.attn.c_attn`, C, 3 * C, ln, qkv);
      body.push(await decodeAttend(ctx, { label: `${l}.attn`, ...shape, step: this.step, qkv, kv: this.cache.layers[i], scores, out: atty }));
      await linear(`h.${i}.attn.c_proj`, C, C, atty, proj);
      body.push(await residualLayernorm(ctx, { label: `${l}.resid2+ln2`, N: 1, C, eps, a: x, b: proj, out: r2, weight: p('ln_2.weight'), bias: p('ln_2.bias'), ln, mean, rstd }));
      await linear(`h.${i}.mlp.c_fc`, C, I, ln, fch);
      body.push(await geluForward(ctx, { label: `${l}.gelu`, n: I, kind: c.activation, x: fch, out: fchGelu }));
      await linear(`h.${i}.mlp.c_proj`, I, C, fchGelu, proj);
      // The next block's ln_1 into ln, or after the last block ln_f into the head's input.
      const last = i + 1 === c.nLayer;
      const next = last ? 'ln_f' : `h.${i + 1}.ln_1`;
      body.push(await residualLayernorm(ctx, {
        label: `${l}.resid3+${next}`, N: 1, C, eps, a: r2, b: proj, out: x, weight: w.range(`${next}.weight`), bias: w.range(`${next}.bias`), ln: last ? this.lnf : ln, mean, rstd,
      }));
    }
    if (c.nLayer === 0) {
      body.push(await layernormForward(ctx, { label: 'decode.ln_f', N: 1, C, eps, x, weight: w.range('ln_f.weight'), bias: w.range('ln_f.bias'), out: this.lnf, mean, rstd }));
    }
    this.body = body;
    // The tied LM head on one row: logits = lnf · wteᵀ (docs/ARCHITECTURE.md, GPT-2 semantics); each wte
    // range [v0, v0 + nv) gives the logits [v0, v0 + nv) (v0 is a multiple of 64 rows, so the
    // block's byte offset keeps the binding alignment).
    this.head = [];
    for (const [k, wr] of wte.entries()) {
      this.head.push(await gemvT(ctx, { label: `decode.head${k}`, K: C, N: wr.rows, x: this.lnf, w: wr, out: rows(this.logits, wr.row0, wr.rows) }));
    }
    this.pick = await argmaxRows(ctx, { label: 'decode.pick', N: 1, V: c.vocabSize, logits: this.logits, out: this.pickOut, refuseNaN: true });
  }

  private checkTokens(tokens: ArrayLike<number>, what: string): void {
    const V = this.config.vocabSize;
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i];
      if (!(Number.isInteger(t) && t >= 0 && t < V)) {
        throw new PromptTokenError(`${what} ${i} is ${t}, not a token id below the model's vocabulary size ${V}; encode the text with this model's tokenizer.`);
      }
    }
  }

  private async prefillPlanFor(T: number): Promise<PrefillPlan> {
    if (this.prefillPlan?.T === T) return this.prefillPlan;
    this.destroyPrefill();
    const { ctx, config: c, weights } = this;
    const acts = new Activations(ctx, c, 1, T, false);
    const buffer = ctx.createBuffer(T * 4, 'prefill.tokens');
    const tokens = { buffer, offset: 0, size: T * 4 };
    const rng = createRngUniform(ctx, 'prefill.rng');
    // Forward-only LoRA buffers carry no dropout scratch: LoRA dropout is off.
    const lora = this.lora ? new LoraActivations(ctx, this.lora, 1, T, false) : null;
    const g = {
      ctx, config: c, weights, acts, micro: 0, dropout: { embd: 0, attn: 0, resid: 0 }, rng, grad: () => undefined,
      lora: this.lora && lora ? { weights: this.lora, acts: lora } : undefined,
    };
    // Without backward every block runs in one shared set of activation buffers, so block i's
    // qkv is overwritten by block i + 1: its keys and values go to the cache right before its
    // attention (after c_attn and anything that adds into qkv, such as a LoRA update).
    // buildForward reads only the tokens; targets and buckets matter to the head and backward.
    const dispatches = await buildForward(g, { tokens, targets: tokens, buckets: tokens }, {
      beforeAttention: async (i) => [
        await fillCache(ctx, { label: `prefill.h${i}.kv`, C: c.nEmbd, NH: c.nHead, P: c.nPositions, T, qkv: acts.layers[i].qkv, kv: this.cache.layers[i] }),
      ],
    });
    this.prefillPlan = { T, acts, tokens, rng, lora, dispatches };
    return this.prefillPlan;
  }

  private destroyPrefill(): void {
    if (!this.prefillPlan) return;
    this.prefillPlan.acts.destroy();
    this.prefillPlan.tokens.buffer.destroy();
    this.prefillPlan.rng.destroy();
    this.prefillPlan.lora?.destroy();
    this.prefillPlan = null;
  }

  /** Copies the logits to the staging buffer in `enc`, submits, and reads them back. */
  private async finish(enc: GPUCommandEncoder): Promise<Float32Array> {
    enc.copyBufferToBuffer(this.logits.buffer, 0, this.staging, 0, this.logits.size);
    this.ctx.device.queue.submit([enc.finish()]);
    await this.staging.mapAsync(GPUMapMode.READ);
    const out = new Float32Array(this.staging.getMappedRange().slice(0));
    this.staging.unmap();
    if (this.ctx.lost) throw this.ctx.lost;
    return out;
  }

  /**
   * Ends `pass` with the argmax of the logits, submits, and reads back the one token id; null
   * when the logits hold NaN or nothing above −FLT_MAX (the caller then reads the logits, and
   * the CPU sampler reports the problem).
   */
  private async finishPick(enc: GPUCommandEncoder, pass: GPUComputePassEncoder): Promise<number | null> {
    encode(pass, [this.pick!]);
    pass.end();
    enc.copyBufferToBuffer(this.pickOut.buffer, 0, this.pickStaging, 0, 4);
    this.ctx.device.queue.submit([enc.finish()]);
    await this.pickStaging.mapAsync(GPUMapMode.READ);
    const id = new Uint32Array(this.pickStaging.getMappedRange())[0];
    this.pickStaging.unmap();
    if (this.ctx.lost) throw this.ctx.lost;
    return id === NO_ARGMAX ? null : id;
  }

  /**
   * Runs the prompt (T ≥ 1 tokens) through the model, filling cache positions 0 … T−1.
   * Returns the logits (V,) at the last position: the distribution of the first new token.
   */
  async prefill(prompt: ArrayLike<number>): Promise<Float32Array> {
    const { enc, pass } = await this.recordPrefill(prompt);
    pass.end();
    const logits = await this.finish(enc);
    this.cache.length = prompt.length;
    return logits;
  }

  /** prefill's work up to the head, in a compute pass left open. */
  private async recordPrefill(prompt: ArrayLike<number>): Promise<{ enc: GPUCommandEncoder; pass: GPUComputePassEncoder }> {
    const { ctx, config: c } = this;
    const T = prompt.length;
    if (T < 1) throw new ShapeError('prefill needs at least one token.');
    if (T > c.nPositions) throw new ContextLengthError(`The prompt has ${T} tokens; the model's context is n_positions = ${c.nPositions}. Shorten the prompt.`);
    this.checkTokens(prompt, 'Prompt token');
    if (ctx.lost) throw ctx.lost;
    const plan = await this.prefillPlanFor(T);
    const ids = Uint32Array.from(prompt);
    ctx.device.queue.writeBuffer(plan.tokens.buffer, 0, ids.buffer, ids.byteOffset, ids.byteLength);
    const enc = ctx.device.createCommandEncoder({ label: 'prefill' });
    let pass = enc.beginComputePass();
    encode(pass, plan.dispatches);
    pass.end();
    // The last position's ln_f row feeds the one-row head (a copy: its offset need not be aligned).
    const C = c.nEmbd;
    const lnf = plan.acts.lnf;
    enc.copyBufferToBuffer(lnf.buffer, lnf.offset + (T - 1) * C * 4, this.lnf.buffer, 0, C * 4);
    pass = enc.beginComputePass();
    encode(pass, this.head);
    return { enc, pass };
  }

  /** Feeds `token` at the next cache position; returns the logits (V,) for the token after it. */
  async decode(token: number): Promise<Float32Array> {
    const { enc, pass } = this.recordDecode(token);
    pass.end();
    const logits = await this.finish(enc);
    this.cache.length += 1;
    return logits;
  }

  /** decode's work: the one-token step and the head, in a compute pass left open. */
  private recordDecode(token: number): { enc: GPUCommandEncoder; pass: GPUComputePassEncoder } {
    const { ctx } = this;
    const pos = this.cache.length;
    if (pos < 1) throw new ShapeError('decode needs a prefilled cache: call prefill (or generate) first.');
    if (pos >= this.cache.P) throw new ContextLengthError(`The cache is full: position ${pos} is beyond the model's context of n_positions = ${this.cache.P}.`);
    this.checkTokens([token], 'Token');
    if (ctx.lost) throw ctx.lost;
    writeDecodeStep(ctx, this.step, token, pos);
    const enc = ctx.device.createCommandEncoder({ label: `decode${pos}` });
    const pass = enc.beginComputePass();
    encode(pass, this.body);
    encode(pass, this.head);
    return { enc, pass };
  }

  /**
   * The greedy token after the prompt (fills the cache as prefill does), or after `token` at
   * the next position (as decode): argmax on the GPU, one id read back. Falls back to the
   * logits and the CPU's argmax (which throws InvalidLogitsError) when the GPU finds no token.
   */
  private async greedyNext(from: { prompt: ArrayLike<number> } | { token: number }): Promise<number> {
    const { enc, pass } = 'prompt' in from ? await this.recordPrefill(from.prompt) : this.recordDecode(from.token);
    const id = await this.finishPick(enc, pass);
    this.cache.length = 'prompt' in from ? from.prompt.length : this.cache.length + 1;
    if (id !== null) return id;
    const logits = await this.finish(this.ctx.device.createCommandEncoder({ label: 'decode.logits' }));
    return argmax(logits);
  }

  /**
   * Continues `prompt` (token ids; empty means the BOS token alone, as Hugging Face's generate()
   * starts from bos_token_id when given no input) by up to `maxNewTokens` tokens.
   */
  async generate(prompt: ArrayLike<number>, opts: GenerateOptions): Promise<GenerateResult> {
    const c = this.config;
    const ids = prompt.length ? Array.from(prompt) : [c.bosTokenId];
    const maxNew = opts.maxNewTokens;
    if (!(Number.isInteger(maxNew) && maxNew >= 1)) throw new ShapeError(`max new tokens must be a whole number ≥ 1, got ${maxNew}.`);
    if (ids.length + maxNew > c.nPositions) {
      throw new ContextLengthError(
        `The prompt has ${ids.length} tokens and ${maxNew} new tokens were asked for: ${ids.length + maxNew} exceeds the model's context of n_positions = ${c.nPositions}. ` +
          (ids.length < c.nPositions ? `Ask for at most ${c.nPositions - ids.length} new tokens or shorten the prompt.` : 'Shorten the prompt.'),
      );
    }
    this.checkTokens(ids, 'Prompt token');
    const sampler = new TokenSampler(opts.sampling ?? GREEDY, opts.seed ?? 0); // validates the setting
    const eos = opts.eosTokenId === undefined ? c.eosTokenId : opts.eosTokenId;
    // Greedy without a logits callback: the token is chosen on the GPU and only its id comes back.
    const sampling = opts.sampling ?? GREEDY;
    const onGpu = sampling.temperature === 0 && !opts.onLogits;
    const t0 = now();
    let logits = onGpu ? null : await this.prefill(ids);
    let picked = onGpu ? await this.greedyNext({ prompt: ids }) : 0;
    const t1 = now();
    const out: number[] = [];
    let stop: StopReason = 'length';
    for (let i = 0; i < maxNew; i++) {
      if (opts.signal?.aborted) {
        stop = 'aborted';
        break;
      }
      let next = picked;
      if (logits) {
        opts.onLogits?.(logits, i);
        next = sampler.sample(logits);
      }
      out.push(next);
      opts.onToken?.(next, i);
      if (eos !== null && next === eos) {
        stop = 'eos';
        break;
      }
      // The last token is never fed back: nothing would read its logits.
      if (i + 1 < maxNew) {
        if (onGpu) picked = await this.greedyNext({ token: next });
        else logits = await this.decode(next);
      }
    }
    const t2 = now();
    return { tokens: out, stop, promptLength: ids.length, prefillMs: t1 - t0, decodeMs: t2 - t1, tokensPerSecond: tokensPerSecond(out.length, t2 - t0) };
  }

  destroy(): void {
    this.destroyPrefill();
    this.cache.destroy();
    for (const b of this.buffers) b.destroy();
  }
}
