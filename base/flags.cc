#include "base/flags.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <optional>
#include <system_error>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/logging.h"
#include "base/status_macros.h"

namespace kvserve::base {
namespace {

// Help text moves to its own line when the `--name=<type> (default: X)` column would be wider.
constexpr size_t kMaxFlagColumnWidth = 48;
// Usage() breaks longer lines at spaces.
constexpr size_t kLineWidth = 100;

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

std::string Quote(absl::string_view text) { return absl::StrCat("\"", absl::CEscape(text), "\""); }

absl::Status BadValue(absl::string_view flag, absl::string_view value, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid value '", value, "' for flag ", flag, ": ", why));
}

// std::from_chars rather than strtol/strtod: no locale, no leading whitespace or '+', and it tells
// "out of range" apart from "not a number", which the error message reports.
template <typename T>
absl::Status ParseNumber(absl::string_view flag, absl::string_view text, absl::string_view expected,
                         T* out) {
  T parsed{};
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, parsed);
  if (ec == std::errc::invalid_argument || ptr != end) return BadValue(flag, text, expected);
  if (ec == std::errc::result_out_of_range) return BadValue(flag, text, "out of range");
  *out = parsed;
  return absl::OkStatus();
}

// Levenshtein distance; flag names are short, so the O(|a|·|b|) table is two small rows.
size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> previous(b.size() + 1), current(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) previous[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    current[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      current[j] = std::min({previous[j] + 1, current[j - 1] + 1, substitution});
    }
    std::swap(previous, current);
  }
  return previous[b.size()];
}

// Breaks each line of `text` that would run past kLineWidth at the last space that fits;
// continuation lines start with `indent` spaces, and so does every line after an explicit '\n'. The
// first line starts at `column`. Lines that fit are kept verbatim, so hand-aligned text stays
// aligned.
std::string Wrap(absl::string_view text, size_t column, size_t indent) {
  std::string out;
  bool first_line = true;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!first_line) {
      absl::StrAppend(&out, "\n", std::string(indent, ' '));
      column = indent;
    }
    first_line = false;
    while (column + line.size() > kLineWidth) {
      const size_t room = kLineWidth > column ? kLineWidth - column : 0;
      size_t cut = line.rfind(' ', room);
      // A word longer than the room: break after it rather than inside it.
      if (cut == absl::string_view::npos || cut == 0) cut = line.find(' ', room);
      if (cut == absl::string_view::npos) break;
      absl::StrAppend(&out, line.substr(0, cut), "\n", std::string(indent, ' '));
      line.remove_prefix(cut + 1);
      column = indent;
    }
    absl::StrAppend(&out, line);
    column += line.size();
  }
  return out;
}

}  // namespace

FlagSet::FlagSet(std::string program, std::string usage)
    : program_(std::move(program)), usage_(std::move(usage)) {}

void FlagSet::Add(std::string name, Target target, std::string help, std::string default_text) {
  KV_CHECK(!name.empty() && name[0] != '-' && name.find('=') == std::string::npos)
      << "invalid flag name '" << name << "'";
  KV_CHECK(name != "help" && name != "h") << "--" << name << " is reserved for help";
  KV_CHECK(!flags_.contains(name)) << "flag --" << name << " registered twice";
  // `--noX` must keep exactly one meaning: the negation of bool X, or flag noX, never both.
  if (std::holds_alternative<bool*>(target)) {
    KV_CHECK(!flags_.contains("no" + name))
        << "flag --no" << name << " clashes with bool --" << name;
  }
  if (absl::StartsWith(name, "no")) {
    const auto it = flags_.find(absl::string_view(name).substr(2));
    KV_CHECK(it == flags_.end() || !std::holds_alternative<bool*>(it->second.target))
        << "flag --" << name << " clashes with bool --" << it->first;
  }
  flags_.emplace(std::move(name), Flag{target, std::move(help), std::move(default_text)});
}

void FlagSet::AddString(std::string name, std::string* value, std::string help) {
  Add(std::move(name), value, std::move(help), Quote(*value));
}

void FlagSet::AddInt(std::string name, int64_t* value, std::string help) {
  Add(std::move(name), value, std::move(help), absl::StrCat(*value));
}

