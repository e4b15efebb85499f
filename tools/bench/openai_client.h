// A minimal blocking HTTP/1.1 client for kvserve-bench --protocol=openai and its /metrics scrapes:
// one TCP connection per request (Connection: close), JSON bodies, and a streaming reader for
// OpenAI's Server-Sent Events (`data: {...}` ... `data: [DONE]`) over chunked transfer encoding;
// HTTPS with a TlsClientContext (tools/tls_client.h). Loopback benchmarking needs no more, and
// owning the socket lets a call be cancelled from another thread (Cancel shuts it down), as a
// client hanging up does.
//
// Thread-safety: one OpenAiConnection per call, used by one thread; Cancel may be called from any
// thread while that thread reads.
#ifndef KVSERVE_TOOLS_BENCH_OPENAI_CLIENT_H_
#define KVSERVE_TOOLS_BENCH_OPENAI_CLIENT_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tools/tls_client.h"

namespace kvserve::bench {

struct HttpReply {
  int status = 0;
  std::string body;  // de-chunked
};

// The grpc::StatusCode (as an int) closest to an HTTP status, for reports that count errors by
// gRPC code: 400 INVALID_ARGUMENT, 404 NOT_FOUND, 429 RESOURCE_EXHAUSTED, 499 CANCELLED,
// 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED, other 4xx FAILED_PRECONDITION, else INTERNAL.
int GrpcCodeForHttpStatus(int status);

class OpenAiConnection {
 public:
  // `host_port`: HOST:PORT (IPv4 or a name resolving to one; [V6]:PORT). With `tls`, HTTPS,
  // verifying the server's certificate for HOST. A non-empty `api_key` is sent as
  // "Authorization: Bearer <key>".
  explicit OpenAiConnection(std::string host_port,
                            std::shared_ptr<const tools::TlsClientContext> tls = nullptr,
                            std::string api_key = "")
      : host_port_(std::move(host_port)), tls_(std::move(tls)), api_key_(std::move(api_key)) {}
  ~OpenAiConnection();

  // Sends GET `path` (empty `body`) or POST `path` with a JSON `body`, and reads the whole reply.
  // UNAVAILABLE when the connection fails; DEADLINE_EXCEEDED after `timeout_s` (0 = none) without
  // progress.
  absl::StatusOr<HttpReply> Exchange(absl::string_view path, absl::string_view body,
                                     double timeout_s);

  // Sends a POST and calls `on_event` with each SSE `data:` payload (the JSON text) as it arrives,
  // until `data: [DONE]` or the connection ends. A non-200 reply is returned whole, without events.
  absl::StatusOr<HttpReply> Stream(absl::string_view path, absl::string_view body, double timeout_s,
                                   const std::function<void(absl::string_view data)>& on_event);

  // Shuts the socket down: a blocked Exchange / Stream returns CANCELLED. Idempotent.
  void Cancel();

 private:
  absl::Status Open(double timeout_s);
  absl::Status SendAll(absl::string_view data);
  // Appends what arrives to `buffer`; 0 = EOF.
  absl::StatusOr<size_t> ReadSome(std::string* buffer);

  const std::string host_port_;
  const std::shared_ptr<const tools::TlsClientContext> tls_;  // null: plain HTTP
  const std::string api_key_;
  std::unique_ptr<tools::TlsStream> stream_;  // set by Open with tls_
  std::atomic<int> fd_{-1};
  std::atomic<bool> cancelled_{false};
};

}  // namespace kvserve::bench

#endif  // KVSERVE_TOOLS_BENCH_OPENAI_CLIENT_H_
