#include "engine/text/hf_tokenizer.h"

#include <unicode/utf8.h>

#include <algorithm>
#include <deque>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "engine/text/bpe_model.h"
#include "engine/text/hf_decoder.h"
#include "engine/text/hf_normalizer.h"
#include "engine/text/hf_pre_tokenizer.h"
#include "engine/text/json_reader.h"
#include "engine/text/unicode_util.h"
#include "engine/text/utf8_stream.h"

namespace kvserve::engine {
namespace {

using text_internal::DecodeUtf8;
using text_internal::DecodeUtf8Before;
using text_internal::IsAlphanumeric;
using text_internal::IsWhitespace;

constexpr char kTokenizerFile[] = "tokenizer.json";
constexpr char kConfigFile[] = "tokenizer_config.json";

// Offset of the first byte that does not start a well-formed UTF-8 sequence (error path only).
size_t FirstInvalidUtf8Byte(std::string_view text) {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const auto length = static_cast<int32_t>(text.size());
  for (int32_t i = 0; i < length;) {
    const int32_t start = i;
    UChar32 c;
    U8_NEXT(s, i, length, c);
    if (c < 0) return start;
  }
  return text.size();
}

bool IsWordChar(uint32_t c) { return c == '_' || IsAlphanumeric(c); }

absl::StatusOr<nlohmann::json> ParseJsonText(std::string_view text, std::string_view file) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(file), ": not valid JSON: ", e.what()));
  }
}

// transformers' PreTrainedTokenizerBase.clean_up_tokenization: sequential replace-alls.
std::string CleanUpTokenization(std::string text) {
  static constexpr std::pair<std::string_view, std::string_view> kRules[] = {
      {" .", "."},     {" ?", "?"},   {" !", "!"},   {" ,", ","},     {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& [from, to] : kRules) {
    std::string out;
    size_t pos = 0;
    for (size_t hit = text.find(from); hit != std::string::npos; hit = text.find(from, pos)) {
      out.append(text, pos, hit - pos);
      out.append(to);
      pos = hit + from.size();
    }
    out.append(text, pos, std::string::npos);
    text = std::move(out);
  }
  return text;
}

// bos_token / eos_token: a string, an AddedToken object {"content": ...}, or null.
absl::StatusOr<std::string> TokenName(const JsonReader& value) {
  if (value.is_null()) return std::string();
  if (value.is_object()) return value["content"].String();
  return value.String();
}

}  // namespace

void HfTokenizer::Trie::Insert(std::string_view key, int32_t token) {
  if (key.empty()) return;  // an empty token can never be matched
  int32_t node = 0;
  for (char ch : key) {
    const auto byte = static_cast<unsigned char>(ch);
    auto& children = nodes[node].children;
    auto it = std::lower_bound(children.begin(), children.end(), std::make_pair(byte, INT32_MIN));
    if (it == children.end() || it->first != byte) {
      const auto child = static_cast<int32_t>(nodes.size());
      it = children.insert(it, {byte, child});
      nodes.emplace_back();
      node = child;
    } else {
      node = it->second;
    }
  }
  nodes[node].token = token;
  for (const auto& [byte, child] : nodes[0].children) first[byte] = child;
}

std::pair<int32_t, size_t> HfTokenizer::Trie::LongestAt(std::string_view text, size_t pos) const {
  std::pair<int32_t, size_t> best{-1, pos};
  int32_t node = first[static_cast<unsigned char>(text[pos])];
  if (node < 0) return best;
  if (nodes[node].token >= 0) best = {nodes[node].token, pos + 1};
  for (size_t i = pos + 1; i < text.size(); ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    const auto& children = nodes[node].children;
    auto it = std::lower_bound(children.begin(), children.end(), std::make_pair(byte, INT32_MIN));
    if (it == children.end() || it->first != byte) break;
    node = it->second;
    if (nodes[node].token >= 0) best = {nodes[node].token, i + 1};
  }
  return best;
}

