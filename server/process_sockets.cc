#include "server/process_sockets.h"

#include <dirent.h>
#include <sys/stat.h>

#include "absl/strings/numbers.h"

namespace kvserve::server {

int FindOwnSocket(absl::FunctionRef<bool(int fd)> matches) {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int found = -1;
  while (dirent* entry = readdir(dir)) {
    int fd;
    if (!absl::SimpleAtoi(entry->d_name, &fd) || fd == dirfd(dir)) continue;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    if (matches(fd)) {
      found = fd;
      break;
    }
  }
  closedir(dir);
  return found;
}

}  // namespace kvserve::server
