"""A byte-level BPE tokenizer trained on the corpus, written as Hugging Face tokenizer files.

    /usr/bin/python3 -m tools.train.bpe --corpus build/corpus --out build/tokenizer

(from the repository root, after tools.train.corpus). Writes tokenizer.json,
tokenizer_config.json and generation_config.json into --out, and the corpus as token ids for
tools/train/train.py: {train,validation}.ids.npy (int32), each record as <|endoftext|> followed
by its ids, records in file order (encoding in Python is slow; every training run reuses them).

Algorithm (Sennrich et al., "Neural Machine Translation of Rare Words with Subword Units", 2016,
on bytes as in GPT-2, Radford et al. 2019):
  1. Every training record is split into pre-tokens with GPT-2's pattern (below) and each
     pre-token is counted; a pre-token is a sequence of byte symbols, ids 0..255 = byte values.
  2. Repeatedly, the adjacent symbol pair with the highest total count becomes a new symbol
     (ties: the pair with the smallest (left id, right id)); every occurrence in every word is
     replaced, left to right. Pair counts are updated only in the words that held the pair.
  3. Stop at VOCAB_SIZE - len(SPECIAL_TOKENS) symbols; the special tokens take the last ids.

Vocabulary strings use GPT-2's printable byte alphabet (bytes_to_unicode), as the ByteLevel
pre-tokenizer and decoder of tokenizer.json expect. The merges' order is their rank, which is
all an encoder needs: encode() below applies merges lowest rank first, as the tokenizers crate
does. Pre-tokenization here uses Python's `re`, whose classes approximate \\p{L} and \\p{N}
(non-ASCII numerals differ); that can only change which merges are learnt, never how a text is
encoded by kvserve or the crate, which use the exact pattern stored in the file. The model's
training ids come from encode(); tests/engine/text/golden compares kvserve with
@huggingface/tokenizers on this tokenizer.json.
"""

import argparse
import collections
import json
import pathlib
import re

import numpy as np

from . import corpus

VOCAB_SIZE = 2048
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
EOS_TOKEN = "<|endoftext|>"
# ChatML, as Qwen2.5 uses it without a default system prompt.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
# GPT-2's split: contractions, letters, numbers, other symbols (each with one optional leading
# space), then whitespace. With `re`: \p{L} ~ [^\W\d_], \p{N} ~ \d.
_LETTERS, _DIGITS, _OTHER = r"[^\W\d_]", r"\d", r"(?:[^\s\w]|_)"
PRE_TOKEN_RE = re.compile(
    rf"'s|'t|'re|'ve|'m|'ll|'d| ?{_LETTERS}+| ?{_DIGITS}+| ?{_OTHER}+|\s+(?!\S)|\s+")


