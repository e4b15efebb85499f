// The one mapping from absl::Status (engine, cache, base) to grpc::Status (the wire).
#ifndef KVSERVE_SERVER_STATUS_MAP_H_
#define KVSERVE_SERVER_STATUS_MAP_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace kvserve::server {

// Same code, same message (an empty message gets a generic one: DEADLINE_EXCEEDED from the engine,
// the request's deadline, says so). UNKNOWN and UNIMPLEMENTED are left to the gRPC library, so an
// engine error carrying either becomes INTERNAL.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Longest client-supplied text a message quotes; longer text is cut (see QuoteClientText).
inline constexpr size_t kMaxQuotedBytes = 64;

// `text`, sent by a client, as a client-visible message or a log line may quote it: unchanged up
// to kMaxQuotedBytes, else its first bytes up to a UTF-8 character boundary and "... (N bytes)".
// Echoing a whole name would let a 10 kB name turn NOT_FOUND into RESOURCE_EXHAUSTED (the status
// message no longer fits gRPC's metadata limit) and fill logs.
std::string QuoteClientText(std::string_view text);

}  // namespace kvserve::server

#endif  // KVSERVE_SERVER_STATUS_MAP_H_
