#include "engine/text/hf_decoder.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "engine/text/bpe_model.h"
#include "engine/text/unicode_util.h"
#include "engine/text/utf8_stream.h"

namespace kvserve::engine {
namespace {

using text_internal::DecodeUtf8;

std::string Lossy(std::string_view bytes) {
  Utf8StreamDecoder decoder;
  std::string text = decoder.Push(bytes);
  text += decoder.Flush();
  return text;
}

// The bytes a ByteLevel token stands for; a token with a character outside the alphabet (an
// added token such as "<|im start|>" with a space) stands for its own bytes, as in the crate.
void AppendByteLevelBytes(const std::string& token, std::string* out) {
  const ByteLevelAlphabet& alphabet = ByteLevelAlphabet::Get();
  const size_t begin = out->size();
  for (size_t i = 0; i < token.size();) {
    size_t len;
    const int byte = alphabet.Byte(DecodeUtf8(token, i, &len));
    if (byte < 0) {
      out->resize(begin);
      out->append(token);
      return;
    }
    out->push_back(static_cast<char>(byte));
    i += len;
  }
}

// The byte of a "<0xXX>" token, or -1.
int FallbackByte(const std::string& token) {
  if (token.size() != 6 || !token.starts_with("<0x") || token[5] != '>') return -1;
  int value = 0;
  for (int i = 3; i < 5; ++i) {
    const char c = token[i];
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      return -1;
    }
    value = value * 16 + digit;
  }
  return value;
}

std::string ReplaceAll(const std::string& text, const std::string& pattern,
                       const std::string& content) {
  if (pattern.empty()) return text;
  std::string out;
  size_t pos = 0;
  for (size_t hit = text.find(pattern); hit != std::string::npos; hit = text.find(pattern, pos)) {
    out.append(text, pos, hit - pos);
    out += content;
    pos = hit + pattern.size();
  }
  out.append(text, pos, std::string::npos);
  return out;
}

std::string Strip(const std::string& token, const std::string& content, int start, int stop) {
  size_t begin = 0;
  for (int i = 0; i < start && token.compare(begin, content.size(), content) == 0; ++i) {
    begin += content.size();
  }
  size_t end = token.size();
  for (int i = 0; i < stop && end >= begin + content.size() &&
                  token.compare(end - content.size(), content.size(), content) == 0;
       ++i) {
    end -= content.size();
  }
  return token.substr(begin, end - begin);
}

}  // namespace

