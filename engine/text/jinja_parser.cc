#include "engine/text/jinja_parser.h"

#include <cstdlib>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/text/jinja_lexer.h"

namespace kvserve::engine::jinja {
namespace {

// Nesting deeper than this is rejected so a hostile template cannot overflow the stack.
constexpr int kMaxNesting = 200;
// Expression trees taller than this likewise; left-associative chains grow height without
// recursing in the parser, so nesting alone does not bound it.
constexpr int kMaxExprHeight = 256;

using ExprPtr = std::unique_ptr<Expr>;

// Recursive descent. Parse functions return null after recording the first error in error_, which
// keeps the grammar readable without exceptions.
class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  absl::StatusOr<Body> Run() {
    Body body;
    std::string end_tag;
    if (!ParseBody(body, {}, end_tag)) return error_;
    return body;
  }

 private:
  const Token& Peek(size_t ahead = 0) const {
    size_t i = std::min(pos_ + ahead, tokens_.size() - 1);
    return tokens_[i];
  }
  const Token& Next() {
    const Token& t = tokens_[pos_];
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return t;
  }
  bool IsOp(std::string_view op, size_t ahead = 0) const {
    return Peek(ahead).kind == TokenKind::kOperator && Peek(ahead).text == op;
  }
  bool IsName(std::string_view name, size_t ahead = 0) const {
    return Peek(ahead).kind == TokenKind::kName && Peek(ahead).text == name;
  }
  bool Fail(const Token& at, std::string_view message) {
    if (error_.ok()) {
      error_ = absl::InvalidArgumentError(absl::StrCat("chat template syntax error at line ",
                                                       at.line, " column ", at.column, ": ",
                                                       std::string(message)));
    }
    return false;
  }
  std::string Describe(const Token& t) const {
    switch (t.kind) {
      case TokenKind::kEnd:
        return "end of template";
      case TokenKind::kBlockEnd:
        return "'%}'";
      case TokenKind::kVarEnd:
        return "'}}'";
      case TokenKind::kString:
        return "string literal";
      default:
        return absl::StrCat("'", t.text, "'");
    }
  }
  bool ExpectOp(std::string_view op) {
    if (IsOp(op)) {
      Next();
      return true;
    }
    return Fail(Peek(), absl::StrCat("expected '", std::string(op), "', got ", Describe(Peek())));
  }
  bool ExpectBlockEnd() {
    if (Peek().kind == TokenKind::kBlockEnd) {
      Next();
      return true;
    }
    return Fail(Peek(), absl::StrCat("expected '%}', got ", Describe(Peek())));
  }
  bool ExpectName(std::string& out) {
    if (Peek().kind != TokenKind::kName) {
      return Fail(Peek(), absl::StrCat("expected a name, got ", Describe(Peek())));
    }
    out = Next().text;
    return true;
  }

  // Parses statements until a block tag named in `end_tags` (left after its name in end_tag) or
  // the end of input (only allowed when end_tags is empty).
  bool ParseBody(Body& body, std::vector<std::string_view> end_tags, std::string& end_tag) {
    if (++depth_ > kMaxNesting) return Fail(Peek(), "blocks nested too deeply");
    while (true) {
      const Token& t = Peek();
      if (t.kind == TokenKind::kEnd) {
        if (end_tags.empty()) break;
        return Fail(t, absl::StrCat("unexpected end of template; expected '{% ",
                                    std::string(end_tags.back()), " %}'"));
      }
      if (t.kind == TokenKind::kText) {
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::kText;
        s->text = Next().text;
        body.push_back(std::move(s));
        continue;
      }
      if (t.kind == TokenKind::kVarBegin) {
        Next();
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::kOutput;
        s->line = t.line;
        s->column = t.column;
        s->expr = ParseTupleOrExpr();
        if (!s->expr) return false;
        if (Peek().kind != TokenKind::kVarEnd) {
          return Fail(Peek(), absl::StrCat("expected '}}', got ", Describe(Peek())));
        }
        Next();
        body.push_back(std::move(s));
        continue;
      }
      if (t.kind != TokenKind::kBlockBegin) return Fail(t, "unexpected token");
      const Token& name = Peek(1);
      if (name.kind != TokenKind::kName) return Fail(name, "expected a statement name after '{%'");
      for (std::string_view end : end_tags) {
        if (name.text == end) {
          Next();
          end_tag = Next().text;
          --depth_;
          return true;
        }
      }
      Next();
      if (!ParseStatement(body)) return false;
    }
    --depth_;
    return true;
  }

