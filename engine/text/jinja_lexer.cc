#include "engine/text/jinja_lexer.h"

#include <algorithm>
#include <cctype>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace kvserve::engine::jinja {
namespace {

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

void AppendUtf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

class Lexer {
 public:
  explicit Lexer(std::string_view src) : src_(src) {
    // keep_trailing_newline=False: Jinja drops one final newline of the source.
    if (!src_.empty() && src_.back() == '\n') {
      src_.remove_suffix(1);
      if (!src_.empty() && src_.back() == '\r') src_.remove_suffix(1);
    }
  }

  absl::StatusOr<std::vector<Token>> Run() {
    size_t pos = 0;
    bool strip_next = false;  // the previous tag ended with '-'
    bool trim_next = false;   // the previous tag was a block or comment (trim_blocks)
    while (pos <= src_.size()) {
      size_t start = FindTagStart(pos);
      char kind = start < src_.size() ? src_[start + 1] : 0;  // '{', '%', '#' or 0 at the end
      char modifier = start + 2 < src_.size() ? src_[start + 2] : 0;
      std::string_view text = src_.substr(pos, start - pos);
      size_t text_pos = pos;
      if (strip_next) {
        size_t n = 0;
        while (n < text.size() && IsSpace(text[n])) ++n;
        text.remove_prefix(n);
        text_pos += n;
      } else if (trim_next) {
        if (text.substr(0, 1) == "\n") {
          text.remove_prefix(1);
          ++text_pos;
        } else if (text.substr(0, 2) == "\r\n") {
          text.remove_prefix(2);
          text_pos += 2;
        }
      }
      if (kind != 0 && modifier == '-') {
        while (!text.empty() && IsSpace(text.back())) text.remove_suffix(1);
      } else if ((kind == '%' || kind == '#') && modifier != '+') {
        text = LstripBlock(text, text_pos);
      }
      if (!text.empty()) Emit(TokenKind::kText, std::string(text), text_pos);
      if (kind == 0) break;

      if (kind == '#') {
        size_t end = src_.find("#}", start + 2);
        if (end == std::string_view::npos) return Error(start, "unterminated comment");
        strip_next = end > start + 2 && src_[end - 1] == '-';
        trim_next = true;
        pos = end + 2;
        continue;
      }
      size_t body = start + 2 + ((modifier == '-' || modifier == '+') ? 1 : 0);
      if (kind == '%') {
        auto raw = TryRaw(start, body, strip_next, trim_next);
        if (!raw.ok()) return raw.status();
        if (*raw != std::string_view::npos) {
          pos = *raw;
          continue;
        }
      }
      Emit(kind == '%' ? TokenKind::kBlockBegin : TokenKind::kVarBegin, kind == '%' ? "{%" : "{{",
           start);
      auto end = LexTagBody(start, body, kind == '%' ? '%' : '}');
      if (!end.ok()) return end.status();
      strip_next = src_[*end] == '-';
      trim_next = kind == '%' && src_[*end - 1] != '+';  // `+%}` keeps the newline
      Emit(kind == '%' ? TokenKind::kBlockEnd : TokenKind::kVarEnd, kind == '%' ? "%}" : "}}",
           *end);
      pos = *end + (strip_next ? 3 : 2);
    }
    Emit(TokenKind::kEnd, "", src_.size());
    return std::move(tokens_);
  }

 private:
  // Position of the next "{{", "{%" or "{#" at or after `pos`, or src_.size().
  size_t FindTagStart(size_t pos) const {
    while (true) {
      size_t p = src_.find('{', pos);
      if (p == std::string_view::npos || p + 1 >= src_.size()) return src_.size();
      char c = src_[p + 1];
      if (c == '{' || c == '%' || c == '#') return p;
      pos = p + 1;
    }
  }

  // lstrip_blocks: drop the spaces and tabs between the last line start and the tag, if only
  // they stand there.
  std::string_view LstripBlock(std::string_view text, size_t text_pos) const {
    size_t line_start = text.rfind('\n');
    size_t from = line_start == std::string_view::npos ? 0 : line_start + 1;
    if (line_start == std::string_view::npos && text_pos > 0 && src_[text_pos - 1] != '\n') {
      return text;  // the tag follows other content on its line
    }
    for (size_t i = from; i < text.size(); ++i) {
      if (text[i] != ' ' && text[i] != '\t') return text;
    }
    return text.substr(0, from);
  }