absl::Status HfDecoder::Add(const JsonReader& config, std::vector<Step>* steps) {
  if (config.is_null()) return absl::OkStatus();
  KV_ASSIGN_OR_RETURN(std::string type, config["type"].String());
  Step step;
  if (type == "Sequence") {
    const JsonReader list = config["decoders"];
    KV_RETURN_IF_ERROR(list.ExpectArray());
    for (size_t i = 0; i < list.size(); ++i) KV_RETURN_IF_ERROR(Add(list[i], steps));
    return absl::OkStatus();
  } else if (type == "ByteLevel") {
    step.kind = Step::Kind::kByteLevel;
  } else if (type == "Metaspace") {
    step.kind = Step::Kind::kMetaspace;
    KV_ASSIGN_OR_RETURN(step.text, config.StringOr("replacement", "\xE2\x96\x81"));
    if (config.Has("prepend_scheme")) {
      KV_ASSIGN_OR_RETURN(std::string scheme, config["prepend_scheme"].String());
      if (scheme != "first" && scheme != "always" && scheme != "never") {
        return config["prepend_scheme"].Error(absl::StrCat("unsupported scheme \"", scheme, "\""));
      }
      step.drop_first = scheme != "never";
    } else {
      KV_ASSIGN_OR_RETURN(step.drop_first, config.BoolOr("add_prefix_space", true));
    }
  } else if (type == "ByteFallback") {
    step.kind = Step::Kind::kByteFallback;
  } else if (type == "Fuse") {
    step.kind = Step::Kind::kFuse;
  } else if (type == "Strip") {
    step.kind = Step::Kind::kStrip;
    KV_ASSIGN_OR_RETURN(step.text, config["content"].String());
    size_t len = 0;
    if (step.text.empty() || (DecodeUtf8(step.text, 0, &len), len != step.text.size())) {
      return config["content"].Error("expected one character");
    }
    KV_ASSIGN_OR_RETURN(int64_t start, config["start"].Int());
    KV_ASSIGN_OR_RETURN(int64_t stop, config["stop"].Int());
    if (start < 0 || stop < 0 || start > 1 << 20 || stop > 1 << 20) {
      return config.Error("start and stop must be small non-negative integers");
    }
    step.start = static_cast<int>(start);
    step.stop = static_cast<int>(stop);
  } else if (type == "Replace") {
    step.kind = Step::Kind::kReplace;
    KV_ASSIGN_OR_RETURN(step.content, config["content"].String());
    KV_RETURN_IF_ERROR(ReadPattern(config["pattern"], &step.text, &step.regex));
  } else {
    return config["type"].Error(absl::StrCat("unsupported decoder \"", type, "\""));
  }
  steps->push_back(std::move(step));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<HfDecoder>> HfDecoder::Create(const JsonReader& config) {
  auto decoder = std::unique_ptr<HfDecoder>(new HfDecoder());
  decoder->present_ = !config.is_null();
  KV_RETURN_IF_ERROR(Add(config, &decoder->steps_));
  return decoder;
}

std::string HfDecoder::DecodeTokens(std::vector<std::string> tokens) const {
  if (!present_) return absl::StrJoin(tokens, " ");
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Step::Kind::kByteLevel: {
        std::string bytes;
        for (const std::string& token : tokens) AppendByteLevelBytes(token, &bytes);
        tokens.assign(1, Lossy(bytes));
        break;
      }
      case Step::Kind::kMetaspace:
        for (size_t i = 0; i < tokens.size(); ++i) {
          tokens[i] = ReplaceAll(tokens[i], step.text, i == 0 && step.drop_first ? "" : " ");
        }
        break;
      case Step::Kind::kByteFallback: {
        std::vector<std::string> out;
        std::string pending;
        auto flush = [&] {
          if (pending.empty()) return;
          // A byte run that is not valid UTF-8 becomes one U+FFFD per byte (the crate's rule).
          if (IsValidUtf8(pending)) {
            out.push_back(pending);
          } else {
            for (size_t i = 0; i < pending.size(); ++i) out.emplace_back(kUtf8Replacement);
          }
          pending.clear();
        };
        for (std::string& token : tokens) {
          const int byte = FallbackByte(token);
          if (byte >= 0) {
            pending.push_back(static_cast<char>(byte));
          } else {
            flush();
            out.push_back(std::move(token));
          }
        }
        flush();
        tokens.swap(out);
        break;
      }
      case Step::Kind::kFuse:
        tokens.assign(1, absl::StrJoin(tokens, ""));
        break;
      case Step::Kind::kStrip:
        for (std::string& token : tokens) token = Strip(token, step.text, step.start, step.stop);
        break;
      case Step::Kind::kReplace:
        for (std::string& token : tokens) {
          if (step.regex == nullptr) {
            token = ReplaceAll(token, step.text, step.content);
          } else {
            std::vector<std::pair<size_t, size_t>> matches;
            if (!step.regex->FindAll(token, &matches).ok()) continue;
            std::string out;
            size_t pos = 0;
            for (const auto& [begin, end] : matches) {
              out.append(token, pos, begin - pos);
              out += step.content;
              pos = end;
            }
            out.append(token, pos, std::string::npos);
            token = std::move(out);
          }
        }
        break;
    }
  }
  return absl::StrJoin(tokens, "");
}

std::string HfDecoder::DecodePiece(std::string token) const {
  if (!present_) return absl::StrCat(" ", token);
  bool fused = false;
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Step::Kind::kByteLevel: {
        std::string bytes;
        AppendByteLevelBytes(token, &bytes);
        token = std::move(bytes);
        fused = true;
        break;
      }
      case Step::Kind::kMetaspace:
        token = ReplaceAll(token, step.text, " ");
        break;
      case Step::Kind::kByteFallback: {
        const int byte = FallbackByte(token);
        if (byte >= 0) token.assign(1, static_cast<char>(byte));
        break;
      }
      case Step::Kind::kFuse:
        fused = true;
        break;
      case Step::Kind::kStrip:
        // After fusing, Strip trims the ends of the whole text, not of this piece.
        if (!fused) token = Strip(token, step.text, step.start, step.stop);
        break;
      case Step::Kind::kReplace:
        if (step.regex == nullptr) {
          token = ReplaceAll(token, step.text, step.content);
        } else {
          std::vector<std::pair<size_t, size_t>> matches;
          if (!IsValidUtf8(token) || !step.regex->FindAll(token, &matches).ok()) break;
          std::string out;
          size_t pos = 0;
          for (const auto& [begin, end] : matches) {
            out.append(token, pos, begin - pos);
            out += step.content;
            pos = end;
          }
          out.append(token, pos, std::string::npos);
          token = std::move(out);
        }
        break;
    }
  }
  return token;
}

}  // namespace kvserve::engine
