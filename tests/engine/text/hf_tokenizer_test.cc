#include "engine/text/hf_tokenizer.h"

#include <algorithm>
#include <deque>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/text/bpe_model.h"
#include "engine/text/generation_config.h"
#include "engine/text/hf_decoder.h"
#include "engine/text/hf_normalizer.h"
#include "engine/text/hf_pre_tokenizer.h"
#include "engine/text/json_reader.h"
#include "engine/text/utf8_stream.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace kvserve::engine {
namespace {

using ::nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A tokenizer.json with a BPE model over `vocab` and `merges`; tests patch the other components.
json TokenizerJson(json vocab, json merges = json::array()) {
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", json::array()},
          {"normalizer", nullptr},
          {"pre_tokenizer", nullptr},
          {"post_processor", nullptr},
          {"decoder", nullptr},
          {"model",
           {{"type", "BPE"},
            {"dropout", nullptr},
            {"unk_token", nullptr},
            {"continuing_subword_prefix", nullptr},
            {"end_of_word_suffix", nullptr},
            {"fuse_unk", false},
            {"byte_fallback", false},
            {"vocab", vocab},
            {"merges", merges}}}};
}

std::unique_ptr<HfTokenizer> MustLoad(const json& tokenizer, const json& config = nullptr) {
  auto result = HfTokenizer::FromJson(tokenizer.dump(), config.is_null() ? "" : config.dump());
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? *std::move(result) : nullptr;
}

std::string LoadError(const json& tokenizer, const json& config = nullptr) {
  auto result = HfTokenizer::FromJson(tokenizer.dump(), config.is_null() ? "" : config.dump());
  EXPECT_FALSE(result.ok());
  if (result.ok()) return "";
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(result.status().message());
}

std::vector<int32_t> Ids(const HfTokenizer& tokenizer, std::string_view text,
                         bool add_special_tokens = false) {
  auto ids = tokenizer.Encode(text, add_special_tokens);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : std::vector<int32_t>{};
}

// One merge as a ["left", "right"] pair (a braced pair would read as a JSON object).
json Pair(const std::string& left, const std::string& right) { return json::array({left, right}); }

const json kAbcVocab = {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}, {"abc", 5}};

// ---------------------------------------------------------------------------------------------
// BPE model

TEST(HfTokenizerBpeTest, MergesLowestRankFirst) {
  auto first_bc = MustLoad(TokenizerJson(kAbcVocab, {"b c", "a b", "a bc"}));
  EXPECT_THAT(Ids(*first_bc, "abc"), ElementsAre(5));
  auto first_ab = MustLoad(TokenizerJson(kAbcVocab, {"a b", "b c"}));
  EXPECT_THAT(Ids(*first_ab, "abc"), ElementsAre(3, 2));
}

TEST(HfTokenizerBpeTest, ReadsMergesAsPairs) {
  auto tokenizer = MustLoad(TokenizerJson(kAbcVocab, json::array({Pair("b", "c"), Pair("a", "bc")})));
  EXPECT_THAT(Ids(*tokenizer, "abcab"), ElementsAre(5, 0, 1));
}

TEST(HfTokenizerBpeTest, MergeOfUnknownTokenIsALoadError) {
  EXPECT_EQ(LoadError(TokenizerJson(kAbcVocab, {"a b", "a x"})),
            "tokenizer.json: model.merges[1]: \"x\" is not in model.vocab");
  EXPECT_EQ(LoadError(TokenizerJson({{"a", 0}, {"b", 1}}, json::array({Pair("a", "b")}))),
            "tokenizer.json: model.merges[0]: merged token \"ab\" is not in model.vocab");
  EXPECT_EQ(LoadError(TokenizerJson(kAbcVocab, {"ab"})),
            "tokenizer.json: model.merges[0]: expected \"left right\"");
}

TEST(HfTokenizerBpeTest, IgnoreMergesTakesWholeWordsFromTheVocabulary) {
  json j = TokenizerJson(kAbcVocab);
  EXPECT_THAT(Ids(*MustLoad(j), "abc"), ElementsAre(0, 1, 2));
  j["model"]["ignore_merges"] = true;
  EXPECT_THAT(Ids(*MustLoad(j), "abc"), ElementsAre(5));
}

