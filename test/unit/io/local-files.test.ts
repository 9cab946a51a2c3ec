// Dropped files and folders → a model: the folder holding config.json, single or sharded
// safetensors weights (every shard present), tokenizer files, and clear refusals of .bin-only
// folders, several models at once, missing config or shards. The page-side collectors are fed
// stand-ins of File (with webkitRelativePath) and of the Entries API (batched readEntries).
import { describe, expect, it } from 'vitest';
import { UnsupportedConfigError } from '../../../src/engine/errors.ts';
import { loadCheckpoint, MissingModelFileError, UnsupportedCheckpointFormatError } from '../../../src/io/checkpoint.ts';
import { AmbiguousModelFilesError, localFilesFromDrop, localFilesFromInput, openLocalModel, type LocalFile } from '../../../src/io/local-files.ts';
import { tokenizerFromModelFiles } from '../../../src/io/tokenizer.ts';
import { hubFixtures } from '../../helpers/hub-server.ts';

const fx = hubFixtures();
const tiny = fx.repos['tiny/gpt2'].files;
const sharded = fx.repos['tiny/sharded'].files;

function folder(prefix: string, files: Record<string, Uint8Array>): LocalFile[] {
  return Object.entries(files).map(([n, b]) => ({ path: prefix ? `${prefix}/${n}` : n, file: new Blob([b.slice()]) }));
}

describe('openLocalModel', () => {
  it('loads a dropped folder: config, weights bit for bit, its own tokenizer', async () => {
    const m = await openLocalModel([...folder('gpt2-tiny', tiny), { path: 'gpt2-tiny/.DS_Store', file: new Blob(['x']) }]);
    expect(m.name).toBe('gpt2-tiny');
    expect(m.weights).toBe('single');
    expect(m.config).toEqual(fx.tinyConfig);
    expect(m.ignored).toEqual(['gpt2-tiny/.DS_Store']);
    const params = await loadCheckpoint(m.config, m.files);
    for (const [k, v] of fx.tinyParams) expect(Buffer.from(params.get(k)!.buffer).equals(Buffer.from(v.buffer, v.byteOffset, v.byteLength)), k).toBe(true);
    const { source, tokenizer } = await tokenizerFromModelFiles(m.tokenizerFiles);
    expect(source).toBe('tokenizer.json');
    expect(tokenizer.vocabSize).toBe(257);
  });

  it('loads loose files, Windows paths, and a model folder nested in what was dropped', async () => {
    expect((await openLocalModel(folder('', tiny))).name).toBe('dropped files');
    const win = folder('', tiny).map((f) => ({ ...f, path: `models\\gpt2\\${f.path}` }));
    expect((await openLocalModel(win)).name).toBe('gpt2');
    const nested = [...folder('work/models/gpt2', tiny), { path: 'work/notes.txt', file: new Blob(['hi']) }];
    const m = await openLocalModel(nested);
    expect(m.name).toBe('gpt2');
    expect(m.ignored).toEqual(['work/notes.txt']);
  });

  it('loads a sharded set and refuses one with a shard missing', async () => {
    const m = await openLocalModel(folder('s', sharded));
    expect(m.weights).toBe('sharded');
    const params = await loadCheckpoint(m.config, m.files);
    expect([...params.get('h.1.mlp.c_fc.weight')!]).toEqual([...fx.tinyParams.get('h.1.mlp.c_fc.weight')!]);
    const without = folder('s', sharded).filter((f) => !f.path.endsWith('model-00002-of-00002.safetensors'));
    const p = openLocalModel(without);
    await expect(p).rejects.toThrow(MissingModelFileError);
    await expect(p).rejects.toThrow(/lists shard 'model-00002-of-00002\.safetensors', which is not among the dropped files/);
  });

  it('refuses a pytorch_model.bin-only folder with how to get safetensors', async () => {
    const p = openLocalModel(folder('old-gpt2', fx.repos['tiny/bin-only'].files));
    await expect(p).rejects.toThrow(UnsupportedCheckpointFormatError);
    await expect(p).rejects.toThrow(/only PyTorch pickle weights \('pytorch_model\.bin'\).*safetensors.*safe_serialization=True/);
    await expect(openLocalModel([{ path: 'pytorch_model.bin', file: new Blob(['x']) }])).rejects.toThrow(/no config\.json and only PyTorch pickle weights/);
  });

  it('refuses several models, weights without config, config without weights, nothing', async () => {
    await expect(openLocalModel([...folder('a', tiny), ...folder('b', tiny)])).rejects.toThrow(AmbiguousModelFilesError);
    await expect(openLocalModel([...folder('a', tiny), ...folder('b', tiny)])).rejects.toThrow(/2 models \(config\.json in 'a', 'b'\)/);
    await expect(openLocalModel([{ path: 'model.safetensors', file: new Blob([tiny['model.safetensors'].slice()]) }])).rejects.toThrow(/no config\.json.*belongs to these weights/);
    await expect(openLocalModel([{ path: 'm/config.json', file: new Blob([tiny['config.json'].slice()]) }])).rejects.toThrow(/The folder m has config\.json but no weights/);
    await expect(openLocalModel([{ path: 'notes.txt', file: new Blob(['x']) }])).rejects.toThrow(/not a Hugging Face model/);
    await expect(openLocalModel([])).rejects.toThrow(/No files were given/);
  });

  it('prefers the config.json that has weights beside it (an onnx/ subfolder has its own)', async () => {
    const m = await openLocalModel([...folder('gpt2', tiny), { path: 'gpt2/onnx/config.json', file: new Blob([tiny['config.json'].slice()]) }]);
    expect(m.name).toBe('gpt2');
    expect(m.ignored).toEqual(['gpt2/onnx/config.json']);
  });

  it('refuses a config the engine cannot reproduce, and a broken config.json', async () => {
    const cfg = JSON.parse(new TextDecoder().decode(tiny['config.json']));
    const bad = { ...tiny, 'config.json': new TextEncoder().encode(JSON.stringify({ ...cfg, reorder_and_upcast_attn: true })) };
    await expect(openLocalModel(folder('x', bad))).rejects.toThrow(UnsupportedConfigError);
    const broken = { ...tiny, 'config.json': new TextEncoder().encode('{"vocab_size": ') };
    await expect(openLocalModel(folder('x', broken))).rejects.toThrow(/x\/config\.json is not valid UTF-8 JSON/);
  });
});