void FlagSet::AddUint64(std::string name, uint64_t* value, std::string help) {
  Add(std::move(name), value, std::move(help), absl::StrCat(*value));
}

void FlagSet::AddDouble(std::string name, double* value, std::string help) {
  Add(std::move(name), value, std::move(help), absl::StrCat(*value));
}

void FlagSet::AddBool(std::string name, bool* value, std::string help) {
  Add(std::move(name), value, std::move(help), *value ? "true" : "false");
}

void FlagSet::AddRepeatedString(std::string name, std::vector<std::string>* values,
                                std::string help) {
  std::string default_text =
      values->empty() ? "none"
                      : absl::StrJoin(*values, ", ", [](std::string* out, const std::string& v) {
                          out->append(Quote(v));
                        });
  Add(std::move(name), values, std::move(help), std::move(default_text));
}

void FlagSet::SetDefaultText(std::string_view name, std::string text) {
  const auto it = flags_.find(name);
  KV_CHECK(it != flags_.end()) << "SetDefaultText: no flag --" << name;
  it->second.default_text = std::move(text);
}

bool FlagSet::IsSet(std::string_view name) const {
  const auto it = flags_.find(name);
  KV_CHECK(it != flags_.end()) << "IsSet: no flag --" << name;
  return it->second.set;
}

absl::Status FlagSet::Parse(int argc, char** argv, int first,
                            std::vector<std::string>* positional) {
  KV_CHECK(0 <= first && first <= argc) << "first=" << first << " argc=" << argc;
  help_requested_ = false;
  for (auto& [name, flag] : flags_) flag.set = false;

  // Appends argv[from..to) as positional arguments.
  const auto take = [&](int from, int to) -> absl::Status {
    if (from < to && positional == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", argv[from], "'"));
    }
    for (int i = from; i < to; ++i) positional->emplace_back(argv[i]);
    return absl::OkStatus();
  };

  for (int i = first; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--") return take(i + 1, argc);
    const bool is_flag = arg.size() >= 2 && arg[0] == '-';
    if (!is_flag) {
      if (stop_at_first_positional_) return take(i, argc);
      KV_RETURN_IF_ERROR(take(i, i + 1));
      continue;
    }
    KV_RETURN_IF_ERROR(ParseFlag(argc, argv, &i));
    if (help_requested_) return absl::OkStatus();
  }
  return absl::OkStatus();
}

absl::Status FlagSet::ParseFlag(int argc, char** argv, int* index) {
  const absl::string_view arg = argv[*index];
  const bool double_dash = arg[1] == '-';
  const absl::string_view body = arg.substr(double_dash ? 2 : 1);
  const size_t equals = body.find('=');
  const absl::string_view name = body.substr(0, equals);
  std::optional<absl::string_view> value;
  if (equals != absl::string_view::npos) value = body.substr(equals + 1);
  // The flag as the user wrote it, without any `=value`, for error messages.
  const absl::string_view written = arg.substr(0, (double_dash ? 2 : 1) + name.size());

  if (name == "help" || name == "h") {
    help_requested_ = true;
    return absl::OkStatus();
  }
  // Single-dash flags are not accepted (so "-5" can never be mistaken for a value-less flag); the
  // suggestion below points at the double-dash spelling.
  if (!double_dash) return UnknownFlag(written, name);

  if (const auto it = flags_.find(name); it != flags_.end()) {
    Flag& flag = it->second;
    const std::string display = absl::StrCat("--", it->first);
    if (bool** target = std::get_if<bool*>(&flag.target); target != nullptr && !value) {
      **target = true;
      flag.set = true;
      return absl::OkStatus();
    }
    if (!value) {
      if (*index + 1 >= argc) {
        return absl::InvalidArgumentError(absl::StrCat("missing value for flag ", display));
      }
      value = argv[++*index];
    }
    return SetValue(display, flag, *value);
  }

  if (absl::StartsWith(name, "no")) {
    if (const auto it = flags_.find(name.substr(2)); it != flags_.end()) {
      bool** target = std::get_if<bool*>(&it->second.target);
      if (target == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown flag ", written, ": --", it->first,
                         " is not a bool flag, so it has no --no form"));
      }
      if (value) {
        return absl::InvalidArgumentError(
            absl::StrCat("flag ", written, " takes no value, got '", *value, "'"));
      }
      **target = false;
      it->second.set = true;
      return absl::OkStatus();
    }
  }
  return UnknownFlag(written, name);
}

