// The page's save helpers: the base-weights fingerprint through WebCrypto equals the format's
// incremental one (and Node's), the corpus token ids and dropped model files survive the round
// trip through the run's assets, and a page state that is not the page's is refused by name.
import { describe, expect, it } from 'vitest';
import { weightsFingerprint } from '../../../src/io/run-checkpoint.ts';
import { nodeSha256 } from '../../../src/io/node-run-checkpoint.ts';
import { Sha256 } from '../../../src/io/sha256.ts';
import { baseFingerprint, corpusAssets, modelAssets, readCorpusAssets, readModelAssets, readPageState, SavedRunError } from '../../../src/worker/autosave.ts';
import { randomGpt2Params } from '../../../scripts/make-random-model.ts';
import { GPT2_SMALL } from '../../../src/engine/model/config.ts';

const config = { ...GPT2_SMALL, vocabSize: 311, nEmbd: 48, nHead: 4, nLayer: 2, nInner: 192, nPositions: 64 };

async function blobsOf(files: ReturnType<typeof corpusAssets>): Promise<Map<string, Blob>> {
  const out = new Map<string, Blob>();
  for (const f of files) {
    const parts: Uint8Array<ArrayBuffer>[] = [];
    if (f.data instanceof Uint8Array) parts.push(f.data as Uint8Array<ArrayBuffer>);
    else for await (const c of f.data()) parts.push(c as Uint8Array<ArrayBuffer>);
    out.set(f.name, new Blob(parts));
  }
  return out;
}

describe('page saves', () => {
  it('fingerprints the base weights as the format does, through WebCrypto', async () => {
    const params = randomGpt2Params(config, 3);
    const read = async (n: string) => params.get(n)!;
    const fast = await baseFingerprint(config, read);
    expect(fast).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(fast).toBe(await weightsFingerprint(config, params, new Sha256()));
    expect(fast).toBe(await weightsFingerprint(config, params, nodeSha256()));
    params.get('wte.weight')![7] += 1e-3;
    expect(await baseFingerprint(config, read)).not.toBe(fast);
  });

  it('keeps the tokenized corpus and dropped model files', async () => {
    const tokens = Uint16Array.from([5, 9, 50256, 7, 50256]);
    const docStarts = Uint32Array.from([0, 3, 5]);
    const stats = { files: 1, documents: 2, emptyDocuments: 0, characters: 3, bytes: 3, tokens: 5 };
    const back = await readCorpusAssets(await blobsOf(corpusAssets({ tokens, docStarts, stats })), stats, 50257);
    expect(back.tokens).toEqual(tokens);
    expect(back.docStarts).toEqual(docStarts);
    const files = [{ path: 'my model/config.json', file: new Blob(['{}']) }, { path: 'my model/model.safetensors', file: new Blob([new Uint8Array([1, 2, 3])]) }];
    const kept = await blobsOf(modelAssets(files));
    const restored = readModelAssets(kept, files.map((f) => f.path));
    expect(await restored[0].file.text()).toBe('{}');
    expect(new Uint8Array(await restored[1].file.arrayBuffer())).toEqual(new Uint8Array([1, 2, 3]));
    expect(() => readModelAssets(kept, ['other/config.json'])).toThrow(SavedRunError);
    await expect(readCorpusAssets(new Map([['tokens.u32', new Blob([new Uint8Array(6)])]]), stats, 50257)).rejects.toThrow(/truncated/);
  });

  it('refuses a page state it did not write', async () => {
    expect(await readPageState(undefined)).toBeNull();
    await expect(readPageState(new Blob(['{"format":"x"}']))).rejects.toThrow(/not one this page wrote/);
    await expect(readPageState(new Blob(['{']))).rejects.toThrow(/not valid JSON/);
  });
});
