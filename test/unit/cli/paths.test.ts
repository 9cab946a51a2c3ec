// Nothing the user made is destroyed (src/cli/paths.ts): every refusal of train's --out / --log,
// the free-space check and the early flag/config checks happen before any GPU work, with the
// threatened file untouched (bytes and mtime); the final save through a temporary folder keeps
// the previous output whole on a full disk (a small tmpfs) and after SIGTERM, and keeps the log
// and checkpoints at their paths.
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../../src/cli/main.ts';
import {
  checkLogFile, checkOutputFolder, checkTrainPaths, DiskSpaceError, estimateTrainWrite, isOurLogText, OutputPathError, OutputWriteError,
  TRAIN_EXPORT_NAMES, writeOutputFolder,
} from '../../../src/cli/paths.ts';
import { saveTrainedFolder, type TrainedModel } from '../../../src/cli/save-folder.ts';
import { parseConfig } from '../../../src/engine/model/config.ts';
import { countParams } from '../../../src/engine/model/params.ts';
import { DEFAULT_SCHEDULE } from '../../../src/engine/train/run-settings.ts';
import { loadModelDir } from '../../../src/io/node-model.ts';

const GOLD = new URL('../../goldens/gpt2-tiny/', import.meta.url).pathname;
const ROOT = new URL('../../../', import.meta.url).pathname;
let dir: string;
let model: string;
let data: string;
let evalData: string;
const mounts: string[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'cli-paths-'));
  model = join(dir, 'model');
  mkdirSync(model);
  copyFileSync(join(GOLD, 'model/config.json'), join(model, 'config.json'));
  copyFileSync(join(GOLD, 'model/model.safetensors'), join(model, 'model.safetensors'));
  data = join(dir, 'train.bin');
  copyFileSync(join(GOLD, 'train.bin'), data);
  evalData = join(dir, 'held.bin');
  copyFileSync(join(GOLD, 'train.bin'), evalData);
});
afterEach(() => vi.restoreAllMocks());
afterAll(() => {
  for (const m of mounts) spawnSync('umount', ['-l', m]);
  rmSync(dir, { recursive: true, force: true });
});

