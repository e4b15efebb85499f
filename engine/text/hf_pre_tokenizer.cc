#include "engine/text/hf_pre_tokenizer.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "engine/text/bpe_model.h"
#include "engine/text/unicode_util.h"

namespace kvserve::engine {
namespace {

using text_internal::DecodeUtf8;

// GPT-2's pre-tokenization pattern, used by ByteLevel with use_regex (the crate's byte_level.rs).
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

}  // namespace

absl::Status HfPreTokenizer::Add(const JsonReader& config, std::vector<Step>* steps) {
  if (config.is_null()) return absl::OkStatus();
  // Declared first: GCC 12 reports a false maybe-uninitialized on the macro's declaration form.
  std::string type;
  KV_ASSIGN_OR_RETURN(type, config["type"].String());
  Step step;
  if (type == "Sequence") {
    const JsonReader list = config["pretokenizers"];
    KV_RETURN_IF_ERROR(list.ExpectArray());
    for (size_t i = 0; i < list.size(); ++i) KV_RETURN_IF_ERROR(Add(list[i], steps));
    return absl::OkStatus();
  } else if (type == "ByteLevel") {
    step.kind = Step::Kind::kByteLevel;
    KV_ASSIGN_OR_RETURN(step.flag, config.BoolOr("add_prefix_space", true));
    KV_ASSIGN_OR_RETURN(bool use_regex, config.BoolOr("use_regex", true));
    if (use_regex) {
      auto regex = Regex::Create(kGpt2Pattern);
      if (!regex.ok()) return regex.status();
      step.regex = *std::move(regex);
    }
  } else if (type == "Split") {
    step.kind = Step::Kind::kSplit;
    KV_RETURN_IF_ERROR(ReadPattern(config["pattern"], &step.literal, &step.regex));
    if (step.regex == nullptr && step.literal.empty()) {
      return config["pattern"]["String"].Error("empty pattern");
    }
    KV_ASSIGN_OR_RETURN(std::string behavior, config["behavior"].String());
    if (behavior == "Removed") {
      step.behavior = Behavior::kRemoved;
    } else if (behavior == "Isolated") {
      step.behavior = Behavior::kIsolated;
    } else if (behavior == "MergedWithPrevious") {
      step.behavior = Behavior::kMergedWithPrevious;
    } else if (behavior == "MergedWithNext") {
      step.behavior = Behavior::kMergedWithNext;
    } else if (behavior == "Contiguous") {
      step.behavior = Behavior::kContiguous;
    } else {
      return config["behavior"].Error(absl::StrCat("unsupported behavior \"", behavior, "\""));
    }
    KV_ASSIGN_OR_RETURN(step.invert, config.BoolOr("invert", false));
  } else if (type == "Digits") {
    step.kind = Step::Kind::kDigits;
    KV_ASSIGN_OR_RETURN(step.flag, config.BoolOr("individual_digits", false));
  } else if (type == "Metaspace") {
    step.kind = Step::Kind::kMetaspace;
    KV_ASSIGN_OR_RETURN(step.literal, config.StringOr("replacement", "\xE2\x96\x81"));
    size_t len = 0;
    if (step.literal.empty() || (DecodeUtf8(step.literal, 0, &len), len != step.literal.size())) {
      return config["replacement"].Error("expected one character");
    }
    KV_ASSIGN_OR_RETURN(step.flag, config.BoolOr("split", true));
    if (config.Has("prepend_scheme")) {
      KV_ASSIGN_OR_RETURN(std::string scheme, config["prepend_scheme"].String());
      if (scheme == "first") {
        step.prepend = Step::Prepend::kFirst;
      } else if (scheme == "always") {
        step.prepend = Step::Prepend::kAlways;
      } else if (scheme == "never") {
        step.prepend = Step::Prepend::kNever;
      } else {
        return config["prepend_scheme"].Error(absl::StrCat("unsupported scheme \"", scheme, "\""));
      }
    } else {
      KV_ASSIGN_OR_RETURN(bool add_prefix_space, config.BoolOr("add_prefix_space", true));
      step.prepend = add_prefix_space ? Step::Prepend::kAlways : Step::Prepend::kNever;
    }
  } else {
    return config["type"].Error(absl::StrCat("unsupported pre-tokenizer \"", type, "\""));
  }
  steps->push_back(std::move(step));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<HfPreTokenizer>> HfPreTokenizer::Create(const JsonReader& config) {
  auto pre_tokenizer = std::unique_ptr<HfPreTokenizer>(new HfPreTokenizer());
  KV_RETURN_IF_ERROR(Add(config, &pre_tokenizer->steps_));
  return pre_tokenizer;
}

// The crate's NormalizedString::split: the text becomes alternating (range, is_match) runs, which
// `behavior` then keeps, drops or glues together; empty pieces vanish.
void HfPreTokenizer::SplitByMatches(const PreToken& piece, const Matches& matches,
                                    Behavior behavior, bool invert, std::vector<PreToken>* out) {
  struct Run {
    size_t begin, end;
    bool is_match;
  };
  std::vector<Run> runs;
  const size_t size = piece.text.size();
  size_t prev = 0;
  for (const auto& [begin, end] : matches) {
    if (prev != begin) runs.push_back({prev, begin, invert});
    runs.push_back({begin, end, !invert});
    prev = end;
  }
  if (prev != size) runs.push_back({prev, size, invert});

  std::vector<Run> kept;
  switch (behavior) {
    case Behavior::kIsolated:
      kept = runs;
      break;
    case Behavior::kRemoved:
      for (const Run& r : runs) {
        if (!r.is_match) kept.push_back(r);
      }
      break;
    case Behavior::kContiguous: {
      bool previous_match = false;
      for (const Run& r : runs) {
        if (r.is_match == previous_match && !kept.empty()) {
          kept.back().end = r.end;
        } else {
          kept.push_back(r);
        }
        previous_match = r.is_match;
      }
      break;
    }
    case Behavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const Run& r : runs) {
        if (r.is_match && !previous_match && !kept.empty()) {
          kept.back().end = r.end;
        } else {
          kept.push_back(r);
        }
        previous_match = r.is_match;
      }
      break;
    }
    case Behavior::kMergedWithNext: {
      bool previous_match = false;
      for (auto it = runs.rbegin(); it != runs.rend(); ++it) {
        if (it->is_match && !previous_match && !kept.empty()) {
          kept.back().begin = it->begin;
        } else {
          kept.push_back(*it);
        }
        previous_match = it->is_match;
      }
      std::reverse(kept.begin(), kept.end());
      break;
    }
  }
  for (const Run& r : kept) {
    if (r.end == r.begin) continue;
    out->push_back({piece.text.substr(r.begin, r.end - r.begin), piece.byte_level,
                    piece.at_start && r.begin == 0});
  }
}