HfTokenizer::HfTokenizer() = default;
HfTokenizer::~HfTokenizer() = default;

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::Load(const std::string& dir) {
  KV_ASSIGN_OR_RETURN(nlohmann::json tokenizer,
                      ParseJsonFile(absl::StrCat(dir, "/", kTokenizerFile), kTokenizerFile));
  auto result = std::unique_ptr<HfTokenizer>(new HfTokenizer());
  absl::StatusOr<nlohmann::json> config =
      ParseJsonFile(absl::StrCat(dir, "/", kConfigFile), kConfigFile);
  if (config.ok()) {
    KV_RETURN_IF_ERROR(result->LoadConfigJson(JsonReader(*config, kConfigFile)));
  } else if (!absl::IsNotFound(config.status())) {
    return config.status();
  }
  KV_RETURN_IF_ERROR(result->LoadTokenizerJson(JsonReader(tokenizer, kTokenizerFile)));
  return result;
}

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::FromJson(std::string_view tokenizer_json,
                                                                   std::string_view config_json) {
  KV_ASSIGN_OR_RETURN(nlohmann::json tokenizer, ParseJsonText(tokenizer_json, kTokenizerFile));
  auto result = std::unique_ptr<HfTokenizer>(new HfTokenizer());
  if (!config_json.empty()) {
    KV_ASSIGN_OR_RETURN(nlohmann::json config, ParseJsonText(config_json, kConfigFile));
    KV_RETURN_IF_ERROR(result->LoadConfigJson(JsonReader(config, kConfigFile)));
  }
  KV_RETURN_IF_ERROR(result->LoadTokenizerJson(JsonReader(tokenizer, kTokenizerFile)));
  return result;
}

absl::Status HfTokenizer::LoadConfigJson(const JsonReader& root) {
  KV_RETURN_IF_ERROR(root.ExpectObject());
  if (root.Has("add_bos_token")) {
    KV_ASSIGN_OR_RETURN(config_.add_bos_token, root["add_bos_token"].Bool());
  }
  if (root.Has("add_eos_token")) {
    KV_ASSIGN_OR_RETURN(config_.add_eos_token, root["add_eos_token"].Bool());
  }
  KV_ASSIGN_OR_RETURN(config_.bos_token, TokenName(root["bos_token"]));
  KV_ASSIGN_OR_RETURN(config_.eos_token, TokenName(root["eos_token"]));
  KV_ASSIGN_OR_RETURN(config_.clean_up_tokenization_spaces,
                      root.BoolOr("clean_up_tokenization_spaces", false));
  const JsonReader templates = root["chat_template"];
  if (templates.is_string()) {
    KV_ASSIGN_OR_RETURN(config_.chat_templates["default"], templates.String());
  } else if (templates.is_array()) {
    for (size_t i = 0; i < templates.size(); ++i) {
      KV_ASSIGN_OR_RETURN(std::string name, templates[i]["name"].String());
      KV_ASSIGN_OR_RETURN(config_.chat_templates[name], templates[i]["template"].String());
    }
  } else if (!templates.is_null()) {
    return templates.Error("expected a string or a list of {name, template}");
  }
  return absl::OkStatus();
}

absl::Status HfTokenizer::LoadPostProcessor(const JsonReader& config) {
  if (config.is_null()) return absl::OkStatus();
  KV_ASSIGN_OR_RETURN(std::string type, config["type"].String());
  if (type == "Sequence") {
    const JsonReader list = config["processors"];
    KV_RETURN_IF_ERROR(list.ExpectArray());
    for (size_t i = 0; i < list.size(); ++i) KV_RETURN_IF_ERROR(LoadPostProcessor(list[i]));
    return absl::OkStatus();
  }
  if (type == "ByteLevel") return absl::OkStatus();  // only moves offsets
  if (type != "TemplateProcessing") {
    return config["type"].Error(absl::StrCat("unsupported post-processor \"", type, "\""));
  }
  const JsonReader single = config["single"];
  KV_RETURN_IF_ERROR(single.ExpectArray());
  const JsonReader special_tokens = config["special_tokens"];
  std::vector<int32_t> before, after;
  bool seen_sequence = false;
  for (size_t i = 0; i < single.size(); ++i) {
    const JsonReader item = single[i];
    if (item.Has("Sequence")) {
      KV_ASSIGN_OR_RETURN(std::string id, item["Sequence"]["id"].String());
      if (id != "A" || seen_sequence) {
        return item["Sequence"].Error("the single template must contain sequence A exactly once");
      }
      seen_sequence = true;
    } else if (item.Has("SpecialToken")) {
      KV_ASSIGN_OR_RETURN(std::string id, item["SpecialToken"]["id"].String());
      const JsonReader entry = special_tokens[id];
      if (!entry.is_object()) {
        return item["SpecialToken"]["id"].Error(
            absl::StrCat("\"", id, "\" is not in post_processor.special_tokens"));
      }
      const JsonReader ids = entry["ids"];
      KV_RETURN_IF_ERROR(ids.ExpectArray());
      for (size_t k = 0; k < ids.size(); ++k) {
        KV_ASSIGN_OR_RETURN(int64_t value, ids[k].Int());
        if (value < 0 || value > INT32_MAX) return ids[k].Error("id out of range");
        (seen_sequence ? after : before).push_back(static_cast<int32_t>(value));
      }
    } else {
      return item.Error("expected {\"SpecialToken\": ...} or {\"Sequence\": ...}");
    }
  }
  if (!seen_sequence) return single.Error("the single template has no sequence A");
  templates_.emplace_back(std::move(before), std::move(after));
  return absl::OkStatus();
}

