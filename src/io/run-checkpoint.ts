// The training checkpoint format, version 1 (docs/checkpoint-format.md): a folder
// `checkpoint-<step>/` that is a loadable Hugging Face model folder (config.json,
// model.safetensors, generation_config.json, tokenizer files; with LoRA the base weights plus the
// PEFT adapter files) and also holds optimizer.safetensors (AdamW moments `<name>.exp_avg`,
// `<name>.exp_avg_sq` and I64 step counts `<name>.step`, ascending by name) and
// trainer_state.json (settings, position in the window order, counters, fingerprints, log).
//
// Browser-compatible: the builder gives the files as ExportFile (bytes produced when written),
// so the CLI writes them to a folder (node-run-checkpoint.ts) and the page to OPFS or a zip; the
// reader takes ModelFiles. Fingerprints take a hasher (Node's crypto in the CLI, sha256.ts in
// the browser) and hash exactly the bytes the format names.
import type { KernelsRecord } from '../engine/gpu/variants.ts';
import { StudioError } from '../engine/errors.ts';
import { parseConfig, type GPT2Config } from '../engine/model/config.ts';
import { loraSpecs, type LoraConfig } from '../engine/model/lora.ts';
import { paramSpecs, type HostParams, type ParamSpec } from '../engine/model/params.ts';
import type { TrainRunConfig } from '../engine/train/config.ts';
import type { ScheduleKind } from '../engine/train/schedule.ts';
import type { TensorOptimizerState, TrainerState } from '../engine/train/trainer.ts';
import { HF_PREFIX, loadCheckpoint, type ModelFiles } from './checkpoint.ts';
import { hfFolderFiles, type ExportFile, type ParamReader } from './export.ts';
import { PEFT_CONFIG_NAME, PEFT_WEIGHTS_NAME, loraFiles, loadLora, PEFT_PREFIX } from './peft.ts';
import { parseSafetensorsHeader, readTensorF32, readTensorI64, safetensorsStream, f32LeBytes, type StreamTensor } from './safetensors.ts';
import type { Sha256Hasher } from './sha256.ts';
import type { TokenizerFiles } from './tokenizer.ts';

export const CHECKPOINT_FORMAT = 'webgpu-finetuning-studio/checkpoint';
export const CHECKPOINT_FORMAT_VERSION = 1;
export const OPTIMIZER_NAME = 'optimizer.safetensors';
export const TRAINER_STATE_NAME = 'trainer_state.json';
/** `checkpoint-<step>`, no zero padding */
export const CHECKPOINT_DIR = /^checkpoint-(0|[1-9]\d*)$/;

/** A checkpoint folder that is not one of this format's (unknown version, missing or inconsistent files). */
export class CheckpointFormatError extends StudioError {}

/** The run settings as trainer_state.json stores them (names as the CLI flags, snake_case). */
export interface CheckpointSettings {
  steps: number;
  batch: number;
  seq: number;
  grad_accum: number;
  lr: number;
  /** kind: the --schedule value (constant, linear, cosine, stlr) */
  schedule: { kind: 'constant' | 'linear' | 'cosine' | 'stlr'; warmup: number; min_lr_ratio: number; cut_frac: number; ratio: number };
  lr_decay: number;
  unfreeze: { start: number; every: number } | null;
  frozen: number[];
  beta1: number;
  beta2: number;
  eps: number;
  weight_decay: number;
  grad_clip: number;
  dropout: { embd: number; attn: number; resid: number };
  seed: number;
  order: 'sequential' | 'shuffled';
  lora: { r: number; alpha: number; dropout: number; targets: string[]; rslora: boolean } | null;
  eval_every: number;
  /** the run's matmul weight precision (--precision): 'f32', or 'f16' (f16 weight copies, float32 masters and moments) */
  precision: 'f32' | 'f16';
}

/** trainer_state.json. */
export interface TrainerStateJson {
  format: typeof CHECKPOINT_FORMAT;
  format_version: number;
  step: number;
  total_steps: number;
  rows_read: number;
  windows: number;
  dropout_step: number;
  settings: CheckpointSettings;
  model: { source: string; dir: string };
  data: { train: string[]; eval: string[] };
  fingerprints: { base_weights: string; train_tokens: string; eval_tokens?: string };
  /** the kernel variants the run used (engine/gpu/variants.ts); a resume reuses them */
  kernels: KernelsRecord;
  log_history: Array<Record<string, unknown>>;
  created: string;
  writer: 'cli' | 'page' | 'torch';
}

