#include "engine/checkpoint/safetensors.h"

#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/logging.h"
#include "base/regular_file.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"

namespace kvserve::engine {
namespace {

// Tensor bytes are handed out in place, so their little-endian layout must be the host's.
static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian and is used without byte swapping");

using Json = nlohmann::json;

constexpr char kMetadataKey[] = "__metadata__";
constexpr size_t kLengthPrefixBytes = 8;

// A valid header nests three deep (root object > entry object > shape array). The cap leaves room
// to spare while keeping a hostile "[[[[..." header from costing memory per nesting level.
constexpr int kMaxJsonDepth = 16;

constexpr std::array<DType, 15> kAllDTypes = {
    DType::kF32, DType::kF16, DType::kBF16, DType::kF64,    DType::kI8,
    DType::kI16, DType::kI32, DType::kI64,  DType::kU8,     DType::kU16,
    DType::kU32, DType::kU64, DType::kBool, DType::kF8E4M3, DType::kF8E5M2,
};

// This Abseil build's absl::string_view is its own type (not std::string_view), and StrCat
// accepts only that one.
absl::string_view ToAbsl(std::string_view text) {
  return absl::string_view(text.data(), text.size());
}

// Error messages quote JSON values from the file; a hostile file could make those huge.
std::string Snippet(const Json& value) {
  constexpr size_t kMaxChars = 64;
  std::string text = value.dump();
  if (text.size() > kMaxChars) {
    text.resize(kMaxChars);
    text += "...";
  }
  return text;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// First pass over the header. nlohmann's DOM parser keeps the last of duplicate keys without a word
// and grows with nesting depth; this handler rejects both, and captures the syntax error message
// without exceptions. Only after it accepts is the DOM built.
class HeaderChecker final : public Json::json_sax_t {
 public:
  bool null() override { return true; }
  bool boolean(bool /*val*/) override { return true; }
  bool number_integer(number_integer_t /*val*/) override { return true; }
  bool number_unsigned(number_unsigned_t /*val*/) override { return true; }
  bool number_float(number_float_t /*val*/, const string_t& /*s*/) override { return true; }
  bool string(string_t& /*val*/) override { return true; }
  bool binary(binary_t& /*val*/) override { return true; }

  bool start_object(size_t /*elements*/) override {
    if (!Enter()) return false;
    keys_.emplace_back();
    return true;
  }
  bool key(string_t& key) override {
    if (keys_.back().insert(key).second) return true;
    error_ = keys_.size() == 1 ? absl::StrCat("duplicate tensor name '", key, "' in header")
                               : absl::StrCat("duplicate key '", key, "' in a header object");
    return false;
  }
  bool end_object() override {
    keys_.pop_back();
    --depth_;
    return true;
  }
  bool start_array(size_t /*elements*/) override { return Enter(); }
  bool end_array() override {
    --depth_;
    return true;
  }

  bool parse_error(size_t /*position*/, const std::string& /*last_token*/,
                   const nlohmann::detail::exception& ex) override {
    error_ = absl::StrCat("header is not valid JSON: ", ex.what());
    return false;
  }

  // Why the checker stopped; meaningful only after sax_parse returned false.
  const std::string& error() const { return error_; }

 private:
  bool Enter() {
    if (++depth_ <= kMaxJsonDepth) return true;
    error_ = absl::StrCat("header nests deeper than ", kMaxJsonDepth, " levels");
    return false;
  }

  int depth_ = 0;
  std::vector<std::set<std::string>> keys_;  // Keys seen so far in each open object.
  std::string error_;
};

// A header entry after its own checks; the cross-entry layout checks need the raw offsets.
struct ParsedEntry {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

// Non-negative JSON integers parse as number_unsigned; negative ones as number_integer; anything
// with a fraction, an exponent or too many digits as number_float.
std::optional<uint64_t> AsNonNegativeInteger(const Json& value) {
  if (!value.is_number_unsigned()) return std::nullopt;
  return value.get<uint64_t>();
}

// Checks one "name": {...} entry on its own. `where` prefixes messages ("file: tensor 'x'").
absl::StatusOr<ParsedEntry> ParseEntry(const std::string& where, const std::string& name,
                                       const Json& entry, uint64_t data_size) {
  auto error = [&where](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", parts...));
  };
  if (!entry.is_object()) {
    return error("entry must be a JSON object, got ", Snippet(entry));
  }
  for (const auto& [key, value] : entry.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      return error("unknown key '", key, "' (expected dtype, shape, data_offsets)");
    }
  }
  ParsedEntry parsed;
  parsed.name = name;

  const auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end()) return error("missing 'dtype'");
  if (!dtype_it->is_string()) return error("'dtype' must be a string, got ", Snippet(*dtype_it));
  const std::string& dtype_name = dtype_it->get_ref<const std::string&>();
  const std::optional<DType> dtype = DTypeFromName(dtype_name);
  if (!dtype.has_value()) return error("unknown dtype '", dtype_name, "'");
  parsed.dtype = *dtype;

  const auto shape_it = entry.find("shape");
  if (shape_it == entry.end()) return error("missing 'shape'");
  if (!shape_it->is_array()) return error("'shape' must be an array, got ", Snippet(*shape_it));
  int64_t num_elements = 1;
  for (const Json& dim_json : *shape_it) {
    if (dim_json.is_number_integer() && !dim_json.is_number_unsigned()) {
      return error("shape ", Snippet(*shape_it), " has negative dimension ", Snippet(dim_json));
    }
    const std::optional<uint64_t> dim = AsNonNegativeInteger(dim_json);
    if (!dim.has_value()) {
      return error("shape ", Snippet(*shape_it), " has non-integer dimension ", Snippet(dim_json));
    }
    if (*dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return error("shape ", Snippet(*shape_it), " has dimension ", *dim, " beyond int64 range");
    }
    parsed.shape.push_back(static_cast<int64_t>(*dim));
    if (__builtin_mul_overflow(num_elements, parsed.shape.back(), &num_elements)) {
      return error("shape ", Snippet(*shape_it), " has more elements than int64 can count");
    }
  }
  uint64_t needed_bytes = 0;
  if (__builtin_mul_overflow(static_cast<uint64_t>(num_elements), DTypeSize(parsed.dtype),
                             &needed_bytes)) {
    return error("shape ", ShapeString(parsed.shape), " of ", dtype_name,
                 " needs more bytes than uint64 can count");
  }

  const auto offsets_it = entry.find("data_offsets");
  if (offsets_it == entry.end()) return error("missing 'data_offsets'");
  const Json& offsets = *offsets_it;
  std::optional<uint64_t> begin;
  std::optional<uint64_t> end;
  if (offsets.is_array() && offsets.size() == 2) {
    begin = AsNonNegativeInteger(offsets[0]);
    end = AsNonNegativeInteger(offsets[1]);
  }
  if (!begin.has_value() || !end.has_value()) {
    return error("data_offsets must be 2 non-negative integers [begin, end], got ",
                 Snippet(offsets));
  }
  parsed.begin = *begin;
  parsed.end = *end;
  if (parsed.begin > parsed.end) {
    return error("data_offsets [", parsed.begin, ", ", parsed.end, "] have begin > end");
  }
  const uint64_t held_bytes = parsed.end - parsed.begin;
  if (held_bytes != needed_bytes) {
    return error("data_offsets [", parsed.begin, ", ", parsed.end, "] hold ", held_bytes,
                 " bytes but shape ", ShapeString(parsed.shape), " of ", dtype_name, " needs ",
                 needed_bytes);
  }
  if (parsed.end > data_size) {
    return error("data_offsets [", parsed.begin, ", ", parsed.end, "] extend past the end of the ",
                 data_size, "-byte data buffer");
  }
  return parsed;
}

float HalfToFloat(uint16_t half) {
  const uint32_t sign = static_cast<uint32_t>(half & 0x8000u) << 16;
  const uint32_t exponent = (half >> 10) & 0x1fu;
  const uint32_t mantissa = half & 0x3ffu;
  if (exponent == 0x1f) {
    // Infinity or NaN; widening the mantissa keeps NaN payloads (and quietness) intact.
    return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  }
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, which float holds exactly as a normal number.
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign != 0 ? -magnitude : magnitude;
  }
  // Normal: rebias the exponent from 15 to 127.
  return std::bit_cast<float>(sign | ((exponent + (127 - 15)) << 23) | (mantissa << 13));
}

}  // namespace

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF64:
    case DType::kI64:
    case DType::kU64:
      return 8;
    case DType::kF32:
    case DType::kI32:
    case DType::kU32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
    case DType::kI16:
    case DType::kU16:
      return 2;
    case DType::kI8:
    case DType::kU8:
    case DType::kBool:
    case DType::kF8E4M3:
    case DType::kF8E5M2:
      return 1;
  }
  KV_CHECK(false) << "invalid DType " << static_cast<int>(dtype);
  return 0;
}

