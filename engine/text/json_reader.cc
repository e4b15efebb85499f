#include "engine/text/json_reader.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "base/regular_file.h"

namespace kvserve::engine {
namespace {

const nlohmann::json& NullJson() {
  static const nlohmann::json* const kNull = new nlohmann::json(nullptr);
  return *kNull;
}

std::string TypeName(const nlohmann::json& j) { return j.type_name(); }

}  // namespace

absl::StatusOr<nlohmann::json> ParseJsonFile(const std::string& path,
                                             std::string_view display_name) {
  absl::StatusOr<std::string> text = base::ReadRegularFile(path, kMaxJsonFileBytes, display_name);
  if (!text.ok()) return text.status();
  // The parser reports malformed input by exception; allow_exceptions=false would lose the
  // position, so catch it here, at the file boundary.
  try {
    return nlohmann::json::parse(*text);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(display_name), ": not valid JSON: ", e.what()));
  }
}

absl::Status JsonReader::Error(std::string_view what) const {
  return absl::InvalidArgumentError(
      absl::StrCat(file_, ": ", path_.empty() ? "(root)" : path_, ": ", std::string(what)));
}

std::string JsonReader::ChildPath(std::string_view key) const {
  return path_.empty() ? std::string(key) : absl::StrCat(path_, ".", std::string(key));
}

bool JsonReader::Has(std::string_view key) const {
  if (!value_->is_object()) return false;
  auto it = value_->find(key);
  return it != value_->end() && !it->is_null();
}

JsonReader JsonReader::operator[](std::string_view key) const {
  if (value_->is_object()) {
    auto it = value_->find(key);
    if (it != value_->end()) return JsonReader(*it, file_, ChildPath(key));
  }
  return JsonReader(NullJson(), file_, ChildPath(key));
}

JsonReader JsonReader::operator[](size_t i) const {
  return JsonReader((*value_)[i], file_, absl::StrCat(path_, "[", i, "]"));
}

absl::StatusOr<std::string> JsonReader::String() const {
  if (!value_->is_string())
    return Error(absl::StrCat("expected a string, got ", TypeName(*value_)));
  return value_->get_ref<const std::string&>();
}

absl::StatusOr<bool> JsonReader::Bool() const {
  if (!value_->is_boolean()) {
    return Error(absl::StrCat("expected true or false, got ", TypeName(*value_)));
  }
  return value_->get<bool>();
}

absl::StatusOr<int64_t> JsonReader::Int() const {
  if (value_->is_number_unsigned()) {
    // Above INT64_MAX get<int64_t>() would wrap to a negative number.
    if (value_->get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX)) return value_->get<int64_t>();
  } else if (value_->is_number_integer()) {
    return value_->get<int64_t>();
  } else if (value_->is_number_float()) {
    // 2^63 is the first double outside int64; casting it (or NaN) would be undefined behaviour.
    const double d = value_->get<double>();
    if (d >= -0x1p63 && d < 0x1p63 && d == std::trunc(d)) return static_cast<int64_t>(d);
  }
  // error_handler replace: dump() would otherwise throw on a string that is not UTF-8.
  return Error(
      absl::StrCat("expected an integer, got ",
                   value_->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
}

absl::StatusOr<double> JsonReader::Number() const {
  if (!value_->is_number())
    return Error(absl::StrCat("expected a number, got ", TypeName(*value_)));
  return value_->get<double>();
}

absl::Status JsonReader::ExpectObject() const {
  if (!value_->is_object())
    return Error(absl::StrCat("expected an object, got ", TypeName(*value_)));
  return absl::OkStatus();
}

absl::Status JsonReader::ExpectArray() const {
  if (!value_->is_array()) return Error(absl::StrCat("expected an array, got ", TypeName(*value_)));
  return absl::OkStatus();
}

absl::StatusOr<std::string> JsonReader::StringOr(std::string_view key, std::string fallback) const {
  if (!Has(key)) return fallback;
  return (*this)[key].String();
}

absl::StatusOr<bool> JsonReader::BoolOr(std::string_view key, bool fallback) const {
  if (!Has(key)) return fallback;
  return (*this)[key].Bool();
}

}  // namespace kvserve::engine