  bool ParseStatement(Body& body) {
    const Token& keyword = Next();
    const std::string& k = keyword.text;
    auto s = std::make_unique<Stmt>();
    s->line = keyword.line;
    s->column = keyword.column;
    if (k == "if") {
      s->kind = StmtKind::kIf;
      while (true) {
        ExprPtr cond = ParseExpr();
        if (!cond || !ExpectBlockEnd()) return false;
        s->conditions.push_back(std::move(cond));
        s->bodies.emplace_back();
        std::string end;
        if (!ParseBody(s->bodies.back(), {"elif", "else", "endif"}, end)) return false;
        if (end == "elif") continue;
        if (end == "else") {
          if (!ExpectBlockEnd()) return false;
          s->bodies.emplace_back();
          if (!ParseBody(s->bodies.back(), {"endif"}, end)) return false;
        }
        if (!ExpectBlockEnd()) return false;
        break;
      }
    } else if (k == "for") {
      s->kind = StmtKind::kFor;
      do {
        std::string target;
        if (!ExpectName(target)) return false;
        s->targets.push_back(target);
      } while (IsOp(",") && (Next(), true));
      if (!IsName("in"))
        return Fail(Peek(), absl::StrCat("expected 'in' in for loop, got ", Describe(Peek())));
      Next();
      // The iterable is parsed without the ternary so that a loop filter `if` stays ours.
      s->expr = ParseOr();
      if (!s->expr) return false;
      if (IsName("if")) {
        Next();
        s->condition = ParseExpr();
        if (!s->condition) return false;
      }
      if (IsName("recursive")) return Fail(Peek(), "recursive loops are not supported");
      if (!ExpectBlockEnd()) return false;
      s->bodies.resize(2);
      std::string end;
      if (!ParseBody(s->bodies[0], {"else", "endfor"}, end)) return false;
      if (end == "else") {
        if (!ExpectBlockEnd() || !ParseBody(s->bodies[1], {"endfor"}, end)) return false;
      }
      if (!ExpectBlockEnd()) return false;
    } else if (k == "set") {
      s->kind = StmtKind::kSet;
      std::string first;
      if (!ExpectName(first)) return false;
      if (IsOp(".")) {
        Next();
        s->target_object = first;
        if (!ExpectName(s->target_attr)) return false;
      } else {
        s->targets.push_back(first);
        while (IsOp(",")) {
          Next();
          std::string more;
          if (!ExpectName(more)) return false;
          s->targets.push_back(more);
        }
      }
      if (IsOp("=")) {
        Next();
        s->expr = ParseTupleOrExpr();
        if (!s->expr || !ExpectBlockEnd()) return false;
      } else {
        if (s->targets.size() != 1) return Fail(Peek(), "a block set assigns exactly one name");
        if (!ExpectBlockEnd()) return false;
        s->bodies.emplace_back();
        std::string end;
        if (!ParseBody(s->bodies[0], {"endset"}, end) || !ExpectBlockEnd()) return false;
      }
    } else if (k == "macro") {
      s->kind = StmtKind::kMacro;
      if (!ExpectName(s->name) || !ExpectOp("(")) return false;
      while (!IsOp(")")) {
        std::string param;
        if (!ExpectName(param)) return false;
        s->params.push_back(param);
        ExprPtr def;
        if (IsOp("=")) {
          Next();
          def = ParseExpr();
          if (!def) return false;
        }
        s->defaults.push_back(std::move(def));
        if (!IsOp(",")) break;
        Next();
      }
      if (!ExpectOp(")") || !ExpectBlockEnd()) return false;
      s->bodies.emplace_back();
      std::string end;
      if (!ParseBody(s->bodies[0], {"endmacro"}, end)) return false;
      if (Peek().kind == TokenKind::kName) Next();  // `{% endmacro name %}`
      if (!ExpectBlockEnd()) return false;
    } else if (k == "break" || k == "continue") {
      s->kind = k == "break" ? StmtKind::kBreak : StmtKind::kContinue;
      if (!ExpectBlockEnd()) return false;
    } else if (k == "generation" || k == "endgeneration") {
      // transformers' AssistantTracker marks assistant text for masks; rendering ignores it.
      return ExpectBlockEnd();
    } else {
      return Fail(keyword, absl::StrCat("unknown or unsupported statement '", k, "'"));
    }
    body.push_back(std::move(s));
    return true;
  }

