"""Integration checks of the shipped trained models (models/, docs/quality.md), through the real
server binary and kvserve-cli.

    /usr/bin/python3 tests/models/check_models.py BUILD_DIR CHECK

CHECK is one of
  checkpoints        every models/fortune-*/ served with --weight-dtype=f32: kvserve's perplexity
                     of the checkpoint's 200-token excerpt (`kvserve-cli score --token-ids` of
                     perplexity.json's excerpt_ids) is within 1e-3 relative of the PyTorch float64
                     value the training script wrote beside the weights (tools/train/train.py). A
                     broken loader or kernel shows up as a jump in perplexity; f32 keeps kvserve's
                     rounding far below the bound (the weights are bf16 values, exact in f32).
  default-english    `kvserve` with no --model serves models/default (server/default_model.h),
                     and its greedy 200-token continuation of PROMPT passes
                     tools/train/english_check.py with its default bounds (known words, repeated
                     4-grams). Greedy as a user gets it: --temperature=0 and the model's own
                     generation_config.json for everything else (repetition_penalty 1.1).
  batch-invariance   `kvserve` with no --model serves models/default, and its greedy
                     continuation of PROMPT is the same token ids when it runs alone, as 8 samples
                     of one request (--n 8: 8 sequences decoded in one batch), and among other
                     requests of different lengths sent at the same time.
                     The comparison is exact and does not depend on how the requests overlap:
                     every grouping the scheduler picks must give the same ids.

Servers listen on 127.0.0.1 port 0 (the port is read from the "kvserve listening on" log line),
metrics and HTTP off. Exits 0 on success, 1 on a failed check (naming the model and the numbers).
"""

import json
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tools.train import english_check  # noqa: E402  (needs ROOT on the path)
from tools.train.kvserve_process import Server  # noqa: E402

PROMPT = "The meaning of life is"
SAMPLE_TOKENS = 200
PERPLEXITY_RTOL = 1e-3


def greedy_args(n=1, prompt=PROMPT):
    return ["generate", f"--prompt={prompt}", f"--max-tokens={SAMPLE_TOKENS}", "--temperature=0",
            "--ignore-eos", f"--n={n}", "--token-ids"]


def token_ids(stderr):
    """{sample index: [ids]} from kvserve-cli generate --token-ids ("token ids[ [i]]: 1 2 3")."""
    out = {}
    for match in re.finditer(r"^token ids(?: \[(\d+)\])?: ?(.*)$", stderr, re.M):
        out[int(match.group(1) or 0)] = [int(x) for x in match.group(2).split()]
    return out


def default_env():
    env = dict(os.environ)
    env.pop("KVSERVE_DEFAULT_MODEL", None)  # the lookup beside the binary is what is tested
    return env


def check_checkpoints(build):
    dirs = sorted(d for d in (ROOT / "models").glob("fortune-*") if d.is_dir())
    if not dirs:
        print("check_models: FAIL: no models/fortune-*/")
        return 1
    failed = 0
    for d in dirs:
        expected = json.loads((d / "perplexity.json").read_text())
        ids = expected["excerpt_ids"]
        with Server(build, [f"--model={d}", "--weight-dtype=f32"]) as server:
            got = server.score(ids)
        rel = abs(got["perplexity"] - expected["perplexity"]) / expected["perplexity"]
        ok = got["num_tokens"] == len(ids) and rel <= PERPLEXITY_RTOL
        print(f"{'ok  ' if ok else 'FAIL'} {d.name}: kvserve {got['perplexity']:.6f} vs PyTorch "
              f"float64 {expected['perplexity']:.6f} (relative {rel:.2e}, bound "
              f"{PERPLEXITY_RTOL:g}), {got['num_tokens']} of {len(ids)} tokens")
        failed += not ok
    return 1 if failed else 0


def default_model_name():
    link = ROOT / "models" / "default"
    if not (link / "config.json").is_file():
        raise RuntimeError(f"{link} holds no config.json")
    return link.resolve().name


def serves_default(server, name):
    """Whether `server` (started with no --model) serves models/default, named `name`."""
    if f"serving the default model '{name}'" in server.text():
        return True
    print(f"check_models: FAIL: kvserve with no --model did not serve '{name}':\n{server.text()}")
    return False


def check_default_english(build):
    name = default_model_name()
    with Server(build, [], env=default_env()) as server:
        if not serves_default(server, name):
            return 1
        out, _ = server.cli(*greedy_args())
    print(f"{name}: {PROMPT}{out}")
    known, total, _ = english_check.score(out, english_check.load_words())
    repeated, grams = english_check.word_repetition(out)
    print(f"{known} of {total} words known, {repeated} of {grams} word 4-grams repeated")
    check = subprocess.run([sys.executable, "-m", "tools.train.english_check"], input=out,
                           text=True, cwd=ROOT)
    return 0 if check.returncode == 0 else 1


DISTRACTORS = ("Love is", "A computer is a machine that", "Never", "Q:\tWhat do you call")


def check_batch_invariance(build):
    name = default_model_name()
    with Server(build, [], env=default_env()) as server:
        if not serves_default(server, name):
            return 1
        _, err = server.cli(*greedy_args())
        alone = token_ids(err)[0]
        if len(alone) != SAMPLE_TOKENS:
            print(f"check_models: FAIL: {len(alone)} tokens alone, expected {SAMPLE_TOKENS}")
            return 1
        procs = [subprocess.Popen(server.cli_command(*a), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
                 for a in [greedy_args(n=8)] + [greedy_args(prompt=p) for p in DISTRACTORS]
                 + [greedy_args()]]
        results = [p.communicate() for p in procs]
        if any(p.returncode != 0 for p in procs):
            print("check_models: FAIL: a concurrent request failed:\n"
                  + "\n".join(err for _, err in results))
            return 1
    batched = token_ids(results[0][1])
    among = token_ids(results[-1][1])[0]
    failed = 0
    for i in range(8):
        if batched.get(i) != alone:
            print(f"FAIL {name}: sample {i} of --n 8 differs from the request alone")
            failed += 1
    if among != alone:
        print(f"FAIL {name}: the request sent among {len(DISTRACTORS) + 1} others differs from "
              "the request alone")
        failed += 1
    print(f"{'ok  ' if not failed else 'FAIL'} {name}: {SAMPLE_TOKENS} greedy tokens alone, "
          f"in a batch of 8 samples and among {len(DISTRACTORS) + 1} other concurrent requests")
    return 1 if failed else 0


CHECKS = {"checkpoints": check_checkpoints, "default-english": check_default_english,
          "batch-invariance": check_batch_invariance}


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in CHECKS:
        print(__doc__)
        return 2
    return CHECKS[sys.argv[2]](pathlib.Path(sys.argv[1]).resolve())


if __name__ == "__main__":
    sys.exit(main())
