// The PyTorch project exporter (src/cli/torch-export.ts): the folder it writes (train.py, the
// checkpoint naming its data inside the project, the token files, a README with the run's
// commands), a project that still runs after it is moved, text corpora turned into the token
// stream the run trained on, and its refusals, which write nothing.
import { existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../../src/cli/main.ts';
import { exportTorchProject, tokensFingerprint, TorchExportError } from '../../../src/cli/torch-export.ts';
import { loadTrainingTokens } from '../../../src/cli/data.ts';
import { readTokenFile } from '../../../src/io/token-files.ts';
import { goldenCheckpoint, pyJson, readLog, TRAIN_PY, trainPy } from '../../helpers/torch-project.ts';

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'torch-export-'));
});
afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

const GOLD_TOKENS = new URL('../../goldens/gpt2-tiny/train.bin', import.meta.url).pathname;
const quiet = () => {};

function editState(dir: string, edit: (s: Record<string, unknown>) => void): void {
  const p = join(dir, 'trainer_state.json');
  const s = JSON.parse(readFileSync(p, 'utf8'));
  edit(s);
  writeFileSync(p, JSON.stringify(s));
}

describe('exportTorchProject', () => {
  it('writes train.py, the checkpoint, the data and a README; the moved project continues the run', async () => {
    const ck = join(root, 'ck');
    goldenCheckpoint(ck, 'full', { batch: 4, steps: 5 });
    const proj = join(root, 'project');
    const written = await exportTorchProject(ck, proj, quiet);
    expect(written).toEqual(expect.arrayContaining(['train.py', 'README.md', 'data/train.bin', 'checkpoint/trainer_state.json', 'checkpoint/model.safetensors', 'checkpoint/optimizer.safetensors', 'checkpoint/config.json']));
    expect(readdirSync(root).filter((n) => n.startsWith('.'))).toEqual([]);
    expect(readFileSync(join(proj, 'train.py'), 'utf8')).toBe(readFileSync(TRAIN_PY, 'utf8'));
    expect(readFileSync(join(proj, 'data/train.bin'))).toEqual(readFileSync(GOLD_TOKENS));
    const src = JSON.parse(readFileSync(join(ck, 'trainer_state.json'), 'utf8'));
    const got = JSON.parse(readFileSync(join(proj, 'checkpoint/trainer_state.json'), 'utf8'));
    expect(got).toEqual({ ...src, data: { train: ['../data/train.bin'], eval: [] } });
    const readme = readFileSync(join(proj, 'README.md'), 'utf8');
    expect(readme).toContain('torchrun --standalone --nproc_per_node 4 train.py --steps 5 --out runs/continued');
    expect(readme).toContain('--rdzv_backend c10d --rdzv_endpoint HOST:29500');
    expect(readme).toMatch(/must divide\s+4 \(1, 2, 4\)/);
    expect(readme).toContain('dropout 0');

    // the project does not depend on where it was written
    const moved = join(root, 'moved-project');
    renameSync(proj, moved);
    const r = trainPy(['--out', join(moved, 'runs/continued')], 1, {}, join(moved, 'train.py'));
    expect(r.status, r.stderr).toBe(0);
    const log = readLog(join(moved, 'runs/continued/log.jsonl'));
    expect(log.map((l) => l.step)).toEqual([1, 2, 3, 4, 5]);
    const written5 = JSON.parse(readFileSync(join(moved, 'runs/continued/checkpoint-5/trainer_state.json'), 'utf8'));
    expect(written5.data.train).toEqual([join(moved, 'data/train.bin')]);
  });

  it('trains from the copied data, not the original path', async () => {
    const ck = join(root, 'ck-copy');
    goldenCheckpoint(ck, 'full', { steps: 2 });
    const proj = join(root, 'project-copy');
    await exportTorchProject(ck, proj, quiet);
    editState(join(proj, 'checkpoint'), (s) => {
      expect((s.data as { train: string[] }).train).toEqual(['../data/train.bin']);
    });
    // break the original path: the project must not need it
    editState(ck, (s) => ((s.data as { train: string[] }).train = ['/nonexistent/train.bin']));
    const r = trainPy(['--checkpoint', join(proj, 'checkpoint'), '--out', join(proj, 'out')]);
    expect(r.status, r.stderr).toBe(0);
  });

  it('turns a text corpus into the token stream the run trained on, with the same fingerprint', async () => {
    const ck = join(root, 'ck-text');
    goldenCheckpoint(ck, 'full');
    const txt = join(root, 'corpus.txt');
    writeFileSync(txt, 'The quick brown fox jumps over the lazy dog.\n'.repeat(40) + 'A literal <|endoftext|> ends a document.\n');
    // the export only reads the config's vocabulary size; GPT-2's tokenizer needs GPT-2's 50257 ids
    const cfgPath = join(ck, 'config.json');
    writeFileSync(cfgPath, JSON.stringify({ ...JSON.parse(readFileSync(cfgPath, 'utf8')), vocab_size: 50257 }));
    const tokens = await loadTrainingTokens([txt], 50257, ck, quiet);
    editState(ck, (s) => {
      s.data = { train: [txt], eval: [] };
      (s.fingerprints as Record<string, string>).train_tokens = tokensFingerprint(tokens);
    });
    const proj = join(root, 'project-text');
    await exportTorchProject(ck, proj, quiet);
    const bytes = new Uint8Array(readFileSync(join(proj, 'data/train.bin')));
    expect([...readTokenFile(bytes, 'train.bin').tokens]).toEqual([...tokens]);
    expect(tokens.length).toBeGreaterThan(100);
    // train.py's fingerprint of the copied file is the studio's
    const fp = pyJson<string>(`print(json.dumps(train.tokens_fingerprint(train.read_token_file(${JSON.stringify(join(proj, 'data/train.bin'))}))))`);
    expect(fp).toBe(tokensFingerprint(tokens));
  });

  it('the token fingerprint is SHA-256 of little-endian uint32 ids', () => {
    // sha256 of the 8 bytes 01 00 00 00 02 00 00 00, computed independently by Python's hashlib
    const want = pyJson<string>("import hashlib, struct\nprint(json.dumps('sha256:' + hashlib.sha256(struct.pack('<2I', 1, 2)).hexdigest()))");
    expect(tokensFingerprint([1, 2])).toBe(want);
  });

  it('is the export command\'s --format torch', async () => {
    const ck = join(root, 'ck-cli');
    goldenCheckpoint(ck, 'full');
    const out = join(root, 'project-cli');
    const lines: string[] = [];
    expect(await main(['export', '--model', ck, '--format', 'torch', '--out', out], (l) => lines.push(l))).toBe(0);
    expect(readFileSync(join(out, 'train.py'), 'utf8')).toBe(readFileSync(TRAIN_PY, 'utf8'));
    expect(readFileSync(join(out, 'data/train.bin'))).toEqual(readFileSync(GOLD_TOKENS));
    expect(lines.at(-1)).toMatch(/^exported torch to .*train\.py/);
    expect(readdirSync(root).filter((n) => n.startsWith('.'))).toEqual([]);
  });

  describe('refuses, writing nothing', () => {
    const refuse = async (ck: string, out: string, re: RegExp) => {
      await expect(exportTorchProject(ck, out, quiet)).rejects.toThrow(TorchExportError);
      await expect(exportTorchProject(ck, out, quiet)).rejects.toThrow(re);
    };
    it('another format version', async () => {
      const ck = join(root, 'ck-v2');
      goldenCheckpoint(ck, 'full');
      editState(ck, (s) => (s.format_version = 2));
      await refuse(ck, join(root, 'p-v2'), /format version 2; this studio reads version 1/);
      expect(existsSync(join(root, 'p-v2'))).toBe(false);
    });
    it('a plain model folder', async () => {
      await refuse(new URL('../../goldens/gpt2-tiny/model', import.meta.url).pathname, join(root, 'p-model'), /trainer_state\.json is missing/);
    });
    it('data that changed since the run', async () => {
      const ck = join(root, 'ck-changed');
      goldenCheckpoint(ck, 'full');
      editState(ck, (s) => ((s.fingerprints as Record<string, string>).train_tokens = 'sha256:' + '0'.repeat(64)));
      await refuse(ck, join(root, 'p-changed'), /is not what the run trained on/);
      expect(existsSync(join(root, 'p-changed'))).toBe(false);
    });
    it('an output folder that exists', async () => {
      const ck = join(root, 'ck-exists');
      goldenCheckpoint(ck, 'full');
      const out = join(root, 'p-exists');
      await exportTorchProject(ck, out, quiet);
      const before = readFileSync(join(out, 'README.md'), 'utf8');
      await refuse(ck, out, /already exists; nothing is written over/);
      expect(readFileSync(join(out, 'README.md'), 'utf8')).toBe(before);
    });
  });
});