const TO_FLAG: Record<ScheduleKind, CheckpointSettings['schedule']['kind']> = { constant: 'constant', linear: 'linear', cosine: 'cosine', slanted: 'stlr' };
const FROM_FLAG: Record<CheckpointSettings['schedule']['kind'], ScheduleKind> = { constant: 'constant', linear: 'linear', cosine: 'cosine', stlr: 'slanted' };

/** The settings block of a run (its evaluation data stays out: data.eval names it). */
export function settingsOf(cfg: TrainRunConfig, lora: LoraConfig | null, evalEvery: number): CheckpointSettings {
  return {
    steps: cfg.steps, batch: cfg.batch, seq: cfg.seq, grad_accum: cfg.gradAccum, lr: cfg.lr,
    schedule: {
      kind: TO_FLAG[cfg.schedule.kind], warmup: cfg.schedule.warmup, min_lr_ratio: cfg.schedule.minLrRatio,
      cut_frac: cfg.schedule.cutFrac, ratio: cfg.schedule.ratio,
    },
    lr_decay: cfg.lrDecay,
    unfreeze: cfg.unfreeze ? { start: cfg.unfreeze.start, every: cfg.unfreeze.every } : null,
    frozen: [...cfg.frozen].sort((a, b) => a - b),
    beta1: cfg.beta1, beta2: cfg.beta2, eps: cfg.eps, weight_decay: cfg.weightDecay, grad_clip: cfg.gradClip,
    dropout: { ...cfg.dropout },
    seed: cfg.seed, order: cfg.order,
    lora: lora ? { r: lora.r, alpha: lora.alpha, dropout: lora.dropout, targets: [...lora.targets], rslora: lora.rslora } : null,
    eval_every: evalEvery,
    precision: cfg.precision ?? 'f32',
  };
}

/** The run a settings block describes (without evaluation data), its LoRA config and evaluation interval. */
export function runOf(s: CheckpointSettings): { cfg: TrainRunConfig; lora: LoraConfig | null; evalEvery: number } {
  return {
    cfg: {
      steps: s.steps, batch: s.batch, seq: s.seq, gradAccum: s.grad_accum, lr: s.lr,
      schedule: {
        kind: FROM_FLAG[s.schedule.kind], warmup: s.schedule.warmup, minLrRatio: s.schedule.min_lr_ratio, cutFrac: s.schedule.cut_frac, ratio: s.schedule.ratio,
      },
      lrDecay: s.lr_decay, unfreeze: s.unfreeze ? { ...s.unfreeze } : null, frozen: new Set(s.frozen),
      beta1: s.beta1, beta2: s.beta2, eps: s.eps, weightDecay: s.weight_decay, gradClip: s.grad_clip,
      dropout: { ...s.dropout }, seed: s.seed, order: s.order, precision: s.precision,
    },
    lora: s.lora ? { ...s.lora, targets: [...s.lora.targets] } : null,
    evalEvery: s.eval_every,
  };
}

// ---- fingerprints ----------------------------------------------------------------------------

const FINGERPRINT = /^sha256:[0-9a-f]{64}$/;
const CHUNK = 1 << 16;

/**
 * `sha256:` + SHA-256 of token ids in stream order, each a little-endian uint32 (the format's
 * train_tokens / eval_tokens).
 */
export function tokensFingerprint(tokens: ArrayLike<number>, hasher: Sha256Hasher): string {
  const buf = new Uint8Array(CHUNK * 4);
  const dv = new DataView(buf.buffer);
  for (let o = 0; o < tokens.length; o += CHUNK) {
    const n = Math.min(CHUNK, tokens.length - o);
    for (let i = 0; i < n; i++) dv.setUint32(4 * i, tokens[o + i], true);
    hasher.update(buf.subarray(0, 4 * n));
  }
  return `sha256:${hasher.hex()}`;
}

