// sameTokenizer: whether a corpus tokenized by one tokenizer can be used by another (the page
// tokenizes a loaded corpus again when a model with its own tokenizer is loaded).
import { describe, expect, it } from 'vitest';
import { loadDefaultTokenizer, sameTokenizer, tokenizerFromJson } from '../../../src/io/tokenizer.ts';
import { tinyTokenizer } from '../../helpers/hub-server.ts';

describe('sameTokenizer', () => {
  it('holds for the same files loaded twice, and not for a byte-level tokenizer against GPT-2\'s', async () => {
    const gpt2 = await loadDefaultTokenizer();
    const again = tokenizerFromJson(gpt2.files.tokenizerJson, gpt2.files.tokenizerConfig);
    expect(again).not.toBe(gpt2);
    expect(sameTokenizer(gpt2, again)).toBe(true);
    const t = tinyTokenizer();
    const bytes = tokenizerFromJson(t.tokenizerJson, t.tokenizerConfig);
    expect(sameTokenizer(gpt2, bytes)).toBe(false);
  });

  it('tells apart tokenizers of the same vocabulary size and EOS that encode differently', async () => {
    const gpt2 = await loadDefaultTokenizer();
    const { tokenizerJson, tokenizerConfig } = gpt2.files;
    // Without the merges that build "ello": same vocabulary, same EOS, but "Hello" (in the probe) splits differently.
    const model = tokenizerJson.model as { merges: unknown[] };
    const merges = model.merges.filter((m) => !String(m).replace(' ', '').includes('ello'));
    expect(merges.length).toBeLessThan(model.merges.length);
    const fewer = tokenizerFromJson({ ...tokenizerJson, model: { ...model, merges } }, tokenizerConfig);
    expect(fewer.vocabSize).toBe(gpt2.vocabSize);
    expect(sameTokenizer(gpt2, fewer)).toBe(false);
  });
});
