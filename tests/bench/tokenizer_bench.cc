// tokenizer_bench: single-threaded HfTokenizer::Encode throughput (not a test).
//
//   tokenizer_bench TOKENIZER_DIR FILE...
//
// Each file is split into paragraphs at blank lines ("\n\n"), the way prompts arrive, and every
// paragraph is encoded (add_special_tokens=true). One untimed warm-up pass, then 5 timed passes;
// prints, per file: "<file> <MB/s of the median pass> <tokens per pass>". tokenizer_bench.mjs
// measures @huggingface/tokenizers the same way; tokenizer_bench.sh runs both.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "engine/text/hf_tokenizer.h"

namespace {

std::vector<std::string> Paragraphs(const std::string& text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find("\n\n", pos);
    if (end == std::string::npos) end = text.size();
    out.push_back(text.substr(pos, end - pos));
    pos = end + 2;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: tokenizer_bench TOKENIZER_DIR FILE...\n";
    return 2;
  }
  auto tokenizer = kvserve::engine::HfTokenizer::Load(argv[1]);
  if (!tokenizer.ok()) {
    std::cerr << tokenizer.status() << "\n";
    return 1;
  }
  for (int f = 2; f < argc; ++f) {
    std::ifstream in(argv[f], std::ios::binary);
    std::stringstream buffer;
    buffer << in.rdbuf();
    const std::string text = buffer.str();
    const std::vector<std::string> paragraphs = Paragraphs(text);
    size_t bytes = 0;
    for (const auto& p : paragraphs) bytes += p.size();
    std::vector<double> seconds;
    size_t num_tokens = 0;
    for (int pass = 0; pass < 6; ++pass) {
      const auto start = std::chrono::steady_clock::now();
      size_t tokens = 0;
      for (const auto& p : paragraphs) {
        auto ids = (*tokenizer)->Encode(p, true);
        if (!ids.ok()) {
          std::cerr << ids.status() << "\n";
          return 1;
        }
        tokens += ids->size();
      }
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (pass > 0) seconds.push_back(s);  // pass 0 warms up
      num_tokens = tokens;
    }
    std::sort(seconds.begin(), seconds.end());
    const double median = seconds[seconds.size() / 2];
    std::printf("%s %.2f %zu\n", argv[f], bytes / median / 1e6, num_tokens);
  }
  return 0;
}
