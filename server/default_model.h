// The default-model lookup: what kvserve serves when started with no --model.
//
// A trained default model ships as a Hugging Face directory named kDefaultModelDirName, installed
// beside the binary. The binary alone must still start: when no candidate directory holds a
// config.json, kvserve serves the embedded random-weight model (engine/model/model_loader.h) and
// says so, naming every path it searched.
//
// Thread-safety: plain functions of their arguments and the file system.
#ifndef KVSERVE_SERVER_DEFAULT_MODEL_H_
#define KVSERVE_SERVER_DEFAULT_MODEL_H_

#include <optional>
#include <string>
#include <vector>

namespace kvserve::server {

// The one name of the default model's directory (a real directory or a symlink to one of the
// shipped models, e.g. models/default -> models/<name>).
inline constexpr char kDefaultModelDirName[] = "default";

// The environment variable that names a default model directory ahead of the built-in places.
inline constexpr char kDefaultModelEnv[] = "KVSERVE_DEFAULT_MODEL";

// The candidate directories, in search order, for the binary at `binary_path` (absolute):
//   1. `env_value` when set and non-empty ($KVSERVE_DEFAULT_MODEL);
//   2. <binary dir>/../share/kvserve/models/default     (installed: /usr/local/bin/kvserve,
//                                                        the container image);
//   3. <binary dir>/../../models/default                 (the build tree: build/server/kvserve
//                                                        -> <repository>/models/default).
std::vector<std::string> DefaultModelSearchPath(const std::string& binary_path,
                                                const char* env_value);

struct DefaultModelLookup {
  std::optional<std::string> dir;     // the first candidate holding a config.json, if any
  std::vector<std::string> searched;  // every candidate, in order
};
// Looks through DefaultModelSearchPath(binary_path, env_value).
DefaultModelLookup FindDefaultModel(const std::string& binary_path, const char* env_value);

}  // namespace kvserve::server

#endif  // KVSERVE_SERVER_DEFAULT_MODEL_H_
