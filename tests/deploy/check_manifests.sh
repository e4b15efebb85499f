#!/usr/bin/env bash
# Checks the Kubernetes manifests in deploy/k8s (ctest `deploy_check_manifests`, label unit):
#   1. yamllint (.yamllint) over deploy/ and tests/deploy/;
#   2. `kubectl kustomize` renders deploy/k8s/base, every overlay and prometheus-adapter;
#   3. validate_manifests.mjs checks the renders: kubernetes-models schemas (Gateway API's
#      HTTPRoute included), the GIE InferencePool CRD schema in schemas/, and kvserve's policy
#      (memory request = limit, KV budget derived from it, drain fits the grace period, probes,
#      security context, flags known to `kvserve --help` when the binary is built, the inference
#      gateway's pool, picker, scraped port, metric names (docs/metrics.md) and block size, ...);
#   4. each broken fixture in tests/deploy/fixtures/ must fail with the message it expects, so
#      the checks are known to bite.
# Without kubectl (it ships outside Debian) steps 2-4 cannot render anything: the raw base files
# then get the schema check only, and the script says what it skipped.
#
# npm packages (package.json here, pinned by package-lock.json) go to BUILD_DIR/npm-deploy-check,
# never into the repository; they are reinstalled only when the lockfile changes. Renders go to a
# private temporary directory (several ctest runs may share one build directory), kept on failure.
#
#   tests/deploy/check_manifests.sh [BUILD_DIR]          (default: build)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
npm_dir="$build/npm-deploy-check"
out=$(mktemp -d "${TMPDIR:-/tmp}/kvserve-deploy-check.XXXXXX")
mkdir "$out/rendered"
trap 'rm -rf "$out"' EXIT

fail() {
  trap - EXIT
  echo "check_manifests: FAIL: $*" >&2
  echo "check_manifests: renders kept in $out" >&2
  exit 1
}

# 1. yamllint.
command -v yamllint >/dev/null || fail "yamllint not found: scripts/install-deps.sh test"
echo "check_manifests: yamllint"
(cd "$root" && yamllint -c .yamllint deploy tests/deploy .yamllint) || fail "yamllint"

# Node packages for the schema check.
command -v node >/dev/null && command -v npm >/dev/null ||
  fail "node and npm are needed for the schema check (Debian package nodejs)"
lock_hash=$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)
exec 9>"$npm_dir.lock"
flock 9  # one installer at a time
if [[ ! -d "$npm_dir/node_modules" || "$(cat "$npm_dir/.lock-hash" 2>/dev/null)" != "$lock_hash" ]]; then
  echo "check_manifests: installing the schema packages into $npm_dir"
  rm -rf "$npm_dir"
  mkdir -p "$npm_dir"
  cp "$here/package.json" "$here/package-lock.json" "$npm_dir/"
  (cd "$npm_dir" && npm ci --no-audit --no-fund --loglevel=error) || fail "npm ci in $npm_dir"
  echo "$lock_hash" >"$npm_dir/.lock-hash"
fi
flock -u 9
validate=(node "$here/validate_manifests.mjs" --modules "$npm_dir" --metrics-doc "$root/docs/metrics.md")
validate_gie=("${validate[@]}")
kvserve="$build/server/kvserve"
if [[ -x "$kvserve" ]]; then
  "$kvserve" --help >"$out/kvserve-help.txt"
  validate+=(--kvserve-help "$out/kvserve-help.txt")
  # overlays/gie serves the OpenAI HTTP API (--http-address, issue #17); a binary built without it
  # cannot run that overlay, whose flags are then checked for everything but their existence.
  if grep -q -- '--http-address' "$out/kvserve-help.txt"; then
    validate_gie=("${validate[@]}")
  else
    echo "check_manifests: NOTE: $kvserve has no --http-address (the HTTP API, issue #17): the"
    echo "check_manifests: NOTE: gie overlay's kvserve flags are not checked against its --help"
  fi
else
  echo "check_manifests: NOTE: $kvserve not built; container flags are not checked against it"
fi

# 2. Render.
if ! command -v kubectl >/dev/null; then
  echo "check_manifests: SKIPPED: kubectl not found, so no kustomize rendering, policy checks or"
  echo "check_manifests: fixtures; schema check of the raw base files only"
  raw=()
  for f in "$root"/deploy/k8s/base/*.yaml; do
    [[ "$(basename "$f")" == kustomization.yaml ]] || raw+=("$f")
  done
  "${validate[@]}" --schema-only "${raw[@]}" || fail "schema check"
  echo "check_manifests: PASS (partial: kubectl missing)"
  exit 0
fi
renders=()
gie_renders=()
render() {  # render NAME DIR
  local file="$out/rendered/$1.yaml"
  kubectl kustomize "$2" >"$file" || fail "kubectl kustomize $2"
  if [[ "$1" == overlay-gie ]]; then gie_renders+=("$file"); else renders+=("$file"); fi
}
render base "$root/deploy/k8s/base"
for overlay in "$root"/deploy/k8s/overlays/*/; do
  render "overlay-$(basename "$overlay")" "$overlay"
done
render prometheus-adapter "$root/deploy/k8s/prometheus-adapter"
echo "check_manifests: rendered $((${#renders[@]} + ${#gie_renders[@]})) kustomizations"

# 3. Schema and policy.
"${validate[@]}" "${renders[@]}" || fail "the manifests above"
"${validate_gie[@]}" "${gie_renders[@]}" || fail "the manifests above"

# 4. The checks must reject each broken fixture, for the reason it states.
for fixture in "$here"/fixtures/*/; do
  name=$(basename "$fixture")
  expect=$(sed -n 's/^# expect: //p' "$fixture/kustomization.yaml")
  [[ -n "$expect" ]] || fail "fixture $name has no '# expect:' line"
  kubectl kustomize "$fixture" >"$out/fixture-$name.yaml" || fail "kubectl kustomize $fixture"
  check=("${validate[@]}")
  [[ "$name" == gie-* ]] && check=("${validate_gie[@]}")
  if result=$("${check[@]}" "$out/fixture-$name.yaml"); then
    fail "fixture $name passed; expected a failure: $expect"
  fi
  grep -qF -- "$expect" <<<"$result" || fail "fixture $name failed, but not with '$expect':
$result"
  echo "check_manifests: fixture $name rejected as expected"
done
echo "check_manifests: PASS"
