#!/usr/bin/env bash
# Installs the npm packages pinned by PACKAGE_DIR/package.json + package-lock.json into NPM_DIR
# (under a build directory, never into the repository), for the golden tests that compare kvserve
# with JavaScript references (tokenizer_golden, chat_template_golden, hf_serving).
#
#   tests/testing/npm_ci_pinned.sh PACKAGE_DIR NPM_DIR CALLER || exit $?
#
# NPM_DIR is reinstalled only when the lockfile changed (its sha256 is kept in NPM_DIR/.lock-hash);
# NPM_DIR.lock serializes installers (ctest -j, several build trees sharing a directory).
# Exit codes, which are also the callers' (hence `|| exit $?`): 0 installed or already current;
# 77 "CALLER: SKIPPED: ..." when node/npm is missing or the registry is unreachable (ctest's
# SKIP_RETURN_CODE: never a pass); 1 "CALLER: FAIL: ..." when npm ci fails while the registry
# answers (e.g. a broken lockfile).
set -euo pipefail
pkg=$(cd "${1:?usage: npm_ci_pinned.sh PACKAGE_DIR NPM_DIR CALLER}" && pwd)
npm_dir=${2:?usage: npm_ci_pinned.sh PACKAGE_DIR NPM_DIR CALLER}
caller=${3:?usage: npm_ci_pinned.sh PACKAGE_DIR NPM_DIR CALLER}

skip() {
  echo "$caller: SKIPPED: $*" >&2
  echo "$caller: SKIPPED: nothing was compared with the JavaScript references" >&2
  exit 77
}

command -v node >/dev/null && command -v npm >/dev/null ||
  skip "node and npm are not installed (Debian package nodejs)"
lock_hash=$(sha256sum "$pkg/package-lock.json" | cut -d' ' -f1)
mkdir -p "$(dirname "$npm_dir")"
exec 9>"$npm_dir.lock"
flock 9
if [[ -d "$npm_dir/node_modules" && "$(cat "$npm_dir/.lock-hash" 2>/dev/null)" == "$lock_hash" ]]; then
  exit 0
fi
packages=$(cd "$pkg" && node -p 'Object.keys(require("./package.json").dependencies).join(", ")')
echo "$caller: installing $packages into $npm_dir"
rm -rf "$npm_dir"
mkdir -p "$npm_dir"
cp "$pkg/package.json" "$pkg/package-lock.json" "$npm_dir/"
if ! (cd "$npm_dir" && npm ci --no-audit --no-fund --loglevel=error); then
  rm -rf "$npm_dir"
  # An unreachable registry is a skip, not a pass and not a code failure; tell them apart.
  if ! npm ping --loglevel=error >/dev/null 2>&1; then
    skip "the npm registry is unreachable, so $packages cannot be installed"
  fi
  echo "$caller: FAIL: npm ci in $npm_dir failed although the registry answers" >&2
  exit 1
fi
echo "$lock_hash" >"$npm_dir/.lock-hash"