/** Compares strings by their UTF-8 bytes (the order the format sorts names in). */
export function byteOrder(a: string, b: string): number {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

/**
 * `sha256:` + SHA-256 over every tensor of the HF export in ascending byte order of its
 * `transformer.`-prefixed name: the UTF-8 name, one zero byte, the float32 values little-endian
 * (the format's base_weights).
 */
export async function weightsFingerprint(config: GPT2Config, params: HostParams | ParamReader, hasher: Sha256Hasher): Promise<string> {
  for await (const b of weightsFingerprintBytes(config, params)) hasher.update(b);
  return `sha256:${hasher.hex()}`;
}

/** The bytes base_weights hashes, in order (for a hasher that wants them otherwise than piece by piece). */
export async function* weightsFingerprintBytes(config: GPT2Config, params: HostParams | ParamReader): AsyncGenerator<Uint8Array> {
  const specs = [...paramSpecs(config)].sort((a, b) => byteOrder(HF_PREFIX + a.name, HF_PREFIX + b.name));
  const enc = new TextEncoder();
  for (const s of specs) {
    const data = params instanceof Map ? params.get(s.name) : await params(s.name);
    if (!data || data.length !== s.numel) throw new CheckpointFormatError(`Cannot fingerprint the weights: ${s.name} is missing or not ${s.shape.join('×')}.`);
    yield enc.encode(HF_PREFIX + s.name);
    yield new Uint8Array([0]);
    yield f32LeBytes(data);
  }
}

// ---- writing ---------------------------------------------------------------------------------

export interface CheckpointInput {
  config: GPT2Config;
  /** the current weights (with LoRA: the base weights), host arrays or a reader called once per tensor */
  params: HostParams | ParamReader;
  /** LoRA: the LoRA factors as trained so far */
  lora?: { config: LoraConfig; params: HostParams; baseModel: string } | null;
  /** the optimizer state (Trainer.exportState), names as the engine's (adapters by their adapter names) */
  optimizer: TrainerState;
  /** trainer_state.json as it will be written */
  state: TrainerStateJson;
  tokenizer?: TokenizerFiles;
}

/** The name a tensor's optimizer entries start with: its name in model.safetensors or adapter_model.safetensors. */
function storedName(name: string, lora: boolean): string {
  return (lora ? PEFT_PREFIX : HF_PREFIX) + name;
}

/** optimizer.safetensors of a state: three tensors per tensor with state, ascending by name. */
export function optimizerTensors(config: GPT2Config, lora: LoraConfig | null, opt: TrainerState): StreamTensor[] {
  const specs = new Map((lora ? loraSpecs(config, lora) : paramSpecs(config)).map((s) => [s.name, s]));
  const out: StreamTensor[] = [];
  for (const [name, t] of opt.tensors) {
    const s = specs.get(name);
    if (!s) throw new CheckpointFormatError(`The optimizer state names ${name}, which is not a ${lora ? 'LoRA adapter' : 'parameter'} of this model.`);
    if (t.m.length !== s.numel || t.v.length !== s.numel) throw new CheckpointFormatError(`The moments of ${name} have ${t.m.length}/${t.v.length} values; it has ${s.numel}.`);
    const base = storedName(name, !!lora);
    out.push({ name: `${base}.exp_avg`, shape: [...s.shape], data: t.m });
    out.push({ name: `${base}.exp_avg_sq`, shape: [...s.shape], data: t.v });
    out.push({ name: `${base}.step`, shape: [], data: BigInt64Array.of(BigInt(t.step)), dtype: 'I64' });
  }
  return out.sort((a, b) => byteOrder(a.name, b.name));
}

const json = (v: unknown) => new TextEncoder().encode(`${JSON.stringify(v, null, 2)}\n`);

/**
 * The files of `checkpoint-<step>/`, in write order (trainer_state.json last: a reader that finds
 * it knows the rest was written before).
 */
export function checkpointFiles(input: CheckpointInput): ExportFile[] {
  const { config, state } = input;
  checkTrainerStateJson(state);
  const files = hfFolderFiles({ config, params: input.params, tokenizer: input.tokenizer }).filter((f) => f.name !== 'README.md');
  const lora = input.lora ?? null;
  if (!!lora !== !!state.settings.lora) throw new CheckpointFormatError('trainer_state.json settings.lora and the LoRA factors given disagree (LoRA on one side only).');
  if (lora) {
    const a = loraFiles(config, lora.config, lora.params, lora.baseModel);
    const cfgBytes = new TextEncoder().encode(a[PEFT_CONFIG_NAME]);
    files.push({ name: PEFT_CONFIG_NAME, size: cfgBytes.length, data: cfgBytes });
    files.push({ name: PEFT_WEIGHTS_NAME, size: a[PEFT_WEIGHTS_NAME].length, data: a[PEFT_WEIGHTS_NAME] });
  }
  const opt = safetensorsStream(optimizerTensors(config, lora?.config ?? null, input.optimizer));
  files.push({ name: OPTIMIZER_NAME, size: opt.totalBytes, data: () => opt });
  const st = json(state);
  files.push({ name: TRAINER_STATE_NAME, size: st.length, data: st });
  return files;
}

// ---- reading ---------------------------------------------------------------------------------

function bad(problem: string): CheckpointFormatError {
  return new CheckpointFormatError(`${TRAINER_STATE_NAME}: ${problem}`);
}

const isInt = (v: unknown, min = 0): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= min;
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** Checks a parsed trainer_state.json: format, version, and the type of every field a resume reads. */
export function checkTrainerStateJson(j: unknown): TrainerStateJson {
  if (typeof j !== 'object' || j === null || Array.isArray(j)) throw bad('is not a JSON object.');
  const o = j as Record<string, unknown>;
  if (o.format !== CHECKPOINT_FORMAT) throw bad(`format is ${JSON.stringify(o.format)}, not "${CHECKPOINT_FORMAT}": this folder is not a checkpoint of the studio.`);
  if (o.format_version !== CHECKPOINT_FORMAT_VERSION) {
    throw bad(`format_version is ${JSON.stringify(o.format_version)}; this version of the studio reads format_version ${CHECKPOINT_FORMAT_VERSION}. Use the studio version that wrote it.`);
  }
  for (const k of ['step', 'total_steps', 'rows_read', 'windows', 'dropout_step'] as const) if (!isInt(o[k])) throw bad(`${k} must be a whole number ≥ 0, got ${JSON.stringify(o[k])}.`);
  const s = o.settings as Record<string, unknown> | undefined;
  if (typeof s !== 'object' || s === null) throw bad('has no settings object.');
  for (const k of ['steps', 'batch', 'seq', 'grad_accum'] as const) if (!isInt(s[k], 1)) throw bad(`settings.${k} must be a whole number ≥ 1, got ${JSON.stringify(s[k])}.`);
  for (const k of ['lr', 'lr_decay', 'beta1', 'beta2', 'eps', 'weight_decay', 'grad_clip'] as const) if (!isNum(s[k])) throw bad(`settings.${k} must be a number, got ${JSON.stringify(s[k])}.`);
  if (!isInt(s.seed)) throw bad(`settings.seed must be a whole number ≥ 0, got ${JSON.stringify(s.seed)}.`);
  if (!isInt(s.eval_every)) throw bad(`settings.eval_every must be a whole number ≥ 0, got ${JSON.stringify(s.eval_every)}.`);
  if (s.precision !== 'f32' && s.precision !== 'f16') throw bad(`settings.precision must be "f32" or "f16", got ${JSON.stringify(s.precision)}.`);
  if (s.order !== 'sequential' && s.order !== 'shuffled') throw bad(`settings.order must be "sequential" or "shuffled", got ${JSON.stringify(s.order)}.`);
  const sch = s.schedule as Record<string, unknown> | undefined;
  if (typeof sch !== 'object' || sch === null || !['constant', 'linear', 'cosine', 'stlr'].includes(sch.kind as string) || !['warmup', 'min_lr_ratio', 'cut_frac', 'ratio'].every((k) => isNum(sch[k]))) {
    throw bad(`settings.schedule must be { kind: constant|linear|cosine|stlr, warmup, min_lr_ratio, cut_frac, ratio }, got ${JSON.stringify(sch)}.`);
  }
  const d = s.dropout as Record<string, unknown> | undefined;
  if (typeof d !== 'object' || d === null || !['embd', 'attn', 'resid'].every((k) => isNum(d[k]))) throw bad(`settings.dropout must be { embd, attn, resid }, got ${JSON.stringify(d)}.`);
  if (!Array.isArray(s.frozen) || !s.frozen.every((g) => isInt(g))) throw bad(`settings.frozen must be a list of depth groups, got ${JSON.stringify(s.frozen)}.`);
  const u = s.unfreeze as Record<string, unknown> | null | undefined;
  if (u !== null && (typeof u !== 'object' || !isInt(u?.start, 1) || !isInt(u?.every, 1))) throw bad(`settings.unfreeze must be null or { start, every }, got ${JSON.stringify(u)}.`);
  const l = s.lora as Record<string, unknown> | null | undefined;
  if (l !== null && (typeof l !== 'object' || !isInt(l?.r, 1) || !isNum(l?.alpha) || !isNum(l?.dropout) || !Array.isArray(l?.targets) || typeof l?.rslora !== 'boolean')) {
    throw bad(`settings.lora must be null or { r, alpha, dropout, targets, rslora }, got ${JSON.stringify(l)}.`);
  }
  const data = o.data as Record<string, unknown> | undefined;
  const strings = (v: unknown) => Array.isArray(v) && v.every((x) => typeof x === 'string');
  if (typeof data !== 'object' || data === null || !strings(data.train) || !strings(data.eval)) throw bad(`data must be { train: [paths], eval: [paths] }, got ${JSON.stringify(data)}.`);
  const f = o.fingerprints as Record<string, unknown> | undefined;
  if (typeof f !== 'object' || f === null) throw bad('has no fingerprints object.');
  for (const k of ['base_weights', 'train_tokens'] as const) if (typeof f[k] !== 'string' || !FINGERPRINT.test(f[k] as string)) throw bad(`fingerprints.${k} must be "sha256:" and 64 lowercase hex digits, got ${JSON.stringify(f[k])}.`);
  if (f.eval_tokens !== undefined && (typeof f.eval_tokens !== 'string' || !FINGERPRINT.test(f.eval_tokens))) throw bad(`fingerprints.eval_tokens must be "sha256:" and 64 lowercase hex digits, got ${JSON.stringify(f.eval_tokens)}.`);
  if (!Array.isArray(o.log_history)) throw bad('log_history must be a list.');
  const m = o.model as Record<string, unknown> | undefined;
  if (typeof m !== 'object' || m === null || typeof m.source !== 'string' || typeof m.dir !== 'string') throw bad(`model must be { source, dir }, got ${JSON.stringify(m)}.`);
  const st = o as unknown as TrainerStateJson;
  const rows = st.step * st.settings.batch * st.settings.grad_accum;
  if (st.rows_read !== rows) throw bad(`rows_read is ${st.rows_read}, but ${st.step} steps of batch ${st.settings.batch} × accumulation ${st.settings.grad_accum} read ${rows} rows.`);
  if (st.step > st.total_steps) throw bad(`step ${st.step} is beyond total_steps ${st.total_steps}.`);
  return st;
}

export interface LoadedRunCheckpoint {
  state: TrainerStateJson;
  config: GPT2Config;
  /** the weights (with LoRA: the base weights) */
  params: HostParams;
  /** LoRA: the LoRA factors */
  lora: { config: LoraConfig; params: HostParams } | null;
  /** the optimizer state, engine names, stepIndex = dropout_step */
  optimizer: TrainerState;
}

async function readJsonFile(files: ModelFiles, name: string): Promise<unknown> {
  const src = files.get(name);
  if (!src) throw new CheckpointFormatError(`The checkpoint has no ${name}. A checkpoint folder holds config.json, model.safetensors, ${OPTIMIZER_NAME} and ${TRAINER_STATE_NAME}; was it copied whole?`);
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(await src.read(0, src.size)));
  } catch (e) {
    throw new CheckpointFormatError(`${name} is not valid UTF-8 JSON (${(e as Error).message}).`);
  }
}

