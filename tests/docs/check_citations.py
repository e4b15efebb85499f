#!/usr/bin/python3
"""Fails when a comment, document or string cites a repository file that does not exist.

    /usr/bin/python3 tests/docs/check_citations.py [REPO_ROOT]   # self-test, then scan the tree
    /usr/bin/python3 tests/docs/check_citations.py --self-test   # only the self-test

Scanned: the tracked files (`git ls-files`; a directory walk when git is unavailable) named *.cc,
*.h, *.py, *.md, *.sh and CMakeLists.txt. Standard library only.

A citation is a token that starts with a top-level directory of the repository (TOP_LEVEL_DIRS),
such as `docs/math.md`, `engine/hippo.h` or `tests/data/`, and is not part of a longer path
(`build/tests/...`, `/usr/include/base/...`, a URL): the character before it must not be a word
character, '/', '.', '-' or '~'. `${CMAKE_SOURCE_DIR}/x` and `${PROJECT_SOURCE_DIR}/x` are
resolved from the repository root, `${CMAKE_CURRENT_SOURCE_DIR}/x` from the CMakeLists.txt's
directory. A citation exists when it names a tracked file or a directory holding one (from the
root, or from the citing file's directory), or a file pair by its stem (`server/proto_convert`).
Not checked: tokens with placeholders (`<name>`, `${var}`, `{a,b}`, `%s`), generated protobuf names
(`*.pb.h`, `*_pb2.py`), and ids that merely look like paths. A glob (`tests/data/tiny_llama_*/`)
must match at least one tracked path.

Also failures, anywhere in a scanned file: a mention of the notes directory that sits beside the
repository on the developers' machines (OUT_OF_TREE below), or the math notes' file name without
its `docs/` directory — a clone has neither.

Output: one line per problem, `file:line: <path>: <what is wrong>`, with the tracked files of the
same name as a hint when a file has moved; exit status 1 if there is any, else 0.
"""

import fnmatch
import os
import pathlib
import re
import subprocess
import sys
import tempfile

TOP_LEVEL_DIRS = ("base", "cache", "deploy", "docs", "engine", "proto", "scripts", "server",
                  "tests", "tools", ".ci")
SCANNED_SUFFIXES = (".cc", ".h", ".py", ".md", ".sh")
SCANNED_NAMES = ("CMakeLists.txt",)
# Directories never walked when git is unavailable (build trees, caches, dependencies).
WALK_SKIP = re.compile(r"^(\.git|build.*|node_modules|__pycache__|\.cache)$")

_TOP = "|".join(re.escape(d) for d in TOP_LEVEL_DIRS)
# A path token: a top-level directory, '/', then anything up to whitespace, a quote, a bracket or
# a separator. Trailing sentence punctuation is stripped afterwards.
CITATION = re.compile(r"(?<![\w/.\-~])((?:" + _TOP + r")/[^\s`'\"()\[\]<>,;:|#\\]*(?:<[^\s>]*>"
                      r"[^\s`'\"()\[\],;:|#\\]*)*)")
CMAKE_PATH = re.compile(r"\$\{(CMAKE_SOURCE_DIR|PROJECT_SOURCE_DIR|CMAKE_CURRENT_SOURCE_DIR|"
                        r"CMAKE_CURRENT_LIST_DIR)\}/([^\s`'\"()\[\];|]+)")
PLACEHOLDER = re.compile(r"[<>{}$%@=]")
GLOB = re.compile(r"[*?\[]")
GENERATED = re.compile(r"(\.pb\.(h|cc)|_pb2(_grpc)?\.py)$")
# The notes that live outside the repository, spelt in pieces so this file does not cite them.
NOTES_DIR = "sha" + "red"
OUT_OF_TREE = re.compile("(" + re.escape("../" + NOTES_DIR) + "|" + re.escape("/work/" + NOTES_DIR)
                         + ")")
# The math notes' file name, spelt in pieces so that the sed rewrite which adds docs/ in
# other files leaves this one alone.
MATH_MD = "math" + ".md"
BARE_MATH_MD = re.compile(r"(?<![\w/.\-])" + re.escape(MATH_MD))
DOCS_MATH_MD = re.compile(re.escape("docs/" + MATH_MD))


