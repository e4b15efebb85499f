// Lexer of the chat-template (Jinja subset) language.
//
// Splits a template into text and tag tokens and applies Jinja's whitespace rules with the
// settings transformers uses for chat templates (trim_blocks=True, lstrip_blocks=True,
// keep_trailing_newline=False):
//   1. `{%-`, `{{-`, `{#-` strip all whitespace before the tag; `-%}`, `-}}`, `-#}` strip all
//      whitespace after it.
//   2. trim_blocks: the first newline after a block tag `%}` or comment `#}` is removed.
//   3. lstrip_blocks: spaces and tabs from the start of a line up to a block tag or comment are
//      removed (`{%+` opts out).
//   4. One trailing newline at the end of the template is removed.
// Comments produce no tokens; `{% raw %}...{% endraw %}` becomes one text token.
//
// Thread-safety: a pure function.
#ifndef KVSERVE_ENGINE_TEXT_JINJA_LEXER_H_
#define KVSERVE_ENGINE_TEXT_JINJA_LEXER_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kvserve::engine::jinja {

enum class TokenKind {
  kText,        // literal output; `text` holds it
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kVarBegin,    // {{
  kVarEnd,      // }}
  kName,        // identifier or keyword
  kString,      // string literal, escapes decoded into `text`
  kInt,
  kFloat,
  kOperator,  // + - * / // % ** ~ == != < <= > >= = ( ) [ ] { } , . : |
  kEnd,       // end of input
};

struct Token {
  TokenKind kind;
  std::string text;  // text, name, decoded string, operator, or number spelling
  int line = 1;      // 1-based position of the token's start in the source
  int column = 1;
};

// Errors: absl::InvalidArgumentError naming line and column (unterminated tag, string or raw
// block; unexpected character).
absl::StatusOr<std::vector<Token>> Lex(std::string_view source);

}  // namespace kvserve::engine::jinja

#endif  // KVSERVE_ENGINE_TEXT_JINJA_LEXER_H_