std::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
    case DType::kF64:
      return "F64";
    case DType::kI8:
      return "I8";
    case DType::kI16:
      return "I16";
    case DType::kI32:
      return "I32";
    case DType::kI64:
      return "I64";
    case DType::kU8:
      return "U8";
    case DType::kU16:
      return "U16";
    case DType::kU32:
      return "U32";
    case DType::kU64:
      return "U64";
    case DType::kBool:
      return "BOOL";
    case DType::kF8E4M3:
      return "F8_E4M3";
    case DType::kF8E5M2:
      return "F8_E5M2";
  }
  KV_CHECK(false) << "invalid DType " << static_cast<int>(dtype);
  return "";
}

std::optional<DType> DTypeFromName(std::string_view name) {
  for (const DType dtype : kAllDTypes) {
    if (DTypeName(dtype) == name) return dtype;
  }
  return std::nullopt;
}

int64_t TensorView::NumElements() const {
  int64_t num_elements = 1;
  for (const int64_t dim : shape) {
    KV_CHECK(!__builtin_mul_overflow(num_elements, dim, &num_elements))
        << "tensor '" << name << "': element count of shape " << ShapeString(shape)
        << " overflows int64";
  }
  return num_elements;
}

SafetensorsFile::SafetensorsFile(std::string name) : name_(std::move(name)) {}

