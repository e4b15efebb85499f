// tokenizer_golden: compares HfTokenizer with reference results written by golden/golden.mjs.
//
//   tokenizer_golden TOKENIZER_DIR EXPECTED.jsonl
//
// For every line {"text", "ids", "ids_plain", "decoded", "decoded_skip"} it checks, exactly:
//   Encode(text, true) == ids, Encode(text, false) == ids_plain,
//   DecodeAll(ids, false) == decoded, DecodeAll(ids, true) == decoded_skip,
//   and that the streamed pieces Decode(id) through a Utf8StreamDecoder spell `decoded` (in these
//   files the first id is special or the decoder keeps leading spaces). Pieces are not cleaned up
//   (clean_up_tokenization_spaces), so for a tokenizer that cleans up they are compared with the
//   same tokenizer loaded with clean-up off.
// A line may name checks to skip: "exclude": {"ids": "digits-non-ascii", ...} — a difference of the
// JavaScript reference from the Rust crate, listed in golden.mjs; skipped checks are counted by
// name. Prints the first mismatches (text escaped, both id lists) and exits 1 if there is any.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/text/hf_tokenizer.h"
#include "engine/text/utf8_stream.h"
#include "nlohmann/json.hpp"

namespace kvserve::engine {
namespace {

std::string Escape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      out += absl::StrCat("\\x", absl::Hex(c, absl::kZeroPad2));
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  if (out.size() > 300) out = out.substr(0, 300) + "...";
  return absl::StrCat("\"", out, "\"");
}

std::string Ids(const std::vector<int32_t>& ids) {
  std::string s = absl::StrJoin(ids.begin(), ids.begin() + std::min<size_t>(ids.size(), 60), ",");
  if (ids.size() > 60) absl::StrAppend(&s, ",... (", ids.size(), " ids)");
  return absl::StrCat("[", s, "]");
}

int Run(const std::string& dir, const std::string& expected_path) {
  auto tokenizer = HfTokenizer::Load(dir);
  if (!tokenizer.ok()) {
    std::cerr << "tokenizer_golden: " << tokenizer.status() << "\n";
    return 1;
  }
  std::ifstream in(expected_path);
  if (!in) {
    std::cerr << "tokenizer_golden: cannot open " << expected_path << "\n";
    return 1;
  }
  // The reference for streamed pieces: the same files with clean-up off.
  const HfTokenizer* stream_reference = tokenizer->get();
  std::unique_ptr<HfTokenizer> without_clean_up;
  if ((*tokenizer)->config().clean_up_tokenization_spaces) {
    std::ifstream tokenizer_file(dir + "/tokenizer.json"), config_file(dir + "/tokenizer_config.json");
    std::stringstream tokenizer_json, config_text;
    tokenizer_json << tokenizer_file.rdbuf();
    config_text << config_file.rdbuf();
    nlohmann::json config = nlohmann::json::parse(config_text.str(), nullptr, false);
    if (config.is_discarded()) {
      std::cerr << "tokenizer_golden: bad tokenizer_config.json\n";
      return 1;
    }
    config["clean_up_tokenization_spaces"] = false;
    auto reloaded = HfTokenizer::FromJson(tokenizer_json.str(), config.dump());
    if (!reloaded.ok()) {
      std::cerr << "tokenizer_golden: " << reloaded.status() << "\n";
      return 1;
    }
    without_clean_up = *std::move(reloaded);
    stream_reference = without_clean_up.get();
  }
  int num_strings = 0, num_mismatches = 0;
  std::map<std::string, int> num_excluded;  // by named difference
  std::string line;
  auto report = [&](const std::string& text, const std::string& what) {
    if (++num_mismatches <= 15) {
      std::cerr << "MISMATCH " << what << "\n  text: " << Escape(text) << "\n";
    }
  };
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      std::cerr << "tokenizer_golden: bad line " << num_strings + 1 << ": " << e.what() << "\n";
      return 1;
    }
    ++num_strings;
    const std::string text = j.at("text");
    const std::vector<int32_t> ids = j.at("ids");
    const std::vector<int32_t> ids_plain = j.at("ids_plain");
    const std::string decoded = j.at("decoded");
    const std::string decoded_skip = j.at("decoded_skip");
    std::map<std::string, std::string> exclude;
    if (j.contains("exclude")) exclude = j.at("exclude").get<std::map<std::string, std::string>>();
    for (const auto& [check, reason] : exclude) ++num_excluded[absl::StrCat(reason, " (", check, ")")];
    auto excluded = [&](const char* check) { return exclude.count(check) > 0; };
    for (bool special : {true, false}) {
      if (excluded(special ? "ids" : "ids_plain")) continue;
      const std::vector<int32_t>& want = special ? ids : ids_plain;
      auto got = (*tokenizer)->Encode(text, special);
      if (!got.ok()) {
        report(text, absl::StrCat("encode error (add_special_tokens=", special, "): ",
                                  got.status().ToString()));
      } else if (*got != want) {
        report(text, absl::StrCat("ids (add_special_tokens=", special, ")\n  want: ", Ids(want),
                                  "\n  got:  ", Ids(*got)));
      }
    }
    for (bool skip : {false, true}) {
      if (excluded(skip ? "decoded_skip" : "decoded")) continue;
      const std::string& want = skip ? decoded_skip : decoded;
      const std::string got = (*tokenizer)->DecodeAll(ids, skip);
      if (got != want) {
        report(text, absl::StrCat("decode (skip_special_tokens=", skip, ") of ", Ids(ids),
                                  "\n  want: ", Escape(want), "\n  got:  ", Escape(got)));
      }
    }
    if (!excluded("decoded")) {
      Utf8StreamDecoder stream;
      std::string streamed;
      for (int32_t id : ids) streamed += stream.Push((*tokenizer)->Decode(id));
      streamed += stream.Flush();
      const std::string want = stream_reference == tokenizer->get()
                                   ? decoded
                                   : stream_reference->DecodeAll(ids, false);
      if (streamed != want) {
        report(text, absl::StrCat("streamed Decode(id) pieces\n  want: ", Escape(want),
                                  "\n  got:  ", Escape(streamed)));
      }
    }
  }
  std::cout << "tokenizer_golden: " << dir << ": " << num_strings << " strings, "
            << num_mismatches << " mismatches\n";
  for (const auto& [reason, count] : num_excluded) {
    std::cout << "tokenizer_golden:   skipped " << count << " checks: " << reason << "\n";
  }
  return num_mismatches == 0 && num_strings > 0 ? 0 : 1;
}

}  // namespace
}  // namespace kvserve::engine

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: tokenizer_golden TOKENIZER_DIR EXPECTED.jsonl\n";
    return 2;
  }
  return kvserve::engine::Run(argv[1], argv[2]);
}
