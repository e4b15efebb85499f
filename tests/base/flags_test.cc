#include "base/flags.h"

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvserve::base {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Parses `args` as if they followed a program name (argv[0] = "prog", first = 1).
absl::Status ParseArgs(FlagSet& flags, std::vector<std::string> args,
                       std::vector<std::string>* positional = nullptr) {
  args.insert(args.begin(), "prog");
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  return flags.Parse(static_cast<int>(args.size()), argv.data(), 1, positional);
}

absl::Status Invalid(std::string message) { return absl::InvalidArgumentError(message); }

TEST(FlagSetTest, ParsesStringWithEitherValueSyntax) {
  std::string model = "default";
  std::string prompt;
  FlagSet flags("prog", "");
  flags.AddString("model", &model, "");
  flags.AddString("prompt", &prompt, "");

  ASSERT_EQ(ParseArgs(flags, {"--model=tiny", "--prompt", "hello world"}), absl::OkStatus());
  EXPECT_EQ(model, "tiny");
  EXPECT_EQ(prompt, "hello world");
}

TEST(FlagSetTest, StringValueMayBeEmptyOrContainEqualsAndDashes) {
  std::string a = "x";
  std::string b;
  std::string c;
  FlagSet flags("prog", "");
  flags.AddString("a", &a, "");
  flags.AddString("b", &b, "");
  flags.AddString("c", &c, "");

  ASSERT_EQ(ParseArgs(flags, {"--a=", "--b=k=v", "--c", "--not-a-flag"}), absl::OkStatus());
  EXPECT_EQ(a, "");
  EXPECT_EQ(b, "k=v");
  EXPECT_EQ(c, "--not-a-flag");
}

TEST(FlagSetTest, ParsesSignedIntegers) {
  int64_t a = 0;
  int64_t b = 0;
  int64_t c = 0;
  FlagSet flags("prog", "");
  flags.AddInt("a", &a, "");
  flags.AddInt("b", &b, "");
  flags.AddInt("c", &c, "");

  ASSERT_EQ(ParseArgs(flags, {"--a=42", "--b", "-7", "--c=-9223372036854775808"}),
            absl::OkStatus());
  EXPECT_EQ(a, 42);
  EXPECT_EQ(b, -7);
  EXPECT_EQ(c, std::numeric_limits<int64_t>::min());
}

TEST(FlagSetTest, ParsesUint64UpToItsMaximum) {
  uint64_t seed = 1;
  FlagSet flags("prog", "");
  flags.AddUint64("seed", &seed, "");

  ASSERT_EQ(ParseArgs(flags, {"--seed", "18446744073709551615"}), absl::OkStatus());
  EXPECT_EQ(seed, std::numeric_limits<uint64_t>::max());
  ASSERT_EQ(ParseArgs(flags, {"--seed=0"}), absl::OkStatus());
  EXPECT_EQ(seed, 0u);
}

TEST(FlagSetTest, ParsesDoublesInDecimalAndScientificNotation) {
  double temperature = 1.0;
  double top_p = 1.0;
  FlagSet flags("prog", "");
  flags.AddDouble("temperature", &temperature, "");
  flags.AddDouble("top-p", &top_p, "");

  ASSERT_EQ(ParseArgs(flags, {"--temperature=0.25", "--top-p", "-1.5e-3"}), absl::OkStatus());
  EXPECT_EQ(temperature, 0.25);
  EXPECT_EQ(top_p, -1.5e-3);
}

TEST(FlagSetTest, BoolAcceptsBareNameExplicitValueAndNoPrefix) {
  bool verbose = false;
  FlagSet flags("prog", "");
  flags.AddBool("verbose", &verbose, "");

  ASSERT_EQ(ParseArgs(flags, {"--verbose"}), absl::OkStatus());
  EXPECT_TRUE(verbose);
  ASSERT_EQ(ParseArgs(flags, {"--verbose=false"}), absl::OkStatus());
  EXPECT_FALSE(verbose);
  ASSERT_EQ(ParseArgs(flags, {"--verbose=true"}), absl::OkStatus());
  EXPECT_TRUE(verbose);
  ASSERT_EQ(ParseArgs(flags, {"--noverbose"}), absl::OkStatus());
  EXPECT_FALSE(verbose);
}

TEST(FlagSetTest, BoolNeverTakesTheNextArgumentAsItsValue) {
  bool verbose = false;
  std::vector<std::string> positional;
  FlagSet flags("prog", "");
  flags.AddBool("verbose", &verbose, "");

  ASSERT_EQ(ParseArgs(flags, {"--verbose", "false"}, &positional), absl::OkStatus());
  EXPECT_TRUE(verbose);
  EXPECT_THAT(positional, ElementsAre("false"));
}

TEST(FlagSetTest, RepeatedStringAccumulatesInOrder) {
  std::vector<std::string> stop;
  FlagSet flags("prog", "");
  flags.AddRepeatedString("stop", &stop, "");

  ASSERT_EQ(ParseArgs(flags, {"--stop=a", "--stop", "b", "--stop=a"}), absl::OkStatus());
  EXPECT_THAT(stop, ElementsAre("a", "b", "a"));
}

TEST(FlagSetTest, RepeatedStringDefaultIsReplacedOnlyWhenTheFlagIsGiven) {
  std::vector<std::string> stop = {"\n"};
  FlagSet flags("prog", "");
  flags.AddRepeatedString("stop", &stop, "");

  ASSERT_EQ(ParseArgs(flags, {}), absl::OkStatus());
  EXPECT_THAT(stop, ElementsAre("\n"));
  ASSERT_EQ(ParseArgs(flags, {"--stop=x", "--stop=y"}), absl::OkStatus());
  EXPECT_THAT(stop, ElementsAre("x", "y"));
}

TEST(FlagSetTest, CollectsPositionalArgumentsBetweenFlags) {
  std::string model;
  std::vector<std::string> positional;
  FlagSet flags("prog", "");
  flags.AddString("model", &model, "");

  ASSERT_EQ(ParseArgs(flags, {"a", "--model=m", "-", "b"}, &positional), absl::OkStatus());
  EXPECT_EQ(model, "m");
  EXPECT_THAT(positional, ElementsAre("a", "-", "b"));
}

TEST(FlagSetTest, DoubleDashEndsFlags) {
  int64_t n = 0;
  std::vector<std::string> positional;
  FlagSet flags("prog", "");
  flags.AddInt("n", &n, "");

  ASSERT_EQ(ParseArgs(flags, {"--n=1", "--", "--n=2", "--unknown", "--"}, &positional),
            absl::OkStatus());
  EXPECT_EQ(n, 1);
  EXPECT_THAT(positional, ElementsAre("--n=2", "--unknown", "--"));
}

TEST(FlagSetTest, DoubleDashWithNothingAfterItNeedsNoPositionalVector) {
  FlagSet flags("prog", "");
  EXPECT_EQ(ParseArgs(flags, {"--"}), absl::OkStatus());
}

TEST(FlagSetTest, PositionalArgumentIsAnErrorWhenNotAccepted) {
  FlagSet flags("prog", "");
  EXPECT_EQ(ParseArgs(flags, {"stray"}), Invalid("unexpected argument 'stray'"));
  EXPECT_EQ(ParseArgs(flags, {"--", "after"}), Invalid("unexpected argument 'after'"));
}

TEST(FlagSetTest, StopAtFirstPositionalLeavesTheRestUnparsed) {
  std::string target;
  std::vector<std::string> positional;
  FlagSet flags("prog", "");
  flags.AddString("target", &target, "");
  flags.set_stop_at_first_positional(true);

  ASSERT_EQ(ParseArgs(flags, {"--target", "h:1", "generate", "--prompt", "hi", "--target=x"},
                      &positional),
            absl::OkStatus());
  EXPECT_EQ(target, "h:1");
  EXPECT_THAT(positional, ElementsAre("generate", "--prompt", "hi", "--target=x"));
}

TEST(FlagSetTest, ParseStartsAtTheGivenIndex) {
  std::string a;
  std::string command = "generate";
  std::string value = "--a=x";
  std::string prog = "prog";
  char* argv[] = {prog.data(), command.data(), value.data(), nullptr};
  FlagSet flags("prog", "");
  flags.AddString("a", &a, "");

  ASSERT_EQ(flags.Parse(3, argv, 2, nullptr), absl::OkStatus());
  EXPECT_EQ(a, "x");
  EXPECT_EQ(flags.Parse(3, argv, 3, nullptr), absl::OkStatus());
}

TEST(FlagSetTest, UnknownFlagSuggestsTheClosestName) {
  std::string model;
  std::string mode;
  FlagSet flags("prog", "");
  flags.AddString("model", &model, "");
  flags.AddString("mode", &mode, "");

  // "modle" is two edits from both; ties go to the alphabetically first name.
  EXPECT_EQ(ParseArgs(flags, {"--modle=x"}),
            Invalid("unknown flag --modle (did you mean --mode?)"));
  EXPECT_EQ(ParseArgs(flags, {"--modelx"}),
            Invalid("unknown flag --modelx (did you mean --model?)"));
}

TEST(FlagSetTest, UnknownFlagWithNoCloseNameHasNoSuggestion) {
  std::string model;
  FlagSet flags("prog", "");
  flags.AddString("model", &model, "");

  EXPECT_EQ(ParseArgs(flags, {"--temperature=2"}), Invalid("unknown flag --temperature"));
}

TEST(FlagSetTest, UnknownFlagMaySuggestTheNoFormOfABool) {
  bool ignore_eos = false;
  FlagSet flags("prog", "");
  flags.AddBool("ignore-eos", &ignore_eos, "");

  EXPECT_EQ(ParseArgs(flags, {"--noignore-eo"}),
            Invalid("unknown flag --noignore-eo (did you mean --noignore-eos?)"));
}

TEST(FlagSetTest, SingleDashFlagIsUnknownAndPointsAtTheDoubleDashSpelling) {
  std::string prompt;
  FlagSet flags("prog", "");
  flags.AddString("prompt", &prompt, "");

  EXPECT_EQ(ParseArgs(flags, {"-prompt", "x"}),
            Invalid("unknown flag -prompt (did you mean --prompt?)"));
  EXPECT_EQ(ParseArgs(flags, {"-5"}), Invalid("unknown flag -5"));
}

TEST(FlagSetTest, MissingValueIsAnError) {
  std::string prompt;
  FlagSet flags("prog", "");
  flags.AddString("prompt", &prompt, "");

  EXPECT_EQ(ParseArgs(flags, {"--prompt"}), Invalid("missing value for flag --prompt"));
}

TEST(FlagSetTest, MalformedIntegerIsAnErrorAndLeavesTheValueUnchanged) {
  int64_t n = 5;
  FlagSet flags("prog", "");
  flags.AddInt("max-tokens", &n, "");

  EXPECT_EQ(ParseArgs(flags, {"--max-tokens=12x"}),
            Invalid("invalid value '12x' for flag --max-tokens: expected an integer"));
  EXPECT_EQ(ParseArgs(flags, {"--max-tokens", "+3"}),
            Invalid("invalid value '+3' for flag --max-tokens: expected an integer"));
  EXPECT_EQ(ParseArgs(flags, {"--max-tokens="}),
            Invalid("invalid value '' for flag --max-tokens: expected an integer"));
  EXPECT_EQ(ParseArgs(flags, {"--max-tokens=1.5"}),
            Invalid("invalid value '1.5' for flag --max-tokens: expected an integer"));
  EXPECT_EQ(n, 5);
}

TEST(FlagSetTest, IntegerOutOfRangeIsAnError) {
  int64_t n = 0;
  FlagSet flags("prog", "");
  flags.AddInt("n", &n, "");

  EXPECT_EQ(ParseArgs(flags, {"--n=9223372036854775808"}),
            Invalid("invalid value '9223372036854775808' for flag --n: out of range"));
  EXPECT_EQ(ParseArgs(flags, {"--n=-9223372036854775809"}),
            Invalid("invalid value '-9223372036854775809' for flag --n: out of range"));
}

TEST(FlagSetTest, Uint64RejectsNegativeAndTooLargeValues) {
  uint64_t seed = 0;
  FlagSet flags("prog", "");
  flags.AddUint64("seed", &seed, "");

  EXPECT_EQ(ParseArgs(flags, {"--seed=-1"}),
            Invalid("invalid value '-1' for flag --seed: expected a non-negative integer"));
  EXPECT_EQ(ParseArgs(flags, {"--seed=18446744073709551616"}),
            Invalid("invalid value '18446744073709551616' for flag --seed: out of range"));
}

TEST(FlagSetTest, DoubleRejectsGarbageNonFiniteAndOutOfRangeValues) {
  double t = 1.0;
  FlagSet flags("prog", "");
  flags.AddDouble("temperature", &t, "");

  EXPECT_EQ(ParseArgs(flags, {"--temperature=warm"}),
            Invalid("invalid value 'warm' for flag --temperature: expected a number"));
  EXPECT_EQ(ParseArgs(flags, {"--temperature=0.5x"}),
            Invalid("invalid value '0.5x' for flag --temperature: expected a number"));
  EXPECT_EQ(ParseArgs(flags, {"--temperature=nan"}),
            Invalid("invalid value 'nan' for flag --temperature: expected a finite number"));
  EXPECT_EQ(ParseArgs(flags, {"--temperature=-inf"}),
            Invalid("invalid value '-inf' for flag --temperature: expected a finite number"));
  EXPECT_EQ(ParseArgs(flags, {"--temperature=1e999"}),
            Invalid("invalid value '1e999' for flag --temperature: out of range"));
  EXPECT_EQ(t, 1.0);
}

TEST(FlagSetTest, BoolRejectsValuesOtherThanTrueAndFalse) {
  bool verbose = false;
  FlagSet flags("prog", "");
  flags.AddBool("verbose", &verbose, "");

  EXPECT_EQ(ParseArgs(flags, {"--verbose=yes"}),
            Invalid("invalid value 'yes' for flag --verbose: expected true or false"));
  EXPECT_EQ(ParseArgs(flags, {"--noverbose=true"}),
            Invalid("flag --noverbose takes no value, got 'true'"));
  EXPECT_FALSE(verbose);
}

TEST(FlagSetTest, NoPrefixOnANonBoolFlagIsAnError) {
  std::string prompt;
  FlagSet flags("prog", "");
  flags.AddString("prompt", &prompt, "");

  EXPECT_EQ(
      ParseArgs(flags, {"--noprompt"}),
      Invalid("unknown flag --noprompt: --prompt is not a bool flag, so it has no --no form"));
}

TEST(FlagSetTest, ErrorMessagesNameTheFlagAndTheValue) {
  int64_t top_k = 0;
  FlagSet flags("prog", "");
  flags.AddInt("top-k", &top_k, "");

  const absl::Status status = ParseArgs(flags, {"--top-k", "many"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("--top-k"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("'many'"));
}

TEST(FlagSetTest, HelpStopsParsingWithOk) {
  std::string a;
  std::vector<std::string> positional;
  FlagSet flags("prog", "");
  flags.AddString("a", &a, "");

  ASSERT_EQ(ParseArgs(flags, {"--a=1", "--help", "--unknown", "stray"}, &positional),
            absl::OkStatus());
  EXPECT_TRUE(flags.help_requested());
  EXPECT_EQ(a, "1");
  EXPECT_TRUE(positional.empty());

  ASSERT_EQ(ParseArgs(flags, {"--a=2"}), absl::OkStatus());
  EXPECT_FALSE(flags.help_requested());
  ASSERT_EQ(ParseArgs(flags, {"-h"}), absl::OkStatus());
  EXPECT_TRUE(flags.help_requested());
}

TEST(FlagSetTest, IsSetTellsGivenFromDefaultedFlags) {
  double temperature = 1.0;
  bool ignore_eos = false;
  FlagSet flags("prog", "");
  flags.AddDouble("temperature", &temperature, "");
  flags.AddBool("ignore-eos", &ignore_eos, "");

  ASSERT_EQ(ParseArgs(flags, {"--temperature=1.0", "--noignore-eos"}), absl::OkStatus());
  EXPECT_TRUE(flags.IsSet("temperature"));
  EXPECT_TRUE(flags.IsSet("ignore-eos"));
  ASSERT_EQ(ParseArgs(flags, {}), absl::OkStatus());
  EXPECT_FALSE(flags.IsSet("temperature"));
  EXPECT_FALSE(flags.IsSet("ignore-eos"));
}

TEST(FlagSetTest, UsageListsEveryFlagSortedWithTypeAndDefault) {
  std::string model = "tiny";
  int64_t max_tokens = 16;
  uint64_t seed = 0;
  double top_p = 0.5;
  bool ignore_eos = false;
  std::vector<std::string> stop;
  std::vector<std::string> tags = {"alpha", "beta", "gamma"};
  FlagSet flags("kvserve-cli generate", "Streams a completion.");
  flags.AddString("model", &model, "Model name.");
  flags.AddInt("max-tokens", &max_tokens, "Token budget.");
  flags.AddUint64("seed", &seed, "Sampling seed.");
  flags.AddDouble("top-p", &top_p, "Nucleus mass.");
  flags.AddBool("ignore-eos", &ignore_eos, "Keep going past EOS.");
  flags.AddRepeatedString("stop", &stop, "Stop string.");
  flags.AddRepeatedString("tag", &tags, "Tag.");
  flags.SetDefaultText("seed", "random");

  EXPECT_EQ(flags.Usage(),
            "kvserve-cli generate: Streams a completion.\n"
            "\n"
            "Flags:\n"
            "  --[no]ignore-eos (default: false)   Keep going past EOS.\n"
            "  --max-tokens=<int> (default: 16)    Token budget.\n"
            "  --model=<string> (default: \"tiny\")  Model name.\n"
            "  --seed=<uint64> (default: random)   Sampling seed.\n"
            "  --stop=<string>... (default: none)  Stop string.\n"
            "  --tag=<string>... (default: \"alpha\", \"beta\", \"gamma\")\n"
            "                                      Tag.\n"
            "  --top-p=<double> (default: 0.5)     Nucleus mass.\n"
            "  -h, --help                          Print this help and exit.\n");
}

TEST(FlagSetTest, UsageBreaksLongLinesAtSpacesAndIndentsContinuations) {
  int64_t n = 0;
  const std::string word9 = "abcdefgh ";  // 9 columns with its space.
  std::string paragraph;
  for (int i = 0; i < 12; ++i) paragraph += word9;
  paragraph.pop_back();  // 12 words, 107 columns.
  FlagSet flags("p", paragraph);
  flags.AddInt("n", &n, paragraph);

  // "p: " + 10 words = 92 columns fit in 100. The help column starts at 2 + 22 + 2 = 26, which
  // leaves room for 8 words (71 columns); the rest continue at column 26.
  const std::string eight_words = paragraph.substr(0, 8 * 9 - 1);
  EXPECT_EQ(flags.Usage(), "p: " + paragraph.substr(0, 10 * 9 - 1) + "\n" +
                               "abcdefgh abcdefgh\n"
                               "\n"
                               "Flags:\n"
                               "  --n=<int> (default: 0)  " +
                               eight_words + "\n" + std::string(26, ' ') +
                               "abcdefgh abcdefgh abcdefgh abcdefgh\n"
                               "  -h, --help              Print this help and exit.\n");
}

TEST(FlagSetTest, UsageShowsTheValueAtRegistrationNotAfterParsing) {
  int64_t n = 3;
  FlagSet flags("prog", "Does things.");
  flags.AddInt("n", &n, "Count.");
  ASSERT_EQ(ParseArgs(flags, {"--n=9"}), absl::OkStatus());

  EXPECT_THAT(flags.Usage(), HasSubstr("--n=<int> (default: 3)"));
}

TEST(FlagSetDeathTest, RegisteringANameTwiceAborts) {
  std::string a;
  std::string b;
  FlagSet flags("prog", "");
  flags.AddString("a", &a, "");
  EXPECT_DEATH(flags.AddString("a", &b, ""), "registered twice");
}

TEST(FlagSetDeathTest, AFlagThatShadowsABoolNegationAborts) {
  bool verbose = false;
  std::string noverbose;
  FlagSet flags("prog", "");
  flags.AddBool("verbose", &verbose, "");
  EXPECT_DEATH(flags.AddString("noverbose", &noverbose, ""), "clashes with bool --verbose");
}

}  // namespace
}  // namespace kvserve::base
