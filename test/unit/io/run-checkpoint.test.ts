// The checkpoint format (docs/checkpoint-format.md): SHA-256 and the fingerprints against Node's
// crypto over independently assembled bytes; a checkpoint written to disk and read back (weights,
// adapters, AdamW moments and I64 step counts, trainer_state.json) bit for bit; optimizer.safetensors
// read by an independent Python reader; the refusals; whole-or-nothing writing and
// --save-total-limit; which folder --resume means.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GPT2_SMALL, type GPT2Config } from '../../../src/engine/model/config.ts';
import { initLoraParams, loraSpecs, type LoraConfig } from '../../../src/engine/model/lora.ts';
import { paramSpecs, type HostParams } from '../../../src/engine/model/params.ts';
import { DEFAULT_SCHEDULE } from '../../../src/engine/train/run-settings.ts';
import type { TrainerState } from '../../../src/engine/train/trainer.ts';
import type { TrainRunConfig } from '../../../src/engine/train/config.ts';
import { nodeDirFiles } from '../../../src/io/node-model.ts';
import { CheckpointWriteError, listCheckpoints, nodeSha256, resolveCheckpointPath, writeCheckpointFolder } from '../../../src/io/node-run-checkpoint.ts';
import {
  checkpointFiles, CheckpointFormatError, CHECKPOINT_FORMAT, readRunCheckpoint, runOf, settingsOf, tokensFingerprint, weightsFingerprint,
  type TrainerStateJson,
} from '../../../src/io/run-checkpoint.ts';
import { parseSafetensorsHeaderSync } from '../../../src/io/safetensors.ts';
import { Sha256 } from '../../../src/io/sha256.ts';
import { uniformStream } from '../../../src/engine/random.ts';

const CONFIG: GPT2Config = { ...GPT2_SMALL, vocabSize: 50, nPositions: 16, nEmbd: 8, nLayer: 2, nHead: 2, nInner: 32, bosTokenId: 49, eosTokenId: 49 };

function randParams(specs: Array<{ name: string; numel: number }>, seed: number): HostParams {
  const r = uniformStream(seed);
  return new Map(specs.map((s) => [s.name, Float32Array.from({ length: s.numel }, () => r() * 2 - 1)]));
}

function randState(names: Array<{ name: string; numel: number }>, seed: number, stepIndex: number): TrainerState {
  const r = uniformStream(seed);
  return {
    stepIndex,
    tensors: new Map(names.map((s, i) => [s.name, {
      m: Float32Array.from({ length: s.numel }, () => r() - 0.5),
      v: Float32Array.from({ length: s.numel }, () => r() * 1e-3),
      step: 1 + (i % 3),
    }])),
  };
}

const RUN: TrainRunConfig = {
  steps: 10, batch: 2, seq: 8, gradAccum: 2, lr: 1e-3, schedule: { ...DEFAULT_SCHEDULE, kind: 'slanted', cutFrac: 0.2, ratio: 16 }, lrDecay: 1.2,
  unfreeze: { start: 1, every: 3 }, dropout: { embd: 0.1, attn: 0, resid: 0.05 }, seed: 9, order: 'shuffled', frozen: new Set([0, 2]),
  beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.01, gradClip: 1, precision: 'f16',
};

function stateJson(step: number, lora: LoraConfig | null): TrainerStateJson {
  return {
    format: CHECKPOINT_FORMAT, format_version: 1, step, total_steps: 10, rows_read: step * 4, windows: 12, dropout_step: step,
    settings: settingsOf(RUN, lora, 5),
    model: { source: 'local', dir: '/abs/model' }, data: { train: ['/abs/train.bin'], eval: [] },
    fingerprints: { base_weights: `sha256:${'a'.repeat(64)}`, train_tokens: `sha256:${'b'.repeat(64)}` },
    kernels: { precision: 'f16' }, log_history: [{ step: 1, loss: 3.5, lr: 1e-3, grad_norm: 0.5 }], created: new Date(0).toISOString(), writer: 'cli',
  };
}

const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const tmp = () => mkdtempSync(join(tmpdir(), 'run-ckpt-'));

