#!/usr/bin/env bash
# Builds the container image from the Dockerfile and runs it as a user would, with podman and no
# Docker engine: takes minutes and several GB of disk, so it is not part of scripts/test.sh.
#
#   scripts/image-test.sh [--keep]
#
#   1. installs podman, runc and mmdebstrap if missing (scripts/install-deps.sh image);
#   2. builds a debian:bookworm-slim stand-in with mmdebstrap (bookworm minbase from the Debian
#      archive) and imports it under that name, since no image registry is reachable here;
#   3. builds the image (localhost/kvserve:dev), reports its size;
#   4. checks that the runtime package group of scripts/install-deps.sh holds every package whose
#      libraries the binaries link (readelf NEEDED, resolved with ldd and dpkg inside the image)
#      unless the base image has it, and nothing they do not link; and that ldd finds every
#      library;
#   5. runs it with --network=host, read-only root, all capabilities dropped: user 10001,
#      `kvserve-cli health` inside and from outside the container, HEALTHCHECK, a streamed
#      generation, /metrics;
#   6. `podman stop` while a stream is in flight: the stream completes, the exit code is 0, well
#      within the stop timeout (the stream is 600 tokens of a random-weight SmolLM-135M-shaped
#      fixture mounted as a second model, ~6 s on one thread: the default model's 256-token
#      context is generated in ~60 ms, too fast to stop mid-stream);
#   7. removes the container and prunes podman's storage (--keep leaves both for inspection).
# Work files (the base tarball, logs) are kept in build/image-test/; the tarball is reused.
# Environment: KVSERVE_JOBS (compile jobs in the build stage, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
keep=0
[[ "${1:-}" == "--keep" ]] && keep=1

work="$root/build/image-test"
image=localhost/kvserve:dev
base=docker.io/library/debian:bookworm-slim
container=kvserve-image-test
mkdir -p "$work"
start_time=$SECONDS

say() { printf 'image-test [%4ds] %s\n' $((SECONDS - start_time)) "$*"; }
fail() {
  say "FAIL: $*" >&2
  exit 1
}

# The mid-stream stop of step 6 needs a model slow enough to be stopped mid-stream (see above):
# tools/bench/shape_checkpoint.py writes it (0.27 GB, reused).
scripts/install-deps.sh python
fixture="$work/smollm-135m"
[[ -f "$fixture/model.safetensors" ]] ||
  /usr/bin/python3 -m tools.bench.shape_checkpoint --shape smollm-135m --out "$fixture" >/dev/null

# 1. Tools. Rootful podman with the vfs driver and cgroupfs works in containers and VMs alike;
# crun fails here ("cgroups in hybrid mode"), runc does not. Without `default_ulimits = []` runs
# fail with "setrlimit RLIMIT_NOFILE: Operation not permitted".
scripts/install-deps.sh image
printf '[containers]\ndefault_ulimits = []\n' >"$work/containers.conf"
export CONTAINERS_CONF="$work/containers.conf"
podman=(podman --storage-driver=vfs --cgroup-manager=cgroupfs --runtime=runc)

cleanup() {
  "${podman[@]}" rm -f -t 0 "$container" >/dev/null 2>&1 || true
  if ((keep == 0)); then
    "${podman[@]}" system prune -a -f >/dev/null 2>&1 || true
    say "pruned podman storage (use --keep to keep the image)"
  fi
}
trap cleanup EXIT

# 2. Base image.
if ! "${podman[@]}" image exists "$base"; then
  if [[ ! -s "$work/bookworm-slim.tar" ]]; then
    say "building the bookworm base with mmdebstrap"
    mmdebstrap --variant=minbase --aptopt='APT::Install-Recommends "false"' bookworm \
      "$work/bookworm-slim.tmp.tar" >"$work/mmdebstrap.log" 2>&1 ||
      fail "mmdebstrap, see $work/mmdebstrap.log"
    mv "$work/bookworm-slim.tmp.tar" "$work/bookworm-slim.tar"
  fi
  "${podman[@]}" import "$work/bookworm-slim.tar" "$base" >"$work/import.log" 2>&1 ||
    fail "podman import, see $work/import.log"
fi
say "base image $base ready"

# 3. Build.
build_start=$SECONDS
"${podman[@]}" build --pull=never --network=host --format docker \
  --build-arg "BUILD_JOBS=${KVSERVE_JOBS:-2}" -t "$image" -f Dockerfile . >"$work/build.log" 2>&1 ||
  fail "podman build, see $work/build.log"