/**
 * Reads optimizer.safetensors: every tensor must be `<stored name>.exp_avg|.exp_avg_sq|.step` of a
 * parameter (or with LoRA an adapter), F32 in the parameter's shape or an I64 scalar ≥ 1, all
 * three present for each.
 */
export async function readOptimizer(files: ModelFiles, config: GPT2Config, lora: LoraConfig | null, stepIndex: number): Promise<TrainerState> {
  const src = files.get(OPTIMIZER_NAME);
  if (!src) throw new CheckpointFormatError(`The checkpoint has no ${OPTIMIZER_NAME} (the AdamW state); it cannot be resumed exactly.`);
  const header = await parseSafetensorsHeader(src, { allowOtherDtypes: true });
  const specs = new Map<string, ParamSpec>((lora ? loraSpecs(config, lora) : paramSpecs(config)).map((s) => [storedName(s.name, !!lora), s]));
  const found = new Map<string, Partial<Record<'exp_avg' | 'exp_avg_sq' | 'step', true>>>();
  const fail = (p: string) => new CheckpointFormatError(`${OPTIMIZER_NAME}: ${p}`);
  for (const t of header.tensors.values()) {
    const m = /^(.*)\.(exp_avg|exp_avg_sq|step)$/.exec(t.name);
    const spec = m ? specs.get(m[1]) : undefined;
    if (!m || !spec) throw fail(`tensor '${t.name}' is not <name>.exp_avg, .exp_avg_sq or .step of a ${lora ? 'LoRA adapter' : 'parameter'} of this model.`);
    const kind = m[2] as 'exp_avg' | 'exp_avg_sq' | 'step';
    if (kind === 'step') {
      if (t.dtype !== 'I64' || t.shape.length !== 0) throw fail(`'${t.name}' must be an I64 scalar (shape []), got ${t.dtype} [${t.shape.join(', ')}].`);
    } else if (t.dtype !== 'F32' || t.shape.length !== spec.shape.length || t.shape.some((d, i) => d !== spec.shape[i])) {
      throw fail(`'${t.name}' must be F32 of shape [${spec.shape.join(', ')}], got ${t.dtype} [${t.shape.join(', ')}].`);
    }
    found.set(m[1], { ...found.get(m[1]), [kind]: true });
  }
  const tensors = new Map<string, TensorOptimizerState>();
  for (const [stored, has] of found) {
    const spec = specs.get(stored)!;
    const missing = (['exp_avg', 'exp_avg_sq', 'step'] as const).filter((k) => !has[k]);
    if (missing.length) throw fail(`${stored} has no ${missing.map((k) => `.${k}`).join(', ')}; each tensor with state needs all three.`);
    const step = (await readTensorI64(src, header, `${stored}.step`))[0];
    if (step < 1n || step > BigInt(Number.MAX_SAFE_INTEGER)) throw fail(`${stored}.step is ${step}; it must be ≥ 1.`);
    tensors.set(spec.name, {
      m: await readTensorF32(src, header, `${stored}.exp_avg`),
      v: await readTensorF32(src, header, `${stored}.exp_avg_sq`),
      step: Number(step),
    });
  }
  return { stepIndex, tensors };
}

