// LoRA for GPT-2 with PEFT's semantics (peft/tuners/lora/layer.py, LoraLayer / Linear with
// fan_in_fan_out=True for transformers' Conv1D): every targeted layer y = x·W + b, W (in, out),
// gets y += dropout(x)·Aᵀ·Bᵀ·s with A (r, in), B (out, r) and s = α/r (α/√r with rsLoRA,
// Kalajdzievski 2023, arXiv:2312.03732). A starts Kaiming-uniform as PEFT's
// `nn.init.kaiming_uniform_(A, a=√5)`, i.e. U(−1/√in, 1/√in); B starts at zero, so training
// starts from the base model exactly. The base weights stay frozen; only A and B train.
//
// This file holds the adapter layout (which modules, names, shapes, depth groups), the seeded
// initialisation, the LoRA factors on the GPU (LoraWeights), the per-run LoRA activations
// (LoraActivations) and the forward/backward dispatches that graph.ts splices in after each
// targeted linear layer. Everything reuses matmul.wgsl (transA/transB/accumulate) and
// dropout.wgsl; the scale s is applied as a product with S = s·I (r, r), a matmul of N·r²
// multiply-adds, so no kernel needs a scalar argument.
//
// Dropout sites: LoRA dropout on the input of layer `i`, module `m` (index in LORA_MODULES)
// uses site 1000 + 4·i + m of the counter-based RNG (kernels/dropout.ts), clear of the model's
// sites 0 … 3L+3 for L ≤ 332 and inside the 4096 sites of a micro-batch for L ≤ 773; the
// index is the flat element index of x (N, in). Backward regenerates the same mask.
//
// Which parameters train: PEFT's default (only A and B). The base model is frozen whole in
// LoRA mode; the depth groups of the frozen list, gradual unfreezing and discriminative rates
// apply to the LoRA factors by the block they sit in (adapters of block i are group i + 1).
// Weight decay: A and B are 2-D weights, so AdamW decays them when weight decay > 0, as
// torch.optim.AdamW does with PEFT's parameters and as transformers' Trainer does (it exempts
// only biases and LayerNorm weights).
import { ShapeError, StudioError } from '../errors.ts';
import type { GpuContext } from '../gpu/context.ts';
import type { BufferRange, Dispatch } from '../gpu/dispatch.ts';
import { dropout } from '../kernels/dropout.ts';
import { matmul } from '../kernels/matmul.ts';
import { Arena } from './arena.ts';
import type { GPT2Config } from './config.ts';
import type { HostParams, ParamSpec } from './params.ts';
import { MAX_DROPOUT_SITES, SeededRng } from '../random.ts';

/** A LoRA setting that cannot be applied (bad rank, a target matching nothing, a model too deep for the dropout sites …). */
export class LoraConfigError extends StudioError {}

export interface LoraConfig {
  /** rank r ≥ 1 */
  r: number;
  /** lora_alpha: the update is scaled by α/r (α/√r with rsLoRA) */
  alpha: number;
  /** lora_dropout on the LoRA input only, in [0, 1) */
  dropout: number;
  /** PEFT target_modules: a module is targeted when its name equals a target or ends with '.' + target */
  targets: string[];
  /** use_rslora: scale α/√r instead of α/r */
  rslora: boolean;
}

// LoRA's defaults (PEFT's) are in train/run-settings.ts with the other run defaults.

/** The Conv1D modules of a GPT-2 block, in the order of their dropout-site index. */
export const LORA_MODULES = ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'] as const;
export type LoraModule = (typeof LORA_MODULES)[number];

/** First dropout site of the LoRA inputs (see the header). */
export const LORA_DROPOUT_SITE_BASE = 1000;

export function loraDropoutSite(layer: number, moduleIndex: number): number {
  return LORA_DROPOUT_SITE_BASE + 4 * layer + moduleIndex;
}

/** One adapted layer. */
export interface LoraTarget {
  layer: number;
  module: LoraModule;
  /** index of `module` in LORA_MODULES */
  moduleIndex: number;
  /** base name without prefix, e.g. 'h.0.attn.c_attn' (its weight is `${name}.weight`) */
  name: string;
  /** fan-in and fan-out of the Conv1D weight (in, out) */
  in: number;
  out: number;
  /** 'h.0.attn.c_attn.lora_A.weight' (r, in) */
  a: string;
  /** 'h.0.attn.c_attn.lora_B.weight' (out, r) */
  b: string;
}