  ExprPtr Make(ExprKind kind, const Token& at) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = at.line;
    e->column = at.column;
    return e;
  }
  // Records the height of a finished node; null (and an error) when the tree is too tall.
  ExprPtr Seal(ExprPtr e) {
    int tallest = 0;
    for (const auto& child : e->children) {
      if (child) tallest = std::max(tallest, child->height);
    }
    e->height = tallest + 1;
    if (e->height > kMaxExprHeight) {
      Fail(Token{TokenKind::kOperator, "", e->line, e->column}, "expression nested too deeply");
      return nullptr;
    }
    return e;
  }
  ExprPtr Binary(const Token& at, std::string op, ExprPtr left, ExprPtr right) {
    auto e = Make(ExprKind::kBinary, at);
    e->name = std::move(op);
    e->children.push_back(std::move(left));
    e->children.push_back(std::move(right));
    return Seal(std::move(e));
  }

  // `a, b` without parentheses (as in `{% set a, b = 1, 2 %}`) is a tuple.
  ExprPtr ParseTupleOrExpr() {
    const Token& at = Peek();
    ExprPtr first = ParseExpr();
    if (!first || !IsOp(",")) return first;
    auto tuple = Make(ExprKind::kTuple, at);
    tuple->children.push_back(std::move(first));
    while (IsOp(",")) {
      Next();
      ExprPtr item = ParseExpr();
      if (!item) return nullptr;
      tuple->children.push_back(std::move(item));
    }
    return Seal(std::move(tuple));
  }

  ExprPtr ParseExpr() {
    if (++depth_ > kMaxNesting) {
      Fail(Peek(), "expression nested too deeply");
      return nullptr;
    }
    const Token& at = Peek();
    ExprPtr value = ParseOr();
    while (value && IsName("if")) {
      Next();
      ExprPtr cond = ParseOr();
      if (!cond) return nullptr;
      ExprPtr otherwise;
      if (IsName("else")) {
        Next();
        otherwise = ParseExpr();
        if (!otherwise) return nullptr;
      }
      auto e = Make(ExprKind::kTernary, at);
      e->children.push_back(std::move(value));
      e->children.push_back(std::move(cond));
      e->children.push_back(std::move(otherwise));
      value = Seal(std::move(e));
    }
    --depth_;
    return value;
  }

  ExprPtr ParseOr() {
    ExprPtr left = ParseAnd();
    while (left && IsName("or")) {
      const Token& at = Next();
      ExprPtr right = ParseAnd();
      if (!right) return nullptr;
      left = Binary(at, "or", std::move(left), std::move(right));
    }
    return left;
  }

  ExprPtr ParseAnd() {
    ExprPtr left = ParseNot();
    while (left && IsName("and")) {
      const Token& at = Next();
      ExprPtr right = ParseNot();
      if (!right) return nullptr;
      left = Binary(at, "and", std::move(left), std::move(right));
    }
    return left;
  }

