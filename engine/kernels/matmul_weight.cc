#include "engine/kernels/matmul_weight.h"

#include <array>
#include <cstring>
#include <utility>

#include "base/logging.h"
#include "engine/kernels/row_invariant_matmul.h"

namespace kvserve::engine {
namespace {

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

}  // namespace

absl::StatusOr<MatmulWeight> PrepareWeight(const std::vector<float>& w, int64_t n, int64_t k,
                                           WeightFormat format, std::string_view name) {
  switch (format) {
    case WeightFormat::kF32:
      return MatmulWeight(F32Weight{n, k, AlignedFloats(w.begin(), w.end())});
    case WeightFormat::kBf16: {
      absl::StatusOr<PackedBf16Weight> packed = PackBf16(w.data(), n, k, name);
      if (!packed.ok()) return packed.status();
      return MatmulWeight(*std::move(packed));
    }
    case WeightFormat::kInt8PerChannel:
    case WeightFormat::kInt8Block32: {
      absl::StatusOr<PackedInt8Weight> packed = QuantizeInt8(
          w.data(), n, k,
          format == WeightFormat::kInt8Block32 ? Int8Grouping::kBlock32 : Int8Grouping::kPerChannel,
          name);
      if (!packed.ok()) return packed.status();
      return MatmulWeight(*std::move(packed));
    }
  }
  return absl::InvalidArgumentError("unknown weight format");
}

int64_t OutFeatures(const MatmulWeight& w) {
  return std::visit([](const auto& v) { return v.n; }, w);
}

int64_t InFeatures(const MatmulWeight& w) {
  return std::visit([](const auto& v) { return v.k; }, w);
}

int64_t WeightBytes(const MatmulWeight& w) {
  return std::visit(Overloaded{[](const F32Weight& v) { return v.n * v.k * 4; },
                               [](const auto& v) { return v.bytes(); }},
                    w);
}

const char* WeightFormatName(const MatmulWeight& w) {
  return std::visit(Overloaded{[](const F32Weight&) { return "f32"; },
                               [](const PackedBf16Weight&) { return "bf16"; },
                               [](const PackedInt8Weight&) { return "int8"; }},
                    w);
}

void DequantizeRow(const MatmulWeight& w, int64_t j, float* out) {
  std::visit(
      Overloaded{
          [&](const F32Weight& v) { std::memcpy(out, &v.data[j * v.k], v.k * sizeof(float)); },
          [&](const PackedBf16Weight& v) {
            // Column j of panel j/16: pair t of it at line t, lanes 2·(j%16) and 2·(j%16)+1.
            const int64_t kLine = 2 * kBf16PanelWidth;
            const uint16_t* panel = v.data.data() + (j / kBf16PanelWidth) * v.panel_lines * kLine;
            const int64_t c = j % kBf16PanelWidth;
            for (int64_t i = 0; i < v.k; ++i) {
              out[i] = Bf16ToFloat(panel[(i / 2) * kLine + 2 * c + (i % 2)]);
            }
          },
          [&](const PackedInt8Weight& v) {
            const int64_t group_k = v.group_quads * 4;
            for (int64_t i = 0; i < v.k; ++i) {
              out[i] = static_cast<float>(v.quantized(j, i)) * v.scale(j, i / group_k);
            }
          }},
      w);
}

void MatmulForward(const MatmulWeight& w, const float* x, int64_t m, float* y) {
  std::visit(
      Overloaded{[&](const F32Weight& v) { RowInvariantMatmul(x, m, v.data.data(), v.n, v.k, y); },
                 [&](const PackedBf16Weight& v) { Bf16Matmul(x, m, v, y); },
                 [&](const PackedInt8Weight& v) { Int8Matmul(x, m, v, y); }},
      w);
}

void MatmulForward(const float* x, int64_t m, absl::Span<const MatmulOutput> outputs) {
  KV_CHECK(!outputs.empty() && outputs.size() <= kMaxSharedWeights)
      << "MatmulForward with " << outputs.size() << " weights";
  const MatmulWeight& first = *outputs[0].weight;
  const int64_t k = InFeatures(first);
  bool shared = true;
  for (const MatmulOutput& o : outputs) {
    shared = shared && o.weight->index() == first.index() && InFeatures(*o.weight) == k;
    if (const auto* v = std::get_if<PackedInt8Weight>(o.weight)) {
      shared = shared && v->grouping == std::get<PackedInt8Weight>(first).grouping;
    }
  }
  if (!shared) {
    for (const MatmulOutput& o : outputs) MatmulForward(*o.weight, x, m, o.y);
    return;
  }
  const size_t count = outputs.size();
  std::array<float*, kMaxSharedWeights> ys{};
  for (size_t i = 0; i < count; ++i) ys[i] = outputs[i].y;
  const absl::Span<float* const> y_span(ys.data(), count);
  if (std::holds_alternative<F32Weight>(first)) {
    std::array<const float*, kMaxSharedWeights> ws{};
    std::array<int64_t, kMaxSharedWeights> ns{};
    for (size_t i = 0; i < count; ++i) {
      const auto& v = std::get<F32Weight>(*outputs[i].weight);
      ws[i] = v.data.data();
      ns[i] = v.n;
    }
    RowInvariantMatmul(x, m, absl::Span<const float* const>(ws.data(), count),
                       absl::Span<const int64_t>(ns.data(), count), k, y_span);
  } else if (std::holds_alternative<PackedBf16Weight>(first)) {
    std::array<const PackedBf16Weight*, kMaxSharedWeights> ws{};
    for (size_t i = 0; i < count; ++i) ws[i] = &std::get<PackedBf16Weight>(*outputs[i].weight);
    Bf16Matmul(x, m, absl::Span<const PackedBf16Weight* const>(ws.data(), count), y_span);
  } else {
    std::array<const PackedInt8Weight*, kMaxSharedWeights> ws{};
    for (size_t i = 0; i < count; ++i) ws[i] = &std::get<PackedInt8Weight>(*outputs[i].weight);
    Int8Matmul(x, m, absl::Span<const PackedInt8Weight* const>(ws.data(), count), y_span);
  }
}

}  // namespace kvserve::engine
