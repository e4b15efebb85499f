// libprotobuf's log lines through base/logging, rate-limited.
//
// libprotobuf writes straight to stderr, whatever --log-level says, and a client can make it write
// one ERROR line per call: "String field '...' contains invalid UTF-8 data when parsing a protocol
// buffer" for every request carrying invalid UTF-8 in a string field. Routed here, the lines obey
// the log level and are thinned out: of each severity's lines, the 1st, 2nd, 4th, 8th, ... are
// written, each with its running count, so a flood costs log2(N) lines and no line is silently
// lost from the count.
//
// Thread-safety: RouteProtobufLogging is a start-up call (libprotobuf's SetLogHandler is not
// thread-safe); the handler it installs may run on any thread.
#ifndef KVSERVE_SERVER_PROTOBUF_LOGGING_H_
#define KVSERVE_SERVER_PROTOBUF_LOGGING_H_

#include <cstdint>

namespace kvserve::server {

// Installs the handler. Idempotent.
void RouteProtobufLogging();

// Whether the n-th (1-based) line of a severity is written: n is a power of two.
bool IsLoggedOccurrence(int64_t n);

}  // namespace kvserve::server

#endif  // KVSERVE_SERVER_PROTOBUF_LOGGING_H_
