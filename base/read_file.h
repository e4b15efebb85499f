// Reading small files that come from flags (keys, certificates) without the ways a path can hurt:
// a FIFO that blocks open() forever, /dev/zero that never ends, a multi-gigabyte file.
//
// Thread-safety: a plain function; safe from any thread.
#ifndef KVSERVE_BASE_READ_FILE_H_
#define KVSERVE_BASE_READ_FILE_H_

#include <sys/stat.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace kvserve::base {

// The whole content of the regular file at `path` (symlinks followed). Errors: NOT_FOUND (no such
// file), PERMISSION_DENIED (cannot open), INVALID_ARGUMENT (not a regular file, or larger than
// `max_bytes`); messages start with `path` and say what is wrong. With `info`, stores the fstat()
// of the file read (the same open file, so a rename racing the read cannot mix two files' data).
absl::StatusOr<std::string> ReadRegularFile(const std::string& path, int64_t max_bytes,
                                            struct stat* info = nullptr);

}  // namespace kvserve::base

#endif  // KVSERVE_BASE_READ_FILE_H_
