#!/usr/bin/python3
"""Checks the engine's rooms (docs/ARCHITECTURE.md, "Engine rooms"): no file under engine/ includes
a header from a room above its own, and engine/engine.h (the public face) includes no scheduler,
sequence, model or layer header.

  check_layering.py REPO_ROOT          exit 0 when clean, 1 listing every violation
  check_layering.py --self-test        shows that a violation is caught
"""
import pathlib
import re
import sys

# Room -> rooms it may include (besides itself). engine/'s own files are the top room.
ALLOWED = {
    "kernels": set(),
    "checkpoint": set(),
    "text": set(),
    "sampling": set(),
    "layers": {"kernels", "checkpoint"},
    "model": {"layers", "kernels", "checkpoint", "text"},
    "engine": {"model", "layers", "kernels", "checkpoint", "text", "sampling"},
}
# What the public face must not pull in (engine_core.h is where they meet).
PUBLIC_FACE = "engine/engine.h"
PUBLIC_FACE_FORBIDDEN = re.compile(
    r"^engine/(scheduler|sequence|engine_core)\.h$|^engine/(model|layers)/")
INCLUDE = re.compile(r'^\s*#\s*include\s+"(engine/[^"]+)"', re.M)


def room_of(path: str) -> str:
    parts = path.split("/")
    return parts[1] if len(parts) > 2 else "engine"


def violations(files: dict) -> list:
    """files: repository path -> text. Returns 'path: message' strings."""
    out = []
    for path, text in sorted(files.items()):
        room = room_of(path)
        if room not in ALLOWED:
            out.append(f"{path}: unknown room '{room}' (add it to check_layering.py and docs)")
            continue
        for target in INCLUDE.findall(text):
            target_room = room_of(target)
            if target_room != room and target_room not in ALLOWED[room]:
                out.append(f"{path}: includes {target} from room '{target_room}', above '{room}'")
            if path == PUBLIC_FACE and PUBLIC_FACE_FORBIDDEN.search(target):
                out.append(f"{path}: the public face includes {target}")
    return out


def self_test() -> int:
    bad = {"engine/kernels/ops.h": '#include "engine/checkpoint/model_config.h"\n',
           "engine/engine.h": '#include "engine/scheduler.h"\n',
           "engine/text/tokenizer.h": '#include "engine/text/utf8_stream.h"\n'}
    found = violations(bad)
    expected = 2
    if len(found) != expected:
        print(f"self-test: expected {expected} violations, got {found}")
        return 1
    print("self-test: ok")
    return 0


def main() -> int:
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    files = {str(p.relative_to(root)): p.read_text(encoding="utf-8")
             for p in sorted((root / "engine").rglob("*")) if p.suffix in (".h", ".cc")}
    found = violations(files)
    for v in found:
        print(v)
    print(f"check_layering: {len(files)} files, {len(found)} violations")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