describe('SHA-256 and fingerprints', () => {
  it('the incremental hasher gives Node crypto\'s digest for every length and any chunking', () => {
    const r = uniformStream(1);
    for (const n of [0, 1, 3, 55, 56, 57, 63, 64, 65, 127, 128, 1000, 100_003]) {
      const data = Uint8Array.from({ length: n }, () => Math.floor(r() * 256));
      const want = createHash('sha256').update(data).digest('hex');
      const h = new Sha256();
      let o = 0;
      while (o < n) {
        const k = Math.min(n - o, 1 + Math.floor(r() * 150));
        h.update(data.subarray(o, o + k));
        o += k;
      }
      expect(h.hex(), `length ${n}`).toBe(want);
    }
    expect(new Sha256().hex()).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'); // FIPS 180-4 empty message
  });

  it('train_tokens hashes each id as a little-endian uint32, in order', () => {
    const tokens = Uint16Array.from({ length: 70_001 }, (_, i) => (i * 7919) % 50257);
    const le = Buffer.alloc(tokens.length * 4);
    tokens.forEach((t, i) => le.writeUInt32LE(t, 4 * i));
    const want = `sha256:${createHash('sha256').update(le).digest('hex')}`;
    expect(tokensFingerprint(tokens, nodeSha256())).toBe(want);
    expect(tokensFingerprint(tokens, new Sha256())).toBe(want);
    expect(tokensFingerprint(tokens.subarray(1), nodeSha256())).not.toBe(want);
  });

  it('base_weights hashes name, a zero byte and float32 LE values, tensors in byte order of the prefixed name', async () => {
    const params = randParams(paramSpecs(CONFIG), 3);
    const names = paramSpecs(CONFIG).map((s) => `transformer.${s.name}`).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    // h.1.* sorts before h.10.* would; here "h.0" < "h.1" < "ln_f" < "wpe" < "wte".
    expect(names[0]).toBe('transformer.h.0.attn.c_attn.bias');
    expect(names.at(-1)).toBe('transformer.wte.weight');
    const h = createHash('sha256');
    for (const n of names) {
      h.update(Buffer.from(n, 'utf8'));
      h.update(Buffer.from([0]));
      h.update(bits(params.get(n.slice('transformer.'.length))!));
    }
    const want = `sha256:${h.digest('hex')}`;
    expect(await weightsFingerprint(CONFIG, params, nodeSha256())).toBe(want);
    expect(await weightsFingerprint(CONFIG, (n) => params.get(n)!, new Sha256())).toBe(want);
  });
});

