// The train command's output folder: a full Hugging Face folder whose weights load back bit for
// bit, with the model's tokenizer when it has one that fits, and a model card naming a Hub base
// model (but never a local path) with the settings and the final loss.
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { saveTrainedFolder, type TrainedModel } from '../../../src/cli/save-folder.ts';
import type { TrainRunConfig } from '../../../src/engine/train/config.ts';
import { DEFAULT_SCHEDULE } from '../../../src/engine/train/run-settings.ts';
import { loadModelDir } from '../../../src/io/node-model.ts';
import { hubFixtures } from '../../helpers/hub-server.ts';

const fx = hubFixtures();
let dir: string;
let withTok: string;
let withoutTok: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'save-folder-'));
  withTok = join(dir, 'with-tokenizer');
  withoutTok = join(dir, 'models', 'plain');
  await mkdir(withTok);
  await mkdir(withoutTok, { recursive: true });
  for (const [n, b] of Object.entries(fx.repos['tiny/gpt2'].files)) {
    await writeFile(join(withTok, n), b);
    if (!n.startsWith('tokenizer')) await writeFile(join(withoutTok, n), b);
  }
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const training: TrainRunConfig = {
  steps: 2, batch: 1, seq: 8, gradAccum: 1, lr: 1e-3, schedule: { ...DEFAULT_SCHEDULE, kind: 'constant' }, lrDecay: 1, unfreeze: null,
  beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, gradClip: 1, dropout: { embd: 0, attn: 0, resid: 0 }, seed: 1, order: 'sequential', frozen: new Set(),
};
const model = (modelArg: string, modelDir: string): TrainedModel => ({
  config: fx.tinyConfig, params: fx.tinyParams, modelArg, modelDir, training,
  logs: [{ step: 1, loss: 5.5, lr: 1e-3, grad_norm: 1 }, { step: 2, loss: 5.25, lr: 1e-3, grad_norm: 1 }],
  data: ['/data/input.txt'], tokens: 1000, seconds: 3,
});

describe('saveTrainedFolder', () => {
  it('writes a Hugging Face folder with the model\'s own tokenizer and a card naming the Hub base model', async () => {
    const out = join(dir, 'out-hub');
    const notes: string[] = [];
    const files = await saveTrainedFolder(out, model('tiny/gpt2@main', withTok), (l) => notes.push(l));
    expect(files).toEqual(['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'README.md', 'model.safetensors']);
    expect((await readdir(out)).sort()).toEqual([...files].sort());
    const back = await loadModelDir(out);
    for (const [k, v] of fx.tinyParams) expect(Buffer.from(back.params.get(k)!.buffer).equals(Buffer.from(v.buffer, v.byteOffset, v.byteLength)), k).toBe(true);
    const card = await readFile(join(out, 'README.md'), 'utf8');
    expect(card).toContain('base_model: "tiny/gpt2"');
    expect(card).toContain('| training loss | 5.2500 |');
    expect(card).toContain('`input.txt`');
    expect(notes).toEqual([]);
  });

  it('leaves the tokenizer out when the model has none that fits, and never calls a local path a Hub id', async () => {
    const out = join(dir, 'out-local');
    const notes: string[] = [];
    const files = await saveTrainedFolder(out, model(withoutTok, withoutTok), (l) => notes.push(l));
    expect(files).not.toContain('tokenizer.json');
    expect(notes.join('\n')).toMatch(/no tokenizer files and its vocabulary \(311\) is smaller than GPT-2's/);
    const card = await readFile(join(out, 'README.md'), 'utf8');
    expect(card).not.toContain('base_model:');
    expect(card).toContain('`local folder plain`');
  });
});