  // `{% raw %}`: if the block tag at `start` is one, emits its content as text and returns the
  // position after `{% endraw %}`; otherwise npos.
  absl::StatusOr<size_t> TryRaw(size_t start, size_t body, bool& strip_next, bool& trim_next) {
    auto match_word = [&](size_t p, std::string_view word, bool& dash) -> size_t {
      while (p < src_.size() && IsSpace(src_[p])) ++p;
      if (src_.substr(p, word.size()) != word) return std::string_view::npos;
      p += word.size();
      while (p < src_.size() && IsSpace(src_[p])) ++p;
      dash = src_.substr(p, 1) == "-";
      if (dash) ++p;
      if (src_.substr(p, 2) != "%}") return std::string_view::npos;
      return p + 2;
    };
    bool open_dash = false;
    size_t content = match_word(body, "raw", open_dash);
    if (content == std::string_view::npos) return std::string_view::npos;
    size_t search = content;
    while (true) {
      size_t tag = src_.find("{%", search);
      if (tag == std::string_view::npos) return Error(start, "unterminated raw block");
      size_t inner = tag + 2 + (src_.substr(tag + 2, 1) == "-" ? 1 : 0);
      bool close_dash = false;
      size_t after = match_word(inner, "endraw", close_dash);
      if (after == std::string_view::npos) {
        search = tag + 2;
        continue;
      }
      std::string_view text = src_.substr(content, tag - content);
      size_t text_pos = content;
      if (open_dash) {
        while (!text.empty() && IsSpace(text.front())) text.remove_prefix(1), ++text_pos;
      } else if (text.substr(0, 1) == "\n") {
        text.remove_prefix(1);
        ++text_pos;
      }
      if (inner == tag + 3) {
        while (!text.empty() && IsSpace(text.back())) text.remove_suffix(1);
      } else {
        text = LstripBlock(text, text_pos);
      }
      if (!text.empty()) Emit(TokenKind::kText, std::string(text), text_pos);
      strip_next = close_dash;
      trim_next = true;
      return after;
    }
  }

  // Lexes expression tokens from `pos` up to the closing "%}" / "}}" (optionally "-"-prefixed) at
  // bracket depth 0; returns the position of the closing delimiter (of its '-' if present).
  // `tag` is where the tag opened, for the error when it never closes.
  absl::StatusOr<size_t> LexTagBody(size_t tag, size_t pos, char closer) {
    int depth = 0;
    while (true) {
      while (pos < src_.size() && IsSpace(src_[pos])) ++pos;
      if (pos >= src_.size())
        return Error(
            tag, closer == '%' ? "unterminated block tag '{%'" : "unterminated expression '{{'");
      std::string_view rest = src_.substr(pos);
      if (depth == 0) {
        std::string close = closer == '%' ? "%}" : "}}";
        if (rest.substr(0, 2) == close) return pos;
        if (rest.substr(0, 1) == "-" && rest.substr(1, 2) == close) return pos;
        if (closer == '%' && rest.substr(0, 1) == "+" && rest.substr(1, 2) == close) return pos + 1;
      }
      char c = rest[0];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t n = 1;
        while (n < rest.size() &&
               (std::isalnum(static_cast<unsigned char>(rest[n])) || rest[n] == '_'))
          ++n;
        Emit(TokenKind::kName, std::string(rest.substr(0, n)), pos);
        pos += n;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        size_t n = 0;
        bool is_float = false;
        auto digits = [&] {
          while (n < rest.size() &&
                 (std::isdigit(static_cast<unsigned char>(rest[n])) || rest[n] == '_'))
            ++n;
        };
        digits();
        if (n + 1 < rest.size() && rest[n] == '.' &&
            std::isdigit(static_cast<unsigned char>(rest[n + 1]))) {
          is_float = true;
          ++n;
          digits();
        }
        if (n < rest.size() && (rest[n] == 'e' || rest[n] == 'E')) {
          size_t m = n + 1;
          if (m < rest.size() && (rest[m] == '+' || rest[m] == '-')) ++m;
          if (m < rest.size() && std::isdigit(static_cast<unsigned char>(rest[m]))) {
            is_float = true;
            n = m;
            digits();
          }
        }
        std::string spelling(rest.substr(0, n));
        spelling.erase(std::remove(spelling.begin(), spelling.end(), '_'), spelling.end());
        Emit(is_float ? TokenKind::kFloat : TokenKind::kInt, spelling, pos);
        pos += n;
      } else if (c == '\'' || c == '"') {
        auto end = LexString(pos);
        if (!end.ok()) return end.status();
        pos = *end;
      } else {
        static constexpr std::string_view kTwo[] = {"//", "**", "==", "!=", "<=", ">="};
        std::string op;
        for (std::string_view two : kTwo) {
          if (rest.substr(0, 2) == two) op = std::string(two);
        }
        if (op.empty()) {
          if (std::string_view("+-*/%~<>=()[]{},.:|").find(c) == std::string_view::npos) {
            return Error(pos, absl::StrCat("unexpected character '", std::string(1, c), "'"));
          }
          op = std::string(1, c);
          if (c == '(' || c == '[' || c == '{') ++depth;
          if ((c == ')' || c == ']' || c == '}') && depth > 0) --depth;
        }
        Emit(TokenKind::kOperator, op, pos);
        pos += op.size();
      }
    }
  }

