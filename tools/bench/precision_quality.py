"""What serving a model in bf16 or int8 instead of f32 costs in quality, measured through kvserve.

    /usr/bin/python3 -m tools.bench.precision_quality --build build models/fortune-*/

(from the repository root; BUILD's kvserve and kvserve-cli built). For each model directory and
each `--weight-dtype` in f32, bf16, int8, one kvserve serves the model (127.0.0.1, port 0) and:
  - scores the checkpoint's validation excerpt (perplexity.json's `excerpt_ids`, 200 tokens) with
    `kvserve-cli score --token-ids`: its perplexity, and the largest |Δ logprob| of any scored
    token against f32 (the log-softmax of the logits at the token kvserve was given: a logit error
    that changes the distribution shows here; a shift common to all logits does not);
  - decodes 200 greedy tokens of PROMPT (`--temperature 0 --repetition-penalty 1 --ignore-eos`)
    and compares the ids with f32's: the share of positions that agree and the first position
    that differs (greedy decoding amplifies the first flip, so the share after it says little).
Prints a Markdown table (docs/benchmarks.md, "What bf16 and int8 cost in quality").
f32 is the reference because the checkpoints hold bf16 values, which f32 represents exactly:
f32 serving computes with the stored weights unrounded, bf16 rounds activations in the matmuls,
int8 quantizes the weights (block-32) and the activations.
"""

import argparse
import json
import math
import pathlib
import re

from tools.train.kvserve_process import Server

PROMPT = "The meaning of life is"
TOKENS = 200
DTYPES = ("f32", "bf16", "int8")


def measure(build, model_dir, dtype):
    excerpt = json.loads((model_dir / "perplexity.json").read_text())["excerpt_ids"]
    with Server(build, [f"--model={model_dir}", f"--weight-dtype={dtype}"]) as server:
        score = server.score(excerpt)
        _, err = server.cli("generate", f"--prompt={PROMPT}", f"--max-tokens={TOKENS}",
                            "--temperature=0", "--repetition-penalty=1", "--ignore-eos",
                            "--token-ids")
    ids = [int(x) for x in re.search(r"^token ids: ?(.*)$", err, re.M).group(1).split()]
    return score["perplexity"], score["token_logprobs"][1:], ids


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", default="build")
    parser.add_argument("models", nargs="+", type=pathlib.Path)
    args = parser.parse_args()
    print("| model | weights | excerpt perplexity | vs f32 | max abs Δ logprob | greedy tokens equal to f32 | first difference |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for model in args.models:
        results = {d: measure(args.build, model, d) for d in DTYPES}
        ppl32, lp32, ids32 = results["f32"]
        for dtype in DTYPES:
            ppl, lp, ids = results[dtype]
            delta = max(abs(a - b) for a, b in zip(lp, lp32))
            same = sum(a == b for a, b in zip(ids, ids32))
            first = next((i for i, (a, b) in enumerate(zip(ids, ids32)) if a != b), None)
            print(f"| {model.name} | {dtype} | {ppl:.4f} | {ppl / ppl32 - 1:+.2e} | {delta:.2e} | "
                  f"{same}/{len(ids32)} | {'none' if first is None else first} |")
    assert all(math.isfinite(r[0]) for r in results.values())


if __name__ == "__main__":
    main()