build_seconds=$((SECONDS - build_start))
size=$("${podman[@]}" image inspect --format '{{.Size}}' "$image")
say "built $image in ${build_seconds} s: $((size / 1000000)) MB"
[[ "$("${podman[@]}" image inspect --format '{{.Config.User}}' "$image")" == 10001:10001 ]] ||
  fail "the image's user is not 10001:10001"

in_image() {  # in_image COMMAND...: runs a command in a throwaway container of the image
  "${podman[@]}" run --rm --network=none --no-healthcheck --entrypoint "$1" "$image" "${@:2}"
}

# 4. Runtime libraries: ldd resolves everything, and the runtime group covers what is linked.
binaries=(/usr/local/bin/kvserve /usr/local/bin/kvserve-cli)
ldd_out=$(in_image /usr/bin/ldd "${binaries[@]}")
if grep -q 'not found' <<<"$ldd_out"; then
  fail "libraries missing in the image:
$(grep 'not found' <<<"$ldd_out")"
fi
"${podman[@]}" rm -f "$container-files" >/dev/null 2>&1 || true
"${podman[@]}" create --name "$container-files" "$image" >/dev/null
needed=()
for b in "${binaries[@]}"; do
  "${podman[@]}" cp "$container-files:$b" "$work/$(basename "$b")"
  mapfile -t -O "${#needed[@]}" needed < <(readelf -d "$work/$(basename "$b")" |
    sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
done
"${podman[@]}" rm -f "$container-files" >/dev/null
# soname -> path in the image (ldd), path -> package in the image (dpkg -S).
paths=()
for soname in $(printf '%s\n' "${needed[@]}" | sort -u); do
  p=$(awk -v s="$soname" '$1 == s && $2 == "=>" { print $3; exit }' <<<"$ldd_out")
  [[ -n "$p" ]] || fail "ldd does not resolve $soname"
  paths+=("$p")
done
# dpkg registers some files under /lib, others under /usr/lib: try the resolved path, then as is.
linked=$(in_image /bin/sh -c 'for p in "$@"; do dpkg -S "$(readlink -f "$p")" 2>/dev/null ||
  dpkg -S "$p" 2>/dev/null || echo "UNOWNED $p"; done' sh "${paths[@]}" | cut -d: -f1 | sort -u)
grep -q '^UNOWNED' <<<"$linked" && fail "no package owns $(grep '^UNOWNED' <<<"$linked")"
in_base=$("${podman[@]}" run --rm --network=none "$base" dpkg-query -W -f '${Package}\n' | sort -u)
expected=$(comm -23 <(echo "$linked") <(echo "$in_base"))
declared=$(bash -c 'source <(sed -n "/^declare -A groups=(/,/^)/p" scripts/install-deps.sh)
  echo ${groups[runtime]}' | tr ' ' '\n' | sed '/^$/d' | sort -u)
# Every linked package the base lacks must be declared; a declared one must be linked (one the base
# already has, such as libpcre2-8-0, may be declared: the group then also serves a host install).
missing=$(comm -23 <(echo "$expected") <(echo "$declared"))
extra=$(comm -13 <(echo "$linked") <(echo "$declared"))
if [[ -n "$missing$extra" ]]; then
  fail "scripts/install-deps.sh runtime differs from what the binaries link
  missing from the group: $(echo $missing)
  not linked (remove):    $(echo $extra)"
fi
say "runtime group matches the linked libraries: $(echo $declared)"

# 5. Run it. With host networking, listen on loopback; 50051 when free so that the image's own
# HEALTHCHECK (which targets 127.0.0.1:50051) is what gets tested.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=50051
health_args=()
if port_in_use "$port"; then
  port=$(free_port)
  health_args=(--health-cmd
    "/usr/local/bin/kvserve-cli --target=127.0.0.1:$port health >/dev/null || exit 1")
  say "port 50051 is taken: using $port, with the HEALTHCHECK command pointed at it"
fi
metrics_port=$(free_port)
# No health timer: podman would want systemd for it. `podman healthcheck run` below runs the
# image's HEALTHCHECK command once, by hand.
"${podman[@]}" run -d --name "$container" --network=host --read-only --cap-drop=ALL \
  --security-opt=no-new-privileges --health-interval=disable "${health_args[@]}" \
  --volume="$fixture:/models/smollm-135m:ro" "$image" \
  --model=default=/usr/local/share/kvserve/models/default --model=smollm=/models/smollm-135m \
  --listen="127.0.0.1:$port" --metrics-address="127.0.0.1:$metrics_port" --http-address=127.0.0.1:0 \
  --threads=1 \
  --shutdown-timeout=20 >/dev/null
for _ in $(seq 1 120); do
  "${podman[@]}" logs "$container" 2>&1 | grep -q "kvserve listening" && break
  [[ "$("${podman[@]}" inspect --format '{{.State.Running}}' "$container")" == true ]] ||
    fail "the container exited: $("${podman[@]}" logs "$container" 2>&1)"
  sleep 0.5
done
"${podman[@]}" logs "$container" 2>&1 | grep -q "kvserve listening" || fail "kvserve did not start"
say "kvserve running in $container on 127.0.0.1:$port"

uid=$("${podman[@]}" exec "$container" id -u)
[[ "$uid" == 10001 ]] || fail "kvserve runs as uid $uid, not 10001"

cli_inside() { "${podman[@]}" exec "$container" kvserve-cli --target="127.0.0.1:$port" "$@"; }
# Outside the container: the host's build if there is one, else the image's CLI in a second
# container on the host network.
if [[ -x build/tools/cli/kvserve-cli ]]; then
  cli_outside() { build/tools/cli/kvserve-cli --target="127.0.0.1:$port" "$@"; }
else
  cli_outside() {
    "${podman[@]}" run --rm --network=host --no-healthcheck \
      --entrypoint /usr/local/bin/kvserve-cli "$image" --target="127.0.0.1:$port" "$@"
  }
fi
[[ "$(cli_inside health)" == SERVING ]] || fail "kvserve-cli health inside the container"
[[ "$(cli_outside health --service=kvserve.v1.KvServe)" == SERVING ]] ||
  fail "kvserve-cli health from outside the container"
"${podman[@]}" healthcheck run "$container" >/dev/null || fail "podman healthcheck run"
say "uid 10001; health SERVING inside and outside; HEALTHCHECK healthy"

cli_outside generate --prompt "Once upon a time" --max-tokens 16 --temperature 0 \
  >"$work/generate.out" 2>"$work/generate.err" || fail "generate: $(cat "$work/generate.err")"
grep -q "completion tokens: 16 |" "$work/generate.err" ||
  fail "generate did not stream 16 tokens: $(cat "$work/generate.err")"
curl -fsS "http://127.0.0.1:$metrics_port/metrics" >"$work/metrics.txt" ||
  fail "no /metrics on 127.0.0.1:$metrics_port"
grep -q '^kvserve_requests_waiting{' "$work/metrics.txt" ||
  fail "/metrics has no kvserve_requests_waiting series"
say "streamed 16 tokens; /metrics serves kvserve_requests_waiting"

# 6. podman stop mid-stream: SIGTERM, drain, exit 0.
rm -f "$work/drain-stream.out"
cli_outside generate --model=smollm --prompt "Once upon a time" --max-tokens 600 --ignore-eos \
  --temperature 0 >"$work/drain-stream.out" 2>"$work/drain-stream.err" &
stream_pid=$!
# Stop once the request is running (the fixture's random bytes print little text, so stdout
# cannot tell).
running='^kvserve_requests_running{model="smollm"} 1$'
for _ in $(seq 1 200); do
  curl -fsS "http://127.0.0.1:$metrics_port/metrics" | grep -q "$running" && break
  sleep 0.05
done
curl -fsS "http://127.0.0.1:$metrics_port/metrics" | grep -q "$running" ||
  fail "the stream never started: $(cat "$work/drain-stream.err")"
stop_start=$SECONDS
"${podman[@]}" stop -t 30 "$container" >/dev/null
stop_seconds=$((SECONDS - stop_start))
exit_code=$("${podman[@]}" inspect --format '{{.State.ExitCode}}' "$container")
stream_status=0
wait "$stream_pid" || stream_status=$?
"${podman[@]}" logs "$container" >"$work/container.log" 2>&1
[[ "$exit_code" == 0 ]] || fail "exit code $exit_code after podman stop; see $work/container.log"
((stop_seconds < 30)) || fail "podman stop took ${stop_seconds} s: SIGKILL at the timeout"
grep -q "received SIGTERM" "$work/container.log" || fail "no SIGTERM in $work/container.log"
grep -q "shutdown complete" "$work/container.log" || fail "no drain in $work/container.log"
((stream_status == 0)) || fail "the stream in flight failed: $(cat "$work/drain-stream.err")"
grep -q "completion tokens: 600 |" "$work/drain-stream.err" ||
  fail "the stream in flight was cut: $(cat "$work/drain-stream.err")"
say "podman stop with a stream in flight: stream completed, exit 0 after ${stop_seconds} s"

say "PASS: image $((size / 1000000)) MB, built in ${build_seconds} s, whole test $((SECONDS - start_time)) s"
