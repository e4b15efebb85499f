"""Independent float64 PyTorch references for the model families kvserve serves, and the
fixtures in tests/data/ that the engine's model tests compare against.

Modules:
  common       safetensors I/O, fixture files, seeded weights, comparisons, the shared command line
  llama        Llama (GQA / MQA / MHA, rotate-half RoPE)          -> tests/data/tiny_llama_*/
  deepseek_v2  DeepSeek-V2 multi-head latent attention (and YaRN) -> tests/data/tiny_deepseek_v2_*/
  hybrid_s4    Llama attention + S4D layers                       -> tests/data/tiny_hybrid_s4*/

Run from the repository root with Debian's Python (/usr/bin/python3 has torch and numpy):

  /usr/bin/python3 -m tools.reference.llama --check   # one model: regenerate, compare bytes
  /usr/bin/python3 -m tools.reference --check         # every model
  /usr/bin/python3 -m tools.reference.llama           # rewrite that model's fixtures
"""