def tracked_files(root):
    """Repository-relative paths (with '/') of every tracked file, or of every file under root
    outside build trees when root is not a git checkout."""
    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], check=True,
                             capture_output=True).stdout
        files = [f for f in out.decode("utf-8").split("\0") if f]
        if files:
            return [f for f in files if (root / f).exists()]  # Deleted but not yet committed.
    except (OSError, subprocess.CalledProcessError):
        pass
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not WALK_SKIP.match(d))
        rel = pathlib.Path(dirpath).relative_to(root)
        files += [(rel / f).as_posix() for f in sorted(filenames)]
    return files


def is_scanned(path):
    name = path.rsplit("/", 1)[-1]
    return name in SCANNED_NAMES or name.endswith(SCANNED_SUFFIXES)


class Tree:
    """The tracked files and the directories that hold them."""

    def __init__(self, files):
        self.files = set(files)
        self.dirs = set()
        self.by_name = {}
        for f in files:
            parts = f.split("/")
            for i in range(1, len(parts)):
                self.dirs.add("/".join(parts[:i]))
            self.by_name.setdefault(parts[-1], []).append(f)

    def exists(self, path, citing_dir=""):
        """A tracked file or directory; also a file pair named by its stem (`server/proto_convert`
        for proto_convert.h/.cc), and a path relative to the citing file's directory
        (`tools/integration` in tests/CMakeLists.txt)."""
        path = path.rstrip("/")
        candidates = [path] + ([f"{citing_dir}/{path}"] if citing_dir else [])
        for p in candidates:
            if p in self.files or p in self.dirs:
                return True
            if any(f"{p}{ext}" in self.files for ext in (".h", ".cc", ".py", ".md", ".sh")):
                return True
        return False

    def glob_matches(self, pattern):
        pattern = pattern.rstrip("/")
        return any(fnmatch.fnmatchcase(p, pattern) for p in self.files | self.dirs)

    def same_name(self, path):
        return sorted(self.by_name.get(path.rstrip("/").rsplit("/", 1)[-1], []))


def clean(token):
    """Strips what follows a path in prose: sentence punctuation and a closing markdown '*'."""
    token = token.rstrip(".*!?")
    while token.endswith("/.") or token.endswith("//"):
        token = token[:-1]
    return token


def normalise(path):
    """Resolves '.' and '..' components; returns None when the path leaves the repository."""
    out = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not out:
                return None
            out.pop()
        else:
            out.append(part)
    return "/".join(out) + ("/" if path.endswith("/") else "")


def citations(line, file_path):
    """(repository-relative path, as written) for every path-like citation on one line."""
    found = []
    for m in CMAKE_PATH.finditer(line):
        var, rest = m.group(1), clean(m.group(2))
        base = "" if var in ("CMAKE_SOURCE_DIR", "PROJECT_SOURCE_DIR") else \
            file_path.rsplit("/", 1)[0] if "/" in file_path else ""
        path = normalise(f"{base}/{rest}" if base else rest)
        if path is not None:
            found.append((path, m.group(0)))
    for m in CITATION.finditer(line):
        token = clean(m.group(1))
        if "/" not in token.rstrip("/") and not token.endswith("/"):
            continue
        path = normalise(token)
        if path is not None:
            found.append((path, token))
    return found


def check_line(tree, file_path, lineno, line):
    problems = []
    for path, written in citations(line, file_path):
        if PLACEHOLDER.search(path) or GENERATED.search(path):
            continue
        if GLOB.search(path):
            if not tree.glob_matches(path):
                problems.append(f"{file_path}:{lineno}: {written}: glob matches no tracked path")
            continue
        if not tree.exists(path, file_path.rsplit("/", 1)[0] if "/" in file_path else ""):
            hint = tree.same_name(path)
            more = f" (tracked files of that name: {', '.join(hint)})" if hint else ""
            problems.append(f"{file_path}:{lineno}: {written}: no such file or directory{more}")
    for m in OUT_OF_TREE.finditer(line):
        problems.append(f"{file_path}:{lineno}: {m.group(0)}: cites notes outside the "
                        "repository; cite docs/ or the primary source")
    bare = {m.start() for m in BARE_MATH_MD.finditer(line)}
    in_docs = {m.start() + len("docs/") for m in DOCS_MATH_MD.finditer(line)}
    for _ in sorted(bare - in_docs):
        problems.append(f"{file_path}:{lineno}: {MATH_MD}: write docs/{MATH_MD}")
    return problems


