// Syntax tree of a parsed chat template. Built once by jinja::Parse, then only read: a tree is
// shared by all concurrent renders of its template.
#ifndef KVSERVE_ENGINE_TEXT_JINJA_AST_H_
#define KVSERVE_ENGINE_TEXT_JINJA_AST_H_

#include <memory>
#include <string>
#include <vector>

#include "engine/text/jinja_value.h"

namespace kvserve::engine::jinja {

enum class ExprKind {
  kLiteral,  // literal
  kName,     // name
  kList,     // children: items
  kTuple,    // children: items (a list at run time)
  kDict,     // children: key0, value0, key1, value1, ...
  kMember,   // children: object; name: attribute (`a.b`)
  kIndex,    // children: object, index (`a[i]`)
  kSlice,    // children: object, start, stop, step (each may be null)
  kCall,     // children: callee, args...; the last kwarg_names.size() args are keyword args
  kFilter,   // children: operand, args...; name: filter; kwarg_names as for kCall
  kTest,     // children: operand, args...; name: test; negated: `is not`
  kUnary,    // children: operand; name: "not", "-" or "+"
  kBinary,   // children: left, right; name: operator ("and", "or", "in", "not in", "+", ...)
  kTernary,  // children: value_if_true, condition, value_if_false (may be null)
};

struct Expr {
  ExprKind kind;
  int height = 1;  // 1 + the tallest child; the parser bounds it (see jinja_parser.h)
  int line = 0;
  int column = 0;
  std::string name;
  Value literal;
  bool negated = false;
  std::vector<std::unique_ptr<Expr>> children;
  std::vector<std::string> kwarg_names;
};

struct Stmt;
using Body = std::vector<std::unique_ptr<Stmt>>;

enum class StmtKind {
  kText,    // text
  kOutput,  // expr
  kIf,      // conditions[i] guards bodies[i]; bodies.back() is the else body when
            // bodies.size() == conditions.size() + 1
  kFor,     // targets, expr (iterable), condition (loop filter, may be null), bodies[0] body,
            // bodies[1] else body (may be empty)
  kSet,     // targets (names) or target_object.target_attr; expr, or bodies[0] for a block set
  kMacro,   // name, params (defaults[i] may be null), bodies[0]
  kBreak,
  kContinue,
};

struct Stmt {
  StmtKind kind;
  int line = 0;
  int column = 0;
  std::string text;
  std::unique_ptr<Expr> expr;
  std::unique_ptr<Expr> condition;
  std::vector<std::unique_ptr<Expr>> conditions;
  std::vector<Body> bodies;
  std::vector<std::string> targets;
  std::string target_object;  // `set ns.attr = ...`: "ns"
  std::string target_attr;    // ... and "attr"
  std::string name;
  std::vector<std::string> params;
  std::vector<std::unique_ptr<Expr>> defaults;
};

}  // namespace kvserve::engine::jinja

#endif  // KVSERVE_ENGINE_TEXT_JINJA_AST_H_