/** The update's scale: α/r, or α/√r with rsLoRA (PEFT LoraLayer.update_layer). */
export function loraScaling(cfg: LoraConfig): number {
  return cfg.rslora ? cfg.alpha / Math.sqrt(cfg.r) : cfg.alpha / cfg.r;
}

function moduleShape(c: GPT2Config, m: LoraModule): [number, number] {
  const C = c.nEmbd;
  switch (m) {
    case 'attn.c_attn':
      return [C, 3 * C];
    case 'attn.c_proj':
      return [C, C];
    case 'mlp.c_fc':
      return [C, c.nInner];
    case 'mlp.c_proj':
      return [c.nInner, C];
  }
}

/**
 * Whether PEFT would target the module with full name `key` (as in GPT2LMHeadModel's
 * named_modules(), e.g. 'transformer.h.0.attn.c_attn'): with a list, an exact match or a
 * suffix after a dot (peft/tuners/tuners_utils.py check_target_module_exists).
 */
export function matchesTarget(key: string, target: string): boolean {
  return key === target || key.endsWith('.' + target);
}

/** Checks a LoRA config against a model; throws LoraConfigError saying what to change. */
export function checkLoraConfig(c: GPT2Config, cfg: LoraConfig): void {
  if (!(Number.isInteger(cfg.r) && cfg.r >= 1)) throw new LoraConfigError(`LoRA rank r must be a positive integer, got ${cfg.r}.`);
  const minIn = Math.min(c.nEmbd, c.nInner);
  if (cfg.r > minIn) throw new LoraConfigError(`LoRA rank r = ${cfg.r} exceeds the smallest layer width ${minIn}: a low-rank update cannot have a larger rank. Use r ≤ ${minIn} (typically 4 … 64).`);
  if (!(Number.isFinite(cfg.alpha) && cfg.alpha > 0)) throw new LoraConfigError(`LoRA alpha must be a positive number, got ${cfg.alpha}.`);
  if (!(cfg.dropout >= 0 && cfg.dropout < 1)) throw new LoraConfigError(`LoRA dropout must be in [0, 1), got ${cfg.dropout}.`);
  if (!cfg.targets.length) throw new LoraConfigError(`LoRA needs at least one target module: ${LORA_MODULES.map((m) => m.split('.')[1]).join(', ')}.`);
  // Site numbers: model sites 0 … 3L+3 must stay below 1000, LoRA sites below 4096.
  if (cfg.dropout > 0 && (3 * c.nLayer + 3 >= LORA_DROPOUT_SITE_BASE || loraDropoutSite(c.nLayer - 1, 3) >= MAX_DROPOUT_SITES)) {
    throw new LoraConfigError(`LoRA dropout supports models of at most 332 layers (this one has ${c.nLayer}); use --lora-dropout 0.`);
  }
}

/** The adapted layers, in block order then LORA_MODULES order. Every target must match a Conv1D module. */
export function loraTargets(c: GPT2Config, cfg: LoraConfig): LoraTarget[] {
  checkLoraConfig(c, cfg);
  for (const t of cfg.targets) {
    let hit = false;
    for (let i = 0; i < c.nLayer && !hit; i++) for (const m of LORA_MODULES) if (matchesTarget(`transformer.h.${i}.${m}`, t)) hit = true;
    if (!hit) {
      throw new LoraConfigError(
        `LoRA target '${t}' matches no linear layer of GPT-2. Targets are matched by suffix as in PEFT: c_attn, c_proj (attention and MLP), c_fc, or a longer suffix such as attn.c_proj or h.0.mlp.c_fc.`,
      );
    }
  }
  const out: LoraTarget[] = [];
  for (let i = 0; i < c.nLayer; i++) {
    LORA_MODULES.forEach((m, k) => {
      if (!cfg.targets.some((t) => matchesTarget(`transformer.h.${i}.${m}`, t))) return;
      const [inF, outF] = moduleShape(c, m);
      const name = `h.${i}.${m}`;
      out.push({ layer: i, module: m, moduleIndex: k, name, in: inF, out: outF, a: `${name}.lora_A.weight`, b: `${name}.lora_B.weight` });
    });
  }
  return out;
}