absl::Status FlagSet::SetValue(absl::string_view name, Flag& flag, absl::string_view value) {
  KV_RETURN_IF_ERROR(std::visit(
      Overloaded{
          [&](std::string* target) {
            *target = std::string(value);
            return absl::OkStatus();
          },
          [&](int64_t* target) { return ParseNumber(name, value, "expected an integer", target); },
          [&](uint64_t* target) {
            return ParseNumber(name, value, "expected a non-negative integer", target);
          },
          [&](double* target) {
            double parsed = 0;
            KV_RETURN_IF_ERROR(ParseNumber(name, value, "expected a number", &parsed));
            if (!std::isfinite(parsed)) return BadValue(name, value, "expected a finite number");
            *target = parsed;
            return absl::OkStatus();
          },
          [&](bool* target) {
            if (value != "true" && value != "false") {
              return BadValue(name, value, "expected true or false");
            }
            *target = value == "true";
            return absl::OkStatus();
          },
          [&](std::vector<std::string>* target) {
            if (!flag.set) target->clear();  // The first occurrence replaces the default.
            target->emplace_back(value);
            return absl::OkStatus();
          },
      },
      flag.target));
  flag.set = true;
  return absl::OkStatus();
}

absl::Status FlagSet::UnknownFlag(absl::string_view written, absl::string_view name) const {
  std::optional<std::string> best;
  size_t best_distance = 3;  // Suggest only within edit distance 2.
  const auto consider = [&](std::string candidate) {
    const size_t distance = EditDistance(name, candidate);
    if (distance < best_distance || (distance == best_distance && best && candidate < *best)) {
      best_distance = distance;
      best = std::move(candidate);
    }
  };
  for (const auto& [candidate, flag] : flags_) {
    consider(candidate);
    if (std::holds_alternative<bool*>(flag.target)) consider("no" + candidate);
  }
  std::string message = absl::StrCat("unknown flag ", written);
  if (best) absl::StrAppend(&message, " (did you mean --", *best, "?)");
  return absl::InvalidArgumentError(message);
}

std::string FlagSet::Usage() const {
  struct Row {
    std::string left;
    std::string help;
  };
  std::vector<Row> rows;
  for (const auto& entry : flags_) {
    // Not a structured binding: clang 14 (the sanitizer builds) cannot capture those in lambdas.
    const std::string& name = entry.first;
    const auto& flag = entry.second;
    const std::string syntax = std::visit(
        Overloaded{
            [&](std::string*) { return absl::StrCat("--", name, "=<string>"); },
            [&](int64_t*) { return absl::StrCat("--", name, "=<int>"); },
            [&](uint64_t*) { return absl::StrCat("--", name, "=<uint64>"); },
            [&](double*) { return absl::StrCat("--", name, "=<double>"); },
            [&](bool*) { return absl::StrCat("--[no]", name); },
            [&](std::vector<std::string>*) { return absl::StrCat("--", name, "=<string>..."); },
        },
        flag.target);
    rows.push_back({absl::StrCat(syntax, " (default: ", flag.default_text, ")"), flag.help});
  }
  rows.push_back({"-h, --help", "Print this help and exit."});

  size_t width = 0;
  for (const Row& row : rows) {
    if (row.left.size() <= kMaxFlagColumnWidth) width = std::max(width, row.left.size());
  }
  std::string out = Wrap(usage_.empty() ? program_ : absl::StrCat(program_, ": ", usage_), 0, 0);
  absl::StrAppend(&out, "\n\nFlags:\n");
  const size_t help_column = width + 4;  // "  " + flag column + "  "
  for (const Row& row : rows) {
    absl::StrAppend(&out, "  ", row.left);
    if (row.left.size() > width) {
      absl::StrAppend(&out, "\n", std::string(help_column, ' '));
    } else {
      absl::StrAppend(&out, std::string(width - row.left.size() + 2, ' '));
    }
    absl::StrAppend(&out, Wrap(row.help, help_column, help_column), "\n");
  }
  return out;
}

}  // namespace kvserve::base