SafetensorsFile::~SafetensorsFile() {
  if (mapping_ != nullptr) ::munmap(mapping_, mapping_size_);
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  KV_ASSIGN_OR_RETURN(base::RegularFile regular, base::RegularFile::Open(path));
  const int fd = regular.fd();
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile(path));
  const size_t size = static_cast<size_t>(regular.size());
  std::string_view contents;
  // mmap rejects a zero length; Parse reports the empty file as too short.
  if (size > 0) {
    void* mapping = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (mapping == MAP_FAILED) {
      const int mmap_errno = errno;
      return absl::ErrnoToStatus(mmap_errno, absl::StrCat(path, ": cannot mmap ", size, " bytes"));
    }
    file->mapping_ = mapping;
    file->mapping_size_ = size;
    contents = std::string_view(static_cast<const char*>(mapping), size);
  }
  KV_RETURN_IF_ERROR(file->Parse(contents));
  return file;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::FromBytes(
    std::string bytes, std::string name_for_errors) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile(std::move(name_for_errors)));
  // Views point into owned_bytes_, so parse only once the bytes have reached their final home.
  file->owned_bytes_ = std::move(bytes);
  KV_RETURN_IF_ERROR(file->Parse(file->owned_bytes_));
  return file;
}

absl::Status SafetensorsFile::Parse(std::string_view contents) {
  auto error = [this](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(name_, ": ", parts...));
  };
  if (contents.size() < kLengthPrefixBytes) {
    return error("file is ", contents.size(), " bytes, shorter than the ", kLengthPrefixBytes,
                 "-byte header length");
  }
  uint64_t header_size = 0;
  for (size_t i = 0; i < kLengthPrefixBytes; ++i) {
    header_size |= uint64_t{static_cast<uint8_t>(contents[i])} << (8 * i);
  }
  if (header_size > kMaxHeaderBytes) {
    return error("header length ", header_size, " exceeds the limit of ", kMaxHeaderBytes,
                 " bytes");
  }
  const uint64_t bytes_after_prefix = contents.size() - kLengthPrefixBytes;
  if (header_size > bytes_after_prefix) {
    return error("header length ", header_size, " exceeds the ", bytes_after_prefix,
                 " bytes that follow the length prefix");
  }
  const std::string_view header = contents.substr(kLengthPrefixBytes, header_size);
  const std::string_view data = contents.substr(kLengthPrefixBytes + header_size);

  HeaderChecker checker;
  if (!Json::sax_parse(header.begin(), header.end(), &checker)) return error(checker.error());
  const Json root = Json::parse(header.begin(), header.end(), /*cb=*/nullptr,
                                /*allow_exceptions=*/false);
  KV_CHECK(!root.is_discarded()) << name_ << ": header passed the checker but failed to parse";
  if (!root.is_object()) {
    return error("header is not a JSON object but ", root.type_name(), " ", Snippet(root));
  }
  // JSON allows leading whitespace (and nlohmann a byte-order mark); the format does not.
  if (header.front() != '{') return error("header does not start with '{'");

  std::vector<ParsedEntry> entries;
  entries.reserve(root.size());
  for (const auto& [key, value] : root.items()) {
    if (key == kMetadataKey) {
      if (!value.is_object()) {
        return error("'", kMetadataKey, "' must be an object of strings, got ", Snippet(value));
      }
      for (const auto& [meta_key, meta_value] : value.items()) {
        if (!meta_value.is_string()) {
          return error("'", kMetadataKey, "' value for '", meta_key, "' must be a string, got ",
                       Snippet(meta_value));
        }
        metadata_.emplace(meta_key, meta_value.get<std::string>());
      }
      continue;
    }
    KV_ASSIGN_OR_RETURN(ParsedEntry entry, ParseEntry(absl::StrCat(name_, ": tensor '", key, "'"),
                                                      key, value, data.size()));
    entries.push_back(std::move(entry));
  }

  // The ranges, in offset order, must tile the data buffer exactly: an overlap would alias two
  // tensors, and a hole or an uncovered tail is bytes the header does not account for (a sign of
  // truncation or a bad writer).
  std::sort(entries.begin(), entries.end(), [](const ParsedEntry& a, const ParsedEntry& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  uint64_t covered = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const ParsedEntry& entry = entries[i];
    if (entry.begin < covered) {
      // Sorted by begin, so the previous entry is the one that reaches past entry.begin.
      const ParsedEntry& previous = entries[i - 1];
      return error("tensor '", entry.name, "' data_offsets [", entry.begin, ", ", entry.end,
                   "] overlap tensor '", previous.name, "' data_offsets [", previous.begin, ", ",
                   previous.end, "]");
    }
    if (entry.begin > covered) {
      return error("data buffer bytes [", covered, ", ", entry.begin,
                   ") belong to no tensor (hole before tensor '", entry.name, "')");
    }
    covered = entry.end;
  }
  if (covered != data.size()) {
    return error("data buffer is ", data.size(), " bytes but tensors cover only the first ",
                 covered);
  }

  const std::byte* const data_base = reinterpret_cast<const std::byte*>(data.data());
  tensors_.reserve(entries.size());
  for (ParsedEntry& entry : entries) {
    index_.emplace(entry.name, tensors_.size());
    tensors_.push_back(TensorView{.name = std::move(entry.name),
                                  .dtype = entry.dtype,
                                  .shape = std::move(entry.shape),
                                  .data = data_base + entry.begin,
                                  .num_bytes = static_cast<size_t>(entry.end - entry.begin)});
  }
  return absl::OkStatus();
}

