#!/usr/bin/python3
"""Golden BLEU cases from nltk for test/unit/eval/bleu.test.ts.

Run with Debian's Python and its python3-nltk package:

    /usr/bin/python3 scripts/goldens/make_bleu_cases.py

For each case (a small corpus of hypotheses, each with one or more references) it records the
word tokens of Python's `\\w+|[^\\w\\s]` over str, the clipped n-gram matches and totals that
nltk's corpus_bleu sums, the lengths and brevity penalty, and corpus_bleu's score (x100) without
smoothing and with SmoothingFunction().method1. It also records which code points Python's
`\\w` and `\\s` match, and which are unassigned in its Unicode database, so the test can check
the TypeScript tokenizer's character classes against Python's over all of Unicode.
Writes test/fixtures/bleu-cases.json.
"""
import json
import os
import random
import re
import sys
import unicodedata
import warnings

import nltk
from nltk.translate.bleu_score import (
    SmoothingFunction,
    brevity_penalty,
    closest_ref_length,
    corpus_bleu,
    modified_precision,
)

TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def tokenize(text):
    return TOKEN_RE.findall(text)


def random_corpus(seed, sentences, vocab_size):
    """Sentences over a small vocabulary, so n-grams of every order sometimes match."""
    rnd = random.Random(seed)
    vocab = ["w%d" % i for i in range(vocab_size)] + [",", ".", "!"]
    hyps, refs = [], []
    for _ in range(sentences):
        base = [rnd.choice(vocab) for _ in range(rnd.randint(0, 14))]
        hyp = [t if rnd.random() < 0.75 else rnd.choice(vocab) for t in base]
        if rnd.random() < 0.3:
            hyp = hyp[: rnd.randint(0, len(hyp))]
        rs = []
        for _ in range(rnd.randint(1, 3)):
            r = [t if rnd.random() < 0.8 else rnd.choice(vocab) for t in base]
            r += [rnd.choice(vocab) for _ in range(rnd.randint(0, 4))]
            rs.append(" ".join(r))
        hyps.append(" ".join(hyp))
        refs.append(rs)
    return hyps, refs


CASES = [
    ("identical", ["the quick brown fox jumps over the lazy dog ."],
     [["the quick brown fox jumps over the lazy dog ."]]),
    ("no overlap", ["alpha beta gamma delta epsilon"],
     [["one two three four five six"]]),
    # nltk's corpus_bleu docstring corpus (Papineni et al.'s example sentences).
    ("partial overlap, two sentences",
     ["It is a guide to action which ensures that the military always obeys the commands of the party.",
      "he read the book because he was interested in world history"],
     [["It is a guide to action that ensures that the military will forever heed Party commands.",
       "It is the guiding principle which guarantees the military forces always being under the command of the Party.",
       "It is the practical guide for the army always to heed the directions of the party."],
      ["he was interested in world history because he read the book"]]),
    ("unigrams match but no 4-gram", ["cat the on sat mat"], [["the cat sat on the mat"]]),
    ("clipped repeats (Papineni)", ["the the the the the the the"],
     [["The cat is on the mat.", "There is a cat on the mat."]]),
    ("short hypothesis", ["the cat"], [["the cat sat on the mat today"]]),
    ("short hypothesis in a corpus",
     ["the cat", "a dog ran across the green field and into the old barn"],
     [["the cat sat on the mat"], ["a dog ran across the green field and into the barn"]]),
    ("longer than reference", ["the cat sat on the mat and then it slept there all day"],
     [["the cat sat on the mat"]]),
    ("multiple references, closest length",
     ["the cat sat on the mat"],
     [["a cat sat on a mat here now", "the cat was sitting on the mat", "the cat"]]),
    ("closest length tie goes to the shorter reference",
     ["one two three four five six"],
     [["one two three four five six seven", "one two three four five"]]),
    ("empty hypothesis alone", [""], [["something to compare with"]]),
    ("empty hypothesis in a corpus",
     ["", "the cat sat on the mat"],
     [["nothing was said here"], ["the cat sat on the mat"]]),
    ("unicode words",
     ["Größere Häuser kosten 5€ — naïve café; Москва большой город; 東京は大きい都市です",
      "हिन्दी भाषा  ٣٤٥ numbers Ⅻ and ½ snake_case_name"],
     [["Größere Häuser kosten 6€ — naive café; Москва большой город; 東京は大きい都市だ"],
      ["हिन्दी भाषा ٣٤٥ numbers Ⅻ and ½ snake_case_name too"]]),
    ("punctuation",
     ["Don't stop!!! \"Quoted,\" she said... (really?) -- yes: 3.14, a/b & c+d=e."],
     [["Don't stop! \"Quoted,\" she said... (really?) -- yes: 3.14, a/b & c+d = e."]]),
    ("case is kept", ["The Cat Sat On The Mat"], [["the cat sat on the mat"]]),
    ("whitespace Python and JavaScript disagree on",
     ["a\x1cb\x1dc\x1ed\x1fe\x85f\ufeffg\u00a0h\u2028i\u3000j\tk\r\nl"],
     [["a b c d e f \ufeff g h i j k l"]]),
    ("emoji and symbols", ["I ❤️ 🍕 and 👩‍💻 at 10:30 am ©"], [["I ❤️ 🍕 and 👩‍💻 at 10:30 ©"]]),
]