absl::Status HfPreTokenizer::ApplyStep(const Step& step, const PreToken& piece,
                                       std::deque<std::string>* arena,
                                       std::vector<PreToken>* out) const {
  PreToken current = piece;
  if (current.byte_level) {
    // A step after ByteLevel sees the mapped characters, as in the crate.
    arena->emplace_back();
    ByteLevelAlphabet::Get().Map(current.text, &arena->back());
    current.text = arena->back();
    current.byte_level = false;
  }
  Matches matches;
  switch (step.kind) {
    case Step::Kind::kSplit: {
      if (step.regex != nullptr) {
        KV_RETURN_IF_ERROR(step.regex->FindAll(current.text, &matches));
      } else {
        for (size_t pos = current.text.find(step.literal); pos != std::string_view::npos;
             pos = current.text.find(step.literal, pos + step.literal.size())) {
          matches.emplace_back(pos, pos + step.literal.size());
        }
      }
      SplitByMatches(current, matches, step.behavior, step.invert, out);
      return absl::OkStatus();
    }
    case Step::Kind::kDigits: {
      for (size_t i = 0; i < current.text.size();) {
        size_t len;
        const uint32_t c = DecodeUtf8(current.text, i, &len);
        if (text_internal::IsNumeric(c)) matches.emplace_back(i, i + len);
        i += len;
      }
      SplitByMatches(current, matches, step.flag ? Behavior::kIsolated : Behavior::kContiguous,
                     false, out);
      return absl::OkStatus();
    }
    case Step::Kind::kByteLevel: {
      if (step.flag && !current.text.starts_with(' ')) {
        arena->push_back(absl::StrCat(" ", std::string(current.text)));
        current.text = arena->back();
      }
      const size_t first = out->size();
      if (step.regex != nullptr) {
        KV_RETURN_IF_ERROR(step.regex->FindAll(current.text, &matches));
        SplitByMatches(current, matches, Behavior::kIsolated, false, out);
      } else if (!current.text.empty()) {
        out->push_back(current);
      }
      for (size_t i = first; i < out->size(); ++i) (*out)[i].byte_level = true;
      return absl::OkStatus();
    }
    case Step::Kind::kMetaspace: {
      const std::string& rep = step.literal;
      std::string replaced;
      bool prepend = false;
      if (step.prepend == Step::Prepend::kAlways) prepend = true;
      if (step.prepend == Step::Prepend::kFirst) prepend = current.at_start;
      for (char c : current.text) {
        if (c == ' ') {
          replaced += rep;
        } else {
          replaced.push_back(c);
        }
      }
      if (prepend && !std::string_view(replaced).starts_with(rep)) replaced.insert(0, rep);
      arena->push_back(std::move(replaced));
      current.text = arena->back();
      if (!step.flag) {
        if (!current.text.empty()) out->push_back(current);
        return absl::OkStatus();
      }
      for (size_t pos = current.text.find(rep); pos != std::string_view::npos;
           pos = current.text.find(rep, pos + rep.size())) {
        matches.emplace_back(pos, pos + rep.size());
      }
      SplitByMatches(current, matches, Behavior::kMergedWithNext, false, out);
      return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

absl::Status HfPreTokenizer::Split(std::vector<PreToken>* pieces,
                                   std::deque<std::string>* arena) const {
  std::vector<PreToken> next;
  for (const Step& step : steps_) {
    next.clear();
    for (const PreToken& piece : *pieces) KV_RETURN_IF_ERROR(ApplyStep(step, piece, arena, &next));
    pieces->swap(next);
  }
  return absl::OkStatus();
}

}  // namespace kvserve::engine
