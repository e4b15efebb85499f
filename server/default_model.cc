#include "server/default_model.h"

#include <filesystem>
#include <system_error>

namespace kvserve::server {

std::vector<std::string> DefaultModelSearchPath(const std::string& binary_path,
                                                const char* env_value) {
  std::vector<std::string> path;
  if (env_value != nullptr && env_value[0] != '\0') path.emplace_back(env_value);
  const std::filesystem::path bin_dir = std::filesystem::path(binary_path).parent_path();
  path.push_back(
      (bin_dir / ".." / "share" / "kvserve" / "models" / kDefaultModelDirName).lexically_normal());
  path.push_back((bin_dir / ".." / ".." / "models" / kDefaultModelDirName).lexically_normal());
  return path;
}

DefaultModelLookup FindDefaultModel(const std::string& binary_path, const char* env_value) {
  DefaultModelLookup lookup;
  lookup.searched = DefaultModelSearchPath(binary_path, env_value);
  for (const std::string& dir : lookup.searched) {
    std::error_code error;  // unreadable counts as absent: the lookup never fails start-up
    if (std::filesystem::is_regular_file(std::filesystem::path(dir) / "config.json", error)) {
      lookup.dir = dir;
      break;
    }
  }
  return lookup;
}

}  // namespace kvserve::server
