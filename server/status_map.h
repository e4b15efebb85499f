// The one mapping from absl::Status (engine, cache, base) to grpc::Status (the wire).
#ifndef KVSERVE_SERVER_STATUS_MAP_H_
#define KVSERVE_SERVER_STATUS_MAP_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace kvserve::server {

// Same code, same message (an empty message gets a generic one: DEADLINE_EXCEEDED from the engine,
// the request's deadline, says so). UNKNOWN and UNIMPLEMENTED are left to the gRPC library, so an
// engine error carrying either becomes INTERNAL.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace kvserve::server

#endif  // KVSERVE_SERVER_STATUS_MAP_H_