absl::Status HfTokenizer::LoadTokenizerJson(const JsonReader& root) {
  KV_RETURN_IF_ERROR(root.ExpectObject());
  // Both would change the ids of a single encode; a server must see the whole prompt.
  if (root.Has("truncation")) return root["truncation"].Error("unsupported: must be null");
  if (root.Has("padding")) return root["padding"].Error("unsupported: must be null");

  const JsonReader model = root["model"];
  KV_ASSIGN_OR_RETURN(std::string model_type, model.StringOr("type", "BPE"));
  if (model_type != "BPE") {
    return model["type"].Error(absl::StrCat("unsupported model \"", model_type, "\""));
  }
  KV_ASSIGN_OR_RETURN(model_, BpeModel::Create(model));
  KV_ASSIGN_OR_RETURN(normalizer_, HfNormalizer::Create(root["normalizer"]));
  KV_ASSIGN_OR_RETURN(pre_tokenizer_, HfPreTokenizer::Create(root["pre_tokenizer"]));
  KV_ASSIGN_OR_RETURN(decoder_, HfDecoder::Create(root["decoder"]));
  KV_RETURN_IF_ERROR(LoadPostProcessor(root["post_processor"]));

  const JsonReader added = root["added_tokens"];
  if (!added.is_null()) KV_RETURN_IF_ERROR(added.ExpectArray());
  vocab_size_ = model_->vocab_size();
  for (size_t i = 0; i < added.size(); ++i) {
    const JsonReader entry = added[i];
    AddedToken token;
    KV_ASSIGN_OR_RETURN(int64_t id, entry["id"].Int());
    if (id < 0 || id > INT32_MAX - 1) return entry["id"].Error("id out of range");
    token.id = static_cast<int32_t>(id);
    KV_ASSIGN_OR_RETURN(token.content, entry["content"].String());
    if (token.content.empty()) return entry["content"].Error("empty token");
    KV_ASSIGN_OR_RETURN(token.special, entry.BoolOr("special", false));
    KV_ASSIGN_OR_RETURN(token.lstrip, entry.BoolOr("lstrip", false));
    KV_ASSIGN_OR_RETURN(token.rstrip, entry.BoolOr("rstrip", false));
    KV_ASSIGN_OR_RETURN(token.single_word, entry.BoolOr("single_word", false));
    KV_ASSIGN_OR_RETURN(token.normalized, entry.BoolOr("normalized", !token.special));
    vocab_size_ = std::max(vocab_size_, token.id + 1);
    const auto index = static_cast<int32_t>(added_.size());
    if (token.normalized && !normalizer_->empty()) {
      KV_ASSIGN_OR_RETURN(std::string normalized, normalizer_->Normalize(token.content));
      normalized_trie_.Insert(normalized, index);
      has_normalized_added_ = true;
    } else if (token.normalized) {
      normalized_trie_.Insert(token.content, index);
      has_normalized_added_ = true;
    } else {
      raw_trie_.Insert(token.content, index);
    }
    added_.push_back(std::move(token));
  }
  added_by_id_.assign(vocab_size_, -1);
  for (size_t i = 0; i < added_.size(); ++i) added_by_id_[added_[i].id] = static_cast<int32_t>(i);
  for (const auto& [before, after] : templates_) {
    for (int32_t id : before) vocab_size_ = std::max(vocab_size_, id + 1);
    for (int32_t id : after) vocab_size_ = std::max(vocab_size_, id + 1);
  }
  added_by_id_.resize(vocab_size_, -1);

  pieces_.resize(vocab_size_);
  for (int32_t id = 0; id < vocab_size_; ++id) {
    if (const std::string* token = IdToToken(id)) pieces_[id] = decoder_->DecodePiece(*token);
  }
  return absl::OkStatus();
}

std::string HfTokenizer::name() const {
  return absl::StrCat("Hugging Face BPE (", vocab_size_, " ids, ", added_.size(), " added tokens)");
}

std::optional<int32_t> HfTokenizer::TokenToId(std::string_view token) const {
  for (const AddedToken& added : added_) {
    if (added.content == token) return added.id;
  }
  return model_->TokenToId(token);
}

const std::string* HfTokenizer::IdToToken(int32_t id) const {
  if (id < 0 || id >= vocab_size_) return nullptr;
  if (added_by_id_[id] >= 0) return &added_[added_by_id_[id]].content;
  return model_->IdToToken(id);
}

std::optional<int32_t> HfTokenizer::bos_id() const {
  if (config_.bos_token.empty()) return std::nullopt;
  return TokenToId(config_.bos_token);
}

