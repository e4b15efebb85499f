"""Writes a benchmark fixture: a Hugging Face-layout checkpoint with the *shape* of a real model
and seeded random weights (RANDOM WEIGHTS: it generates noise; it exists only so that speed and
memory can be measured on real shapes without shipping gigabytes of real weights).

    /usr/bin/python3 -m tools.bench.shape_checkpoint --shape smollm-135m --out build/bench/smollm-135m
    /usr/bin/python3 -m tools.bench.shape_checkpoint --shape llama-1b --out build/bench/llama-1b

(from the repository root). Shapes are those of the published configs of SmolLM2-135M and
Llama-3.2-1B (tied embeddings, GQA, SwiGLU, RoPE; Llama 3.2's llama3 rope_scaling). Every matrix
is N(0, 0.02^2), every norm weight 1; BF16 (round to nearest even) unless --dtype f32. The
config carries "kvserve_fixture" saying what this is; kvserve ignores unknown keys. No
tokenizer.json is written: kvserve serves the directory with its byte-level tokenizer, which is
what kvserve-bench's random-byte prompts need. Tensors are generated and written one at a time,
so memory stays at about one tensor's f32 size.
"""

import argparse
import json
import pathlib
import struct

import numpy as np

from tools.reference.common import float32_to_bf16_bits

SHAPES = {
    "smollm-135m": {
        "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
        "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
        "head_dim": 64, "rope_theta": 100000.0, "max_position_embeddings": 8192,
        "rope_scaling": None, "bos_token_id": 0, "eos_token_id": 0,
    },
    "llama-1b": {
        "vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192,
        "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
        "head_dim": 64, "rope_theta": 500000.0, "max_position_embeddings": 131072,
        "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "bos_token_id": 128000, "eos_token_id": 128001,
    },
}


def config_for(shape):
    c = dict(SHAPES[shape])
    c.update({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
        "rms_norm_eps": 1e-5, "tie_word_embeddings": True, "attention_bias": False,
        "mlp_bias": False,
        "kvserve_fixture": f"RANDOM WEIGHTS with the shape of {shape} (tools/bench/shape_checkpoint.py); "
                           "for speed and memory benchmarks only",
    })
    return c


def tensor_shapes(c):
    """{HF tensor name: shape} of a tied Llama checkpoint."""
    h, d = c["hidden_size"], c["head_dim"]
    q, kv, f = c["num_attention_heads"] * d, c["num_key_value_heads"] * d, c["intermediate_size"]
    shapes = {"model.embed_tokens.weight": (c["vocab_size"], h), "model.norm.weight": (h,)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (q, h), p + "self_attn.k_proj.weight": (kv, h),
            p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, q),
            p + "mlp.gate_proj.weight": (f, h), p + "mlp.up_proj.weight": (f, h),
            p + "mlp.down_proj.weight": (h, f),
        })
    return shapes


def write(shape, out, dtype, seed):
    c = config_for(shape)
    c["torch_dtype"] = "bfloat16" if dtype == "bf16" else "float32"
    shapes = tensor_shapes(c)
    itemsize = 2 if dtype == "bf16" else 4
    header, offset = {}, 0
    for name in sorted(shapes):
        size = int(np.prod(shapes[name])) * itemsize
        header[name] = {"dtype": "BF16" if dtype == "bf16" else "F32",
                        "shape": list(shapes[name]), "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with open(out / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name in sorted(shapes):
            if name.endswith("norm.weight"):
                w = np.ones(shapes[name], dtype=np.float32)
            else:
                w = rng.standard_normal(shapes[name], dtype=np.float32) * np.float32(0.02)
            f.write((float32_to_bf16_bits(w) if dtype == "bf16" else w).tobytes())
    (out / "config.json").write_text(json.dumps(c, indent=2, sort_keys=True) + "\n")
    print(f"shape_checkpoint: {out}: {shape}, {sum(int(np.prod(s)) for s in shapes.values()):,} "
          f"parameters, {offset:,} bytes of {dtype} weights (random)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), required=True)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write(args.shape, args.out, args.dtype, args.seed)


if __name__ == "__main__":
    main()
