#include "engine/text/hf_normalizer.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace kvserve::engine {
namespace {

absl::StatusOr<std::string> IcuNormalize(const icu::Normalizer2* form, std::string_view text) {
  UErrorCode status = U_ZERO_ERROR;
  // ASCII text is invariant under all four forms; skip ICU for it (most prompts).
  bool ascii = true;
  for (char c : text) ascii = ascii && static_cast<unsigned char>(c) < 0x80;
  if (ascii) return std::string(text);
  std::string out;
  icu::StringByteSink<std::string> sink(&out);
  form->normalizeUTF8(0, icu::StringPiece(text.data(), static_cast<int32_t>(text.size())), sink,
                      nullptr, status);
  if (U_FAILURE(status)) {
    return absl::InternalError(absl::StrCat("ICU normalization failed: ", u_errorName(status)));
  }
  return out;
}

void ReplaceLiteral(std::string_view text, std::string_view pattern, std::string_view content,
                    std::string* out) {
  if (pattern.empty()) {
    out->assign(text);
    return;
  }
  size_t pos = 0;
  while (true) {
    const size_t hit = text.find(pattern, pos);
    if (hit == std::string_view::npos) break;
    out->append(text.substr(pos, hit - pos));
    out->append(content);
    pos = hit + pattern.size();
  }
  out->append(text.substr(pos));
}

}  // namespace

absl::Status HfNormalizer::Add(const JsonReader& config, std::vector<Step>* steps) {
  if (config.is_null()) return absl::OkStatus();
  KV_ASSIGN_OR_RETURN(std::string type, config["type"].String());
  Step step;
  if (type == "Sequence") {
    const JsonReader list = config["normalizers"];
    KV_RETURN_IF_ERROR(list.ExpectArray());
    for (size_t i = 0; i < list.size(); ++i) KV_RETURN_IF_ERROR(Add(list[i], steps));
    return absl::OkStatus();
  } else if (type == "NFC") {
    step.kind = Step::Kind::kNfc;
  } else if (type == "NFD") {
    step.kind = Step::Kind::kNfd;
  } else if (type == "NFKC") {
    step.kind = Step::Kind::kNfkc;
  } else if (type == "NFKD") {
    step.kind = Step::Kind::kNfkd;
  } else if (type == "Prepend") {
    step.kind = Step::Kind::kPrepend;
    KV_ASSIGN_OR_RETURN(step.text, config["prepend"].String());
  } else if (type == "Replace") {
    step.kind = Step::Kind::kReplace;
    KV_ASSIGN_OR_RETURN(step.content, config["content"].String());
    KV_RETURN_IF_ERROR(ReadPattern(config["pattern"], &step.text, &step.regex));
  } else {
    return config["type"].Error(absl::StrCat("unsupported normalizer \"", type, "\""));
  }
  steps->push_back(std::move(step));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<HfNormalizer>> HfNormalizer::Create(const JsonReader& config) {
  auto normalizer = std::unique_ptr<HfNormalizer>(new HfNormalizer());
  KV_RETURN_IF_ERROR(Add(config, &normalizer->steps_));
  // Fail at load, not at the first request, if this ICU build lacks a form.
  UErrorCode status = U_ZERO_ERROR;
  icu::Normalizer2::getNFCInstance(status);
  icu::Normalizer2::getNFKCInstance(status);
  if (U_FAILURE(status)) {
    return config.Error(absl::StrCat("ICU normalization data unavailable: ", u_errorName(status)));
  }
  return normalizer;
}

absl::StatusOr<std::string> HfNormalizer::Normalize(std::string_view text) const {
  std::string current(text);
  std::string next;
  for (const Step& step : steps_) {
    UErrorCode status = U_ZERO_ERROR;
    switch (step.kind) {
      case Step::Kind::kNfc:
      case Step::Kind::kNfd:
      case Step::Kind::kNfkc:
      case Step::Kind::kNfkd: {
        const icu::Normalizer2* form =
            step.kind == Step::Kind::kNfc    ? icu::Normalizer2::getNFCInstance(status)
            : step.kind == Step::Kind::kNfd  ? icu::Normalizer2::getNFDInstance(status)
            : step.kind == Step::Kind::kNfkc ? icu::Normalizer2::getNFKCInstance(status)
                                             : icu::Normalizer2::getNFKDInstance(status);
        KV_ASSIGN_OR_RETURN(current, IcuNormalize(form, current));
        break;
      }
      case Step::Kind::kPrepend:
        // The crate prepends only to non-empty text.
        if (!current.empty()) current.insert(0, step.text);
        break;
      case Step::Kind::kReplace:
        next.clear();
        if (step.regex == nullptr) {
          ReplaceLiteral(current, step.text, step.content, &next);
        } else {
          std::vector<std::pair<size_t, size_t>> matches;
          KV_RETURN_IF_ERROR(step.regex->FindAll(current, &matches));
          size_t pos = 0;
          for (const auto& [begin, end] : matches) {
            next.append(current, pos, begin - pos);
            next.append(step.content);
            pos = end;
          }
          next.append(current, pos, std::string::npos);
        }
        current.swap(next);
        break;
    }
  }
  return current;
}

}  // namespace kvserve::engine
