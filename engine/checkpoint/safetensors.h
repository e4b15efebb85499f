// Reader for the safetensors checkpoint format (the writer the tests use is
// tests/testing/safetensors_writer.h).
//
// File layout:
//
//   +----------------+----------------------------------+---------------------------------+
//   | u64 LE: N      | N bytes: UTF-8 JSON header       | data buffer                     |
//   |                | '{' ... '}' [trailing spaces]    | tensor bytes, row-major, LE     |
//   +----------------+----------------------------------+---------------------------------+
//   0                8                                  8 + N
//
// The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}, with
// offsets relative to the start of the data buffer, and may carry "__metadata__": {string: string}.
//
// SafetensorsFile validates the whole file up front, so every TensorView it hands out is known to
// lie inside the file and to hold exactly NumElements() * DTypeSize(dtype) bytes. Tensor data is
// not copied: views point into the file mapping (or the owned bytes for FromBytes).
//
// Every problem with the file's contents is reported as InvalidArgument, with a message that starts
// with the file's name and names the tensor and the offending values.
#ifndef KVSERVE_ENGINE_CHECKPOINT_SAFETENSORS_H_
#define KVSERVE_ENGINE_CHECKPOINT_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace kvserve::engine {

// Element types defined by the safetensors format. Multi-byte types are little-endian in the file.
enum class DType {
  kF32,
  kF16,
  kBF16,
  kF64,
  kI8,
  kI16,
  kI32,
  kI64,
  kU8,
  kU16,
  kU32,
  kU64,
  kBool,
  kF8E4M3,
  kF8E5M2,
};

// Bytes per element: 1, 2, 4 or 8.
size_t DTypeSize(DType dtype);
// The header spelling: "F32", "BF16", "BOOL", "F8_E4M3", ...
std::string_view DTypeName(DType dtype);
// Inverse of DTypeName (case-sensitive); nullopt for anything else.
std::optional<DType> DTypeFromName(std::string_view name);

// One tensor of a SafetensorsFile. Plain data; copying it does not copy the tensor bytes.
struct TensorView {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;  // Row-major; empty for a scalar.
  // Into the file mapping; valid while the owning SafetensorsFile lives. Not necessarily aligned
  // to the element size: read elements with memcpy.
  const std::byte* data;
  size_t num_bytes;

  // Product of `shape` (1 for a scalar, 0 if any dimension is 0).
  // REQUIRES: the product fits in int64_t (always true for views from SafetensorsFile). Checked.
  int64_t NumElements() const;
};

// A validated, read-only safetensors file. Immutable after Open/FromBytes, so concurrent reads from
// any number of threads are safe without synchronization.
class SafetensorsFile {
 public:
  // Largest header accepted, in bytes; bounds the memory a hostile file can make us spend on JSON.
  static constexpr uint64_t kMaxHeaderBytes = 100'000'000;

  // Maps `path` read-only (MAP_PRIVATE, PROT_READ) and validates it. The file must not be truncated
  // or rewritten in place while the returned object lives (reads would fault with SIGBUS).
  // I/O failures carry the errno's status code (e.g. NotFound); malformed contents InvalidArgument.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  // Validates and takes ownership of in-memory file contents (tests, tools, downloaded blobs).
  // `name_for_errors` prefixes every error message in place of a path.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> FromBytes(std::string bytes,
                                                                    std::string name_for_errors);

  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();  // Unmaps the file, invalidating every TensorView::data.

  // The tensor called `name`, or nullptr if there is none. The pointer lives as long as *this.
  const TensorView* Find(std::string_view name) const;
  // All tensors, sorted by data offset (ties, which only zero-byte tensors can have, by name).
  const std::vector<TensorView>& tensors() const { return tensors_; }
  // The "__metadata__" map; empty if the header has none.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // The path or name_for_errors given at creation.
  const std::string& name() const { return name_; }

 private:
  explicit SafetensorsFile(std::string name);

  // Validates `contents` (the whole file, owned by *this) and fills tensors_, index_, metadata_.
  absl::Status Parse(std::string_view contents);

  std::string name_;
  // Exactly one of these holds the file: the mapping (Open) or owned bytes (FromBytes).
  void* mapping_ = nullptr;
  size_t mapping_size_ = 0;
  std::string owned_bytes_;

  std::vector<TensorView> tensors_;
  std::map<std::string, size_t, std::less<>> index_;  // name -> position in tensors_.
  std::map<std::string, std::string> metadata_;
};

// Converts an F32, F16 or BF16 tensor to float32. Every such value is exactly representable, so the
// conversion is exact, including F16 subnormals, infinities and NaNs (NaN payloads are kept).
// Other dtypes return InvalidArgument naming the tensor and its dtype. `out.size()` must equal
// tensor.NumElements() and tensor.num_bytes must match shape and dtype; otherwise InvalidArgument.
absl::Status ConvertToFloat(const TensorView& tensor, absl::Span<float> out);

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_CHECKPOINT_SAFETENSORS_H_
