#include "engine/text/tokenizer.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvserve::engine {
namespace {

TEST(ByteTokenizerTest, EncodesBytesAfterBos) {
  ByteTokenizer tokenizer(320, 256, 257);
  auto ids = tokenizer.Encode("Hi \xC3\xA9");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<int32_t>{256, 'H', 'i', ' ', 0xC3, 0xA9}));
}

TEST(ByteTokenizerTest, DecodesBytesAndHidesSpecialTokens) {
  ByteTokenizer tokenizer(320, 256, 257);
  EXPECT_EQ(tokenizer.Decode('a'), "a");
  EXPECT_EQ(tokenizer.Decode(0xE2), "\xE2");
  EXPECT_EQ(tokenizer.Decode(256), "");
  EXPECT_EQ(tokenizer.Decode(257), "");
  EXPECT_EQ(tokenizer.Decode(300), "");
}

TEST(ByteTokenizerTest, SpecialIdsBelow256DecodeToNothing) {
  ByteTokenizer tokenizer(64, 1, 2);
  EXPECT_EQ(tokenizer.Decode(1), "");
  EXPECT_EQ(tokenizer.Decode(2), "");
  EXPECT_EQ(tokenizer.Decode(3), "\x03");
}

TEST(ByteTokenizerTest, RejectsBytesOutsideASmallVocabulary) {
  ByteTokenizer tokenizer(64, -1, 2);
  auto ok = tokenizer.Encode("!0");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, (std::vector<int32_t>{'!', '0'}));
  auto bad = tokenizer.Encode("0A");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(bad.status().message()),
            "byte 0x41 at offset 1 has no token in this model's 64-token byte vocabulary");
}

TEST(ByteTokenizerTest, OmitsBosWithoutSpecialTokensAndDecodesWholeSequences) {
  ByteTokenizer tokenizer(320, 256, 257);
  auto ids = tokenizer.Encode("Hi", /*add_special_tokens=*/false);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<int32_t>{'H', 'i'}));
  EXPECT_TRUE(tokenizer.IsSpecial(256));
  EXPECT_TRUE(tokenizer.IsSpecial(257));
  EXPECT_FALSE(tokenizer.IsSpecial('H'));
  EXPECT_EQ(tokenizer.vocab_size(), 320);
  const std::vector<int32_t> text = {256, 'H', 0xC3, 0xA9, 0xE2, 257};
  EXPECT_EQ(tokenizer.DecodeAll(text, /*skip_special_tokens=*/true), "H\xC3\xA9\xEF\xBF\xBD");
}

}  // namespace
}  // namespace kvserve::engine
