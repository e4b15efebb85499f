// Golden check of ChatTemplate against @huggingface/jinja on real chat templates.
//
//   chat_golden_main --modules NODE_PREFIX --cases cases.jsonl
//
// Reads the cases generate_cases.mjs wrote (see chat_golden/check_chat_templates.sh), renders each
// context with the template of its tokenizer_config.json, and compares byte for byte. Prints a
// count per template and the first mismatches with escaped text; exits 1 on any mismatch.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>

#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "engine/text/chat_template.h"
#include "nlohmann/json.hpp"

namespace {

using kvserve::engine::ChatTemplate;
using kvserve::engine::RenderOptions;
using Json = nlohmann::ordered_json;

constexpr int kMaxReported = 5;

std::string Escape(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else if (c == '\\') out += "\\\\";
    else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else out += static_cast<char>(c);
  }
  return out;
}

// The chat template of a tokenizer_config.json: a string, or the entry named "default" of a list.
std::string TemplateSource(const Json& config) {
  const Json& t = config.at("chat_template");
  if (t.is_string()) return t.get<std::string>();
  for (const Json& named : t) {
    if (named.value("name", "") == "default") return named.at("template").get<std::string>();
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  std::string modules, cases_path;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--modules") modules = argv[i + 1];
    if (flag == "--cases") cases_path = argv[i + 1];
  }
  if (modules.empty() || cases_path.empty()) {
    std::cerr << "usage: chat_golden_main --modules NODE_PREFIX --cases cases.jsonl\n";
    return 2;
  }
  RenderOptions options;
  // The instant generate_cases.mjs fixes strftime_now to (noon, so any time zone gives the 14th).
  options.now = absl::FromCivil(absl::CivilSecond(2025, 3, 14, 12, 0, 0), absl::LocalTimeZone());

  std::map<std::string, ChatTemplate> templates;
  std::map<std::string, std::pair<int, int>> counts;  // file -> {passed, failed}
  std::ifstream cases(cases_path);
  std::string line;
  int reported = 0, total = 0, failed = 0;
  while (std::getline(cases, line)) {
    if (line.empty()) continue;
    Json c = Json::parse(line);
    std::string file = c.at("template_file").get<std::string>();
    std::string name = c.value("name", "");
    if (!templates.count(file)) {
      std::ifstream in(modules + "/node_modules/" + file);
      std::stringstream text;
      text << in.rdbuf();
      auto parsed = ChatTemplate::Parse(TemplateSource(Json::parse(text.str())));
      if (!parsed.ok()) {
        std::cerr << "chat_golden: FAIL: " << file << " does not parse: " << parsed.status() << "\n";
        return 1;
      }
      templates.emplace(file, std::move(*parsed));
    }
    ++total;
    auto rendered = templates.at(file).Render(c.at("context"), options);
    std::string problem;
    if (c.contains("error")) {
      std::string want = c.at("error").get<std::string>();
      if (rendered.ok()) {
        problem = "rendered, expected an error: \"" + Escape(*rendered) + "\"";
      } else if (want != "*" && rendered.status().message() != want) {
        problem = "error \"" + std::string(rendered.status().message()) + "\", expected \"" + want + "\"";
      }
    } else {
      std::string want = c.at("expected").get<std::string>();
      if (!rendered.ok()) {
        problem = "error: " + std::string(rendered.status().message());
      } else if (*rendered != want) {
        size_t at = 0;
        while (at < want.size() && at < rendered->size() && want[at] == (*rendered)[at]) ++at;
        size_t from = at > 40 ? at - 40 : 0;
        problem = "differs at byte " + std::to_string(at) + "\n    expected: \"" +
                  Escape(want.substr(from, 120)) + "\"\n    got:      \"" +
                  Escape(rendered->substr(from, 120)) + "\"";
      }
    }
    auto& [ok_count, bad_count] = counts[file];
    if (problem.empty()) {
      ++ok_count;
      continue;
    }
    ++bad_count;
    ++failed;
    if (reported++ < kMaxReported) {
      std::cerr << "chat_golden: MISMATCH " << file << " [" << name << "]: " << problem << "\n";
    }
  }
  for (const auto& [file, n] : counts) {
    std::cout << "chat_golden: " << file << ": " << n.first << " match, " << n.second << " mismatch\n";
  }
  if (total == 0) {
    std::cerr << "chat_golden: FAIL: no cases in " << cases_path << "\n";
    return 1;
  }
  if (failed > 0) {
    std::cerr << "chat_golden: FAIL: " << failed << " of " << total << " cases\n";
    return 1;
  }
  std::cout << "chat_golden: PASS (" << total << " cases)\n";
  return 0;
}