  // Python-style escapes: \n \t \r \\ \' \" \a \b \f \v \0 \xNN \uNNNN \UNNNNNNNN; any other
  // backslash stays as written.
  absl::StatusOr<size_t> LexString(size_t pos) {
    char quote = src_[pos];
    std::string out;
    size_t p = pos + 1;
    while (true) {
      if (p >= src_.size()) return Error(pos, "unterminated string literal");
      char c = src_[p];
      if (c == quote) break;
      if (c != '\\' || p + 1 >= src_.size()) {
        out += c;
        ++p;
        continue;
      }
      char e = src_[p + 1];
      p += 2;
      switch (e) {
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case 'a':
          out += '\a';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'v':
          out += '\v';
          break;
        case '0':
          out += '\0';
          break;
        case '\\':
          out += '\\';
          break;
        case '\'':
          out += '\'';
          break;
        case '"':
          out += '"';
          break;
        case '\n':
          break;  // line continuation
        case 'x':
        case 'u':
        case 'U': {
          size_t len = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          std::string_view hex = src_.substr(p, len);
          if (hex.size() != len || !std::all_of(hex.begin(), hex.end(), [](char h) {
                return std::isxdigit(static_cast<unsigned char>(h));
              })) {
            return Error(p - 2, absl::StrCat("truncated \\", std::string(1, e), " escape"));
          }
          AppendUtf8(static_cast<uint32_t>(std::stoul(std::string(hex), nullptr, 16)), out);
          p += len;
          break;
        }
        default:
          out += '\\';
          out += e;
      }
    }
    Emit(TokenKind::kString, std::move(out), pos);
    return p + 1;
  }

  void Emit(TokenKind kind, std::string text, size_t offset) {
    auto [line, column] = Position(offset);
    tokens_.push_back(Token{kind, std::move(text), line, column});
  }

  std::pair<int, int> Position(size_t offset) const {
    int line = 1;
    size_t line_start = 0;
    // Linear from the last lookup: tokens are emitted in source order.
    if (offset >= cache_offset_) {
      line = cache_line_;
      line_start = cache_line_start_;
      for (size_t i = cache_offset_; i < offset && i < src_.size(); ++i) {
        if (src_[i] == '\n') ++line, line_start = i + 1;
      }
    } else {
      for (size_t i = 0; i < offset && i < src_.size(); ++i) {
        if (src_[i] == '\n') ++line, line_start = i + 1;
      }
    }
    cache_offset_ = offset;
    cache_line_ = line;
    cache_line_start_ = line_start;
    return {line, static_cast<int>(offset - line_start) + 1};
  }

  absl::Status Error(size_t offset, std::string_view message) const {
    auto [line, column] = Position(offset);
    return absl::InvalidArgumentError(absl::StrCat("chat template syntax error at line ", line,
                                                   " column ", column, ": ", std::string(message)));
  }

  std::string_view src_;
  std::vector<Token> tokens_;
  mutable size_t cache_offset_ = 0;
  mutable int cache_line_ = 1;
  mutable size_t cache_line_start_ = 0;
};

}  // namespace

absl::StatusOr<std::vector<Token>> Lex(std::string_view source) { return Lexer(source).Run(); }

}  // namespace kvserve::engine::jinja