def scan(root):
    root = pathlib.Path(root).resolve()
    files = tracked_files(root)
    tree = Tree(files)
    try:
        self_path = pathlib.Path(__file__).resolve().relative_to(root).as_posix()
    except ValueError:
        self_path = None
    problems = []
    # This file is skipped: its docstring and self-test are made-up citations by design.
    for f in sorted(f for f in files if is_scanned(f) and f != self_path):
        try:
            text = (root / f).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            problems.append(f"{f}:0: unreadable: {e}")
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            problems += check_line(tree, f, lineno, line)
    return problems, len(files)


SELF_TEST_FILES = {
    "engine/hippo.h": "// HiPPO (docs/math.md §4.3); layout in docs/model-format.md.\n",
    "engine/layers/s4_layer.h": "#include \"engine/hippo.h\"\n",
    "docs/model-format.md": "See `tests/data/README.md`, `tests/data/tiny_*/` and "
                            "https://example.com/engine/none.h or build/engine/none.h.\n"
                            "A `tests/data/<name>/config.json`; `proto/kvserve.pb.h`.\n",
    "docs/math.md": "# Math\n",
    "tests/data/README.md": "Regenerate with tools/reference/llama.py.\n",
    "tests/data/tiny_a/config.json": "{}\n",
    "tests/CMakeLists.txt": "add_test(COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/deploy/check.sh)\n",
    "tests/deploy/check.sh": "#!/bin/sh\n",
    "tools/reference/llama.py": "# Writes tests/data/tiny_a/config.json.\n",
    # A missing file, a header that moved, a stale glob, notes outside the tree, a bare name.
    "server/main.cc": "// See docs/missing.md and engine/s4_layer.h.\n"
                      "// Fixtures: tests/data/tiny_b*/\n",
    "scripts/x.sh": f"# from ../{NOTES_DIR}/reference/math" + ".md, also math" + ".md §7\n",
}
SELF_TEST_EXPECTED = [
    f"scripts/x.sh:1: ../{NOTES_DIR}: cites notes outside the repository; cite docs/ or the "
    "primary source",
    f"scripts/x.sh:1: {MATH_MD}: write docs/{MATH_MD}",
    "server/main.cc:1: docs/missing.md: no such file or directory",
    "server/main.cc:1: engine/s4_layer.h: no such file or directory (tracked files of that name: "
    "engine/layers/s4_layer.h)",
    "server/main.cc:2: tests/data/tiny_b*/: glob matches no tracked path",
]


def self_test():
    """Scans a small made-up tree (no git) and compares the findings with SELF_TEST_EXPECTED."""
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        for name, text in SELF_TEST_FILES.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text, encoding="utf-8")
        problems, _ = scan(root)
    if sorted(problems) != sorted(SELF_TEST_EXPECTED):
        print("check_citations --self-test FAILED\n  expected:\n    "
              + "\n    ".join(SELF_TEST_EXPECTED) + "\n  got:\n    " + "\n    ".join(problems),
              file=sys.stderr)
        return 1
    print(f"check_citations --self-test: the {len(SELF_TEST_EXPECTED)} planted problems and "
          "nothing else were reported")
    return 0


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    if len(argv) > 2 or (len(argv) == 2 and argv[1].startswith("-")):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    if self_test() != 0:
        return 1
    root = argv[1] if len(argv) == 2 else pathlib.Path(__file__).resolve().parents[2]
    problems, num_files = scan(root)
    if problems:
        print("\n".join(problems))
        print(f"check_citations: {len(problems)} stale citation(s) in {root}", file=sys.stderr)
        return 1
    print(f"check_citations: every cited path exists ({num_files} tracked files in {root})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
