#!/usr/bin/env bash
# The server binary as gRPC tools see it through reflection alone (ctest `grpc_tooling`, label
# integration): `buf curl` (npm @bufbuild/buf, a grpcurl equivalent) is given no .proto file, only
# the server's address, and must
#   1. list and describe every service reflection lists (`--list-services`, `--list-methods`): the
#      methods it reports are exactly the rpcs of proto/kvserve/v1/kvserve.proto, grpc-proto's
#      health.proto and reflection.proto;
#   2. check health: "" and kvserve.v1.KvServe are SERVING, an unknown service is NOT_FOUND;
#   3. call Tokenize, then stream a greedy Generate whose echoed prompt ids equal Tokenize's, whose
#      token ids number max_tokens and whose last message says LENGTH with matching usage;
#   4. get INVALID_ARGUMENT naming the field for an out-of-range sampling.top_p.
# The server runs on 127.0.0.1:0 (the port is read from its start-up log); every wait is bounded.
# Exit codes: 0 pass, 1 failure, 77 skipped (no node/npm, or the registry is unreachable); ctest
# reports 77 as SKIPPED, never as passed.
#
#   tests/server/grpc_tooling/check_grpc_tooling.sh BUILD_DIR
#
# Without KVSERVE_BINARY the script uses BUILD_DIR/server/kvserve.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
[[ $# -ge 1 ]] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
build=$(cd "$1" && pwd)
server_binary=${KVSERVE_BINARY:-$build/server/kvserve}
grpc_proto=/usr/share/grpc-proto

fail() {
  echo "check_grpc_tooling: FAIL: $*" >&2
  exit 1
}

[[ -x "$server_binary" ]] || fail "$server_binary not built (set KVSERVE_BINARY to its path)"
"$root/tests/testing/npm_ci_pinned.sh" "$here" "$build/npm-grpc-tooling" check_grpc_tooling ||
  exit $?
buf="$build/npm-grpc-tooling/node_modules/.bin/buf"
[[ -x "$buf" ]] || fail "$buf missing after npm ci (@bufbuild/buf ships it per platform)"

out=$(mktemp -d "${TMPDIR:-/tmp}/kvserve-grpc-tooling.XXXXXX")
server_pid=
cleanup() {
  if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" || true; fi
  rm -rf "$out"
}
trap cleanup EXIT

"$server_binary" --listen=127.0.0.1:0 --metrics-address= --http-address= >"$out/server.log" 2>&1 &
server_pid=$!
port=
for _ in $(seq 300); do  # 30 s
  port=$(sed -n 's/.*kvserve listening on .* (port \([0-9]*\)).*/\1/p' "$out/server.log")
  [[ -n "$port" ]] && break
  kill -0 "$server_pid" 2>/dev/null || fail "the server exited at start: $(cat "$out/server.log")"
  sleep 0.1
done
[[ -n "$port" ]] || fail "no 'listening on' line within 30 s: $(cat "$out/server.log")"
url="http://127.0.0.1:$port"

# buf curl with a bound on the whole call; stdout and stderr are both kept (buf prints the status of
# a failed call on stderr).
call() {
  timeout 60 "$buf" curl --protocol grpc --http2-prior-knowledge --connect-timeout 10 "$@"
}

# 1. Describe everything reflection lists. The expected methods come from the .proto files, which
# buf never sees.
expected_methods() {
  local file package
  for file in "$root/proto/kvserve/v1/kvserve.proto" "$grpc_proto/grpc/health/v1/health.proto" \
    "$grpc_proto/grpc/reflection/v1alpha/reflection.proto"; do
    package=$(sed -n 's/^package \([a-z0-9.]*\);/\1/p' "$file")
    awk -v package="$package" '
      /^service [A-Za-z]+/ { service = $2 }
      /^ *rpc [A-Za-z]+/ { name = $2; sub(/\(.*/, "", name); print package "." service "/" name }
    ' "$file"
  done | sort
}
call --list-services "$url" >"$out/services" 2>&1 || fail "--list-services: $(cat "$out/services")"
call --list-methods "$url" >"$out/methods" 2>&1 || fail "--list-methods: $(cat "$out/methods")"
expected_methods >"$out/expected_methods"
sort "$out/methods" | diff -u "$out/expected_methods" - ||
  fail "--list-methods differs from the rpcs of the .proto files (- expected, + buf)"
sed 's|/.*||' "$out/expected_methods" | sort -u | diff -u - <(sort "$out/services") ||
  fail "--list-services differs from the services of the .proto files"

# 2. Health, described through reflection.
for service in "" kvserve.v1.KvServe; do
  answer=$(call -d "{\"service\": \"$service\"}" "$url/grpc.health.v1.Health/Check" 2>&1) ||
    fail "Health/Check \"$service\": $answer"
  [[ $(tr -d ' \n' <<<"$answer") == '{"status":"SERVING"}' ]] ||
    fail "Health/Check \"$service\" answered $answer, expected SERVING"
done
if answer=$(call -d '{"service": "no.such.Service"}' "$url/grpc.health.v1.Health/Check" 2>&1); then
  fail "Health/Check of an unknown service succeeded: $answer"
fi
grep -q '"code": *"not_found"' <<<"$answer" ||
  fail "Health/Check of an unknown service: expected NOT_FOUND, got $answer"

# 3. Tokenize, then a streamed greedy Generate of the same prompt.
prompt="Once upon a time"
max_tokens=8
call -d "{\"text\": \"$prompt\"}" "$url/kvserve.v1.KvServe/Tokenize" >"$out/tokenize" 2>&1 ||
  fail "Tokenize: $(cat "$out/tokenize")"
call -d "{\"prompt\": \"$prompt\", \"max_tokens\": $max_tokens, \"sampling\": {\"temperature\": 0},
          \"return_prompt_token_ids\": true}" \
  "$url/kvserve.v1.KvServe/Generate" >"$out/generate" 2>&1 || fail "Generate: $(cat "$out/generate")"
/usr/bin/python3 - "$out/tokenize" "$out/generate" "$max_tokens" <<'EOF' || fail "Generate's stream"
import json, sys
tokenize_path, generate_path, max_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3])
prompt_ids = json.load(open(tokenize_path))["tokenIds"]
# buf prints each streamed message as one JSON object; they follow each other in the file.
text, decoder, messages, pos = open(generate_path).read(), json.JSONDecoder(), [], 0
while pos < len(text):
    if text[pos].isspace():
        pos += 1
        continue
    message, pos = decoder.raw_decode(text, pos)
    messages.append(message)
def check(ok, what):
    if not ok:
        print(f"check_grpc_tooling: {what}; the stream was:\n{text}", file=sys.stderr)
        sys.exit(1)
check(len(messages) >= 2, "expected several streamed messages")
check(messages[0].get("requestId", "") != "", "the first message carries no requestId")
check(messages[0].get("promptTokenIds") == prompt_ids,
      f"promptTokenIds differ from Tokenize's {prompt_ids}")
generated = [i for m in messages for i in m.get("tokenIds", [])]
check(len(generated) == max_tokens, f"{len(generated)} token ids streamed, expected {max_tokens}")
check(all("finishReason" not in m for m in messages[:-1]), "a finishReason before the last message")
check(messages[-1].get("finishReason") == "FINISH_REASON_LENGTH", "the last message is not LENGTH")
check(messages[-1].get("usage") == {"promptTokens": len(prompt_ids), "completionTokens": max_tokens},
      "usage differs from the prompt and generated counts")
EOF

# 4. A client error comes back as INVALID_ARGUMENT naming the field.
if answer=$(call -d '{"prompt": "x", "sampling": {"top_p": 1.5}}' "$url/kvserve.v1.KvServe/Generate" 2>&1)
then
  fail "Generate with sampling.top_p 1.5 succeeded: $answer"
fi
grep -q '"code": *"invalid_argument"' <<<"$answer" && grep -q 'sampling.top_p' <<<"$answer" ||
  fail "Generate with sampling.top_p 1.5: expected INVALID_ARGUMENT naming sampling.top_p, got $answer"

echo "check_grpc_tooling: PASS (buf $("$buf" --version), server port $port)"