/** A and B of every target as parameter specs: group = the block's depth group, decayed (2-D). */
export function loraSpecs(c: GPT2Config, cfg: LoraConfig): ParamSpec[] {
  const out: ParamSpec[] = [];
  for (const t of loraTargets(c, cfg)) {
    out.push({ name: t.a, shape: [cfg.r, t.in], numel: cfg.r * t.in, group: t.layer + 1, decay: true });
    out.push({ name: t.b, shape: [t.out, cfg.r], numel: t.out * cfg.r, group: t.layer + 1, decay: true });
  }
  return out;
}

export function countLoraParams(c: GPT2Config, cfg: LoraConfig): number {
  return loraSpecs(c, cfg).reduce((a, s) => a + s.numel, 0);
}

/**
 * fresh LoRA factors: A ~ U(−1/√in, 1/√in) (PEFT's kaiming_uniform_(a=√5)), B = 0. Deterministic
 * in `seed`; each A has its own stream, so adding a target leaves the others unchanged.
 */
export function initLoraParams(c: GPT2Config, cfg: LoraConfig, seed: number): HostParams {
  const out: HostParams = new Map();
  for (const t of loraTargets(c, cfg)) {
    const bound = 1 / Math.sqrt(t.in);
    const rng = new SeededRng(seed, 4 * t.layer + t.moduleIndex);
    const A = new Float32Array(cfg.r * t.in);
    for (let i = 0; i < A.length; i++) A[i] = (2 * rng.next() - 1) * bound;
    out.set(t.a, A);
    out.set(t.b, new Float32Array(t.out * cfg.r));
  }
  return out;
}

/** Checks that `params` holds exactly the LoRA factors of `cfg` with the right sizes. */
export function checkLoraParams(c: GPT2Config, cfg: LoraConfig, params: HostParams): void {
  const specs = loraSpecs(c, cfg);
  for (const s of specs) {
    const t = params.get(s.name);
    if (!t) throw new ShapeError(`Missing LoRA tensor ${s.name} (${s.shape.join('×')}).`);
    if (t.length !== s.numel) throw new ShapeError(`LoRA tensor ${s.name} has ${t.length} elements; r = ${cfg.r} needs ${s.shape.join('×')} = ${s.numel}.`);
  }
  const known = new Set(specs.map((s) => s.name));
  for (const k of params.keys()) if (!known.has(k)) throw new ShapeError(`LoRA tensor ${k} is not a LoRA factor of this configuration (targets ${cfg.targets.join(', ')}).`);
}

/** The LoRA factors on the GPU: A and B of every target in one arena, plus the (r, r) scale matrix S = s·I. */
export class LoraWeights {
  readonly model: GPT2Config;
  readonly config: LoraConfig;
  readonly targets: LoraTarget[];
  readonly specs: ParamSpec[];
  readonly arena: Arena;
  /** α/r or α/√r */
  readonly scaling: number;
  /** (r, r) s·I, read by the matmuls that scale the rank-r intermediates */
  readonly scaleMatrix: BufferRange;
  private readonly byName: Map<string, LoraTarget>;
  private readonly ctx: GpuContext;
  private readonly scaleBuffer: GPUBuffer;

  constructor(ctx: GpuContext, model: GPT2Config, config: LoraConfig, host: HostParams) {
    checkLoraParams(model, config, host);
    this.ctx = ctx;
    this.model = model;
    this.config = { ...config, targets: [...config.targets] };
    this.targets = loraTargets(model, config);
    this.specs = loraSpecs(model, config);
    this.byName = new Map(this.targets.map((t) => [t.name, t]));
    this.scaling = loraScaling(config);
    this.arena = new Arena(ctx, 'lora', this.specs);
    for (const s of this.specs) this.upload(s.name, host.get(s.name)!);
    const r = config.r;
    const S = new Float32Array(r * r);
    for (let i = 0; i < r; i++) S[i * r + i] = this.scaling;
    this.scaleBuffer = ctx.createBuffer(S.byteLength, 'lora.scale', S);
    this.scaleMatrix = { buffer: this.scaleBuffer, offset: 0, size: S.byteLength };
  }

