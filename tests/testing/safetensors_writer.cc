#include "tests/testing/safetensors_writer.h"

#include <string>

#include "base/logging.h"
#include "nlohmann/json.hpp"

namespace kvserve::engine {
namespace {

using Json = nlohmann::json;
constexpr char kMetadataKey[] = "__metadata__";
constexpr size_t kLengthPrefixBytes = 8;

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

}  // namespace

std::string SerializeSafetensors(const std::vector<TensorToWrite>& tensors,
                                 const std::map<std::string, std::string>& metadata) {
  Json header = Json::object();
  uint64_t offset = 0;
  for (const TensorToWrite& tensor : tensors) {
    KV_CHECK(tensor.name != kMetadataKey) << "tensor name '" << kMetadataKey << "' is reserved";
    KV_CHECK(!header.contains(tensor.name)) << "duplicate tensor name '" << tensor.name << "'";
    int64_t num_elements = 1;
    for (const int64_t dim : tensor.shape) {
      KV_CHECK(dim >= 0) << "tensor '" << tensor.name << "': negative dimension " << dim;
      KV_CHECK(!__builtin_mul_overflow(num_elements, dim, &num_elements))
          << "tensor '" << tensor.name << "': element count overflows int64";
    }
    const uint64_t needed_bytes = static_cast<uint64_t>(num_elements) * DTypeSize(tensor.dtype);
    KV_CHECK(tensor.bytes.size() == needed_bytes)
        << "tensor '" << tensor.name << "': " << tensor.bytes.size() << " bytes but shape "
        << ShapeString(tensor.shape) << " of " << DTypeName(tensor.dtype) << " needs "
        << needed_bytes;
    header[tensor.name] = {
        {"dtype", std::string(DTypeName(tensor.dtype))},
        {"shape", tensor.shape},
        {"data_offsets", {offset, offset + needed_bytes}},
    };
    offset += needed_bytes;
  }
  if (!metadata.empty()) header[std::string(kMetadataKey)] = metadata;

  std::string header_text;
  try {
    header_text = header.dump();
  } catch (const Json::exception& e) {
    // dump() throws only on strings that are not valid UTF-8.
    KV_CHECK(false) << "SerializeSafetensors: " << e.what();
  }
  // Pad so the data buffer starts 8-byte aligned in the file (and hence in a page-aligned mmap).
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  std::string out;
  out.reserve(kLengthPrefixBytes + header_text.size() + offset);
  const uint64_t header_size = header_text.size();
  for (size_t i = 0; i < kLengthPrefixBytes; ++i) {
    out.push_back(static_cast<char>((header_size >> (8 * i)) & 0xff));
  }
  out += header_text;
  for (const TensorToWrite& tensor : tensors) out += tensor.bytes;
  return out;
}

}  // namespace kvserve::engine
