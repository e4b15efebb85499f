// libFuzzer target: request conversion from protobuf bytes, as gRPC hands them to the server
// (scripts/fuzz.sh). The first byte picks GenerateRequest or ChatRequest; the rest is the wire
// message. Parsing and FromProto must answer with a status naming the field, never crash.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "engine/text/chat_prompt.h"
#include "engine/text/tokenizer.h"
#include "kvserve/v1/kvserve.pb.h"
#include "server/proto_convert.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The embedded default model's tokenizer: 256 bytes, BOS 256, EOS 257, vocab 320.
  static const kvserve::engine::ByteTokenizer tokenizer(320, 256, 257);
  static const kvserve::engine::ChatPrompt chat = kvserve::engine::ChatPrompt::Create(
      {{"default",
        "{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{{ eos_token }}"
        "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"}},
      "<s>", "</s>");
  if (data[0] % 2 == 0) {
    kvserve::v1::GenerateRequest request;
    if (!request.ParseFromArray(data + 1, static_cast<int>(size - 1))) return 0;
    (void)kvserve::server::FromProto(request, tokenizer);
  } else {
    kvserve::v1::ChatRequest request;
    if (!request.ParseFromArray(data + 1, static_cast<int>(size - 1))) return 0;
    (void)kvserve::server::FromProto(request, chat, tokenizer);
  }
  return 0;
}
