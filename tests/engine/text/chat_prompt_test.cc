#include "engine/text/chat_prompt.h"

#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvserve::engine {
namespace {

using ::testing::HasSubstr;

constexpr char kTemplate[] =
    "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>"
    "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";

ChatPrompt Prompt() {
  return ChatPrompt::Create({{"default", kTemplate},
                             {"terse", "{% for m in messages %}{{ m.content }}|{% endfor %}"},
                             {"broken", "{% for m in messages %}"}},
                            "<s>", "</s>");
}

TEST(ChatPromptTest, RendersWithTheDefaultTemplateAndItsSpecialTokenStrings) {
  const std::vector<ChatMessage> messages = {{"system", "Be brief."}, {"user", "Hi"}};
  absl::StatusOr<std::string> text = Prompt().Render(messages, /*add_generation_prompt=*/true);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "<s><system>Be brief.</system><user>Hi</user><assistant>");
  text = Prompt().Render(messages, /*add_generation_prompt=*/false);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "<s><system>Be brief.</system><user>Hi</user>");
}

TEST(ChatPromptTest, OverrideNamesAModelTemplateOrIsATemplateOfItsOwn) {
  const std::vector<ChatMessage> messages = {{"user", "a"}, {"assistant", "b"}};
  EXPECT_EQ(Prompt().Render(messages, true, "terse").value(), "a|b|");
  EXPECT_EQ(Prompt().Render(messages, true, "{{ messages | length }}{{ eos_token }}").value(),
            "2</s>");
}

TEST(ChatPromptTest, RejectsEmptyConversationsAndUnknownRolesNamingTheField) {
  absl::StatusOr<std::string> text = Prompt().Render({}, true);
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(text.status().message(), "messages: must not be empty");
  text = Prompt().Render({{"user", "x"}, {"wizard", "y"}}, true);
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(text.status().message(),
            "messages[1].role: must be system, user, assistant or tool, got 'wizard'");
}

TEST(ChatPromptTest, WithoutATemplateIsAFailedPrecondition) {
  absl::StatusOr<std::string> text = ChatPrompt().Render({{"user", "x"}}, true);
  EXPECT_EQ(text.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(text.status().message(), HasSubstr("chat_template: this model has no chat template"));
  // A request's own template still works.
  EXPECT_EQ(ChatPrompt().Render({{"user", "x"}}, true, "[{{ messages[0].content }}]").value(),
            "[x]");
}

TEST(ChatPromptTest, TemplateErrorsAreInvalidArgumentWithTheTemplatesMessage) {
  absl::StatusOr<std::string> text =
      Prompt().Render({{"user", "x"}}, true, "{{ raise_exception('Only user turns, please') }}");
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(text.status().message(), "chat_template: Only user turns, please");
  text = Prompt().Render({{"user", "x"}}, true, "broken");
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(text.status().message(), HasSubstr("the model's template 'broken' cannot be used"));
  text = Prompt().Render({{"user", "x"}}, true, "{% if %}");
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(text.status().message(), HasSubstr("chat_template: chat template syntax error"));
}

TEST(ChatPromptTest, ATemplateThatNeverEndsStopsAtTheWorkCap) {
  RenderOptions options;
  options.max_steps = 10'000;
  absl::StatusOr<std::string> text =
      Prompt().Render({{"user", "x"}}, true,
                      "{% for i in range(1000000) %}{% for j in range(1000000) %}.{% endfor %}"
                      "{% endfor %}",
                      options);
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(text.status().message(), HasSubstr("chat_template: "));
}

}  // namespace
}  // namespace kvserve::engine