TEST(HfTokenizerBpeTest, UnknownCharactersBecomeUnkFusedWhenAsked) {
  json j = TokenizerJson({{"a", 0}, {"<unk>", 1}});
  j["model"]["unk_token"] = "<unk>";
  EXPECT_THAT(Ids(*MustLoad(j), "xya"), ElementsAre(1, 1, 0));
  j["model"]["fuse_unk"] = true;
  EXPECT_THAT(Ids(*MustLoad(j), "xya"), ElementsAre(1, 0));
}

TEST(HfTokenizerBpeTest, ByteFallbackSpellsUnknownCharactersAsBytes) {
  json j = TokenizerJson({{"a", 0}, {"<0xC3>", 1}, {"<0xA9>", 2}, {"<unk>", 3}});
  j["model"]["unk_token"] = "<unk>";
  j["model"]["byte_fallback"] = true;
  j["decoder"] = {{"type", "Sequence"},
                  {"decoders", {{{"type", "ByteFallback"}}, {{"type", "Fuse"}}}}};
  auto tokenizer = MustLoad(j);
  EXPECT_THAT(Ids(*tokenizer, "a\xC3\xA9"), ElementsAre(0, 1, 2));
  // U+20AC's bytes E2 82 AC have no tokens: unk.
  EXPECT_THAT(Ids(*tokenizer, "a\xE2\x82\xAC"), ElementsAre(0, 3));
  EXPECT_EQ(tokenizer->DecodeAll({0, 1, 2}, false), "a\xC3\xA9");
  // A byte run that is not UTF-8 decodes to one U+FFFD per byte, as in the crate.
  EXPECT_EQ(tokenizer->DecodeAll({1, 0}, false), "\xEF\xBF\xBD" "a");
  EXPECT_EQ(tokenizer->Decode(1), "\xC3");
}

TEST(HfTokenizerBpeTest, CharacterWithoutTokenIsAnErrorWithoutUnkOrFallback) {
  auto tokenizer = MustLoad(TokenizerJson({{"a", 0}}));
  auto ids = tokenizer->Encode("ab", false);
  ASSERT_FALSE(ids.ok());
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ids.status().message(), HasSubstr("U+0062"));
  auto not_utf8 = tokenizer->Encode("aa\xFF", false);
  ASSERT_FALSE(not_utf8.ok());
  EXPECT_EQ(not_utf8.status().message(), "text is not valid UTF-8 (byte 2)");
}

TEST(HfTokenizerBpeTest, SubwordPrefixAndWordSuffixTakePartInLookupsAndMerges) {
  json prefix = TokenizerJson({{"a", 0}, {"##b", 1}, {"ab", 2}}, json::array({Pair("a", "##b")}));
  prefix["model"]["continuing_subword_prefix"] = "##";
  EXPECT_THAT(Ids(*MustLoad(prefix), "ab"), ElementsAre(2));
  json suffix = TokenizerJson({{"a", 0}, {"b</w>", 1}, {"ab</w>", 2}},
                              json::array({Pair("a", "b</w>")}));
  suffix["model"]["end_of_word_suffix"] = "</w>";
  EXPECT_THAT(Ids(*MustLoad(suffix), "ab"), ElementsAre(2));
}

// The heap-based merge loop (long words) must agree with the naive rescanning loop.
TEST(HfTokenizerBpeTest, HeapMergeEqualsNaiveMerge) {
  constexpr uint32_t kSeed = 1234;
  std::mt19937 rng(kSeed);
  json vocab = json::object();
  std::vector<std::string> tokens = {"a", "b", "c"};
  for (size_t i = 0; i < tokens.size() && tokens.size() < 400; ++i) {
    for (const char* c : {"a", "b", "c"}) {
      if (tokens[i].size() < 5) tokens.push_back(tokens[i] + c);
    }
  }
  for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = static_cast<int>(i);
  json merges = json::array();
  for (const std::string& t : tokens) {
    if (t.size() < 2) continue;
    const size_t cut = 1 + rng() % (t.size() - 1);
    if (vocab.contains(t.substr(0, cut)) && vocab.contains(t.substr(cut))) {
      merges.push_back(Pair(t.substr(0, cut), t.substr(cut)));
    }
  }
  std::shuffle(merges.begin(), merges.end(), rng);
  const json tokenizer_json = TokenizerJson(vocab, merges);
  const JsonReader reader(tokenizer_json["model"], "test");
  auto model = BpeModel::Create(reader);
  ASSERT_TRUE(model.ok()) << model.status();
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<int32_t> symbols(1 + rng() % 300);
    for (int32_t& s : symbols) s = static_cast<int32_t>(rng() % 3);
    EXPECT_EQ((*model)->MergeForTest(symbols), (*model)->MergeNaiveForTest(symbols))
        << "seed " << kSeed << " trial " << trial;
  }
}

