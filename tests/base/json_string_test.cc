// AppendJsonQuoted against hand-written literals, and against nlohmann-json's parser (an
// independent implementation) for every byte value.
#include "base/json_string.h"

#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace kvserve::base {
namespace {

std::string Quoted(std::string_view s) {
  std::string out = "x";  // appends, keeping what was there
  AppendJsonQuoted(s, out);
  return out;
}

TEST(JsonStringTest, EscapesQuotesBackslashesAndControlCharacters) {
  EXPECT_EQ(Quoted(""), R"(x"")");
  EXPECT_EQ(Quoted("plain"), R"(x"plain")");
  EXPECT_EQ(Quoted("a\"b\\c"), R"(x"a\"b\\c")");
  EXPECT_EQ(Quoted("\n\r\t\b\f"), R"(x"\n\r\t\b\f")");
  EXPECT_EQ(Quoted(std::string("\x01\x1f\0", 3)), R"(x"\u0001\u001f\u0000")");
  EXPECT_EQ(Quoted("\x7f"), "x\"\x7f\"");  // DEL is not a JSON control character
}

TEST(JsonStringTest, KeepsUtf8AsItIs) {
  EXPECT_EQ(Quoted("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"),
            "x\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80\"");
}

TEST(JsonStringTest, EveryAsciiByteRoundTripsThroughAJsonParser) {
  std::string all;
  for (int c = 0; c < 0x80; ++c) all += static_cast<char>(c);
  std::string out;
  AppendJsonQuoted(all, out);
  EXPECT_EQ(nlohmann::json::parse(out).get<std::string>(), all);
}

}  // namespace
}  // namespace kvserve::base