  /** The target adapting base layer `name` ('h.0.attn.c_attn'), if any. */
  target(name: string): LoraTarget | undefined {
    return this.byName.get(name);
  }

  has(name: string): boolean {
    return this.arena.has(name);
  }

  range(name: string): BufferRange {
    return this.arena.range(name);
  }

  upload(name: string, data: Float32Array): void {
    this.arena.write(name, data);
  }

  /** Copies every A and B back to the CPU (Arena.read, the one download path). */
  async download(): Promise<HostParams> {
    const out: HostParams = new Map();
    for (const s of this.specs) out.set(s.name, await this.arena.read(s.name));
    return out;
  }

  get bytes(): number {
    return this.arena.bytes + this.scaleBuffer.size;
  }

  destroy(): void {
    this.arena.destroy();
    this.scaleBuffer.destroy();
  }
}

/**
 * LoRA buffers of one micro-batch shape (B, T), each its own buffer (WebGPU's usage-scope
 * rule: never one buffer bound both read-only and writable in a dispatch).
 */
export class LoraActivations {
  /** per target name: s·dropout(x)·Aᵀ (N, r), kept from forward for dB */
  readonly u = new Map<string, BufferRange>();
  /** (N, r) unscaled rank-r intermediate: x·Aᵀ forward, dy·B backward */
  readonly t: BufferRange;
  /** (N, r) s·dy·B, the gradient of x·Aᵀ (backward only) */
  readonly gs: BufferRange;
  /**
   * (N, max in) dropout(x) and the LoRA input gradient before its dropout mask; only for
   * training with lora dropout > 0. Null means no LoRA dropout, as in evaluation and generation.
   */
  readonly xd: BufferRange | null;
  readonly bytes: { activations: number; scratch: number };
  private readonly buffers: GPUBuffer[] = [];

  constructor(ctx: GpuContext, lora: LoraWeights, B: number, T: number, withBackward: boolean) {
    const N = B * T;
    const r = lora.config.r;
    let act = 0;
    let scratch = 0;
    const f = (label: string, count: number, kind: 'act' | 'scratch'): BufferRange => {
      const size = Math.max(4, count * 4);
      const buffer = ctx.createBuffer(size, label);
      this.buffers.push(buffer);
      if (kind === 'act') act += buffer.size;
      else scratch += buffer.size;
      return { buffer, offset: 0, size };
    };
    for (const t of lora.targets) this.u.set(t.name, f(`${t.name}.lora_u`, N * r, withBackward ? 'act' : 'scratch'));
    this.t = f('lora.t', N * r, 'scratch');
    this.gs = withBackward ? f('lora.gs', N * r, 'scratch') : this.t;
    const maxIn = Math.max(0, ...lora.targets.map((t) => t.in));
    // Forward-only buffers serve evaluation and generation: dropout is off there (eval mode).
    this.xd = withBackward && lora.config.dropout > 0 ? f('lora.xd', N * maxIn, 'scratch') : null;
    this.bytes = { activations: act, scratch };
  }

  destroy(): void {
    for (const b of this.buffers) b.destroy();
  }
}

/** What the LoRA dispatches need from the graph (a subset of graph.ts's GraphContext). */
export interface LoraGraphContext {
  ctx: GpuContext;
  /** micro-batch index within the optimizer step (dropout streams) */
  micro: number;
  /** the trainer's Rng {seed, step} uniform */
  rng: GPUBuffer;
  /** gradient range of a trainable tensor, undefined when frozen */
  grad: (name: string) => BufferRange | undefined;
  lora?: { weights: LoraWeights; acts: LoraActivations };
}

function loraDrop(g: LoraGraphContext, w: LoraWeights, t: LoraTarget) {
  return { p: w.config.dropout, site: loraDropoutSite(t.layer, t.moduleIndex), micro: g.micro, rng: g.rng };
}

/**
 * After the base layer `name` wrote y = x·W + b: y += s·dropout(x)·Aᵀ·Bᵀ. Nothing when LoRA is
 * off or the layer is not targeted. x (N, in), y (N, out).
 */
