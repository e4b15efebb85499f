// FindOwnSocket: one of this process's open sockets, found by what it is connected to.
//
// cpp-httplib 0.11 gives a handler neither its connection's socket nor a way to ask whether the
// client is still there, so the HTTP server finds the socket among the process's descriptors by
// its TCP 4-tuple (server/http_server.cc); tests find the server's end of a connection the same
// way.
//
// Thread-safety: may be called from any thread. The descriptor returned is only as valid as its
// owner keeps it open: the caller must know that the owner does not close it meanwhile.
#ifndef KVSERVE_SERVER_PROCESS_SOCKETS_H_
#define KVSERVE_SERVER_PROCESS_SOCKETS_H_

#include "absl/functional/function_ref.h"

namespace kvserve::server {

// The first open socket descriptor (by /proc/self/fd) for which `matches(fd)` is true; -1 if none
// or if /proc/self/fd cannot be read.
int FindOwnSocket(absl::FunctionRef<bool(int fd)> matches);

}  // namespace kvserve::server

#endif  // KVSERVE_SERVER_PROCESS_SOCKETS_H_