/**
 * Reads and validates a whole checkpoint folder: trainer_state.json (format and version first),
 * config and weights (the model loader's checks), the adapter with LoRA (its config must be the
 * one in the settings), and every optimizer tensor.
 */
export async function readRunCheckpoint(files: ModelFiles): Promise<LoadedRunCheckpoint> {
  const state = checkTrainerStateJson(await readJsonFile(files, TRAINER_STATE_NAME));
  let config: GPT2Config;
  try {
    config = parseConfig(await readJsonFile(files, 'config.json'));
  } catch (e) {
    if (e instanceof CheckpointFormatError) throw e;
    throw new CheckpointFormatError(`config.json: ${(e as Error).message}`);
  }
  const params = await loadCheckpoint(config, files);
  const sl = state.settings.lora;
  let lora: LoadedRunCheckpoint['lora'] = null;
  if (sl) {
    const a = await loadLora(config, files);
    const same = a.config.r === sl.r && a.config.alpha === sl.alpha && a.config.dropout === sl.dropout && a.config.rslora === sl.rslora;
    if (!same) throw new CheckpointFormatError(`${PEFT_CONFIG_NAME} (r ${a.config.r}, alpha ${a.config.alpha}, dropout ${a.config.dropout}) disagrees with trainer_state.json's settings.lora (r ${sl.r}, alpha ${sl.alpha}, dropout ${sl.dropout}).`);
    lora = { config: { r: sl.r, alpha: sl.alpha, dropout: sl.dropout, targets: [...sl.targets], rslora: sl.rslora }, params: a.params };
  }
  const optimizer = await readOptimizer(files, config, lora?.config ?? null, state.dropout_step);
  return { state, config, params, lora, optimizer };
}