const TensorView* SafetensorsFile::Find(std::string_view name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

absl::Status ConvertToFloat(const TensorView& tensor, absl::Span<float> out) {
  if (tensor.dtype != DType::kF32 && tensor.dtype != DType::kF16 && tensor.dtype != DType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", tensor.name, "' has dtype ",
                                                   ToAbsl(DTypeName(tensor.dtype)),
                                                   "; only F32, F16 and BF16 convert to float"));
  }
  const int64_t num_elements = tensor.NumElements();
  if (num_elements < 0 || static_cast<uint64_t>(num_elements) != out.size()) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", tensor.name, "' has ", num_elements,
                                                   " elements but the output holds ", out.size()));
  }
  // Cannot overflow: out already holds num_elements floats of 4 bytes each.
  const size_t element_size = DTypeSize(tensor.dtype);
  const size_t needed_bytes = out.size() * element_size;
  if (tensor.num_bytes != needed_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", tensor.name, "' holds ", tensor.num_bytes, " bytes but shape ",
                     ShapeString(tensor.shape), " of ", ToAbsl(DTypeName(tensor.dtype)), " needs ",
                     needed_bytes));
  }
  if (tensor.dtype == DType::kF32) {
    if (needed_bytes > 0) std::memcpy(out.data(), tensor.data, needed_bytes);
    return absl::OkStatus();
  }
  for (size_t i = 0; i < out.size(); ++i) {
    uint16_t bits;  // The data buffer gives no alignment guarantee, hence memcpy.
    std::memcpy(&bits, tensor.data + i * element_size, sizeof(bits));
    // BF16 is the top half of an F32, so widening is a shift.
    out[i] = tensor.dtype == DType::kF16 ? HalfToFloat(bits)
                                         : std::bit_cast<float>(uint32_t{bits} << 16);
  }
  return absl::OkStatus();
}

}  // namespace kvserve::engine
