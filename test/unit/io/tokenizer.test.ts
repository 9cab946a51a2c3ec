// The GPT-2 tokenizer: generated files, parity with js-tiktoken's gpt2 encoding (its own ranks,
// shipped offline) on a table of hard cases, round trips, loaders, and the safe chunk cuts.
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { draculaExcerpt, shakespeareExcerpts } from '../../helpers/corpora.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getEncoding } from 'js-tiktoken';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildGpt2TokenizerFiles, ensureGpt2TokenizerFiles, writeGpt2TokenizerFiles } from '../../../src/io/node-tokenizer.ts';
import {
  type HfTokenizer, TokenizerFileError, gpt2TokenizerFiles, isSafeCut, loadDefaultTokenizer, parseMerges, safeCut,
  tokenizerFromJson, tokenizerFromModelFiles, tokenizerFromSite,
} from '../../../src/io/tokenizer.ts';
import { rng } from '../../helpers/numeric.ts';

const tiktoken = getEncoding('gpt2');
const ref = (text: string): number[] => tiktoken.encode(text, 'all');

let tok: HfTokenizer;
let tmp: string;
beforeAll(async () => {
  const files = await buildGpt2TokenizerFiles();
  tok = tokenizerFromJson(files.tokenizerJson, files.tokenizerConfig);
  tmp = mkdtempSync(join(tmpdir(), 'tokenizer-test-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const dracula = draculaExcerpt();

const cases: Array<[string, string]> = [
  ['empty string', ''],
  ['plain', 'Hello, world! This is GPT-2.'],
  ['accents and typography', 'naïve café résumé — “quotes” ‘single’ … ½ €5'],
  ['emoji', 'I love it 😀👍🏽 and 🇺🇸🇯🇵 flags'],
  ['emoji ZWJ sequences', 'family 👨‍👩‍👧‍👦, rainbow 🏳️‍🌈, 🧑🏻‍💻 coder'],
  ['CJK', '日本語のテキストです。中文测试，简体字。한국어 텍스트'],
  ['Arabic', 'مرحبا بالعالم، كيف حالك؟'],
  ['combining marks', 'e\u0301 a\u0308 Z\u0351\u0362a\u0300\u0301\u0302 नमस्ते'],
  ['space runs', 'a  b   c    d     e'],
  ['tabs', 'a\tb\t\tc\t \td'],
  ['newline runs', '\n\n\n'],
  ['paragraphs', 'one\n\ntwo\n\n\nthree\n \nfour'],
  ['leading and trailing spaces', '   leading and trailing   '],
  ['mixed whitespace only', ' \t \n  \n\t'],
  ['unicode spaces', 'a\u00a0b\u2003c\u3000d'],
  ['CRLF', 'line one\r\nline two\r\n\r\nline four\r\n'],
  ['contractions', "it's don't we're they've I'm you'll he'd"],
  ['upper-case contractions', "IT'S DON'T WE'RE 'S 'T 'Ll"],
  ['quotes that are not contractions', "'sound' 'tis ''s rock'n'roll"],
  ['digits', '0 1 12 123 1234 12345'],
  ['long numbers', '12345678901234567890123 3.14159265358979 1,000,000 2024-05-20'],
  ['punctuation runs', '!!! ??? ... --- *** ;;; ?!?! (([[{{}}]])) "\'"'],
  ['code', 'function f(x) {\n\treturn x ** 2; // square\n}\n\ndef g(y):\n    return [y * i for i in range(10)]\n'],
  ['URL and e-mail', 'See https://example.com/a/b?q=1&r=two#frag or mail user.name+tag@example.org.'],
  ['end of text in the middle', 'end of one<|endoftext|>start of two'],
  ['end of text alone', '<|endoftext|>'],
  ['end of text with spaces and repeats', 'a <|endoftext|> b<|endoftext|><|endoftext|>\n<|endoftext|>'],
  ['partial special tokens are text', '<|endoftext| <|endoftext > <endoftext|> <|EndOfText|>'],
  ['a real paragraph', dracula.slice(20_000, 24_000)],
];

describe('GPT-2 tokenizer parity with js-tiktoken gpt2', () => {
  it.each(cases)('%s', (_name, text) => {
    expect(tok.encode(text)).toEqual(ref(text));
  });

  it.each(cases)('round trip: %s', (_name, text) => {
    expect(tok.decode(tok.encode(text))).toBe(text);
  });

  it('knows the well-known ids', () => {
    // "Hello world" is [15496, 995] in GPT-2 (the example in OpenAI's tiktoken README);
    // <|endoftext|> is 50256, the last id.
    expect(tok.encode('Hello world')).toEqual([15496, 995]);
    expect(tok.encode('<|endoftext|>')).toEqual([50256]);
    expect(tok.vocabSize).toBe(50257);
    expect(tok.eosId).toBe(50256);
    expect(tok.chunkable).toBe(true);
    expect(tok.addedTokens).toEqual(['<|endoftext|>']);
    expect(() => tok.decode([50257])).toThrow(RangeError);
    expect(() => tok.decode([-1])).toThrow(/token 0 is -1/);
  });

  it('matches on 50 kB of two real corpora', () => {
    const [shakespeare] = shakespeareExcerpts();
    for (const text of [dracula.slice(100_000, 150_000), shakespeare]) {
      expect(tok.encode(text)).toEqual(ref(text));
    }
  });
});

describe('generated tokenizer files', () => {
  it('are Hugging Face tokenizers files for GPT-2', async () => {
    const { tokenizerJson: j, tokenizerConfig: c } = await buildGpt2TokenizerFiles();
    const model = j.model as { type: string; vocab: Record<string, number>; merges: string[] };
    expect(model.type).toBe('BPE');
    expect(Object.keys(model.vocab).length).toBe(50257);
    expect(model.merges.length).toBe(50000);
    expect(model.merges[0]).toBe('Ġ t'); // the first line of GPT-2's vocab.bpe after #version
    expect(j.pre_tokenizer).toMatchObject({ type: 'ByteLevel', add_prefix_space: false });
    expect(j.decoder).toMatchObject({ type: 'ByteLevel' });
    expect(j.added_tokens).toEqual([expect.objectContaining({ id: 50256, content: '<|endoftext|>', special: true })]);
    expect(c).toMatchObject({
      tokenizer_class: 'GPT2Tokenizer', bos_token: '<|endoftext|>', eos_token: '<|endoftext|>',
      unk_token: '<|endoftext|>', model_max_length: 1024,
    });
  });

  it('are written once and then left alone (idempotent)', async () => {
    const dir = join(tmp, 'idem');
    const first = await writeGpt2TokenizerFiles(dir);
    expect(first.written.map((p) => p.slice(dir.length + 1)).sort()).toEqual(['tokenizer.json', 'tokenizer_config.json']);
    const mtime = statSync(join(dir, 'tokenizer.json')).mtimeMs;
    const second = await writeGpt2TokenizerFiles(dir);
    expect(second.written).toEqual([]);
    expect(statSync(join(dir, 'tokenizer.json')).mtimeMs).toBe(mtime);
    // a changed file is rewritten
    writeFileSync(join(dir, 'tokenizer_config.json'), '{}');
    expect((await writeGpt2TokenizerFiles(dir)).written).toEqual([join(dir, 'tokenizer_config.json')]);
  });

  it('are generated by the Node loader when missing or broken', async () => {
    const dir = join(tmp, 'load');
    const t = await loadDefaultTokenizer(dir);
    expect(t.encode('Hello world')).toEqual([15496, 995]);
    writeFileSync(join(dir, 'tokenizer.json'), '{"truncated": ');
    const files = await ensureGpt2TokenizerFiles(dir);
    expect((files.tokenizerJson.model as { type: string }).type).toBe('BPE');
    expect(JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')).model.type).toBe('BPE');
  });

  it('the default loader shares one tokenizer', async () => {
    const [a, b] = await Promise.all([loadDefaultTokenizer(), loadDefaultTokenizer()]);
    expect(a).toBe(b);
    expect(a.encode("it's")).toEqual(ref("it's"));
  });
});

describe('loaders', () => {
  it('fetches the files from the site, under its base URL', async () => {
    const { tokenizerJson, tokenizerConfig } = await buildGpt2TokenizerFiles();
    const asked: string[] = [];
    const fetchFn = (async (url: string) => {
      asked.push(url);
      const body = url.endsWith('/tokenizer.json') ? tokenizerJson : url.endsWith('/tokenizer_config.json') ? tokenizerConfig : undefined;
      return new Response(body === undefined ? 'no' : JSON.stringify(body), { status: body === undefined ? 404 : 200 });
    }) as unknown as typeof fetch;
    const t = await tokenizerFromSite('/studio', fetchFn);
    expect(asked.sort()).toEqual(['/studio/tokenizer/gpt2/tokenizer.json', '/studio/tokenizer/gpt2/tokenizer_config.json']);
    expect(t.encode(' world')).toEqual([995]);

    const missing = (async () => new Response('', { status: 404 })) as unknown as typeof fetch;
    await expect(tokenizerFromSite('/', missing)).rejects.toThrow(/HTTP 404.*gen:tokenizer/);
    await expect(tokenizerFromSite('/', missing)).rejects.toBeInstanceOf(TokenizerFileError);
  });

  it("uses a model folder's tokenizer.json, then vocab.json + merges.txt, then the default", async () => {
    const { tokenizerJson, tokenizerConfig } = await buildGpt2TokenizerFiles();
    const model = tokenizerJson.model as { vocab: Record<string, number>; merges: string[] };
    // A folder whose tokenizer.json writes merges as pairs (tokenizers ≥ 0.20) and has a smaller
    // vocabulary, so it is visibly its own: drop the last merge and the token it makes.
    const lastMerge = model.merges[model.merges.length - 1];
    const vocab = { ...model.vocab };
    const madeByLast = lastMerge.replace(' ', '');
    const folderJson = {
      ...tokenizerJson,
      model: { ...model, vocab, merges: model.merges.slice(0, -1).map((m) => m.split(' ')) },
    };
    const text = `x ${madeByLast.replace(/Ġ/g, ' ').trim()} y`;
    const own = await tokenizerFromModelFiles([
      { name: 'gpt2/config.json', text: '{}' },
      { name: 'gpt2/tokenizer.json', text: JSON.stringify(folderJson) },
      { name: 'gpt2/tokenizer_config.json', bytes: async () => new TextEncoder().encode(JSON.stringify(tokenizerConfig)) },
    ]);
    expect(own.source).toBe('tokenizer.json');
    expect(own.tokenizer.encode(text)).not.toEqual(tok.encode(text)); // the dropped merge matters
    expect(own.tokenizer.decode(own.tokenizer.encode(text))).toBe(text);

    const slow = await tokenizerFromModelFiles([
      { name: 'vocab.json', text: JSON.stringify(model.vocab) },
      { name: 'merges.txt', text: `#version: 0.2\n${model.merges.join('\n')}\n` },
    ]);
    expect(slow.source).toBe('vocab.json+merges.txt');
    expect(slow.tokenizer.encode(dracula.slice(0, 3000))).toEqual(ref(dracula.slice(0, 3000)));

    const none = await tokenizerFromModelFiles([{ name: 'model.safetensors', text: '' }]);
    expect(none.source).toBe('default');
    expect(none.tokenizer.encode('Hello world')).toEqual([15496, 995]);
  });

  it('refuses files that are not a GPT-2 BPE tokenizer', async () => {
    const { tokenizerJson } = await buildGpt2TokenizerFiles();
    expect(() => tokenizerFromJson({ ...tokenizerJson, model: { type: 'WordPiece', vocab: {} } })).toThrow(TokenizerFileError);
    expect(() => tokenizerFromJson([], {})).toThrow(/not a JSON object/);
    expect(() => tokenizerFromJson(tokenizerJson, { eos_token: '</s>' })).toThrow(/'<\/s>' is not in the vocabulary/);
    expect(() => gpt2TokenizerFiles({ a: 0, b: 1 }, [])).toThrow(/no '<\|endoftext\|>'/);
    await expect(tokenizerFromModelFiles([{ name: 'tokenizer.json', text: '{oops' }])).rejects.toThrow(/tokenizer.json is not valid JSON/);
  });

  it('parses merges files and names a bad line', () => {
    expect(parseMerges('#version: 0.2\nĠ t\nh e\r\n\n')).toEqual(['Ġ t', 'h e']);
    expect(() => parseMerges('#version: 0.2\nĠ t\nhe\n', 'vocab.bpe')).toThrow(/vocab.bpe, line 3/);
    expect(() => parseMerges('a  b')).toThrow(TokenizerFileError);
  });
});

describe('safe chunk cuts', () => {
  const encodeCut = (t: string, b: number) => [...tok.encode(t.slice(0, b)), ...tok.encode(t.slice(b))];

  it('an unsafe-looking cut really changes tokens (the test can fail)', () => {
    // Between "\n\n" and "X": whole text gives "\n","\n","X"; cut gives "\n\n" | "X".
    const t = 'ab\n\nXy';
    expect(encodeCut(t, 4)).not.toEqual(tok.encode(t));
    expect(isSafeCut(t, 4)).toBe(false);
    // Before the "\n" is safe.
    expect(isSafeCut(t, 3)).toBe(true);
    expect(encodeCut(t, 3)).toEqual(tok.encode(t));
  });

  it('every cut isSafeCut accepts leaves the tokens unchanged (random tricky text)', () => {
    const alphabet = [' ', ' ', '  ', '\n', '\n', '\t', '\r\n', 'a', 'b', 'Hello', "'s", "'", 't', '7', '42', '.', '!?', '日本', '😀', '<|endoftext|>', 'é', '\u00a0'];
    const r = rng(7);
    let checked = 0;
    for (let s = 0; s < 1500; s++) {
      let t = '';
      const parts = 2 + Math.floor(r() * 14);
      for (let i = 0; i < parts; i++) t += alphabet[Math.floor(r() * alphabet.length)];
      const whole = tok.encode(t);
      expect(whole).toEqual(ref(t));
      for (let b = 0; b <= t.length; b++) {
        if (!isSafeCut(t, b)) continue;
        checked++;
        expect(encodeCut(t, b), JSON.stringify([t, b])).toEqual(whole);
      }
    }
    expect(checked).toBeGreaterThan(1000);
  });

  it('safeCut stays in (from, limit], prefers a newline, and says when there is none', () => {
    const t = 'aaa bbb\nccc ddd eee';
    expect(safeCut(t, 0, 100)).toBe(7); // the "\n" before "ccc", though later spaces exist
    expect(safeCut(t, 7, 100)).toBe(15); // after it only spaces remain: the last one in range
    expect(safeCut(t, 0, 5)).toBe(3);
    expect(safeCut(t, 3, 5)).toBe(-1);
    expect(safeCut('xxxxxxxx', 0, 8)).toBe(-1);
    for (let lim = 1; lim < t.length; lim++) {
      const c = safeCut(t, 0, lim);
      if (c >= 0) {
        expect(c).toBeLessThanOrEqual(lim);
        expect(isSafeCut(t, c)).toBe(true);
      }
    }
  });
});