/** A tmpfs of `size` at a new folder, or null where mounting is not permitted (tests run as root in CI). */
function tmpfs(size: string, ro = false): string | null {
  const m = mkdtempSync(join(dir, 'mnt-'));
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}${ro ? ',ro' : ''}`, 'tmpfs', m]);
  if (r.status !== 0) return null;
  mounts.push(m);
  return m;
}
const canMount = (() => {
  const probe = mkdtempSync(join(tmpdir(), 'cli-paths-probe-'));
  const ok = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe]).status === 0;
  if (ok) spawnSync('umount', [probe]);
  rmSync(probe, { recursive: true, force: true });
  return ok;
})();

/** Every file under `p` (or `p` itself) with its bytes and mtime, to prove nothing changed. */
function snapshot(p: string): Map<string, { bytes: string; mtime: number }> {
  const out = new Map<string, { bytes: string; mtime: number }>();
  const walk = (q: string) => {
    const st = statSync(q);
    if (st.isDirectory()) for (const n of readdirSync(q).sort()) walk(join(q, n));
    else out.set(q, { bytes: readFileSync(q).toString('base64'), mtime: st.mtimeMs });
  };
  walk(p);
  return out;
}

async function runCli(args: string[]): Promise<{ code: number; err: string }> {
  const errs: string[] = [];
  vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void errs.push(a.join(' ')));
  const code = await main(args, () => {});
  return { code, err: errs.join('\n') };
}

const train = (over: { out?: string; log?: string; extra?: string[]; model?: string; data?: string } = {}) => [
  'train', '--model', over.model ?? model, '--data', over.data ?? data, '--out', over.out ?? join(dir, 'never'), '--steps', '1', '--batch', '1', '--seq', '8',
  ...(over.log ? ['--log', over.log] : []), ...(over.extra ?? []),
];

/** A folder with files of a person's own (not a studio output). */
function foreign(name: string): string {
  const d = join(dir, name);
  mkdirSync(d, { recursive: true });
  writeFileSync(join(d, 'notes.txt'), 'my notes\n');
  writeFileSync(join(d, 'config.json'), '{"mine": true}\n');
  return d;
}

/** A previous train output: our model card, a checkpoint folder and a log. */
function earlier(name: string): string {
  const d = join(dir, name);
  mkdirSync(join(d, 'checkpoint-2'), { recursive: true });
  writeFileSync(join(d, 'checkpoint-2', 'trainer_state.json'), '{"step": 2}\n');
  writeFileSync(join(d, 'README.md'), '---\ntags:\n- gpt2\n- webgpu-finetuning-studio\n---\n');
  writeFileSync(join(d, 'train-log.jsonl'), '{"step":1,"loss":5}\n{"step":2,"loss":4}\n');
  return d;
}

describe('train refuses, before any GPU work, what would destroy a file — and leaves it untouched', () => {
  const cases: Array<{ name: string; setup: () => { args: string[]; guard: string[] }; expect: RegExp; code?: number }> = [
    { name: '--out is the model folder', setup: () => ({ args: train({ out: model }), guard: [model] }), expect: /--out .*model is the model folder: the model would be overwritten/ },
    { name: '--out inside the model folder', setup: () => ({ args: train({ out: join(model, 'tuned') }), guard: [model] }), expect: /is inside the model folder/ },
    {
      name: '--out is an existing file',
      setup: () => {
        const f = join(dir, 'a-file');
        writeFileSync(f, 'precious');
        return { args: train({ out: f }), guard: [f] };
      },
      expect: /a-file is an existing file, not a folder/,
    },
    {
      name: '--out below a file',
      setup: () => {
        const f = join(dir, 'b-file');
        writeFileSync(f, 'precious');
        return { args: train({ out: join(f, 'sub') }), guard: [f] };
      },
      expect: /b-file is a file, so no folder can be created under it/,
    },
    {
      name: '--out a non-empty folder that is not ours',
      setup: () => {
        const d = foreign('mine');
        return { args: train({ out: d }), guard: [d] };
      },
      expect: /mine is not empty \(.*notes\.txt.*\) and is not an output of ours.*--overwrite/,
    },
    {
      name: 'an input at a path the export replaces, even with --overwrite',
      setup: () => {
        const d = foreign('proj');
        const tokens = join(d, 'merges.txt');
        copyFileSync(data, tokens);
        return { args: train({ out: d, data: tokens, extra: ['--overwrite'] }), guard: [d] };
      },
      expect: /the input .*merges\.txt is at .*proj\/merges\.txt, which the output replaces/,
    },
    { name: '--log is the training data', setup: () => ({ args: train({ log: data }), guard: [data] }), expect: /--log .*train\.bin is the --data file/ },
    { name: '--log is the evaluation data', setup: () => ({ args: train({ log: evalData, extra: ['--eval-data', evalData] }), guard: [evalData] }), expect: /is the --eval-data file/ },
    { name: '--log is a model file', setup: () => ({ args: train({ log: join(model, 'model.safetensors') }), guard: [model] }), expect: /--log .* is inside the model folder/ },
    {
      name: '--log is a file that is not a training log',
      setup: () => {
        const f = join(dir, 'essay.txt');
        writeFileSync(f, 'Four score and seven years ago\n');
        return { args: train({ log: f }), guard: [f] };
      },
      expect: /essay\.txt exists and is not a training log/,
    },
    {
      name: '--log is JSON lines without a numeric step',
      setup: () => {
        const f = join(dir, 'other.jsonl');
        writeFileSync(f, '{"step":"one"}\n');
        return { args: train({ log: f }), guard: [f] };
      },
      expect: /other\.jsonl exists and is not a training log/,
    },
    {
      name: '--log is a folder',
      setup: () => {
        const d = foreign('log-folder');
        return { args: train({ log: d }), guard: [d] };
      },
      expect: /log-folder is a folder/,
    },
    {
      name: '--log is a file the export replaces',
      setup: () => {
        const d = earlier('prev-a');
        return { args: train({ out: d, log: join(d, 'README.md') }), guard: [d] };
      },
      expect: /README\.md, which the output replaces/,
    },
    {
      name: '--log is the --out folder',
      setup: () => {
        const d = earlier('prev-b');
        return { args: train({ out: d, log: d }), guard: [d] };
      },
      expect: /is the output folder/,
    },
    { name: '--seq 0', setup: () => ({ args: [...train(), '--seq', '0'], guard: [model] }), expect: /--seq must be at least 1, got 0/, code: 2 },
    { name: '--seq -3', setup: () => ({ args: [...train(), '--seq', '-3'], guard: [model] }), expect: /--seq must be at least 1, got -3/, code: 2 },
    {
      name: 'a head size above the attention kernel\'s limit, before the weights are read',
      setup: () => {
        const m = join(dir, 'wide-heads');
        mkdirSync(m, { recursive: true });
        const cfg = JSON.parse(readFileSync(join(model, 'config.json'), 'utf8'));
        Object.assign(cfg, { n_embd: 256, n_head: 1 });
        writeFileSync(join(m, 'config.json'), JSON.stringify(cfg));
        // Not a safetensors file: reading the weights would fail with another message.
        writeFileSync(join(m, 'model.safetensors'), 'not weights');
        return { args: train({ model: m }), guard: [m] };
      },
      expect: /head size is 256 \(n_embd 256 \/ n_head 1\), above the attention kernel's limit of 128/,
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const { args, guard } = c.setup();
      const before = guard.map(snapshot);
      const outArg = args[args.indexOf('--out') + 1];
      const outExisted = existsSync(outArg);
      const r = await runCli(args);
      expect(r.code).toBe(c.code ?? 1);
      expect(r.err).toMatch(/^error: /);
      expect(r.err).toMatch(c.expect);
      expect(r.err.split('\n')).toHaveLength(1);
      guard.forEach((g, i) => expect(snapshot(g), g).toEqual(before[i]));
      if (!outExisted) expect(existsSync(outArg)).toBe(false);
    });
  }

  it.skipIf(!canMount)('--out on a read-only disk', async () => {
    const m = tmpfs('64k', true)!;
    const r = await runCli(train({ out: join(m, 'out') }));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/is on a read-only file system\. Choose a folder you can write to/);
  });

  it.skipIf(!canMount)('a disk with less free space than the run writes, with the sizes and what to do', async () => {
    const m = tmpfs('1m')!;
    const out = join(m, 'out');
    const r = await runCli(train({ out }));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(new RegExp(`--out ${out} needs about [\\d.]+ [KM]iB \\(the final model [\\d.]+ [KM]iB \\+ 1 checkpoint of [\\d.]+ [KM]iB\\), but the disk holding ${m} has [\\d.]+ [KM]iB free\\. Free space, point --out at another disk`));
    expect(existsSync(out)).toBe(false);
  });
});

describe('checks that pass', () => {
  it('an earlier output of ours, an empty folder, a new one, or --overwrite', async () => {
    const check = (out: string, overwrite = false) => checkOutputFolder({ command: 'train', out, modelDir: model, inputs: [data], writes: TRAIN_EXPORT_NAMES, overwrite });
    await expect(check(earlier('ours'))).resolves.toBeTruthy();
    for (const only of ['checkpoint', 'card', 'log']) {
      const d = join(dir, `only-${only}`);
      mkdirSync(d);
      if (only === 'checkpoint') mkdirSync(join(d, 'checkpoint-10'));
      if (only === 'card') writeFileSync(join(d, 'README.md'), '---\ntags:\n- webgpu-finetuning-studio\n---\n');
      if (only === 'log') writeFileSync(join(d, 'log.jsonl'), '{"step":1,"loss":3}\n');
      await expect(check(d), only).resolves.toBeTruthy();
    }
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    await expect(check(empty)).resolves.toBeTruthy();
    await expect(check(join(dir, 'new', 'deeper'))).resolves.toBeTruthy();
    await expect(check(foreign('mine-ok'))).rejects.toThrow(OutputPathError);
    await expect(check(foreign('mine-ok'), true)).resolves.toBeTruthy();
    // a README that is not our card is no evidence
    const other = join(dir, 'other-card');
    mkdirSync(other);
    writeFileSync(join(other, 'README.md'), '# my project\n');
    await expect(check(other)).rejects.toThrow(/not an output of ours/);
  });

  it('--log inside a --out that does not exist yet: its folder is created, nothing else', async () => {
    const out = join(dir, 'fresh-out');
    const log = join(out, 'logs', 'train.jsonl');
    const plan = estimateTrainWrite({ config: parseConfig(JSON.parse(readFileSync(join(model, 'config.json'), 'utf8'))), steps: 1, frozen: new Set() });
    await checkTrainPaths({ out, log, modelDir: model, data: [data], evalData: [], overwrite: false, plan });
    expect(statSync(join(out, 'logs')).isDirectory()).toBe(true);
    expect(existsSync(log)).toBe(false);
    expect(readdirSync(out)).toEqual(['logs']);
    // and the next run into it is a run into an output of ours once the log has lines
    writeFileSync(log, '{"step":1,"loss":2}\n');
    await expect(checkLogFile({ command: 'train', log, out, writes: TRAIN_EXPORT_NAMES, modelDir: model, inputs: { '--data': [data] } })).resolves.toBeTruthy();
  });

  it('what counts as our log', () => {
    expect(isOurLogText('')).toBe(true);
    expect(isOurLogText('{"step":1,"loss":2}\n{"step":1,"eval_loss":2}\n')).toBe(true);
    expect(isOurLogText('{"step":1}\nnot json\n')).toBe(false);
    expect(isOurLogText('[1,2]\n')).toBe(false);
    expect(isOurLogText('{"loss":2}\n')).toBe(false);
  });

  it('the estimate counts the final model and the checkpoints kept at once', () => {
    const config = parseConfig(JSON.parse(readFileSync(join(model, 'config.json'), 'utf8')));
    const bytes = countParams(config) * 4;
    const p = estimateTrainWrite({ config, steps: 1000, frozen: new Set(), saveEvery: 300 });
    expect(p.final).toBeGreaterThan(bytes);
    expect(p.checkpoints).toBe(4); // 300, 600, 900 and the last step
    // model + two AdamW moments of every trainable value
    expect(p.checkpoint).toBeGreaterThan(3 * bytes);
    expect(p.total).toBe(p.final + 4 * p.checkpoint);
    expect(estimateTrainWrite({ config, steps: 1000, frozen: new Set(), saveEvery: 300, saveTotalLimit: 2 }).checkpoints).toBe(3);
    expect(estimateTrainWrite({ config, steps: 1000, frozen: new Set(), saveEvery: 0 }).checkpoints).toBe(1); // after the last step only
  });
});

const training = {
  steps: 2, batch: 1, seq: 8, gradAccum: 1, lr: 1e-3, schedule: { ...DEFAULT_SCHEDULE, kind: 'constant' as const }, lrDecay: 1, unfreeze: null,
  beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, gradClip: 1, dropout: { embd: 0, attn: 0, resid: 0 }, seed: 1, order: 'sequential' as const, frozen: new Set<number>(),
};

async function trained(scale: number): Promise<TrainedModel> {
  const m = await loadModelDir(model);
  const params = new Map([...m.params].map(([k, v]) => [k, v.map((x) => x * scale)]));
  const logs = [{ step: 1, loss: 5, lr: 1e-3, grad_norm: 1 }];
  return { config: m.config, params, modelArg: model, modelDir: model, training, logs, data: [data], tokens: 100, seconds: 1 };
}

describe('the final save: all new files or none', () => {
  it('replaces the export, keeps the log and checkpoints at their paths, leaves no temporary', async () => {
    const out = earlier('resave');
    const kept = [join(out, 'train-log.jsonl'), join(out, 'checkpoint-2')].map(snapshot);
    const first = await writeOutputFolder('train', out, async (stage) => saveTrainedFolder(stage, { ...(await trained(1)), cardName: 'resave' }, () => {}));
    expect(first).toContain('model.safetensors');
    const second = await trained(0.5);
    await writeOutputFolder('train', out, (stage) => saveTrainedFolder(stage, { ...second, cardName: 'resave' }, () => {}));
    const back = await loadModelDir(out);
    for (const [k, v] of second.params) expect(Buffer.from(back.params.get(k)!.buffer).equals(Buffer.from(v.buffer, v.byteOffset, v.byteLength)), k).toBe(true);
    expect([join(out, 'train-log.jsonl'), join(out, 'checkpoint-2')].map(snapshot)).toEqual(kept);
    expect(readdirSync(out).filter((n) => n.startsWith('.'))).toEqual([]);
    expect(readFileSync(join(out, 'README.md'), 'utf8')).toContain('resave');
  });

  it('a writer that fails half way changes nothing', async () => {
    const out = earlier('fails');
    await writeOutputFolder('train', out, async (stage) => saveTrainedFolder(stage, { ...(await trained(1)), cardName: 'fails' }, () => {}));
    const before = snapshot(out);
    const err = Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO', path: '/x' });
    await expect(writeOutputFolder('train', out, async (stage) => {
      writeFileSync(join(stage, 'config.json'), '{"half": true}');
      throw err;
    })).rejects.toThrow(OutputWriteError);
    expect(snapshot(out)).toEqual(before);
  });

  it.skipIf(!canMount)('a full disk: the new save fails naming the path, and the earlier fine-tune still loads bit for bit', async () => {
    const m = tmpfs('2m')!;
    const out = join(m, 'tuned');
    const old = await trained(1);
    await writeOutputFolder('train', out, (stage) => saveTrainedFolder(stage, { ...old, cardName: 'tuned' }, () => {}));
    writeFileSync(join(out, 'train-log.jsonl'), '{"step":1,"loss":5}\n');
    const before = snapshot(out);
    // Fill the disk so that the new weights cannot fit beside the old ones.
    const free = Number(spawnSync('df', ['--output=avail', '-B1', m]).stdout.toString().trim().split('\n')[1]);
    writeFileSync(join(m, 'filler'), new Uint8Array(Math.max(0, free - 64 * 1024)));
    const e = await writeOutputFolder('train', out, async (stage) => saveTrainedFolder(stage, { ...(await trained(2)), cardName: 'tuned' }, () => {})).catch((x) => x);
    expect(e).toBeInstanceOf(OutputWriteError);
    expect(e.message).toMatch(new RegExp(`Cannot write ${out}/[\\w.]+: the disk is full \\(ENOSPC\\)\\. Free space, or point the output at another disk\\. Nothing in ${out} was changed\\.`));
    expect(snapshot(out)).toEqual(before);
    const back = await loadModelDir(out);
    for (const [k, v] of old.params) expect(Buffer.from(back.params.get(k)!.buffer).equals(Buffer.from(v.buffer, v.byteOffset, v.byteLength)), k).toBe(true);
    expect(readdirSync(out).filter((n) => n.startsWith('.'))).toEqual([]);
  });

  it('SIGTERM during the save: exit 143, no temporary left, the previous content whole', async () => {
    const out = earlier('signalled');
    writeFileSync(join(out, 'config.json'), '{"previous": true}');
    const before = snapshot(out);
    const script = join(dir, 'slow-save.mts'); // .mts: an ES module outside the package
    writeFileSync(script, `
      import { writeFileSync } from 'node:fs';
      import { join } from 'node:path';
      import { writeOutputFolder } from ${JSON.stringify(join(ROOT, 'src/cli/paths.ts'))};
      await writeOutputFolder('train', ${JSON.stringify(out)}, async (stage) => {
        writeFileSync(join(stage, 'config.json'), '{"new": true}');
        writeFileSync(join(stage, 'model.safetensors.partial'), 'half');
        console.log('staged');
        await new Promise(() => setInterval(() => {}, 1000));
      });
    `);
    const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise<number | null>((res) => child.on('exit', (c) => res(c)));
    await Promise.race([
      new Promise<void>((res) => child.stdout.on('data', (b: Buffer) => b.toString().includes('staged') && res())),
      exited.then((c) => Promise.reject(new Error(`the saving process ended early (${c})`))),
    ]);
    expect(readdirSync(out).some((n) => n.startsWith('.save.tmp-'))).toBe(true);
    child.kill('SIGTERM');
    expect(await exited).toBe(143);
    expect(snapshot(out)).toEqual(before);
  }, 30_000);

  it('a checkpoint temporary is removed when the process exits mid-write; complete checkpoints stay', async () => {
    const out = join(dir, 'exit-sweep');
    mkdirSync(join(out, '.checkpoint-7.tmp-0a1b2c3d'), { recursive: true });
    writeFileSync(join(out, '.checkpoint-7.tmp-0a1b2c3d', 'model.safetensors'), 'half');
    mkdirSync(join(out, 'checkpoint-5'));
    writeFileSync(join(out, 'checkpoint-5', 'trainer_state.json'), '{}');
    const script = join(dir, 'exit-sweep.mts');
    writeFileSync(script, `
      import { removeTemporariesOnExit } from ${JSON.stringify(join(ROOT, 'src/cli/paths.ts'))};
      removeTemporariesOnExit(${JSON.stringify(out)}, /^\\.checkpoint-\\d+\\.tmp-[0-9a-f]+$/);
      process.exit(130);
    `);
    const r = spawnSync(process.execPath, ['--import', 'tsx', script], { cwd: ROOT });
    expect(r.status, r.stderr.toString()).toBe(130);
    expect(readdirSync(out)).toEqual(['checkpoint-5']);
  }, 30_000);

  it.skipIf(!canMount)('a log write on a full disk names the log and what to do', async () => {
    const { StepLogFile } = await import('../../../src/cli/run-checkpoints.ts');
    const m = tmpfs('64k')!;
    const log = join(m, 'train.jsonl');
    const f = StepLogFile.open(log, null);
    const free = Number(spawnSync('df', ['--output=avail', '-B1', m]).stdout.toString().trim().split('\n')[1]);
    writeFileSync(join(m, 'filler'), new Uint8Array(free));
    // a page of lines: more than any slack the file system kept
    expect(() => { for (let i = 0; i < 1000; i++) f.write({ step: i, loss: 1, pad: 'x'.repeat(100) }); }).toThrow(OutputWriteError);
    expect(() => f.write({ step: 1, pad: 'x'.repeat(100) })).toThrow(new RegExp(`train: --log: Cannot append to the log ${log}: the disk is full \\(ENOSPC\\)`));
    f.close();
  });

  it('the disk-space error says what the run would write', async () => {
    const plan = { final: 10 * 2 ** 20, checkpoint: 30 * 2 ** 20, checkpoints: 2, total: 70 * 2 ** 20 };
    const { checkFreeSpace } = await import('../../../src/cli/paths.ts');
    await expect(checkFreeSpace('train', dir, { ...plan, total: 2 ** 60 })).rejects.toThrow(DiskSpaceError);
    await expect(checkFreeSpace('train', dir, { ...plan, total: 2 ** 60 })).rejects.toThrow(/2 checkpoints of 30\.0 MiB.*--save-total-limit, --save-every/);
    await expect(checkFreeSpace('train', dir, plan)).resolves.toBeUndefined();
  });
});
