#include "engine/kernels/linear.h"

#include <array>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "base/logging.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace kvserve::engine {
namespace {

using dims = dnnl::memory::dims;
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

const dnnl::engine& CpuEngine() {
  static const dnnl::engine* engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *engine;
}

// oneDNN streams are not thread-safe; one per calling thread.
dnnl::stream& ThreadStream() {
  thread_local dnnl::stream stream(CpuEngine());
  return stream;
}

}  // namespace

struct Linear::Impl {
  MatmulWeight weight;        // [N][K]; the oneDNN members below only for F32Weight
  dnnl::memory::desc src_md;  // [M?, K] with runtime M
  dnnl::memory::desc wei_md;  // [K, N] viewed as "ba"
  dnnl::memory::desc dst_md;  // [M?, N]
  dnnl::matmul matmul;
  dnnl::memory weight_mem;
};

absl::StatusOr<Linear> Linear::Create(std::vector<float> weight, int64_t out_features,
                                      int64_t in_features) {
  if (out_features <= 0 || in_features <= 0 ||
      static_cast<int64_t>(weight.size()) != out_features * in_features) {
    return absl::InvalidArgumentError(absl::StrCat("Linear: weight has ", weight.size(),
                                                   " elements, expected ", out_features, " x ",
                                                   in_features));
  }
  // Copied once into cache-line-aligned storage (see aligned_buffer.h).
  F32Weight f32{out_features, in_features, AlignedFloats(weight.begin(), weight.end())};
  weight = std::vector<float>();
  return Create(MatmulWeight(std::move(f32)));
}

absl::StatusOr<Linear> Linear::Create(MatmulWeight weight) {
  const int64_t out_features = OutFeatures(weight), in_features = InFeatures(weight);
  auto impl = std::make_unique<Impl>();
  impl->weight = std::move(weight);
  F32Weight* f32 = std::get_if<F32Weight>(&impl->weight);
  if (f32 == nullptr) return Linear(std::move(impl), out_features, in_features);
  try {
    const dnnl::memory::dim k = in_features, n = out_features;
    impl->src_md = dnnl::memory::desc({DNNL_RUNTIME_DIM_VAL, k}, dt::f32, tag::ab);
    impl->wei_md = dnnl::memory::desc({k, n}, dt::f32, tag::ba);
    impl->dst_md = dnnl::memory::desc({DNNL_RUNTIME_DIM_VAL, n}, dt::f32, tag::ab);
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(impl->src_md, impl->wei_md, impl->dst_md),
                                    CpuEngine());
    impl->matmul = dnnl::matmul(pd);
    impl->weight_mem = dnnl::memory(impl->wei_md, CpuEngine(), f32->data.data());
  } catch (const dnnl::error& e) {
    return absl::InternalError(absl::StrCat("oneDNN matmul [", in_features, " -> ", out_features,
                                            "] could not be created: ", e.what()));
  }
  return Linear(std::move(impl), out_features, in_features);
}

Linear::Linear(std::unique_ptr<Impl> impl, int64_t out_features, int64_t in_features)
    : impl_(std::move(impl)), out_features_(out_features), in_features_(in_features) {}
Linear::Linear(Linear&&) noexcept = default;
Linear& Linear::operator=(Linear&&) noexcept = default;
Linear::~Linear() = default;

const MatmulWeight& Linear::weight() const { return impl_->weight; }

void Linear::Forward(const float* x, int64_t m, float* y) const {
  KV_CHECK(m > 0) << "Linear::Forward with m=" << m;
  if (row_invariant_ || m < kOneDnnMinRows || !std::holds_alternative<F32Weight>(impl_->weight)) {
    MatmulForward(impl_->weight, x, m, y);
    return;
  }
  Execute(x, m, y);
}

void Linear::Forward(const float* x, int64_t m, absl::Span<const Linear* const> linears,
                     absl::Span<float* const> ys) {
  KV_CHECK(m > 0) << "Linear::Forward with m=" << m;
  KV_CHECK(linears.size() == ys.size() && !linears.empty() && linears.size() <= kMaxSharedWeights)
      << "Linear::Forward with " << linears.size() << " linears, " << ys.size() << " outputs";
  std::array<MatmulOutput, kMaxSharedWeights> outputs;
  for (size_t i = 0; i < linears.size(); ++i) {
    const Linear& l = *linears[i];
    if (!l.row_invariant_ && m >= kOneDnnMinRows && std::holds_alternative<F32Weight>(l.weight())) {
      // oneDNN runs each weight on its own.
      for (size_t j = 0; j < linears.size(); ++j) linears[j]->Forward(x, m, ys[j]);
      return;
    }
    outputs[i] = {&l.weight(), ys[i]};
  }
  MatmulForward(x, m, absl::Span<const MatmulOutput>(outputs.data(), linears.size()));
}

void Linear::Execute(const float* x, int64_t m, float* y) const {
  try {
    const dnnl::engine& engine = CpuEngine();
    dnnl::memory src({{m, in_features_}, dt::f32, tag::ab}, engine, const_cast<float*>(x));
    dnnl::memory dst({{m, out_features_}, dt::f32, tag::ab}, engine, y);
    dnnl::stream& stream = ThreadStream();
    impl_->matmul.execute(
        stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, impl_->weight_mem}, {DNNL_ARG_DST, dst}});
    stream.wait();
  } catch (const dnnl::error& e) {
    // Shapes were fixed at creation; a failure here is a broken invariant, not bad input.
    KV_CHECK(false) << "oneDNN matmul failed: " << e.what();
  }
}

}  // namespace kvserve::engine