std::optional<int32_t> HfTokenizer::eos_id() const {
  if (config_.eos_token.empty()) return std::nullopt;
  return TokenToId(config_.eos_token);
}

bool HfTokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size_ && added_by_id_[id] >= 0 && added_[added_by_id_[id]].special;
}

// The crate's AddedVocabulary::find_matches: matches are found left to right without overlap (a
// match that single_word rejects still consumes its text), then widened by lstrip / rstrip.
void HfTokenizer::SplitAdded(const Trie& trie, std::string_view text, size_t offset,
                             std::vector<Segment>* out) const {
  size_t start_offset = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const auto [index, end] = trie.LongestAt(text, pos);
    if (index < 0) {
      ++pos;
      continue;
    }
    size_t start = pos;
    size_t stop = end;
    pos = end;
    const AddedToken& token = added_[index];
    size_t len;
    if (token.single_word) {
      const bool space_before = start == 0 || !IsWordChar(DecodeUtf8Before(text, start, &len));
      const bool space_after = stop == text.size() || !IsWordChar(DecodeUtf8(text, stop, &len));
      if (!space_before || !space_after) continue;
    }
    if (token.lstrip) {
      size_t new_start = start;
      while (new_start > 0 && IsWhitespace(DecodeUtf8Before(text, new_start, &len)))
        new_start -= len;
      start = std::max(new_start, start_offset);
    }
    if (token.rstrip) {
      while (stop < text.size() && IsWhitespace(DecodeUtf8(text, stop, &len))) stop += len;
      pos = std::max(pos, stop);
    }
    if (start_offset < start) {
      out->push_back({text.substr(start_offset, start - start_offset), -1, offset + start_offset});
    }
    out->push_back({text.substr(start, stop - start), index, offset + start});
    start_offset = stop;
  }
  if (start_offset < text.size()) {
    out->push_back({text.substr(start_offset), -1, offset + start_offset});
  }
}

absl::Status HfTokenizer::EncodeText(std::string_view text, size_t offset,
                                     std::vector<int32_t>* ids) const {
  std::string normalized_storage;
  std::string_view normalized = text;
  if (!normalizer_->empty()) {
    KV_ASSIGN_OR_RETURN(normalized_storage, normalizer_->Normalize(text));
    normalized = normalized_storage;
  }
  std::vector<Segment> segments;
  if (has_normalized_added_) {
    SplitAdded(normalized_trie_, normalized, offset, &segments);
  } else {
    segments.push_back({normalized, -1, offset});
  }
  std::deque<std::string> arena;
  std::vector<PreToken> pieces;
  for (const Segment& segment : segments) {
    if (segment.added >= 0) {
      ids->push_back(added_[segment.added].id);
      continue;
    }
    if (segment.text.empty()) continue;
    pieces.clear();
    pieces.push_back({segment.text, false, segment.offset == 0});
    KV_RETURN_IF_ERROR(pre_tokenizer_->Split(&pieces, &arena));
    for (const PreToken& piece : pieces) {
      KV_RETURN_IF_ERROR(model_->Tokenize(piece.text, piece.byte_level, ids));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> HfTokenizer::Encode(std::string_view text,
                                                         bool add_special_tokens) const {
  if (!IsValidUtf8(text)) {
    return absl::InvalidArgumentError(
        absl::StrCat("text is not valid UTF-8 (byte ", FirstInvalidUtf8Byte(text), ")"));
  }
  std::vector<Segment> segments;
  SplitAdded(raw_trie_, text, 0, &segments);
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  for (const Segment& segment : segments) {
    if (segment.added >= 0) {
      ids.push_back(added_[segment.added].id);
    } else if (!segment.text.empty()) {
      KV_RETURN_IF_ERROR(EncodeText(segment.text, segment.offset, &ids));
    }
  }
  if (add_special_tokens) {
    for (const auto& [before, after] : templates_) {
      if (before.empty() && after.empty()) continue;
      std::vector<int32_t> wrapped(before);
      wrapped.insert(wrapped.end(), ids.begin(), ids.end());
      wrapped.insert(wrapped.end(), after.begin(), after.end());
      ids = std::move(wrapped);
    }
  }
  return ids;
}

std::string HfTokenizer::Decode(int32_t id) const {
  if (id < 0 || id >= vocab_size_) return "";
  return pieces_[id];
}

std::string HfTokenizer::DecodeAll(absl::Span<const int32_t> ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    const std::string* token = IdToToken(id);
    if (token == nullptr || (skip_special_tokens && IsSpecial(id))) continue;
    tokens.push_back(*token);
  }
  std::string text = decoder_->DecodeTokens(std::move(tokens));
  if (config_.clean_up_tokenization_spaces) text = CleanUpTokenization(std::move(text));
  return text;
}

}  // namespace kvserve::engine
