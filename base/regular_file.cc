#include "base/regular_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"

namespace kvserve::base {
namespace {

const char* FileKind(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a plain file";
}

}  // namespace

absl::StatusOr<RegularFile> RegularFile::Open(const std::string& path,
                                              std::string_view name_for_errors) {
  const std::string name = name_for_errors.empty() ? path : std::string(name_for_errors);
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    const int open_errno = errno;
    return absl::ErrnoToStatus(open_errno, absl::StrCat(name, ": cannot open"));
  }
  RegularFile file(fd, 0);
  struct stat info;
  if (::fstat(fd, &info) != 0) {
    const int stat_errno = errno;
    return absl::ErrnoToStatus(stat_errno, absl::StrCat(name, ": cannot stat"));
  }
  if (!S_ISREG(info.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": not a regular file (", FileKind(info.st_mode), ")"));
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  file.size_ = static_cast<int64_t>(info.st_size);
  return file;
}

RegularFile::RegularFile(RegularFile&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), size_(other.size_) {}

RegularFile& RegularFile::operator=(RegularFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    size_ = other.size_;
  }
  return *this;
}

RegularFile::~RegularFile() {
  if (fd_ >= 0) ::close(fd_);
}

absl::StatusOr<std::string> ReadRegularFile(const std::string& path, int64_t max_bytes,
                                            std::string_view name_for_errors, struct stat* info) {
  const std::string name = name_for_errors.empty() ? path : std::string(name_for_errors);
  absl::StatusOr<RegularFile> file = RegularFile::Open(path, name);
  if (!file.ok()) return file.status();
  if (info != nullptr && ::fstat(file->fd(), info) != 0) {
    const int stat_errno = errno;
    return absl::ErrnoToStatus(stat_errno, absl::StrCat(name, ": cannot stat"));
  }
  auto too_big = [&](int64_t bytes, const char* at_least) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", at_least, bytes,
                                                   " bytes, more than the ", max_bytes,
                                                   " bytes allowed for this file"));
  };
  if (file->size() > max_bytes) return too_big(file->size(), "");
  std::string contents(static_cast<size_t>(file->size()), '\0');
  size_t used = 0;
  // Reads until EOF, not just st_size bytes: the file may have changed since fstat. One byte past
  // the cap is enough to know it is too big.
  while (true) {
    if (used == contents.size()) {
      if (static_cast<int64_t>(used) > max_bytes) return too_big(max_bytes + 1, "at least ");
      contents.resize(
          std::min<size_t>(static_cast<size_t>(max_bytes) + 1, std::max<size_t>(4096, used * 2)));
    }
    const ssize_t n = ::read(file->fd(), contents.data() + used, contents.size() - used);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int read_errno = errno;
      return absl::ErrnoToStatus(read_errno, absl::StrCat(name, ": cannot read"));
    }
    if (n == 0) break;
    used += static_cast<size_t>(n);
  }
  if (static_cast<int64_t>(used) > max_bytes) return too_big(max_bytes + 1, "at least ");
  contents.resize(used);
  return contents;
}

}  // namespace kvserve::base