export async function loraForward(g: LoraGraphContext, name: string, N: number, x: BufferRange, y: BufferRange): Promise<Dispatch[]> {
  const t = g.lora?.weights.target(name);
  if (!g.lora || !t) return [];
  const { weights: w, acts: a } = g.lora;
  const { ctx } = g;
  const r = w.config.r;
  const u = a.u.get(name)!;
  const out: Dispatch[] = [];
  let xin = x;
  if (a.xd) {
    xin = { buffer: a.xd.buffer, offset: 0, size: N * t.in * 4 };
    out.push(await dropout(ctx, { label: `${name}.lora.drop`, n: N * t.in, input: x, output: xin, dropout: loraDrop(g, w, t) }));
  }
  out.push(await matmul(ctx, { label: `${name}.lora.xA`, M: N, N: r, K: t.in, a: xin, b: w.range(t.a), out: a.t, transB: true }));
  out.push(await matmul(ctx, { label: `${name}.lora.u`, M: N, N: r, K: r, a: a.t, b: w.scaleMatrix, out: u }));
  out.push(await matmul(ctx, { label: `${name}.lora.uB`, M: N, N: t.out, K: r, a: u, b: w.range(t.b), out: y, transB: true, accumulate: true }));
  return out;
}

/**
 * Backward of the LoRA path of layer `name`, given dy (N, out) and the forward's x (N, in):
 * dB += dyᵀ·u, dA += (s·dy·B)ᵀ·dropout(x) when they train, and, when `dx` is given, WRITES
 * dx = dropout_backward((s·dy·B)·A), so the base layer's dx = dy·Wᵀ must then accumulate.
 * Returns the dispatches and whether dx was written.
 */
export async function loraBackward(
  g: LoraGraphContext, name: string, N: number, x: BufferRange, dy: BufferRange, dx: BufferRange | null,
): Promise<{ dispatches: Dispatch[]; wroteDx: boolean }> {
  const t = g.lora?.weights.target(name);
  if (!g.lora || !t) return { dispatches: [], wroteDx: false };
  const { weights: w, acts: a } = g.lora;
  const { ctx } = g;
  const r = w.config.r;
  const out: Dispatch[] = [];
  const dA = g.grad(t.a);
  const dB = g.grad(t.b);
  if (dB) out.push(await matmul(ctx, { label: `${name}.lora.dB`, M: t.out, N: r, K: N, a: dy, b: a.u.get(name)!, out: dB, transA: true, accumulate: true }));
  if (!dA && !dx) return { dispatches: out, wroteDx: false };
  out.push(await matmul(ctx, { label: `${name}.lora.dyB`, M: N, N: r, K: t.out, a: dy, b: w.range(t.b), out: a.t }));
  out.push(await matmul(ctx, { label: `${name}.lora.gs`, M: N, N: r, K: r, a: a.t, b: w.scaleMatrix, out: a.gs }));
  const xd = a.xd ? { buffer: a.xd.buffer, offset: 0, size: N * t.in * 4 } : null;
  if (dA) {
    let xin = x;
    if (xd) {
      out.push(await dropout(ctx, { label: `${name}.lora.drop.bwd`, n: N * t.in, input: x, output: xd, dropout: loraDrop(g, w, t) }));
      xin = xd;
    }
    out.push(await matmul(ctx, { label: `${name}.lora.dA`, M: r, N: t.in, K: N, a: a.gs, b: xin, out: dA, transA: true, accumulate: true }));
  }
  if (!dx) return { dispatches: out, wroteDx: false };
  if (xd) {
    out.push(await matmul(ctx, { label: `${name}.lora.dxd`, M: N, N: t.in, K: r, a: a.gs, b: w.range(t.a), out: xd }));
    out.push(await dropout(ctx, { label: `${name}.lora.dx`, n: N * t.in, input: xd, output: dx, dropout: loraDrop(g, w, t) }));
  } else {
    out.push(await matmul(ctx, { label: `${name}.lora.dx`, M: N, N: t.in, K: r, a: a.gs, b: w.range(t.a), out: dx }));
  }
  return { dispatches: out, wroteDx: true };
}
