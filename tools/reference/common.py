"""What the reference models share: safetensors I/O, fixture files, seeded weights, comparisons
and the command line.

Nothing here is specific to one architecture; the equations of each model live in its own module
(llama.py, deepseek_v2.py, hybrid_s4.py). RMSNorm and the causal mask are here because every
model uses them unchanged.
"""

import argparse
import filecmp
import json
import math
import pathlib
import struct
import sys
import tempfile

import numpy as np
import torch

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_OUT_DIR = REPO_ROOT / "tests" / "data"
FIXTURE_FILES = ("config.json", "model.safetensors", "expected.safetensors")

# Norm weights are drawn as 1 + NORM_WEIGHT_NOISE_STD * N(0, 1) by every reference model.
NORM_WEIGHT_NOISE_STD = 0.1


# ----------------------------------------------------------------------------------------------
# Seeded random initialisation


def random_weight(gen, name, dims, scale):
    """One float32 weight drawn from gen: norm weights (names ending in "norm.weight") are
    1 + NORM_WEIGHT_NOISE_STD * N(0, 1), anything else scale * N(0, 1). Exactly one randn call
    of shape dims, so the order of calls fixes every fixture's bytes."""
    noise = torch.randn(dims, generator=gen, dtype=torch.float32)
    if name.endswith("norm.weight"):
        return 1.0 + NORM_WEIGHT_NOISE_STD * noise
    return scale * noise


def fan_in_weight(gen, name, dims, matrix_gain, embed_std):
    """random_weight with the scale of DeepSeek-V2 and the hybrid: the embedding is
    embed_std * N(0, 1), a linear weight [out, in] is (matrix_gain / sqrt(in)) * N(0, 1), so
    activations keep an O(1) scale through each projection."""
    linear = not name.endswith("norm.weight") and name != "model.embed_tokens.weight"
    scale = matrix_gain / math.sqrt(dims[1]) if linear else embed_std
    return random_weight(gen, name, dims, scale)


def input_ids(vocab, num_tokens, seed):
    """The fixture's prompt: num_tokens ids uniform in [0, vocab) from a generator seeded with
    seed (by convention the weight seed + 1)."""
    return torch.randint(0, vocab, (num_tokens,), generator=torch.Generator().manual_seed(seed))


def exact_weights(weights):
    """{name: float64 tensor} holding exactly the stored float32 values."""
    return {name: w.to(torch.float64) for name, w in weights.items()}


# ----------------------------------------------------------------------------------------------
# BF16 and safetensors


