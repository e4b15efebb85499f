"""Softmax vs sparsemax vs entmax-1.5 sampling on one served model: what each normalizer does to
the generated text (docs/quality.md).

    build/server/kvserve --model=models/fortune-mha --listen=127.0.0.1:50051 &
    /usr/bin/python3 -m tools.train.sampling_study --target 127.0.0.1:50051 \
        --scorer models/fortune-mha

For each normalizer (SamplingParams.normalizer: softmax; sparsemax, Martins & Astudillo 2016;
entmax-1.5, Peters et al. 2019) and each prompt in PROMPTS, kvserve-cli draws N samples of
MAX_TOKENS tokens at the same temperature (--n N --seed SEED: sample i uses seed + i;
--ignore-eos, so every sample has MAX_TOKENS tokens) and reports, over all samples of that
normalizer:
  distinct-2 / distinct-3  distinct n-grams of generated token ids / all of them (Li et al.,
                           "A Diversity-Promoting Objective Function for Neural Conversation
                           Models", 2016), n-grams counted within each sample
  repetition               share of generated 4-grams that already occurred earlier in the same
                           sample (loops)
  sample perplexity        exp(mean -log p) of the generated tokens (given prompt and earlier
                           tokens) under --scorer, computed in PyTorch (training forward, float32,
                           stored bf16 weights) — how plausible the text is to a softmax model
  dictionary words         share of words in wamerican (tools/train/english_check.py)
Prompt ids come from tools/train/bpe.py's encoder (identical to the served tokenizer on every
string tokenizer_golden compares). Prints a Markdown table.
"""

import argparse
import json
import math
import pathlib
import re
import subprocess

import torch

from tools.reference.common import read_safetensors, bf16_bits_to_float32

from . import bpe, english_check, family

NORMALIZERS = ("softmax", "sparsemax", "entmax15")
PROMPTS = ("The meaning of life is", "A computer is", "Never trust a man who", "Love is")
N = 16
MAX_TOKENS = 64
TEMPERATURE = 1.0
SEED = 1


def sample(cli, target, prompt, normalizer):
    """[(text, ids)] of N samples."""
    proc = subprocess.run(
        [cli, "generate", f"--target={target}", f"--prompt={prompt}", f"--n={N}",
         f"--max-tokens={MAX_TOKENS}", f"--temperature={TEMPERATURE}", f"--seed={SEED}",
         f"--normalizer={normalizer}", "--ignore-eos", "--token-ids",
         # Only the normalizer varies: the model's own default penalty (generation_config.json)
         # is switched off.
         "--repetition-penalty=1", "--top-p=1", "--top-k=0"],
        capture_output=True, text=True, check=True)
    texts = {int(m.group(1)): m.group(2)
             for m in re.finditer(r"^\[(\d+)\] (.*?)(?=^\[\d+\] |\Z)", proc.stdout, re.S | re.M)}
    ids = {int(m.group(1)): [int(x) for x in m.group(2).split()]
           for m in re.finditer(r"^token ids \[(\d+)\]: (.*)$", proc.stderr, re.M)}
    assert sorted(ids) == list(range(N)), proc.stderr
    return [(texts.get(i, ""), ids[i]) for i in range(N)]


def ngrams(ids, n):
    return [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]


def load_scorer(model_dir):
    model_dir = pathlib.Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    weights = {}
    for name, (dtype, array) in read_safetensors(model_dir / "model.safetensors").items():
        assert dtype == "BF16", name
        weights[name] = torch.from_numpy(bf16_bits_to_float32(array).copy())
    return config, family.train_view(weights)


@torch.no_grad()
def sample_nll(config, w, prompt_ids, ids):
    """(sum of -log p of ids given prompt and earlier ids, len(ids))."""
    seq = torch.tensor(prompt_ids + ids)
    logp = torch.log_softmax(family.forward(config, w, seq[None, :-1])[0].double(), dim=-1)
    start = len(prompt_ids) - 1
    nll = -logp[start:].gather(1, seq[start + 1:, None]).sum().item()
    return nll, len(ids)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--cli", default="build/tools/cli/kvserve-cli")
    parser.add_argument("--scorer", default="models/fortune-mha")
    parser.add_argument("--tokenizer", default="models/fortune-mha")
    args = parser.parse_args()
    torch.set_num_threads(1)
    enc = bpe.Encoder(bpe.read_merges(args.tokenizer))
    config, w = load_scorer(args.scorer)
    words = english_check.load_words()
    print(f"| normalizer | distinct-2 | distinct-3 | repeated 4-grams | sample perplexity "
          f"(under `{args.scorer}`) | dictionary words |")
    print("|---|---:|---:|---:|---:|---:|")
    for normalizer in NORMALIZERS:
        d2 = d3 = t2 = t3 = rep = rep_total = nll = count = known = total = 0
        for prompt in PROMPTS:
            prompt_ids = enc.encode(prompt)
            for text, ids in sample(args.cli, args.target, prompt, normalizer):
                g2, g3 = ngrams(ids, 2), ngrams(ids, 3)
                d2, t2 = d2 + len(set(g2)), t2 + len(g2)
                d3, t3 = d3 + len(set(g3)), t3 + len(g3)
                r, rt = english_check.repetition(ids)
                rep, rep_total = rep + r, rep_total + rt
                s, c = sample_nll(config, w, prompt_ids, ids)
                nll, count = nll + s, count + c
                k, t, _ = english_check.score(text, words)
                known, total = known + k, total + t
        print(f"| {normalizer} | {d2 / t2:.3f} | {d3 / t3:.3f} | {rep / rep_total:.3f} | "
              f"{math.exp(nll / count):.1f} | {100 * known / max(total, 1):.1f} % |")


if __name__ == "__main__":
    main()
