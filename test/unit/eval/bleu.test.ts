// Corpus BLEU against nltk's corpus_bleu (golden cases from scripts/goldens/make_bleu_cases.py),
// the tokenizer's character classes against Python's re over all of Unicode, and hand-checked
// properties of the counts.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BleuInputError, bleuTokenize, brevityPenalty, corpusBleu, corpusBleuTokens } from '../../../src/engine/eval/bleu.ts';

interface GoldenCase {
  name: string;
  hypotheses: string[];
  references: string[][];
  hyp_tokens: string[][];
  ref_tokens: string[][][];
  matches: number[];
  totals: number[];
  hyp_len: number;
  ref_len: number;
  brevity_penalty: number;
  score_none: number;
  score_method1: number;
}
interface Golden {
  nltk_version: string;
  cases: GoldenCase[];
  char_classes: { word: number[][]; space: number[][]; unassigned: number[][] };
}

const golden = JSON.parse(readFileSync(new URL('../../fixtures/bleu-cases.json', import.meta.url), 'utf8')) as Golden;

function membership(ranges: number[][]): Uint8Array {
  const out = new Uint8Array(0x110000);
  for (const [a, b] of ranges) out.fill(1, a, b + 1);
  return out;
}

describe('BLEU against nltk corpus_bleu', () => {
  it('has the golden table', () => {
    expect(golden.cases.length).toBeGreaterThanOrEqual(15);
  });

  describe.each(golden.cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    it('tokenizes as Python re does', () => {
      expect(c.hypotheses.map(bleuTokenize)).toEqual(c.hyp_tokens);
      expect(c.references.map((rs) => rs.map(bleuTokenize))).toEqual(c.ref_tokens);
    });

    it('counts matches, totals, lengths and brevity penalty as nltk', () => {
      const r = corpusBleu(c.references, c.hypotheses);
      expect(r.matches).toEqual(c.matches);
      expect(r.totals).toEqual(c.totals);
      expect(r.hypLength).toBe(c.hyp_len);
      expect(r.refLength).toBe(c.ref_len);
      expect(Math.abs(r.brevityPenalty - c.brevity_penalty)).toBeLessThanOrEqual(1e-12);
      expect(r.precisions).toEqual(c.matches.map((m, i) => m / c.totals[i]));
    });

    it('scores within 1e-9 of nltk, unsmoothed and with method1', () => {
      const plain = corpusBleu(c.references, c.hypotheses);
      const smooth = corpusBleu(c.references, c.hypotheses, { smoothing: 'method1' });
      expect(Math.abs(plain.score - c.score_none)).toBeLessThanOrEqual(1e-9);
      expect(Math.abs(smooth.score - c.score_method1)).toBeLessThanOrEqual(1e-9);
    });
  });

  it('covers zero-precision cases where smoothing changes the score', () => {
    // Otherwise the method1 branch could be wrong and every case above still pass.
    // nltk's unsmoothed "0" is really about 1e-75 (sys.float_info.min in the geometric mean).
    const differ = golden.cases.filter((c) => c.score_none < 1e-9 && c.score_method1 > 1);
    expect(differ.length).toBeGreaterThanOrEqual(3);
  });
});

describe('bleuTokenize character classes', () => {
  it('matches Python\'s \\w on every code point assigned in its Unicode version, and \\s on all', () => {
    const word = membership(golden.char_classes.word);
    const space = membership(golden.char_classes.space);
    const unassigned = membership(golden.char_classes.unassigned);
    let wordMismatch = 0;
    let spaceMismatch = 0;
    const examples: string[] = [];
    for (let cp = 0; cp < 0x110000; cp++) {
      if (cp >= 0xd800 && cp <= 0xdfff) continue;
      const ch = String.fromCodePoint(cp);
      const toks = bleuTokenize(`${ch}`);
      // A word character or a lone symbol is one token; whitespace gives none.
      const isSpace = toks.length === 0;
      const isWord = !isSpace && bleuTokenize(`a${ch}`).length === 1;
      if (isSpace !== (space[cp] === 1)) {
        spaceMismatch++;
        if (examples.length < 5) examples.push(`space U+${cp.toString(16)}`);
      }
      // Code points unassigned in Python's Unicode database may have been assigned since.
      if (!unassigned[cp] && isWord !== (word[cp] === 1)) {
        wordMismatch++;
        if (examples.length < 5) examples.push(`word U+${cp.toString(16)}`);
      }
    }
    expect(examples).toEqual([]);
    expect(spaceMismatch + wordMismatch).toBe(0);
  });

  it('keeps case, splits punctuation and keeps underscores and digits in words', () => {
    expect(bleuTokenize("Don't  STOP, x_1...")).toEqual(['Don', "'", 't', 'STOP', ',', 'x_1', '.', '.', '.']);
    expect(bleuTokenize('')).toEqual([]);
    expect(bleuTokenize(' \t\n ')).toEqual([]);
  });
});

describe('corpusBleuTokens by hand', () => {
  it('clips a repeated word to its count in the best reference', () => {
    const r = corpusBleuTokens([[['the', 'cat'], ['the', 'the', 'dog']]], [['the', 'the', 'the']]);
    expect(r.matches[0]).toBe(2); // 'the' appears at most twice in one reference
    expect(r.totals[0]).toBe(3);
    expect(r.matches[1]).toBe(1); // 'the the' once, in the second reference
    expect(r.totals.slice(2)).toEqual([1, 1]); // 3-gram: one; 4-gram: none, counted as 1
  });

  it('is 100 for an exact match of four or more tokens and 0 when a 4-gram is missing', () => {
    const s = ['a', 'b', 'c', 'd'];
    expect(corpusBleuTokens([[s]], [s]).score).toBeCloseTo(100, 12);
    expect(corpusBleuTokens([[s]], [['a', 'b', 'c']]).score).toBe(0);
  });

  it('smooths a missing order with ε / total (method1)', () => {
    // Matches 3, 2, 1, 0 of totals 3, 2, 1, 1; c = 3, r = 4.
    const r = corpusBleuTokens([[['a', 'b', 'c', 'd']]], [['a', 'b', 'c']], { smoothing: 'method1', epsilon: 0.1 });
    const expected = 100 * Math.exp(1 - 4 / 3) * Math.exp((Math.log(1) + Math.log(1) + Math.log(1) + Math.log(0.1)) / 4);
    expect(r.score).toBeCloseTo(expected, 12);
    const r2 = corpusBleuTokens([[['a', 'b', 'c', 'd']]], [['a', 'b', 'c']], { smoothing: 'method1', epsilon: 0.2 });
    expect(r2.score).toBeGreaterThan(r.score);
  });

  it('gives 0 with no unigram match even when smoothing', () => {
    expect(corpusBleuTokens([[['x', 'y']]], [['a', 'b']], { smoothing: 'method1' }).score).toBe(0);
  });

  it('applies the brevity penalty of the nltk formula', () => {
    expect(brevityPenalty(10, 11)).toBe(1);
    expect(brevityPenalty(10, 10)).toBe(1);
    expect(brevityPenalty(10, 0)).toBe(0);
    expect(brevityPenalty(10, 5)).toBeCloseTo(Math.exp(-1), 15);
  });

  it('refuses mismatched corpora and hypotheses without references', () => {
    expect(() => corpusBleu([['a']], ['a', 'b'])).toThrow(BleuInputError);
    expect(() => corpusBleu([[]], ['a'])).toThrow(/no reference/);
    expect(() => corpusBleu([['a']], ['a'], { smoothing: 'method1', epsilon: 0 })).toThrow(BleuInputError);
  });
});