TEST(HfTokenizerBpeTest, ConcurrentEncodesAgreeWithSerialOnes) {
  json j = TokenizerJson(kAbcVocab, {"a b", "b c", "ab c"});
  j["pre_tokenizer"] = {{"type", "Split"},
                        {"pattern", {{"String", "c"}}},
                        {"behavior", "MergedWithPrevious"},
                        {"invert", false}};
  auto tokenizer = MustLoad(j);
  std::vector<std::string> texts;
  std::mt19937 rng(7);
  for (int i = 0; i < 200; ++i) {
    std::string s;
    for (int k = 0, n = 1 + rng() % 30; k < n; ++k) s.push_back("abc"[rng() % 3]);
    texts.push_back(s);
  }
  std::vector<std::vector<int32_t>> serial;
  for (const auto& t : texts) serial.push_back(Ids(*tokenizer, t));
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round) {
        for (size_t i = 0; i < texts.size(); ++i) {
          const size_t k = (i + t * 31) % texts.size();
          auto ids = tokenizer->Encode(texts[k], false);
          if (!ids.ok() || *ids != serial[k]) ++mismatches;
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(mismatches.load(), 0);
}

// ---------------------------------------------------------------------------------------------
// Added tokens

json AddedToken(int id, const std::string& content, bool special = true) {
  return {{"id", id},          {"content", content}, {"single_word", false}, {"lstrip", false},
          {"rstrip", false},   {"normalized", false}, {"special", special}};
}

std::unique_ptr<HfTokenizer> AddedTokenizer() {
  json j = TokenizerJson({{"a", 0}, {"b", 1}, {" ", 2}, {"<", 3}, {"w", 4}, {">", 5}});
  json added = json::array();
  added.push_back(AddedToken(10, "<x>"));
  added.push_back(AddedToken(11, "<x>y", false));
  json lstrip = AddedToken(12, "<m>");
  lstrip["lstrip"] = true;
  added.push_back(lstrip);
  json rstrip = AddedToken(13, "<r>");
  rstrip["rstrip"] = true;
  added.push_back(rstrip);
  json single = AddedToken(14, "<w>");
  single["single_word"] = true;
  added.push_back(single);
  j["added_tokens"] = added;
  return MustLoad(j);
}

TEST(HfTokenizerAddedTokensTest, LongestMatchWinsAtTheLeftmostPosition) {
  auto tokenizer = AddedTokenizer();
  EXPECT_THAT(Ids(*tokenizer, "<x>y"), ElementsAre(11));
  EXPECT_THAT(Ids(*tokenizer, "a<x>b"), ElementsAre(0, 10, 1));
  EXPECT_TRUE(tokenizer->IsSpecial(10));
  EXPECT_FALSE(tokenizer->IsSpecial(11));
  EXPECT_FALSE(tokenizer->IsSpecial(0));
}

TEST(HfTokenizerAddedTokensTest, LstripAndRstripEatNeighbouringWhitespace) {
  auto tokenizer = AddedTokenizer();
  EXPECT_THAT(Ids(*tokenizer, "a  <m> b"), ElementsAre(0, 12, 2, 1));
  EXPECT_THAT(Ids(*tokenizer, "a <r>  b"), ElementsAre(0, 2, 13, 1));
  EXPECT_THAT(Ids(*tokenizer, "a <x> b"), ElementsAre(0, 2, 10, 2, 1));
}

TEST(HfTokenizerAddedTokensTest, SingleWordMatchesOnlyBetweenNonWordCharacters) {
  auto tokenizer = AddedTokenizer();
  EXPECT_THAT(Ids(*tokenizer, "<w>"), ElementsAre(14));
  EXPECT_THAT(Ids(*tokenizer, "a <w> b"), ElementsAre(0, 2, 14, 2, 1));
  EXPECT_THAT(Ids(*tokenizer, "a<w>"), ElementsAre(0, 3, 4, 5));
  EXPECT_THAT(Ids(*tokenizer, "<w>b"), ElementsAre(3, 4, 5, 1));
}

TEST(HfTokenizerAddedTokensTest, DecodeAllSkipsSpecialTokensOnRequest) {
  auto tokenizer = AddedTokenizer();
  // No decoder: the crate joins tokens with spaces.
  EXPECT_EQ(tokenizer->DecodeAll({0, 10, 11, 1}, false), "a <x> <x>y b");
  EXPECT_EQ(tokenizer->DecodeAll({0, 10, 11, 1}, true), "a <x>y b");
  EXPECT_EQ(tokenizer->TokenToId("<x>y"), 11);
  EXPECT_EQ(tokenizer->vocab_size(), 15);
}

// ---------------------------------------------------------------------------------------------
// Normalizers

std::string Normalize(const json& config, std::string_view text) {
  auto normalizer = HfNormalizer::Create(JsonReader(config, "tokenizer.json", "normalizer"));
  EXPECT_TRUE(normalizer.ok()) << normalizer.status();
  if (!normalizer.ok()) return "";
  auto out = (*normalizer)->Normalize(text);
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? *out : "";
}

TEST(HfNormalizerTest, UnicodeForms) {
  EXPECT_EQ(Normalize({{"type", "NFC"}}, "e\xCC\x81"), "\xC3\xA9");
  EXPECT_EQ(Normalize({{"type", "NFKC"}}, "\xEF\xAC\x81\xE2\x91\xA0"), "fi1");  // "ﬁ①"
  EXPECT_EQ(Normalize({{"type", "NFD"}}, "\xC3\xA9"), "e\xCC\x81");
}

TEST(HfNormalizerTest, PrependReplaceAndSequence) {
  const json prepend = {{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}};
  EXPECT_EQ(Normalize(prepend, "ab"), "\xE2\x96\x81" "ab");
  EXPECT_EQ(Normalize(prepend, ""), "");
  const json replace = {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "_"}};
  EXPECT_EQ(Normalize(replace, "a b  c"), "a_b__c");
  const json regex = {{"type", "Replace"}, {"pattern", {{"Regex", "\\s+"}}}, {"content", " "}};
  EXPECT_EQ(Normalize(regex, "a \t\n b"), "a b");
  EXPECT_EQ(Normalize({{"type", "Sequence"}, {"normalizers", {prepend, replace}}}, "a b"),
            "\xE2\x96\x81" "a_b");
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizers

std::vector<std::string> PreTokenize(const json& config, std::string_view text,
                                     bool at_start = true, std::vector<bool>* byte_level = nullptr) {
  auto pre = HfPreTokenizer::Create(JsonReader(config, "tokenizer.json", "pre_tokenizer"));
  EXPECT_TRUE(pre.ok()) << pre.status();
  if (!pre.ok()) return {};
  std::deque<std::string> arena;
  std::vector<PreToken> pieces = {{text, false, at_start}};
  EXPECT_TRUE((*pre)->Split(&pieces, &arena).ok());
  std::vector<std::string> out;
  for (const PreToken& p : pieces) {
    out.emplace_back(p.text);
    if (byte_level) byte_level->push_back(p.byte_level);
  }
  return out;
}

json SplitConfig(const std::string& behavior, bool invert = false) {
  return {{"type", "Split"},
          {"pattern", {{"Regex", "\\s"}}},
          {"behavior", behavior},
          {"invert", invert}};
}

TEST(HfPreTokenizerTest, SplitBehaviours) {
  EXPECT_THAT(PreTokenize(SplitConfig("Isolated"), "a b  c"),
              ElementsAre("a", " ", "b", " ", " ", "c"));
  EXPECT_THAT(PreTokenize(SplitConfig("Removed"), "a b  c"), ElementsAre("a", "b", "c"));
  EXPECT_THAT(PreTokenize(SplitConfig("MergedWithPrevious"), "a b  c"),
              ElementsAre("a ", "b ", " ", "c"));
  EXPECT_THAT(PreTokenize(SplitConfig("MergedWithNext"), "a b  c"),
              ElementsAre("a", " b", " ", " c"));
  EXPECT_THAT(PreTokenize(SplitConfig("Contiguous"), "a b  c"),
              ElementsAre("a", " ", "b", "  ", "c"));
  EXPECT_THAT(PreTokenize(SplitConfig("Removed", /*invert=*/true), "a b  c"),
              ElementsAre(" ", " ", " "));
  const json literal = {{"type", "Split"},
                        {"pattern", {{"String", "--"}}},
                        {"behavior", "Removed"},
                        {"invert", false}};
  EXPECT_THAT(PreTokenize(literal, "a--b----c"), ElementsAre("a", "b", "c"));
}

TEST(HfPreTokenizerTest, DigitsGroupOrIsolate) {
  EXPECT_THAT(PreTokenize({{"type", "Digits"}, {"individual_digits", false}}, "ab12c3"),
              ElementsAre("ab", "12", "c", "3"));
  EXPECT_THAT(PreTokenize({{"type", "Digits"}, {"individual_digits", true}}, "ab12c3"),
              ElementsAre("ab", "1", "2", "c", "3"));
}

// The crate's Digits uses char::is_numeric (Unicode N), not just ASCII digits.
TEST(HfPreTokenizerTest, DigitsIncludeNonAsciiNumerals) {
  EXPECT_THAT(PreTokenize({{"type", "Digits"}, {"individual_digits", true}},
                          "a\xE0\xA5\xAB\xD9\xA4" "b"),  // "a५٤b"
              ElementsAre("a", "\xE0\xA5\xAB", "\xD9\xA4", "b"));
}

TEST(HfPreTokenizerTest, MetaspaceReplacesSpacesAndPrependsPerScheme) {
  const std::string kMeta = "\xE2\x96\x81";
  json config = {{"type", "Metaspace"},
                 {"replacement", kMeta},
                 {"prepend_scheme", "always"},
                 {"split", true}};
  EXPECT_THAT(PreTokenize(config, "hey  you"),
              ElementsAre(kMeta + "hey", kMeta, kMeta + "you"));
  config["prepend_scheme"] = "first";
  EXPECT_THAT(PreTokenize(config, "hey you", /*at_start=*/false),
              ElementsAre("hey", kMeta + "you"));
  EXPECT_THAT(PreTokenize(config, "hey you", /*at_start=*/true),
              ElementsAre(kMeta + "hey", kMeta + "you"));
  config["prepend_scheme"] = "never";
  config["split"] = false;
  EXPECT_THAT(PreTokenize(config, "hey you"), ElementsAre("hey" + kMeta + "you"));
}

TEST(HfPreTokenizerTest, ByteLevelSplitsLikeGpt2AndMarksPiecesAsBytes) {
  std::vector<bool> byte_level;
  EXPECT_THAT(PreTokenize({{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}},
                          "Hello world's  12", true, &byte_level),
              ElementsAre(" Hello", " world", "'s", " ", " 12"));
  EXPECT_THAT(byte_level, ElementsAre(true, true, true, true, true));
}

// ---------------------------------------------------------------------------------------------
// Decoders

std::unique_ptr<HfDecoder> MakeDecoder(const json& config) {
  auto decoder = HfDecoder::Create(JsonReader(config, "tokenizer.json", "decoder"));
  EXPECT_TRUE(decoder.ok()) << decoder.status();
  return decoder.ok() ? *std::move(decoder) : nullptr;
}

TEST(HfDecoderTest, MetaspaceDropsTheFirstTokensMarkerOnly) {
  const std::string kMeta = "\xE2\x96\x81";
  auto decoder = MakeDecoder({{"type", "Metaspace"}, {"replacement", kMeta},
                              {"prepend_scheme", "always"}, {"split", true}});
  EXPECT_EQ(decoder->DecodeTokens({kMeta + "Hey", kMeta + "friend!"}), "Hey friend!");
  EXPECT_EQ(decoder->DecodePiece(kMeta + "friend"), " friend");
  // The crate drops every replacement character of the first token, not just one.
  EXPECT_EQ(decoder->DecodeTokens({kMeta + kMeta + "a", kMeta + "b"}), "a b");
}

TEST(HfDecoderTest, SentencePieceChainStripsOnlyTheTextsFirstSpace) {
  const std::string kMeta = "\xE2\x96\x81";
  auto decoder = MakeDecoder(
      {{"type", "Sequence"},
       {"decoders",
        {{{"type", "Replace"}, {"pattern", {{"String", kMeta}}}, {"content", " "}},
         {{"type", "ByteFallback"}},
         {{"type", "Fuse"}},
         {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}});
  EXPECT_EQ(decoder->DecodeTokens({kMeta + "a", "<0xC3>", "<0xA9>", kMeta + "b"}),
            "a\xC3\xA9 b");
  EXPECT_EQ(decoder->DecodeTokens({"<0xC3>", kMeta + "b"}), "\xEF\xBF\xBD b");
  EXPECT_EQ(decoder->DecodePiece(kMeta + "b"), " b");
  EXPECT_EQ(decoder->DecodePiece("<0xC3>"), "\xC3");
}

TEST(HfDecoderTest, ByteLevelMapsCharactersBackToBytes) {
  auto decoder = MakeDecoder({{"type", "ByteLevel"}});
  EXPECT_EQ(decoder->DecodeTokens({"Hello", "\xC4\xA0world"}), "Hello world");  // "Ġworld"
  EXPECT_EQ(decoder->DecodePiece("\xC4\xA0world"), " world");
  EXPECT_EQ(decoder->DecodeTokens({"\xC3\x83"}), "\xEF\xBF\xBD");  // "Ã" is byte C3 alone
  EXPECT_EQ(decoder->DecodePiece("\xC3\x83"), "\xC3");
}

TEST(HfDecoderTest, StripBeforeFuseTrimsEveryToken) {
  auto decoder = MakeDecoder(
      {{"type", "Sequence"},
       {"decoders", {{{"type", "Strip"}, {"content", "x"}, {"start", 1}, {"stop", 1}},
                     {{"type", "Fuse"}}}}});
  EXPECT_EQ(decoder->DecodeTokens({"xax", "xxbxx"}), "axbx");
  EXPECT_EQ(decoder->DecodePiece("xax"), "a");
}

// ---------------------------------------------------------------------------------------------
// Post-processor, config and streaming

json LlamaLikeTokenizer() {
  const std::string kMeta = "\xE2\x96\x81";
  json j = TokenizerJson({{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}, {kMeta, 3}, {"a", 4}, {"b", 5},
                          {kMeta + "a", 6}, {"<0xC3>", 7}, {"<0xA9>", 8}},
                         json::array({Pair(kMeta, "a")}));
  j["model"]["unk_token"] = "<unk>";
  j["model"]["byte_fallback"] = true;
  j["added_tokens"] = {AddedToken(0, "<unk>"), AddedToken(1, "<s>"), AddedToken(2, "</s>")};
  j["normalizer"] = {
      {"type", "Sequence"},
      {"normalizers",
       {{{"type", "Prepend"}, {"prepend", kMeta}},
        {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kMeta}}}}};
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single",
       {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
        {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
        {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}}},
      {"pair", json::array()},
      {"special_tokens",
       {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}},
        {"</s>", {{"id", "</s>"}, {"ids", {2}}, {"tokens", {"</s>"}}}}}}};
  j["decoder"] = {
      {"type", "Sequence"},
      {"decoders",
       {{{"type", "Replace"}, {"pattern", {{"String", kMeta}}}, {"content", " "}},
        {{"type", "ByteFallback"}},
        {{"type", "Fuse"}},
        {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
  return j;
}

TEST(HfTokenizerTest, TemplateAddsSpecialTokensOnlyWhenAsked) {
  auto tokenizer = MustLoad(LlamaLikeTokenizer());
  EXPECT_THAT(Ids(*tokenizer, "a b", true), ElementsAre(1, 6, 3, 5, 2));
  EXPECT_THAT(Ids(*tokenizer, "a b", false), ElementsAre(6, 3, 5));
  EXPECT_THAT(Ids(*tokenizer, "", true), ElementsAre(1, 2));
  // The normalizer (Prepend) runs on each segment between added tokens.
  EXPECT_THAT(Ids(*tokenizer, "a</s>a", false), ElementsAre(6, 2, 6));
  EXPECT_THAT(Ids(*tokenizer, "\xC3\xA9", false), ElementsAre(3, 7, 8));
}

TEST(HfTokenizerTest, DecodeAllAndStreamedPiecesAgreeAfterTheFirstToken) {
  auto tokenizer = MustLoad(LlamaLikeTokenizer());
  const std::vector<int32_t> ids = Ids(*tokenizer, "a b \xC3\xA9", true);
  EXPECT_EQ(tokenizer->DecodeAll(ids, true), "a b \xC3\xA9");
  EXPECT_EQ(tokenizer->DecodeAll(ids, false), "<s> a b \xC3\xA9</s>");
  Utf8StreamDecoder stream;
  std::string streamed;
  for (size_t i = 1; i + 1 < ids.size(); ++i) streamed += stream.Push(tokenizer->Decode(ids[i]));
  streamed += stream.Flush();
  // The one difference: the piece keeps the first token's leading space.
  EXPECT_EQ(streamed, " a b \xC3\xA9");
}

TEST(HfTokenizerTest, ReadsTokenizerConfig) {
  json config = {{"add_bos_token", true},
                 {"add_eos_token", false},
                 {"bos_token", {{"__type", "AddedToken"}, {"content", "<s>"}}},
                 {"eos_token", "</s>"},
                 {"clean_up_tokenization_spaces", true},
                 {"chat_template",
                  {{{"name", "default"}, {"template", "{{ x }}"}},
                   {{"name", "tool_use"}, {"template", "{{ y }}"}}}}};
  auto tokenizer = MustLoad(LlamaLikeTokenizer(), config);
  EXPECT_EQ(tokenizer->config().add_bos_token, true);
  EXPECT_EQ(tokenizer->bos_id(), 1);
  EXPECT_EQ(tokenizer->eos_id(), 2);
  EXPECT_EQ(tokenizer->config().chat_templates.at("tool_use"), "{{ y }}");
  EXPECT_EQ(tokenizer->config().chat_templates.size(), 2u);
  // clean_up_tokenization_spaces: " ." -> "." etc.
  auto dot = MustLoad(TokenizerJson({{"a", 0}, {".", 1}}), config);
  EXPECT_EQ(dot->DecodeAll({0, 1}, false), "a.");
  config["chat_template"] = 3;
  EXPECT_EQ(LoadError(LlamaLikeTokenizer(), config),
            "tokenizer_config.json: chat_template: expected a string or a list of {name, "
            "template}");
}

// ---------------------------------------------------------------------------------------------
// Load errors name the JSON path

TEST(HfTokenizerLoadTest, UnsupportedComponentsNameTheirPath) {
  json j = TokenizerJson(kAbcVocab);
  j["normalizer"] = {{"type", "Sequence"},
                     {"normalizers", {{{"type", "NFC"}}, {{"type", "Lowercase"}}}}};
  EXPECT_EQ(LoadError(j),
            "tokenizer.json: normalizer.normalizers[1].type: unsupported normalizer "
            "\"Lowercase\"");
  j = TokenizerJson(kAbcVocab);
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  EXPECT_EQ(LoadError(j), "tokenizer.json: pre_tokenizer.type: unsupported pre-tokenizer "
                          "\"Whitespace\"");
  j = TokenizerJson(kAbcVocab);
  j["post_processor"] = {{"type", "BertProcessing"}};
  EXPECT_EQ(LoadError(j), "tokenizer.json: post_processor.type: unsupported post-processor "
                          "\"BertProcessing\"");
  j = TokenizerJson(kAbcVocab);
  j["decoder"] = {{"type", "Sequence"}, {"decoders", {{{"type", "Fuse"}}, {{"type", "CTC"}}}}};
  EXPECT_EQ(LoadError(j), "tokenizer.json: decoder.decoders[1].type: unsupported decoder \"CTC\"");
  j = TokenizerJson(kAbcVocab);
  j["model"]["type"] = "WordPiece";
  EXPECT_EQ(LoadError(j), "tokenizer.json: model.type: unsupported model \"WordPiece\"");
  j = TokenizerJson(kAbcVocab);
  j["pre_tokenizer"] = SplitConfig("Sideways");
  EXPECT_EQ(LoadError(j), "tokenizer.json: pre_tokenizer.behavior: unsupported behavior "
                          "\"Sideways\"");
}

TEST(HfTokenizerLoadTest, BadValuesNameTheirPath) {
  json j = TokenizerJson(kAbcVocab);
  j["model"]["dropout"] = 0.1;
  EXPECT_THAT(LoadError(j), HasSubstr("tokenizer.json: model.dropout: only null"));
  j = TokenizerJson(kAbcVocab);
  j["truncation"] = {{"max_length", 10}};
  EXPECT_EQ(LoadError(j), "tokenizer.json: truncation: unsupported: must be null");
  j = TokenizerJson({{"a", "zero"}});
  EXPECT_EQ(LoadError(j), "tokenizer.json: model.vocab.a: expected an integer, got \"zero\"");
  j = TokenizerJson(kAbcVocab);
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(a"}}},
                        {"behavior", "Isolated"}, {"invert", false}};
  EXPECT_THAT(LoadError(j), HasSubstr("tokenizer.json: pre_tokenizer.pattern.Regex: regex does "
                                      "not compile"));
  j = TokenizerJson(kAbcVocab);
  j["added_tokens"] = {{{"id", 9}, {"content", 5}}};
  EXPECT_EQ(LoadError(j), "tokenizer.json: added_tokens[0].content: expected a string, got number");
  j = LlamaLikeTokenizer();
  j["post_processor"]["single"][2]["SpecialToken"]["id"] = "<eos>";
  EXPECT_EQ(LoadError(j), "tokenizer.json: post_processor.single[2].SpecialToken.id: \"<eos>\" is "
                          "not in post_processor.special_tokens");
  auto not_json = HfTokenizer::FromJson("{", "");
  ASSERT_FALSE(not_json.ok());
  EXPECT_THAT(not_json.status().message(), HasSubstr("tokenizer.json: not valid JSON"));
  auto missing = HfTokenizer::Load("/nonexistent-dir");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

// ---------------------------------------------------------------------------------------------
// generation_config.json

TEST(GenerationConfigTest, ReadsEosAsIntOrListAndSamplingDefaults) {
  auto single = GenerationConfig::FromJson(R"({"eos_token_id": 2, "bos_token_id": 1})");
  ASSERT_TRUE(single.ok()) << single.status();
  EXPECT_THAT(single->eos_token_ids, ElementsAre(2));
  EXPECT_EQ(single->bos_token_id, 1);
  EXPECT_FALSE(single->temperature.has_value());
  auto list = GenerationConfig::FromJson(
      R"({"eos_token_id": [151645, 151643], "temperature": 0.7, "top_p": 0.8, "top_k": 20,
          "repetition_penalty": 1.05, "do_sample": true})");
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_THAT(list->eos_token_ids, ElementsAre(151645, 151643));
  EXPECT_EQ(list->temperature, 0.7);
  EXPECT_EQ(list->top_p, 0.8);
  EXPECT_EQ(list->top_k, 20);
  EXPECT_EQ(list->repetition_penalty, 1.05);
  EXPECT_EQ(list->do_sample, true);
}

TEST(GenerationConfigTest, WrongTypesNameFileAndPath) {
  auto bad = GenerationConfig::FromJson(R"({"eos_token_id": [1, "2"]})");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "generation_config.json: eos_token_id[1]: expected an integer, got \"2\"");
  bad = GenerationConfig::FromJson(R"({"do_sample": "yes"})");
  EXPECT_EQ(bad.status().message(),
            "generation_config.json: do_sample: expected true or false, got string");
  EXPECT_EQ(GenerationConfig::Load("/nonexistent-dir").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace kvserve::engine
