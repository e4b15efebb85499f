// Opening and reading files that name a model's configuration and weights, where the path comes
// from an operator and the contents from whoever published the model directory.
//
// Only regular files are accepted (a symlink is followed to its target): a FIFO would block the
// reader forever and a device such as /dev/zero never ends. The open itself cannot block
// (O_NONBLOCK; it is cleared again for reads, which on regular files never block anyway).
// ReadRegularFile bounds the bytes read, so a file that grows while being read cannot exceed the
// cap either.
//
// Thread-safety: free functions and a move-only handle; no shared state.
#ifndef KVSERVE_BASE_REGULAR_FILE_H_
#define KVSERVE_BASE_REGULAR_FILE_H_

#include <sys/stat.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kvserve::base {

// An open, read-only regular file. Closes its descriptor on destruction.
class RegularFile {
 public:
  // NOT_FOUND (and the other errno codes) when the path cannot be opened; INVALID_ARGUMENT
  // "<name>: not a regular file (a FIFO)" for anything but a regular file. Messages start with
  // `name_for_errors`, or `path` when it is empty.
  static absl::StatusOr<RegularFile> Open(const std::string& path,
                                          std::string_view name_for_errors = {});

  RegularFile(RegularFile&& other) noexcept;
  RegularFile& operator=(RegularFile&& other) noexcept;
  RegularFile(const RegularFile&) = delete;
  RegularFile& operator=(const RegularFile&) = delete;
  ~RegularFile();

  int fd() const { return fd_; }
  // The size fstat reported at Open.
  int64_t size() const { return size_; }

 private:
  RegularFile(int fd, int64_t size) : fd_(fd), size_(size) {}

  int fd_ = -1;
  int64_t size_ = 0;
};

// The whole contents of the regular file `path`. INVALID_ARGUMENT when it holds more than
// `max_bytes` bytes; otherwise as RegularFile::Open (messages likewise start with the name). With
// `info`, stores the fstat() of the file read (the same open file, so a rename racing the read
// cannot pair one file's identity with another's data; the API keys file's reload uses it).
absl::StatusOr<std::string> ReadRegularFile(const std::string& path, int64_t max_bytes,
                                            std::string_view name_for_errors = {},
                                            struct stat* info = nullptr);

}  // namespace kvserve::base

#endif  // KVSERVE_BASE_REGULAR_FILE_H_
