"""How English a text is: the share of its words found in Debian's wamerican word list.

    build/tools/cli/kvserve-cli generate --prompt "..." --max-tokens 200 --temperature 0 \
        | /usr/bin/python3 -m tools.train.english_check --min 0.9

Reads the text from stdin (or --file), prints `english_check: K of N words (P %) in WORDLIST`,
then the words that were not found, then `english_check: R of G word 4-grams (P %) repeat an
earlier one`, and exits 0 when the share of known words is at least --min and the share of
repeated 4-grams at most --max-repeat, 1 when either bound fails, 2 when the text has fewer than
--min-words words (too short to judge: a model that stops at once must not pass).

Why the repetition bound: a greedy sample that falls into a loop of dictionary words ("-- Jo,
-- Jo, ...") is 100 % known words and still not English. A 4-gram is four consecutive words,
lowercased; it repeats when the same four words occurred earlier in the text. On the validation
split of the training corpus (tools/train/corpus.py), 130-word windows -- the length of a
200-token sample -- repeat 1.0 % of their 4-grams on average and at most 11.8 % in 99 % of the
windows (songs and refrains make the rest); the default bound of 20 % lets real text through and
fails a sample that loops for a fifth of its length.

A word is a maximal run of ASCII letters with inner apostrophes ("don't", "Smith's"). It is
found when the list holds it as written, in lowercase, or (for "X's") holds X; the list is
/usr/share/dict/american-english (Debian package wamerican), which includes proper nouns and
possessives. Digits and punctuation are not words and are not counted.
"""

import argparse
import re
import sys

WORDLIST = "/usr/share/dict/american-english"
WORD_RE = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")


def load_words(path=WORDLIST):
    with open(path, encoding="utf-8") as f:
        return {line.strip() for line in f if line.strip()}


def is_known(word, words):
    candidates = [word, word.lower(), word.capitalize()]
    if word.lower().endswith("'s"):
        candidates += [word[:-2], word[:-2].lower(), word[:-2].capitalize()]
    return any(c in words for c in candidates)


def score(text, words):
    """(known words, all words, the unknown ones in order)."""
    found = WORD_RE.findall(text)
    unknown = [w for w in found if not is_known(w, words)]
    return len(found) - len(unknown), len(found), unknown


def repetition(items, n=4):
    """(n-grams of `items` that equal an earlier n-gram, all n-grams)."""
    grams = [tuple(items[i:i + n]) for i in range(len(items) - n + 1)]
    seen, repeated = set(), 0
    for g in grams:
        repeated += g in seen
        seen.add(g)
    return repeated, len(grams)


def word_repetition(text, n=4):
    """repetition() of the lowercased words of `text`."""
    return repetition([w.lower() for w in WORD_RE.findall(text)], n)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--file", help="read the text from FILE instead of stdin")
    parser.add_argument("--min", type=float, default=0.9, help="required share of known words")
    parser.add_argument("--max-repeat", type=float, default=0.2,
                        help="largest allowed share of word 4-grams that repeat an earlier one")
    parser.add_argument("--min-words", type=int, default=20)
    parser.add_argument("--wordlist", default=WORDLIST)
    args = parser.parse_args()
    text = open(args.file, encoding="utf-8").read() if args.file else sys.stdin.read()
    known, total, unknown = score(text, load_words(args.wordlist))
    share = known / total if total else 0.0
    print(f"english_check: {known} of {total} words ({100 * share:.1f} %) in {args.wordlist}")
    if unknown:
        print("english_check: not found: " + " ".join(unknown))
    repeated, grams = word_repetition(text)
    repeat_share = repeated / grams if grams else 0.0
    print(f"english_check: {repeated} of {grams} word 4-grams ({100 * repeat_share:.1f} %) "
          "repeat an earlier one")
    if total < args.min_words:
        print(f"english_check: FAIL: fewer than {args.min_words} words")
        return 2
    status = 0
    if share < args.min:
        print(f"english_check: FAIL: known words below {100 * args.min:.0f} %")
        status = 1
    if repeat_share > args.max_repeat:
        print(f"english_check: FAIL: repeated 4-grams above {100 * args.max_repeat:.0f} %")
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
