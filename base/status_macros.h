// Status propagation macros for absl::Status / absl::StatusOr.
//
// Every fallible function in kvserve returns absl::Status or absl::StatusOr<T>; these macros keep
// the happy path readable. They evaluate their argument exactly once.
#ifndef KVSERVE_BASE_STATUS_MACROS_H_
#define KVSERVE_BASE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define KV_STATUS_CONCAT_INNER_(a, b) a##b
#define KV_STATUS_CONCAT_(a, b) KV_STATUS_CONCAT_INNER_(a, b)

// Returns from the enclosing function with the status of `expr` when it is not OK.
#define KV_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::absl::Status kv_status_ = (expr);      \
    if (!kv_status_.ok()) return kv_status_; \
  } while (false)

// `KV_ASSIGN_OR_RETURN(auto x, MakeX());` declares/assigns `x` from an OK StatusOr, or returns its
// error status from the enclosing function.
#define KV_ASSIGN_OR_RETURN(lhs, expr) \
  KV_ASSIGN_OR_RETURN_IMPL_(KV_STATUS_CONCAT_(kv_statusor_, __LINE__), lhs, expr)

#define KV_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)     \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // KVSERVE_BASE_STATUS_MACROS_H_
