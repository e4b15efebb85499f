// JsonReader: type-checked access to a parsed JSON document, with errors that name the file and
// the JSON path of the offending value, e.g. "tokenizer.json: model.merges[3]: expected a string".
//
// nlohmann::json throws on a wrong-typed access; JsonReader checks every type first, so no
// exception leaves the tokenizer loaders. ParseJsonFile is the one place that catches the parser's
// exception.
//
// A JsonReader borrows the document; the document must outlive it. Thread-compatible.
#ifndef KVSERVE_ENGINE_TEXT_JSON_READER_H_
#define KVSERVE_ENGINE_TEXT_JSON_READER_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace kvserve::engine {

// The largest JSON file of a model directory read (config.json, tokenizer.json, ...). Real ones are
// kilobytes, tokenizer.json tens of megabytes (a 256k vocabulary with its merges); the cap keeps a
// hostile or broken file from costing unbounded memory.
inline constexpr int64_t kMaxJsonFileBytes = int64_t{64} << 20;

// Reads and parses `path`, a regular file of at most kMaxJsonFileBytes (base/regular_file.h).
// NOT_FOUND when the file does not exist; INVALID_ARGUMENT naming `display_name` when it is not a
// regular file, too big, or not JSON.
absl::StatusOr<nlohmann::json> ParseJsonFile(const std::string& path,
                                             std::string_view display_name);

class JsonReader {
 public:
  // `file` prefixes every error message; `path` is this value's JSON path ("" for the root).
  JsonReader(const nlohmann::json& value, std::string file, std::string path = "")
      : value_(&value), file_(std::move(file)), path_(std::move(path)) {}

  const nlohmann::json& value() const { return *value_; }
  const std::string& path() const { return path_; }

  // INVALID_ARGUMENT "<file>: <path>: <what>".
  absl::Status Error(std::string_view what) const;

  bool is_null() const { return value_->is_null(); }
  bool is_string() const { return value_->is_string(); }
  bool is_array() const { return value_->is_array(); }
  bool is_object() const { return value_->is_object(); }

  // True iff this is an object with `key` present and not null.
  bool Has(std::string_view key) const;
  // The member `key`; a JSON null when absent (so optional members read as null).
  // REQUIRES: nothing; a non-object yields null members.
  JsonReader operator[](std::string_view key) const;
  // Element `i` of an array. REQUIRES: is_array() and i < size().
  JsonReader operator[](size_t i) const;
  // Number of elements of an array or members of an object; 0 otherwise.
  size_t size() const { return value_->is_structured() ? value_->size() : 0; }

  // Typed reads: an error naming this path unless the value has the type.
  absl::StatusOr<std::string> String() const;
  absl::StatusOr<bool> Bool() const;
  absl::StatusOr<int64_t> Int() const;
  absl::StatusOr<double> Number() const;
  absl::Status ExpectObject() const;
  absl::Status ExpectArray() const;

  // Optional members: `fallback` when absent or null, an error when present with another type.
  absl::StatusOr<std::string> StringOr(std::string_view key, std::string fallback) const;
  absl::StatusOr<bool> BoolOr(std::string_view key, bool fallback) const;

 private:
  std::string ChildPath(std::string_view key) const;

  const nlohmann::json* value_;
  std::string file_;
  std::string path_;
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_TEXT_JSON_READER_H_