  ExprPtr ParseNot() {
    if (IsName("not")) {
      const Token& at = Next();
      if (++depth_ > kMaxNesting) {
        Fail(at, "expression nested too deeply");
        return nullptr;
      }
      ExprPtr operand = ParseNot();
      --depth_;
      if (!operand) return nullptr;
      auto e = Make(ExprKind::kUnary, at);
      e->name = "not";
      e->children.push_back(std::move(operand));
      return Seal(std::move(e));
    }
    return ParseCompare();
  }

  ExprPtr ParseCompare() {
    ExprPtr left = ParseAdd();
    while (left) {
      const Token& at = Peek();
      std::string op;
      if (at.kind == TokenKind::kOperator &&
          (at.text == "==" || at.text == "!=" || at.text == "<" || at.text == "<=" ||
           at.text == ">" || at.text == ">=")) {
        op = at.text;
        Next();
      } else if (IsName("in")) {
        op = "in";
        Next();
      } else if (IsName("not") && IsName("in", 1)) {
        op = "not in";
        Next();
        Next();
      } else {
        break;
      }
      ExprPtr right = ParseAdd();
      if (!right) return nullptr;
      left = Binary(at, op, std::move(left), std::move(right));
    }
    return left;
  }

  ExprPtr ParseAdd() {
    ExprPtr left = ParseConcat();
    while (left && (IsOp("+") || IsOp("-"))) {
      const Token& at = Next();
      ExprPtr right = ParseConcat();
      if (!right) return nullptr;
      left = Binary(at, at.text, std::move(left), std::move(right));
    }
    return left;
  }

  ExprPtr ParseConcat() {
    ExprPtr left = ParseMul();
    while (left && IsOp("~")) {
      const Token& at = Next();
      ExprPtr right = ParseMul();
      if (!right) return nullptr;
      left = Binary(at, "~", std::move(left), std::move(right));
    }
    return left;
  }

