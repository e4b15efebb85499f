#include "server/status_map.h"

#include <string>

#include "gtest/gtest.h"

namespace kvserve::server {
namespace {

TEST(QuoteClientTextTest, KeepsTextUpToTheLimitWhole) {
  EXPECT_EQ(QuoteClientText(""), "");
  const std::string at_limit(kMaxQuotedBytes, 'a');
  EXPECT_EQ(QuoteClientText(at_limit), at_limit);
}

TEST(QuoteClientTextTest, CutsLongerTextAndSaysHowLongItWas) {
  const std::string text(kMaxQuotedBytes + 1, 'a');
  EXPECT_EQ(QuoteClientText(text), std::string(kMaxQuotedBytes, 'a') + "... (65 bytes)");
}

TEST(QuoteClientTextTest, NeverSplitsAUtf8Character) {
  // 63 ASCII bytes, then U+20AC (3 bytes: E2 82 AC) across the 64-byte limit.
  const std::string text = std::string(kMaxQuotedBytes - 1, 'a') + "\xE2\x82\xAC" + "tail";
  EXPECT_EQ(QuoteClientText(text), std::string(kMaxQuotedBytes - 1, 'a') + "... (70 bytes)");
  // A character ending exactly at the limit is kept.
  const std::string fits = std::string(kMaxQuotedBytes - 3, 'a') + "\xE2\x82\xAC" + "tail";
  EXPECT_EQ(QuoteClientText(fits),
            std::string(kMaxQuotedBytes - 3, 'a') + "\xE2\x82\xAC" + "... (68 bytes)");
}

}  // namespace
}  // namespace kvserve::server