def case_record(name, hyp_texts, ref_texts):
    hyps = [tokenize(h) for h in hyp_texts]
    refs = [[tokenize(r) for r in rs] for rs in ref_texts]
    matches, totals = [0] * 4, [0] * 4
    hyp_len = ref_len = 0
    for rs, h in zip(refs, hyps):
        for n in range(1, 5):
            p = modified_precision(rs, h, n)  # Fraction with _normalize=False: raw counts
            matches[n - 1] += p.numerator
            totals[n - 1] += p.denominator
        hyp_len += len(h)
        ref_len += closest_ref_length(rs, len(h))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nltk warns on zero n-gram matches without smoothing
        plain = corpus_bleu(refs, hyps)
        smooth1 = corpus_bleu(refs, hyps, smoothing_function=SmoothingFunction().method1)
    return {
        "name": name,
        "hypotheses": hyp_texts,
        "references": ref_texts,
        "hyp_tokens": hyps,
        "ref_tokens": refs,
        "matches": matches,
        "totals": totals,
        "hyp_len": hyp_len,
        "ref_len": ref_len,
        "brevity_penalty": brevity_penalty(ref_len, hyp_len),
        "score_none": 100 * plain,
        "score_method1": 100 * smooth1,
    }


def ranges(pred):
    """[first, last] code point runs where pred holds (surrogates excluded)."""
    out, start = [], None
    for c in range(0x110000):
        ok = not (0xD800 <= c <= 0xDFFF) and pred(chr(c))
        if ok and start is None:
            start = c
        elif not ok and start is not None:
            out.append([start, c - 1])
            start = None
    if start is not None:
        out.append([start, 0x10FFFF])
    return out


def main():
    cases = [case_record(*c) for c in CASES]
    for i, seed in enumerate((1, 2, 3)):
        hyps, refs = random_corpus(seed, sentences=25, vocab_size=12 + 6 * i)
        cases.append(case_record("random corpus %d" % seed, hyps, refs))
    word = re.compile(r"\w")
    space = re.compile(r"\s")
    out = {
        "generator": "scripts/goldens/make_bleu_cases.py",
        "nltk_version": nltk.__version__,
        "python_version": sys.version.split()[0],
        "unicode_version": unicodedata.unidata_version,
        "cases": cases,
        "char_classes": {
            "word": ranges(lambda ch: word.match(ch) is not None),
            "space": ranges(lambda ch: space.match(ch) is not None),
            "unassigned": ranges(lambda ch: unicodedata.category(ch) == "Cn"),
        },
    }
    path = os.path.join(os.path.dirname(__file__), "..", "..", "test", "fixtures", "bleu-cases.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=True, indent=1)
        f.write("\n")
    print("wrote %s: %d cases" % (os.path.normpath(path), len(cases)))


if __name__ == "__main__":
    main()
