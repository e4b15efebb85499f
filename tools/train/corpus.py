"""Builds kvserve's training corpus from Debian's `fortunes` / `fortunes-min` packages.

    /usr/bin/python3 -m tools.train.corpus --out build/corpus     # from the repository root

Input: every strfile text file directly in /usr/share/games/fortunes (the UTF-8 `.u8` copies;
the offensive set lives in the `off/` subdirectory of fortunes-off and is never read), except
ascii-art (pictures, not text) and translate-me (not English). The fortunes packages are under
the BSD licence of fortune-mod and are freely redistributable (/usr/share/doc/fortunes/copyright).

A strfile file holds records separated by lines consisting of a single `%`. Each record is one
document: trailing whitespace is stripped from every line, blank lines at either end are
dropped, and records shorter than MIN_CHARS are skipped. Deduplication is on a normal form
(lowercase, runs of whitespace collapsed), keeping the first occurrence in sorted-file order.

Split: a record goes to validation when the first 8 bytes of SHA-256(normal form), read as a
big-endian integer, are 0 mod VALIDATION_MODULUS (about 1 in 20); otherwise to train. The split
depends only on the record's text, so adding a package never moves a record between splits.

Output (never committed; regenerate with the command above):
  train.jsonl, validation.jsonl   one {"source": file, "text": record} per line, in input order
  manifest.json                   counts, bytes, and the SHA-256 of both JSONL files
Running twice on the same packages gives byte-identical files.
"""

import argparse
import hashlib
import json
import pathlib
import re

FORTUNE_DIR = pathlib.Path("/usr/share/games/fortunes")
EXCLUDED = {"ascii-art", "translate-me"}
MIN_CHARS = 20
VALIDATION_MODULUS = 20


def read_records(path):
    """The records of one strfile text file, cleaned as the module docstring says."""
    text = path.read_text(encoding="utf-8", errors="strict")
    records, lines = [], []
    for line in text.split("\n") + ["%"]:
        if line.rstrip() == "%":
            record = "\n".join(lines).strip("\n")
            if len(record) >= MIN_CHARS:
                records.append(record)
            lines = []
        else:
            lines.append(line.rstrip())
    return records


def normal_form(record):
    return re.sub(r"\s+", " ", record.lower()).strip()


def is_validation(record):
    digest = hashlib.sha256(normal_form(record).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % VALIDATION_MODULUS == 0


def source_files():
    names = sorted(p.stem for p in FORTUNE_DIR.glob("*.u8") if p.is_file())
    return [FORTUNE_DIR / f"{n}.u8" for n in names if n not in EXCLUDED]


def build(out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    files = source_files()
    if not files:
        raise SystemExit(f"corpus: no fortune files in {FORTUNE_DIR} (apt-get install fortunes)")
    seen = set()
    splits = {"train": [], "validation": []}
    duplicates = 0
    for path in files:
        for record in read_records(path):
            key = normal_form(record)
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            split = "validation" if is_validation(record) else "train"
            splits[split].append({"source": path.stem, "text": record})
    manifest = {"sources": [p.name for p in files], "duplicates_dropped": duplicates}
    for split, rows in splits.items():
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
        (out_dir / f"{split}.jsonl").write_bytes(data)
        manifest[split] = {
            "records": len(rows),
            "text_bytes": sum(len(r["text"].encode("utf-8")) for r in rows),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def load(out_dir, split):
    """The texts of one split written by build()."""
    path = pathlib.Path(out_dir) / f"{split}.jsonl"
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="build/corpus", type=pathlib.Path)
    args = parser.parse_args()
    manifest = build(args.out)
    print(json.dumps({k: v for k, v in manifest.items() if k != "sources"}, indent=2))


if __name__ == "__main__":
    main()