describe('checkpoint folder: write, read back', () => {
  it('full fine-tuning: weights, moments, step counts and trainer_state.json round-trip bit for bit', async () => {
    const params = randParams(paramSpecs(CONFIG), 4);
    const withState = paramSpecs(CONFIG).filter((s) => s.group !== 0 && s.group !== 2);
    const optimizer = randState(withState, 5, 6);
    const state = stateJson(6, null);
    const out = tmp();
    const dir = await writeCheckpointFolder(out, 6, checkpointFiles({ config: CONFIG, params, optimizer, state }));
    expect(dir).toBe(join(out, 'checkpoint-6'));
    expect(readdirSync(out)).toEqual(['checkpoint-6']);
    expect(readdirSync(dir).sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors', 'optimizer.safetensors', 'trainer_state.json']);
    const back = await readRunCheckpoint(await nodeDirFiles(dir));
    expect(back.state).toEqual(state);
    expect(back.config).toEqual(CONFIG);
    for (const [k, v] of params) expect(bits(back.params.get(k)!).equals(bits(v)), k).toBe(true);
    expect(back.optimizer.stepIndex).toBe(6);
    expect([...back.optimizer.tensors.keys()].sort()).toEqual(withState.map((s) => s.name).sort());
    for (const [k, t] of optimizer.tensors) {
      const g = back.optimizer.tensors.get(k)!;
      expect(g.step).toBe(t.step);
      expect(bits(g.m).equals(bits(t.m)) && bits(g.v).equals(bits(t.v)), k).toBe(true);
    }
    // The settings come back as the run they describe.
    const run = runOf(back.state.settings);
    expect(run.cfg).toEqual(RUN);
    expect(run.evalEvery).toBe(5);

    // optimizer.safetensors as the format says: ascending names, F32 moments, I64 scalar steps, format pt.
    const opt = new Uint8Array(readFileSync(join(dir, 'optimizer.safetensors')));
    const header = parseSafetensorsHeaderSync(opt, 'optimizer.safetensors', { allowOtherDtypes: true });
    const keys = [...header.tensors.keys()];
    expect(keys).toEqual([...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
    expect(keys).toContain('transformer.h.0.attn.c_attn.weight.exp_avg');
    expect(header.metadata).toEqual({ format: 'pt' });
    // An independent reader (Python's struct + json) sees the same step counts.
    const py = execFileSync('/usr/bin/python3', ['-c', `
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
out = {}
for k, v in h.items():
    if k.endswith('.step'):
        assert v['dtype'] == 'I64' and v['shape'] == [], v
        s, e = v['data_offsets']
        out[k] = struct.unpack('<q', b[8 + n + s:8 + n + e])[0]
print(json.dumps(out))
`, join(dir, 'optimizer.safetensors')], { encoding: 'utf8' });
    const steps = JSON.parse(py) as Record<string, number>;
    expect(Object.keys(steps)).toHaveLength(withState.length);
    for (const [k, t] of optimizer.tensors) expect(steps[`transformer.${k}.step`]).toBe(t.step);
  });

  it('LoRA: base weights in model.safetensors, the PEFT adapter beside, moments under the adapter names', async () => {
    const lora: LoraConfig = { r: 2, alpha: 4, dropout: 0.1, targets: ['c_attn', 'c_proj'], rslora: false };
    const params = randParams(paramSpecs(CONFIG), 6);
    const adapters = initLoraParams(CONFIG, lora, 7);
    const optimizer = randState(loraSpecs(CONFIG, lora), 8, 3);
    const out = tmp();
    const dir = await writeCheckpointFolder(out, 3, checkpointFiles({ config: CONFIG, params, lora: { config: lora, params: adapters, baseModel: 'gpt2' }, optimizer, state: stateJson(3, lora) }));
    expect(readdirSync(dir)).toContain('adapter_model.safetensors');
    const header = parseSafetensorsHeaderSync(new Uint8Array(readFileSync(join(dir, 'optimizer.safetensors'))), 'o', { allowOtherDtypes: true });
    expect([...header.tensors.keys()]).toContain('base_model.model.transformer.h.0.attn.c_attn.lora_A.weight.exp_avg_sq');
    const back = await readRunCheckpoint(await nodeDirFiles(dir));
    expect(back.lora?.config).toEqual(lora);
    for (const [k, v] of adapters) expect(bits(back.lora!.params.get(k)!).equals(bits(v)), k).toBe(true);
    for (const [k, v] of params) expect(bits(back.params.get(k)!).equals(bits(v)), k).toBe(true);
    for (const [k, t] of optimizer.tensors) expect(bits(back.optimizer.tensors.get(k)!.m).equals(bits(t.m))).toBe(true);
  });
});

describe('checkpoint refusals', () => {
  async function written(): Promise<string> {
    const params = randParams(paramSpecs(CONFIG), 4);
    const optimizer = randState(paramSpecs(CONFIG).slice(0, 3), 1, 2);
    return writeCheckpointFolder(tmp(), 2, checkpointFiles({ config: CONFIG, params, optimizer, state: stateJson(2, null) }));
  }
  const edit = (dir: string, f: (j: Record<string, unknown>) => void) => {
    const p = join(dir, 'trainer_state.json');
    const j = JSON.parse(readFileSync(p, 'utf8'));
    f(j);
    writeFileSync(p, JSON.stringify(j));
  };

  it('another format_version, another format, a missing field, inconsistent rows_read', async () => {
    const cases: Array<[(j: Record<string, unknown>) => void, RegExp]> = [
      [(j) => (j.format_version = 2), /format_version is 2; this version of the studio reads format_version 1/],
      [(j) => (j.format = 'something-else'), /format is "something-else", not "webgpu-finetuning-studio\/checkpoint"/],
      [(j) => delete (j.fingerprints as Record<string, unknown>).train_tokens, /fingerprints\.train_tokens must be "sha256:"/],
      [(j) => (j.rows_read = 5), /rows_read is 5, but 2 steps of batch 2 × accumulation 2 read 8 rows/],
      [(j) => ((j.settings as Record<string, unknown>).order = 'random'), /settings\.order must be "sequential" or "shuffled"/],
      [(j) => ((j.settings as Record<string, unknown>).precision = 'bf16'), /settings\.precision must be "f32" or "f16", got "bf16"/],
      [(j) => delete (j.settings as Record<string, unknown>).precision, /settings\.precision must be "f32" or "f16", got undefined/],
    ];
    for (const [f, msg] of cases) {
      const dir = await written();
      edit(dir, f);
      const e = await readRunCheckpoint(await nodeDirFiles(dir)).catch((x) => x);
      expect(e).toBeInstanceOf(CheckpointFormatError);
      expect((e as Error).message).toMatch(msg);
    }
  });

  it('an optimizer tensor of the wrong shape or a missing step count', async () => {
    const dir = await written();
    const p = join(dir, 'optimizer.safetensors');
    const b = readFileSync(p);
    const n = Number(b.readBigUInt64LE(0));
    const h = JSON.parse(b.subarray(8, 8 + n).toString('utf8'));
    const stepKey = Object.keys(h).find((k) => k.endsWith('.step'))!;
    delete h[stepKey];
    // Keep the data offsets valid: the step's 8 bytes become padding nobody references... which the
    // reader refuses as a hole, so rebuild the file without them.
    const kept = Object.entries(h).filter(([k]) => k !== '__metadata__') as Array<[string, { data_offsets: [number, number] }]>;
    const parts: Buffer[] = [];
    let cur = 0;
    const nh: Record<string, unknown> = { __metadata__: h.__metadata__ };
    for (const [k, v] of kept) {
      const [s, e] = v.data_offsets;
      parts.push(b.subarray(8 + n + s, 8 + n + e));
      nh[k] = { ...v, data_offsets: [cur, cur + e - s] };
      cur += e - s;
    }
    let js = JSON.stringify(nh);
    js += ' '.repeat((8 - (js.length % 8)) % 8);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(js.length));
    writeFileSync(p, Buffer.concat([len, Buffer.from(js), ...parts]));
    await expect(readRunCheckpoint(await nodeDirFiles(dir))).rejects.toThrow(new RegExp(`${stepKey.replace(/\.step$/, '').replace(/\./g, '\\.')} has no \\.step`));
  });
});

describe('writing whole or not at all', () => {
  it('a failing file leaves no folder and no temporary; an existing checkpoint of the step stays until the new one is whole', async () => {
    const out = tmp();
    const params = randParams(paramSpecs(CONFIG), 4);
    const good = checkpointFiles({ config: CONFIG, params, optimizer: randState([], 1, 2), state: stateJson(2, null) });
    await writeCheckpointFolder(out, 2, good);
    const before = readFileSync(join(out, 'checkpoint-2', 'model.safetensors'));
    const failing = good.map((f) => (f.name === 'optimizer.safetensors' ? { ...f, data: () => (async function* () { yield new Uint8Array(8); throw new Error('disk gone'); })() } : f));
    await expect(writeCheckpointFolder(out, 2, failing)).rejects.toThrow(/disk gone|Cannot write/);
    expect(readdirSync(out)).toEqual(['checkpoint-2']);
    expect(readFileSync(join(out, 'checkpoint-2', 'model.safetensors')).equals(before)).toBe(true);
    await expect(writeCheckpointFolder(out, 3, failing)).rejects.toThrow();
    expect(existsSync(join(out, 'checkpoint-3'))).toBe(false);
  });

  it('--save-total-limit keeps the newest N; 0 keeps all; --resume picks the newest or the folder itself', async () => {
    const params = randParams(paramSpecs(CONFIG), 4);
    const files = (s: number) => checkpointFiles({ config: CONFIG, params, optimizer: randState([], 1, s), state: stateJson(s, null) });
    const all = tmp();
    for (const s of [2, 4, 10]) await writeCheckpointFolder(all, s, files(s));
    expect((await listCheckpoints(all)).map((c) => c.step)).toEqual([2, 4, 10]);
    const two = tmp();
    for (const s of [2, 4, 6, 10]) await writeCheckpointFolder(two, s, files(s), { saveTotalLimit: 2 });
    expect(readdirSync(two).sort()).toEqual(['checkpoint-10', 'checkpoint-6']);
    // checkpoint-10 is newer than checkpoint-4 although it sorts first as text.
    expect(await resolveCheckpointPath(all)).toBe(join(all, 'checkpoint-10'));
    expect(await resolveCheckpointPath(join(all, 'checkpoint-4'))).toBe(join(all, 'checkpoint-4'));
    await expect(resolveCheckpointPath(tmp())).rejects.toThrow(CheckpointWriteError);
    await expect(resolveCheckpointPath(join(all, 'nope'))).rejects.toThrow(/no such folder/);
  });
});
