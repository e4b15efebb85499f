"""The cache-vs-quality table and plot of docs/quality.md, from the trained models' perplexity.json.

    /usr/bin/python3 -m tools.train.quality --models models --seed2 build/train/seed2 \
        --plot docs/quality.png --build build

Prints the Markdown table (paste it into docs/quality.md) and writes the PNG with gnuplot.
A second seed counts only when it was trained for as many steps as seed 1 (a model of another
budget is a different experiment: it is named on stderr and left out). With --build, each model
is also served by BUILD/server/kvserve (--weight-dtype=f32) and its excerpt perplexity computed
by `kvserve-cli score` fills the "excerpt ppl (kvserve)" column; the throughput columns stay
"not measured" (docs/benchmarks.md has the commands).

Cache sizes are what kvserve allocates (cache/cache_spec.cc: every cached value is a float32):
  attention layer   2 * num_key_value_heads * head_dim floats per token (K and V)
  MLA layer         kv_lora_rank + qk_rope_head_dim floats per token (the latent and the RoPE key)
  S4 layer          hidden_size * s4_d_state/2 complex modes = hidden * d_state floats per
                    sequence, whatever its length
Sequences of 2,048 tokens per GiB = floor(2^30 / (2048 * bytes per token + state bytes)).
"""

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

from .kvserve_process import Server

GIB = 1 << 30
SEQUENCE_TOKENS = 2048
FLOAT_BYTES = 4


def cache_bytes(config):
    """(paged bytes per token, state bytes per sequence) of a config, as kvserve sizes them."""
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    kv_heads = config.get("num_key_value_heads", heads)
    per_token = per_sequence = 0
    types = config.get("layer_types") or ["attention"] * config["num_hidden_layers"]
    for kind in types:
        if kind == "s4":
            per_sequence += config["hidden_size"] * config["s4_d_state"] * FLOAT_BYTES
        elif config["architectures"][0] == "DeepseekV2ForCausalLM":
            per_token += (config["kv_lora_rank"] + config["qk_rope_head_dim"]) * FLOAT_BYTES
        else:
            per_token += 2 * kv_heads * head_dim * FLOAT_BYTES
    return per_token, per_sequence


def load(root):
    out = {}
    for path in sorted(pathlib.Path(root).glob("*/perplexity.json")):
        if path.parent.is_symlink():
            continue  # models/default names one of the others
        result = json.loads(path.read_text())
        result["config"] = json.loads((path.parent / "config.json").read_text())
        result["dir"] = str(path.parent)
        out[result["kind"]] = result
    return out


def kvserve_perplexity(build, result):
    with Server(build, [f"--model={result['dir']}", "--weight-dtype=f32"]) as server:
        return server.score(result["excerpt_ids"])["perplexity"]


def table(seed1, seed2, build=None):
    lines = [
        "| model | kind | parameters | KV bytes/token | state bytes/seq | 2,048-token seqs/GiB "
        "| val. ppl seed 1 | val. ppl seed 2 | excerpt ppl (PyTorch f64) | excerpt ppl (kvserve) "
        "| decode tok/s, 1 stream | decode tok/s, 16 streams | prefill tok/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, r in seed1.items():
        per_token, state = cache_bytes(r["config"])
        seqs = GIB // (SEQUENCE_TOKENS * per_token + state)
        other = seed2.get(kind)
        ppl2 = f"{other['validation_perplexity']:.2f}" if other else "n/a"
        kv_ppl = f"{kvserve_perplexity(build, r):.3f}" if build else "not measured"
        lines.append(
            f"| `{r['dir']}` | {kind} | {r['num_params']:,} | {per_token:,} | {state:,} | "
            f"{seqs:,} | {r['validation_perplexity']:.2f} | {ppl2} | {r['perplexity']:.3f} | "
            f"{kv_ppl} | not measured | not measured | not measured |")
    return "\n".join(lines)


def plot(seed1, seed2, png):
    with tempfile.TemporaryDirectory() as tmp:
        data = pathlib.Path(tmp) / "points.dat"
        rows = []
        for seed, results in ((1, seed1), (2, seed2)):
            for kind, r in results.items():
                per_token, _ = cache_bytes(r["config"])
                rows.append(f"{per_token} {r['validation_perplexity']:.4f} {seed} {kind}")
        data.write_text("\n".join(rows) + "\n")
        script = f"""
set terminal pngcairo size 800,520 font ",11"
set output "{png}"
set title "Validation perplexity vs KV cache bytes per token (1.38 M parameters, equal budget)"
set xlabel "KV cache bytes per token (float32, all layers; hybrid adds 16 KiB per sequence)"
set ylabel "validation perplexity (lower is better)"
set logscale x 2
set xrange [362:5793]
set offsets 0, 0, 4, 2
set grid
set key top right
plot "{data}" using 1:($3==1?$2:1/0) with points pt 7 ps 1.5 title "seed 1", \\
     "{data}" using 1:($3==2?$2:1/0) with points pt 5 ps 1.2 title "seed 2", \\
     "{data}" using 1:($3==1?$2:1/0):4 with labels offset 0,1.2 notitle
"""
        subprocess.run(["gnuplot"], input=script, text=True, check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="models")
    parser.add_argument("--seed2", default="build/train/seed2")
    parser.add_argument("--plot", default="docs/quality.png")
    parser.add_argument("--build", help="serve each model with BUILD's kvserve to fill the "
                        "kvserve perplexity column")
    args = parser.parse_args()
    seed1, seed2 = load(args.models), load(args.seed2)
    for kind in list(seed2):
        if kind not in seed1 or seed2[kind]["steps"] != seed1[kind]["steps"]:
            print(f"quality: left out {seed2[kind]['dir']}: {seed2[kind]['steps']} steps, not "
                  "seed 1's", file=sys.stderr)
            del seed2[kind]
    print(table(seed1, seed2, args.build))
    plot(seed1, seed2, args.plot)


if __name__ == "__main__":
    main()
