"""Runs every reference model with the same arguments: `python3 -m tools.reference [--check]`.

Each model runs in its own interpreter, exactly as `python3 -m tools.reference.<model>` would,
so one model's torch settings cannot leak into another's fixtures. Exit status: the first
non-zero one, else 0.
"""

import subprocess
import sys

from .common import REPO_ROOT

MODELS = ("llama", "deepseek_v2", "hybrid_s4")


def main():
    status = 0
    for model in MODELS:
        cmd = [sys.executable, "-m", f"tools.reference.{model}", *sys.argv[1:]]
        rc = subprocess.run(cmd, cwd=REPO_ROOT, check=False).returncode
        status = status or rc
    return status


if __name__ == "__main__":
    sys.exit(main())
