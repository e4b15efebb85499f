// Declarative command-line flags.
//
//   std::string target = "127.0.0.1:50051";
//   int64_t max_tokens = 16;
//   FlagSet flags("kvserve-cli generate", "Streams a completion of --prompt to stdout.");
//   flags.AddString("target", &target, "Server address, host:port.");
//   flags.AddInt("max-tokens", &max_tokens, "Maximum number of tokens to generate.");
//   std::vector<std::string> args;
//   KV_RETURN_IF_ERROR(flags.Parse(argc, argv, 1, &args));
//   if (flags.help_requested()) { std::cout << flags.Usage(); return 0; }
//
// Syntax: `--name=value`, `--name value` (not for bools), `--name` / `--noname` for bools, `--`
// ends the flags, `--help` / `-h` asks for help. A lone `-` is a positional argument; any other
// argument that starts with `-` must name a registered flag.
//
// A FlagSet holds raw pointers to the caller's variables; they must outlive it. Parse writes
// through them as it goes, so after a failed Parse some variables may already hold new values.
//
// Not thread-safe; use from main before starting threads.
#ifndef KVSERVE_BASE_FLAGS_H_
#define KVSERVE_BASE_FLAGS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace kvserve::base {

class FlagSet {
 public:
  // `program` heads the help text (e.g. "kvserve-cli generate"); `usage` is a one-paragraph
  // description of what the program does, printed after it by Usage().
  FlagSet(std::string program, std::string usage);

  // Registration. The flag's default is the pointee's value at registration time; Usage() prints
  // it. REQUIRES: `name` is non-empty, does not start with '-', contains no '=', is not "help" or
  // "h", and is not yet registered (neither as a name nor as the `no` form of a bool). Violations
  // are programming errors and abort (KV_CHECK).
  void AddString(std::string name, std::string* value, std::string help);
  // Integers are decimal, with an optional leading '-' for signed ones; nothing else is accepted.
  void AddInt(std::string name, int64_t* value, std::string help);
  void AddUint64(std::string name, uint64_t* value, std::string help);
  // Decimal or scientific notation. NaN and infinities are rejected: no flag wants them, and
  // letting them through would push the check into every caller.
  void AddDouble(std::string name, double* value, std::string help);
  // `--name` and `--name=true` set true; `--noname` and `--name=false` set false. `--name false`
  // sets true and leaves `false` as a positional argument.
  void AddBool(std::string name, bool* value, std::string help);
  // Every occurrence appends, in order. The initial contents of *values are the default: the first
  // occurrence in a Parse replaces them (so a default is not silently merged with what the user
  // asked for). Usage() shows the default as `none` or the quoted initial values.
  void AddRepeatedString(std::string name, std::vector<std::string>* values, std::string help);

  // Replaces the default Usage() shows for `name`, for flags whose "not given" state means more
  // than the pointee's value (e.g. "random" for a seed that is only sent when given, see IsSet).
  // REQUIRES: `name` is registered.
  void SetDefaultText(std::string_view name, std::string text);

  // For command-style tools (`tool [tool flags] <command> [command flags]`): when on, the first
  // positional argument and every argument after it go to *positional unparsed, so they can be
  // handed to the command's own FlagSet. Off by default (positional arguments and flags may
  // interleave).
  void set_stop_at_first_positional(bool stop) { stop_at_first_positional_ = stop; }

  // Parses argv[first], argv[first+1], ..., argv[argc-1]. Arguments that are not flags, and every
  // argument after `--`, are appended to *positional; when `positional` is null they are an error.
  // `--help` / `-h` sets help_requested() and stops parsing with OK.
  // Errors are InvalidArgument and name the flag and the offending value: an unknown flag (with the
  // closest registered name when one is within edit distance 2), a missing value, a value that does
  // not parse or is out of range for its type, a value given to `--noname`.
  // REQUIRES: 0 <= first <= argc.
  absl::Status Parse(int argc, char** argv, int first, std::vector<std::string>* positional);

  // True when the last Parse stopped at `--help` / `-h`.
  bool help_requested() const { return help_requested_; }

  // True when the last Parse assigned `name` at least once, so callers can tell "given the default
  // value" from "not given" (e.g. to leave an optional proto field unset). REQUIRES: `name` is
  // registered.
  bool IsSet(std::string_view name) const;

  // `program: usage`, then every flag sorted by name, one per line with aligned help:
  //   --name=<type> (default: X)  help
  // Bools read `--[no]name`; repeated flags read `--name=<string>...`. Lines longer than 100
  // columns are broken at spaces; help whose flag column is too wide starts on the next line. Ends
  // with a newline.
  std::string Usage() const;

 private:
  using Target =
      std::variant<std::string*, int64_t*, uint64_t*, double*, bool*, std::vector<std::string>*>;
  struct Flag {
    Target target;
    std::string help;
    std::string default_text;
    bool set = false;  // Assigned during the current/last Parse.
  };

  void Add(std::string name, Target target, std::string help, std::string default_text);
  // Parses one argument that starts with '-' (not "-" or "--"). `*index` points at it on entry and
  // is advanced past a separate value argument when one is consumed.
  absl::Status ParseFlag(int argc, char** argv, int* index);
  absl::Status SetValue(absl::string_view name, Flag& flag, absl::string_view value);
  absl::Status UnknownFlag(absl::string_view written, absl::string_view name) const;

  std::string program_;
  std::string usage_;
  // Ordered so that Usage() lists flags sorted and suggestions break ties alphabetically.
  std::map<std::string, Flag, std::less<>> flags_;
  bool stop_at_first_positional_ = false;
  bool help_requested_ = false;
};

}  // namespace kvserve::base

#endif  // KVSERVE_BASE_FLAGS_H_