describe('collecting files in the page', () => {
  it('takes folder-relative paths from an <input webkitdirectory>', () => {
    const f = new File(['a'], 'config.json');
    Object.defineProperty(f, 'webkitRelativePath', { value: 'gpt2/config.json' });
    const g = new File(['b'], 'loose.txt');
    expect(localFilesFromInput([f, g]).map((x) => x.path)).toEqual(['gpt2/config.json', 'loose.txt']);
  });

  it('walks dropped folders through every readEntries batch', async () => {
    const fileEntry = (fullPath: string) => ({
      isFile: true, isDirectory: false, name: fullPath.split('/').pop()!, fullPath,
      file: (ok: (f: File) => void) => ok(new File([fullPath], fullPath.split('/').pop()!)),
    });
    // A folder of 250 files, returned in batches of 100 as Chrome does, then an empty batch.
    const children = Array.from({ length: 250 }, (_, i) => fileEntry(`/big/f${i}.txt`));
    const dirEntry = {
      isFile: false, isDirectory: true, name: 'big', fullPath: '/big',
      createReader() {
        let at = 0;
        return { readEntries(ok: (e: unknown[]) => void) { const b = children.slice(at, at + 100); at += b.length; ok(b); } };
      },
    };
    const item = (entry: unknown) => ({ kind: 'file', webkitGetAsEntry: () => entry });
    const dt = { items: [item(dirEntry), item(fileEntry('/top.json'))], files: [] } as unknown as DataTransfer;
    const got = await localFilesFromDrop(dt);
    expect(got).toHaveLength(251);
    expect(got[0].path).toBe('big/f0.txt');
    expect(got.at(-1)!.path).toBe('top.json');
    expect(await got[249].file.text()).toBe('/big/f249.txt');
  });
});