def bytes_to_unicode():
    """GPT-2's map from each byte to a printable character: printable Latin-1 bytes map to
    themselves, the other 68 to U+0100 upwards in byte order."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def pre_tokens(text):
    return [t.encode("utf-8") for t in PRE_TOKEN_RE.findall(text)]


def train(texts, vocab_size=VOCAB_SIZE):
    """Returns merges [(left id, right id)] in rank order; merge i makes id 256 + i."""
    counts = collections.Counter()
    for text in texts:
        counts.update(pre_tokens(text))
    words = [list(w) for w in counts]
    freq = [counts[w] for w in counts]
    pair_count = collections.Counter()
    pair_words = collections.defaultdict(set)
    for i, w in enumerate(words):
        for pair in zip(w, w[1:]):
            pair_count[pair] += freq[i]
            pair_words[pair].add(i)
    merges = []
    num_merges = vocab_size - len(SPECIAL_TOKENS) - 256
    while len(merges) < num_merges and pair_count:
        best = max(pair_count.items(), key=lambda kv: (kv[1], -kv[0][0], -kv[0][1]))[0]
        new_id = 256 + len(merges)
        merges.append(best)
        for i in sorted(pair_words.pop(best)):
            w = words[i]
            for pair in zip(w, w[1:]):
                pair_count[pair] -= freq[i]
                if pair_count[pair] == 0:
                    del pair_count[pair]
            merged, j = [], 0
            while j < len(w):
                if j + 1 < len(w) and (w[j], w[j + 1]) == best:
                    merged.append(new_id)
                    j += 2
                else:
                    merged.append(w[j])
                    j += 1
            words[i] = merged
            for pair in zip(merged, merged[1:]):
                pair_count[pair] += freq[i]
                pair_words[pair].add(i)
        pair_count.pop(best, None)
    return merges


class Encoder:
    """Text -> ids with the trained merges (the crate's algorithm for byte-level BPE without
    dropout: in each pre-token, merge the lowest-ranked adjacent pair, leftmost first)."""

    def __init__(self, merges):
        self.rank = {pair: r for r, pair in enumerate(merges)}
        self.num_ids = 256 + len(merges) + len(SPECIAL_TOKENS)
        self.special = {tok: 256 + len(merges) + k for k, tok in enumerate(SPECIAL_TOKENS)}
        self._cache = {}

    def _word(self, word):
        ids = self._cache.get(word)
        if ids is None:
            ids = list(word)
            while len(ids) > 1:
                ranks = [self.rank.get(p, len(self.rank)) for p in zip(ids, ids[1:])]
                best = min(range(len(ranks)), key=ranks.__getitem__)
                if ranks[best] == len(self.rank):
                    break
                ids[best:best + 2] = [256 + ranks[best]]
            self._cache[word] = ids
        return ids

    def encode(self, text):
        """Ids of `text`; special-token strings inside it are NOT recognised (training text)."""
        out = []
        for word in pre_tokens(text):
            out.extend(self._word(word))
        return out


def token_strings(merges):
    """Vocabulary string of every non-special id, in id order."""
    alphabet = bytes_to_unicode()
    strings = [alphabet[b] for b in range(256)]
    for left, right in merges:
        strings.append(strings[left] + strings[right])
    return strings


def tokenizer_json(merges):
    strings = token_strings(merges)
    first_special = len(strings)
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                  "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": first_special + k, "content": tok, "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True}
            for k, tok in enumerate(SPECIAL_TOKENS)],
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": dict(byte_level, trim_offsets=False),
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None,
            "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": False,
            "byte_fallback": False, "ignore_merges": False,
            "vocab": {s: i for i, s in enumerate(strings)},
            "merges": [[strings[a], strings[b]] for a, b in merges],
        },
    }


def tokenizer_config(merges, max_length):
    first_special = 256 + len(merges)
    return {
        "add_bos_token": False,
        "add_eos_token": False,
        "added_tokens_decoder": {
            str(first_special + k): {"content": tok, "lstrip": False, "normalized": False,
                                     "rstrip": False, "single_word": False, "special": True}
            for k, tok in enumerate(SPECIAL_TOKENS)},
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": EOS_TOKEN,
        "model_max_length": max_length,
        "pad_token": EOS_TOKEN,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }


# Serving defaults of the trained models: greedy with a repetition penalty of 1.1 (CTRL's
# penalty, as Hugging Face and vLLM apply it). Plain greedy decoding of models this small loops
# ("I'm a man, and the" forever); the penalty breaks the loops without sampling noise, so the
# default output stays deterministic (docs/quality.md, "Default generation settings"). Greedy is
# said twice: do_sample false for Hugging Face's generate, temperature 0 for servers that, like
# vLLM and kvserve, do not read do_sample.
REPETITION_PENALTY = 1.1


def generation_config(merges):
    first_special = 256 + len(merges)
    return {"bos_token_id": first_special, "eos_token_id": [first_special, first_special + 2],
            "do_sample": False, "temperature": 0.0, "repetition_penalty": REPETITION_PENALTY}


def write_json(path, obj):
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_files(out_dir, merges, max_length):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "tokenizer.json", tokenizer_json(merges))
    write_json(out_dir / "tokenizer_config.json", tokenizer_config(merges, max_length))
    write_json(out_dir / "generation_config.json", generation_config(merges))


def read_merges(tokenizer_dir):
    """The merges of a tokenizer.json written by write_files, as id pairs."""
    tok = json.loads((pathlib.Path(tokenizer_dir) / "tokenizer.json").read_text("utf-8"))
    vocab = tok["model"]["vocab"]
    return [(vocab[a], vocab[b]) for a, b in tok["model"]["merges"]]


def token_stream(texts, enc):
    """<|endoftext|> + encode(text) for every text, concatenated: int32 numpy [N]."""
    eot = enc.special[EOS_TOKEN]
    out = []
    for text in texts:
        out.append(eot)
        out.extend(enc.encode(text))
    return np.asarray(out, dtype=np.int32)


def self_check(merges, texts):
    """Decoding the ids of every text gives the text back, and the merges round-trip."""
    enc = Encoder(merges)
    strings = token_strings(merges)
    inverse = {c: b for b, c in bytes_to_unicode().items()}
    for text in texts:
        ids = enc.encode(text)
        back = bytes(inverse[c] for i in ids for c in strings[i]).decode("utf-8")
        assert back == text, (text, ids)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default="build/corpus", type=pathlib.Path)
    parser.add_argument("--out", default="build/tokenizer", type=pathlib.Path)
    parser.add_argument("--max-length", default=256, type=int)
    args = parser.parse_args()
    texts = corpus.load(args.corpus, "train")
    merges = train(texts)
    self_check(merges, texts[:2000] + corpus.load(args.corpus, "validation"))
    write_files(args.out, merges, args.max_length)
    enc = Encoder(merges)
    for split in ("train", "validation"):
        np.save(args.out / f"{split}.ids.npy", token_stream(corpus.load(args.corpus, split), enc))
    num_bytes = sum(len(t.encode("utf-8")) for t in texts)
    num_ids = sum(len(enc.encode(t)) for t in texts)
    print(f"bpe: {len(merges)} merges, vocab {enc.num_ids}; train split {num_bytes} bytes -> "
          f"{num_ids} tokens ({num_bytes / num_ids:.2f} bytes/token)")


if __name__ == "__main__":
    main()