def float32_to_bf16_bits(x):
    """Rounds float32 to bfloat16 (nearest, ties to even); returns the uint16 bit patterns."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    assert np.all(np.isfinite(x))
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def bf16_bits_to_float32(bits):
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


_NP_DTYPES = {"F32": np.dtype("<f4"), "I32": np.dtype("<i4"), "BF16": np.dtype("<u2")}


def write_safetensors(path, tensors):
    """Writes {name: (dtype, numpy array)} as safetensors; BF16 arrays hold uint16 bit patterns.

    Layout: u64 LE header length N | N bytes of JSON header, space-padded to a multiple of 8 |
    tensor data in sorted-name order, contiguous, row-major, little-endian.
    """
    header = {}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        dtype, array = tensors[name]
        data = np.ascontiguousarray(array, dtype=_NP_DTYPES[dtype]).tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for chunk in chunks:
            f.write(chunk)


def read_safetensors(path):
    """Reads a safetensors file into {name: (dtype, numpy array)}, validating the layout."""
    raw = pathlib.Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    header.pop("__metadata__", None)
    data = raw[8 + n:]
    out = {}
    expected_begin = 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        begin, end = info["data_offsets"]
        assert begin == expected_begin, f"{name}: hole or overlap at {begin}"
        np_dtype = _NP_DTYPES[info["dtype"]]
        count = math.prod(info["shape"])
        assert end - begin == count * np_dtype.itemsize, f"{name}: size mismatch"
        array = np.frombuffer(data[begin:end], dtype=np_dtype).reshape(info["shape"])
        out[name] = (info["dtype"], array)
        expected_begin = end
    assert expected_begin == len(data), "trailing bytes after the last tensor"
    return out


def stored_weights(weights, storage_dtype):
    """What goes into model.safetensors ({name: (dtype, array)}) and the exact values it holds
    ({name: float64 tensor}) for the reference to compute with."""
    stored, exact = {}, {}
    for name, w in weights.items():
        w32 = w.numpy()
        if storage_dtype == "BF16":
            bits = float32_to_bf16_bits(w32)
            # Independent check of the rounding against torch's own float32 -> bfloat16.
            torch_bits = w.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
            assert np.array_equal(bits, torch_bits), name
            stored[name] = ("BF16", bits)
            values = bf16_bits_to_float32(bits)
        else:
            assert storage_dtype == "F32"
            stored[name] = ("F32", w32)
            values = w32
        exact[name] = torch.from_numpy(values.astype(np.float64))
    return stored, exact


def self_check_safetensors_roundtrip(tmp_dir):
    """The writer and reader agree byte for byte (shared by every reference script)."""
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(3, 5, generator=gen)
    tensors = {
        "b": ("F32", x.numpy()),
        "a": ("BF16", float32_to_bf16_bits(x.numpy())),
        "c": ("I32", np.arange(7, dtype=np.int32) - 3),
        "d": ("F32", np.array([1.0, -0.0, 3.5e-38, 1e30], dtype=np.float32)),  # -0, subnormal-ish
    }
    path = pathlib.Path(tmp_dir) / "roundtrip.safetensors"
    write_safetensors(path, tensors)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0
    header = json.loads(raw[8:8 + n])
    assert header["__metadata__"] == {"format": "pt"}
    assert [k for k in header if k != "__metadata__"] == sorted(tensors)
    back = read_safetensors(path)
    assert set(back) == set(tensors)
    for name, (dtype, array) in tensors.items():
        assert back[name][0] == dtype and back[name][1].shape == array.shape, name
        assert back[name][1].tobytes() == np.ascontiguousarray(array).tobytes(), name
    # BF16 rounding: ties to even, and values exactly representable stay put.
    probe = np.array([1.0, 1.0 + 2**-8, 1.0 + 3 * 2**-8, -2.5, 1.0 + 2**-9], dtype=np.float32)
    assert list(bf16_bits_to_float32(float32_to_bf16_bits(probe))) == \
        [1.0, 1.0, 1.0 + 2**-6, -2.5, 1.0]


# ----------------------------------------------------------------------------------------------
# Layers every model shares


def rms_norm(x, w, eps):
    # x: [T, hidden], w: [hidden]
    return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps) * w


def causal_mask(t_q, t_k, q_offset=0):
    """[t_q, t_k] bool, True where query (at position q_offset + i) may see key j."""
    qpos = torch.arange(t_q)[:, None] + q_offset
    kpos = torch.arange(t_k)[None, :]
    return kpos <= qpos


# ----------------------------------------------------------------------------------------------
# Comparison


def close(a, b, tol=1e-12):
    """max |a - b| <= tol, relative to max |b| once that exceeds 1."""
    return torch.max(torch.abs(a - b)).item() <= tol * max(1.0, torch.max(torch.abs(b)).item())


def describe_difference(fresh, old):
    if fresh.suffix != ".safetensors":
        return ""
    try:
        a, b = read_safetensors(fresh), read_safetensors(old)
    except Exception as e:  # A corrupt committed file is itself the answer.
        return f" (unreadable: {e})"
    if set(a) != set(b):
        return f" (tensor names differ: {sorted(set(a) ^ set(b))})"
    parts = []
    for tname in sorted(a):
        (da, xa), (db, xb) = a[tname], b[tname]
        if da != db or xa.shape != xb.shape:
            parts.append(f"{tname}: {db}{list(xb.shape)} -> {da}{list(xa.shape)}")
        elif not np.array_equal(xa, xb):
            fa = bf16_bits_to_float32(xa) if da == "BF16" else xa.astype(np.float64)
            fb = bf16_bits_to_float32(xb) if db == "BF16" else xb.astype(np.float64)
            parts.append(f"{tname}: max |diff| {np.max(np.abs(fa - fb)):.3g}")
    return " (" + "; ".join(parts) + ")" if parts else ""


# ----------------------------------------------------------------------------------------------
# Fixture files and the command line


def write_fixture_files(d, config, model_tensors, ids, logits):
    """Writes one fixture directory: config.json, model.safetensors (model_tensors: name ->
    (dtype, array)) and expected.safetensors (the input ids and the f32 expected logits)."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    write_safetensors(d / "model.safetensors", model_tensors)
    write_safetensors(d / "expected.safetensors", {
        "input_ids": ("I32", ids.numpy().astype(np.int32)),
        "logits": ("F32", logits.numpy().astype(np.float32)),
    })


def reread_f32_weights(path, expected_shapes):
    """Reads back an all-F32 model file written by write_fixture_files, checks its tensor names,
    dtypes and shapes against expected_shapes ((name, dims) pairs), and returns float64 tensors."""
    back = read_safetensors(path)
    assert {n: (a[0], list(a[1].shape)) for n, a in back.items()} == \
        {n: ("F32", dims) for n, dims in expected_shapes}
    return {n: torch.from_numpy(a.astype(np.float64)) for n, (_, a) in back.items()}


def check_fixtures(tool, generate_fn, fixture_names, committed_dir):
    """Shared by the reference scripts: regenerates every fixture of `fixture_names` with
    generate_fn into a temp dir, compares bytes with committed_dir, prints what differs (per
    tensor for safetensors files) and returns an exit code."""
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        generate_fn(tmp, verbose=False)
        for name in fixture_names:
            for f in FIXTURE_FILES:
                fresh = pathlib.Path(tmp) / name / f
                old = pathlib.Path(committed_dir) / name / f
                if not old.exists():
                    failures.append(f"{old}: missing")
                elif not filecmp.cmp(fresh, old, shallow=False):
                    failures.append(f"{old}: differs from regenerated output"
                                    + describe_difference(fresh, old))
    if failures:
        print(f"{tool} --check FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    print(f"{tool} --check: fixtures in {committed_dir} are up to date")
    return 0


def run_cli(doc, self_checks, generate_fn, fixture_names, tool):
    """The command line every reference script shares: [--out-dir DIR] [--check]."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--out-dir", default=str(DEFAULT_OUT_DIR),
                        help="directory that holds the fixture directories (default: %(default)s)")
    parser.add_argument("--check", action="store_true",
                        help="regenerate into a temp dir and compare bytes with --out-dir")
    args = parser.parse_args()
    torch.set_num_threads(1)  # One summation order for the float64 matmuls.
    self_checks()
    if args.check:
        return check_fixtures(tool, generate_fn, fixture_names, args.out_dir)
    generate_fn(args.out_dir, verbose=True)
    return 0