  ExprPtr ParseMul() {
    ExprPtr left = ParsePow();
    while (left && (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%"))) {
      const Token& at = Next();
      ExprPtr right = ParsePow();
      if (!right) return nullptr;
      left = Binary(at, at.text, std::move(left), std::move(right));
    }
    return left;
  }

  ExprPtr ParsePow() {
    ExprPtr left = ParseUnary();
    while (left && IsOp("**")) {
      const Token& at = Next();
      ExprPtr right = ParseUnary();
      if (!right) return nullptr;
      left = Binary(at, "**", std::move(left), std::move(right));
    }
    return left;
  }

  // Jinja binds `.attr`, `[i]` and calls tighter than unary minus, but filters and tests looser:
  // `-x|abs` is abs(-x), `-x.y` is -(x.y).
  ExprPtr ParseUnary(bool with_filters = true) {
    ExprPtr e;
    if (IsOp("-") || IsOp("+")) {
      const Token& at = Next();
      if (++depth_ > kMaxNesting) {
        Fail(at, "expression nested too deeply");
        return nullptr;
      }
      ExprPtr operand = ParseUnary(false);
      --depth_;
      if (!operand) return nullptr;
      e = Make(ExprKind::kUnary, at);
      e->name = at.text;
      e->children.push_back(std::move(operand));
      e = Seal(std::move(e));
      if (!e) return nullptr;
    } else {
      e = ParsePrimary();
      if (!e) return nullptr;
      e = ParsePostfix(std::move(e), /*filters=*/false);
      if (!e) return nullptr;
    }
    return with_filters ? ParsePostfix(std::move(e), /*filters=*/true) : std::move(e);
  }

  // Call arguments after '(' up to and including ')'.
  bool ParseArgs(Expr& call) {
    if (!ExpectOp("(")) return false;
    while (!IsOp(")")) {
      if (Peek().kind == TokenKind::kName && IsOp("=", 1)) {
        call.kwarg_names.push_back(Next().text);
        Next();
      } else if (!call.kwarg_names.empty()) {
        return Fail(Peek(), "positional argument follows keyword argument");
      }
      ExprPtr arg = ParseExpr();
      if (!arg) return false;
      call.children.push_back(std::move(arg));
      if (!IsOp(",")) break;
      Next();
    }
    return ExpectOp(")");
  }

  // With `filters`, also `| filter` and `is [not] test`, which Jinja parses after unary operators.
  ExprPtr ParsePostfix(ExprPtr e, bool filters) {
    while (true) {
      const Token& at = Peek();
      if (IsOp(".")) {
        Next();
        const Token& attr = Next();
        if (attr.kind != TokenKind::kName && attr.kind != TokenKind::kInt) {
          Fail(attr, absl::StrCat("expected an attribute name after '.', got ", Describe(attr)));
          return nullptr;
        }
        if (attr.kind == TokenKind::kInt) {  // `a.0` is `a[0]`
          auto index = Make(ExprKind::kIndex, at);
          index->children.push_back(std::move(e));
          auto lit = Make(ExprKind::kLiteral, attr);
          lit->literal = Value::Int(std::strtoll(attr.text.c_str(), nullptr, 10));
          index->children.push_back(std::move(lit));
          e = Seal(std::move(index));
        } else {
          auto member = Make(ExprKind::kMember, at);
          member->name = attr.text;
          member->children.push_back(std::move(e));
          e = Seal(std::move(member));
        }
      } else if (IsOp("[")) {
        Next();
        ExprPtr parts[3];
        int colons = 0;
        while (true) {
          if (IsOp(":")) {
            if (++colons > 2) {
              Fail(Peek(), "too many ':' in slice");
              return nullptr;
            }
            Next();
            continue;
          }
          if (IsOp("]")) break;
          if (parts[colons]) {
            Fail(Peek(), absl::StrCat("expected ']', got ", Describe(Peek())));
            return nullptr;
          }
          parts[colons] = ParseExpr();
          if (!parts[colons]) return nullptr;
        }
        Next();
        if (colons == 0) {
          if (!parts[0]) {
            Fail(at, "empty subscript");
            return nullptr;
          }
          auto index = Make(ExprKind::kIndex, at);
          index->children.push_back(std::move(e));
          index->children.push_back(std::move(parts[0]));
          e = Seal(std::move(index));
        } else {
          auto slice = Make(ExprKind::kSlice, at);
          slice->children.push_back(std::move(e));
          for (auto& p : parts) slice->children.push_back(std::move(p));
          e = Seal(std::move(slice));
        }
      } else if (IsOp("(")) {
        auto call = Make(ExprKind::kCall, at);
        call->children.push_back(std::move(e));
        if (!ParseArgs(*call)) return nullptr;
        e = Seal(std::move(call));
      } else if (filters && IsOp("|")) {
        Next();
        auto filter = Make(ExprKind::kFilter, at);
        if (!ExpectName(filter->name)) return nullptr;
        filter->children.push_back(std::move(e));
        if (IsOp("(") && !ParseArgs(*filter)) return nullptr;
        e = Seal(std::move(filter));
      } else if (filters && IsName("is")) {
        Next();
        auto test = Make(ExprKind::kTest, at);
        if (IsName("not")) {
          Next();
          test->negated = true;
        }
        if (!ExpectName(test->name)) return nullptr;
        test->children.push_back(std::move(e));
        if (IsOp("(")) {
          if (!ParseArgs(*test)) return nullptr;
        } else if (TestArgFollows()) {
          // `x is divisibleby 3`, `x is sameas none`: one argument without parentheses.
          ExprPtr arg = ParsePrimary();
          if (!arg) return nullptr;
          test->children.push_back(std::move(arg));
        }
        e = Seal(std::move(test));
      } else {
        return e;
      }
      if (!e) return nullptr;
    }
  }

  bool TestArgFollows() const {
    const Token& t = Peek();
    if (t.kind == TokenKind::kString || t.kind == TokenKind::kInt || t.kind == TokenKind::kFloat)
      return true;
    if (t.kind == TokenKind::kOperator) return t.text == "[" || t.text == "{";
    if (t.kind != TokenKind::kName) return false;
    static constexpr std::string_view kStop[] = {"else", "or", "and", "if", "is", "in", "not"};
    for (std::string_view stop : kStop) {
      if (t.text == stop) return false;
    }
    return true;
  }

  ExprPtr ParsePrimary() {
    const Token& t = Peek();
    switch (t.kind) {
      case TokenKind::kName: {
        Next();
        auto e = Make(ExprKind::kLiteral, t);
        if (t.text == "true" || t.text == "True") {
          e->literal = Value::Bool(true);
        } else if (t.text == "false" || t.text == "False") {
          e->literal = Value::Bool(false);
        } else if (t.text == "none" || t.text == "None") {
          e->literal = Value::None();
        } else {
          e->kind = ExprKind::kName;
          e->name = t.text;
        }
        return e;
      }
      case TokenKind::kString: {
        std::string s;
        while (Peek().kind == TokenKind::kString) s += Next().text;  // "a" "b" concatenates
        auto e = Make(ExprKind::kLiteral, t);
        e->literal = Value::String(std::move(s));
        return e;
      }
      case TokenKind::kInt: {
        Next();
        auto e = Make(ExprKind::kLiteral, t);
        errno = 0;
        long long v = std::strtoll(t.text.c_str(), nullptr, 10);
        if (errno == ERANGE) {
          Fail(t, "integer literal out of range");
          return nullptr;
        }
        e->literal = Value::Int(v);
        return e;
      }
      case TokenKind::kFloat: {
        Next();
        auto e = Make(ExprKind::kLiteral, t);
        e->literal = Value::Float(std::strtod(t.text.c_str(), nullptr));
        return e;
      }
      case TokenKind::kOperator:
        if (t.text == "(") {
          Next();
          if (IsOp(")")) {  // empty tuple
            Next();
            return Make(ExprKind::kTuple, t);
          }
          ExprPtr inner = ParseExpr();
          if (!inner) return nullptr;
          if (IsOp(",")) {
            auto tuple = Make(ExprKind::kTuple, t);
            tuple->children.push_back(std::move(inner));
            while (IsOp(",")) {
              Next();
              if (IsOp(")")) break;
              ExprPtr item = ParseExpr();
              if (!item) return nullptr;
              tuple->children.push_back(std::move(item));
            }
            inner = Seal(std::move(tuple));
            if (!inner) return nullptr;
          }
          if (!ExpectOp(")")) return nullptr;
          return inner;
        }
        if (t.text == "[" || t.text == "{") {
          bool is_dict = t.text == "{";
          Next();
          auto e = Make(is_dict ? ExprKind::kDict : ExprKind::kList, t);
          std::string close = is_dict ? "}" : "]";
          while (!IsOp(close)) {
            ExprPtr item = ParseExpr();
            if (!item) return nullptr;
            e->children.push_back(std::move(item));
            if (is_dict) {
              if (!ExpectOp(":")) return nullptr;
              ExprPtr value = ParseExpr();
              if (!value) return nullptr;
              e->children.push_back(std::move(value));
            }
            if (!IsOp(",")) break;
            Next();
          }
          if (!ExpectOp(close)) return nullptr;
          return Seal(std::move(e));
        }
        break;
      default:
        break;
    }
    Fail(t, absl::StrCat("unexpected ", Describe(t), " in expression"));
    return nullptr;
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
  absl::Status error_;
};

}  // namespace

absl::StatusOr<Body> Parse(std::string_view source) {
  auto tokens = Lex(source);
  if (!tokens.ok()) return tokens.status();
  return Parser(std::move(*tokens)).Run();
}

}  // namespace kvserve::engine::jinja
