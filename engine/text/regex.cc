#include "engine/text/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "absl/strings/str_cat.h"

namespace kvserve::engine {
namespace {

// Per-thread matching state. The JIT stack grows to 8 MiB: patterns like `\s+(?!\S)` backtrack
// over whole whitespace runs, and the 32 KiB default fails on long runs.
struct ThreadMatchState {
  ThreadMatchState() {
    match_data = pcre2_match_data_create(1, nullptr);
    jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    context = pcre2_match_context_create(nullptr);
    pcre2_jit_stack_assign(context, nullptr, jit_stack);
  }
  ~ThreadMatchState() {
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(jit_stack);
    pcre2_match_data_free(match_data);
  }
  pcre2_match_data* match_data;
  pcre2_jit_stack* jit_stack;
  pcre2_match_context* context;
};

ThreadMatchState& MatchState() {
  thread_local ThreadMatchState state;
  return state;
}

std::string PcreMessage(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof(buffer));
  return reinterpret_cast<const char*>(buffer);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Regex>> Regex::Create(std::string_view pattern) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                    PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
  if (code == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("regex does not compile at offset ", offset, ": ", PcreMessage(error)));
  }
  // JIT is an optimization: without it (unsupported CPU) pcre2_match interprets the pattern.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  return std::unique_ptr<Regex>(new Regex(code));
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

absl::Status Regex::FindAll(std::string_view text,
                            std::vector<std::pair<size_t, size_t>>* matches) const {
  auto* code = static_cast<pcre2_code*>(code_);
  ThreadMatchState& state = MatchState();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t start = 0;
  while (start <= text.size()) {
    // The caller guarantees valid UTF-8 (it checks once per text), so skip PCRE2's re-check.
    const int rc = pcre2_match(code, subject, text.size(), start, PCRE2_NO_UTF_CHECK,
                               state.match_data, state.context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("regex match failed at byte ", start, ": ", PcreMessage(rc)));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(state.match_data);
    const size_t begin = ovector[0];
    const size_t end = ovector[1];
    matches->emplace_back(begin, end);
    if (end > begin) {
      start = end;
    } else {
      // Empty match: step over one whole character.
      if (end >= text.size()) break;
      start = end + 1;
      while (start < text.size() && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) {
        ++start;
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ReadPattern(const JsonReader& pattern, std::string* literal,
                         std::unique_ptr<Regex>* regex) {
  if (pattern.Has("String")) {
    absl::StatusOr<std::string> text = pattern["String"].String();
    if (!text.ok()) return text.status();
    *literal = *std::move(text);
    return absl::OkStatus();
  }
  if (pattern.Has("Regex")) {
    absl::StatusOr<std::string> source = pattern["Regex"].String();
    if (!source.ok()) return source.status();
    absl::StatusOr<std::unique_ptr<Regex>> compiled = Regex::Create(*source);
    if (!compiled.ok()) return pattern["Regex"].Error(std::string(compiled.status().message()));
    *regex = *std::move(compiled);
    return absl::OkStatus();
  }
  return pattern.Error("expected {\"String\": ...} or {\"Regex\": ...}");
}

}  // namespace kvserve::engine
