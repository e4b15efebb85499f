// Parser of the chat-template (Jinja subset) language: tokens from jinja::Lex to a syntax tree.
//
// Statements: if/elif/else, for (tuple targets, `if` filter, else, loop.*), set (names, tuples,
// `ns.attr`, block set), macro, break/continue, and transformers' `generation` markers (ignored).
// Expressions follow Jinja's precedence, lowest first: `a if c else b`, or, and, not, comparisons
// (== != < <= > >= in, not in), + -, ~, * / // %, **, unary - +, then primary with postfix
// `.attr`, `[index]`, `[a:b:c]`, `(args)`, `| filter`, `is [not] test`.
//
// Limits: blocks nest at most 200 deep and expression trees are at most 256 nodes tall (long
// `a + b + ...` or `x|f|g|...` chains count), so that rendering and destroying a tree cannot
// overflow the stack; deeper templates are a syntax error.
//
// Thread-safety: a pure function.
#ifndef KVSERVE_ENGINE_TEXT_JINJA_PARSER_H_
#define KVSERVE_ENGINE_TEXT_JINJA_PARSER_H_

#include <string_view>

#include "absl/status/statusor.h"
#include "engine/text/jinja_ast.h"

namespace kvserve::engine::jinja {

// Errors: absl::InvalidArgumentError "chat template syntax error at line L column C: ...".
absl::StatusOr<Body> Parse(std::string_view source);

}  // namespace kvserve::engine::jinja

#endif  // KVSERVE_ENGINE_TEXT_JINJA_PARSER_H_
