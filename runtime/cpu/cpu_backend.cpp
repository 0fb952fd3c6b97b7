// CpuBackend construction, zeroing and embeddings.
#include "runtime/cpu/cpu_backend.h"

#include <cblas.h>

#include <cstring>
#include <thread>

namespace troupe {

CpuBackend::CpuBackend(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  pool_ = std::make_unique<ThreadPool>(threads);
  // troupe's pool splits every product itself and calls BLAS from several threads at once: OpenBLAS
  // must run each call on the calling thread. Its threaded build is used (not the serial one) because
  // only that build guards its internal buffers against concurrent callers.
  openblas_set_num_threads(1);
}

CpuBackend::~CpuBackend() = default;

void CpuBackend::zero(const Tensor& t) {
  if (t.nbytes()) std::memset(t.raw(), 0, t.nbytes());
}

void CpuBackend::embedding_forward(const Tensor& ids, const Tensor& table, const Tensor& y) {
  const std::int64_t n = ids.numel(), c = table.dim(1), v = table.dim(0);
  TROUPE_CHECK(y.numel() == n * c, "embedding output ", shape_str(y.shape()));
  const std::int32_t* idp = ids.i32();
  const float* tp = table.f32();
  float* yp = y.f32();
  for (std::int64_t i = 0; i < n; ++i) {
    std::int32_t id = idp[i];
    if (id < 0 || id >= v)
      throw Error(ErrorKind::kInput, "token id " + std::to_string(id) + " at position " + std::to_string(i) +
                                         " is outside the vocabulary [0, " + std::to_string(v) + ")");
    std::memcpy(yp + i * c, tp + id * c, c * sizeof(float));
  }
}

std::span<ExactSum> CpuBackend::exact_grad(const Tensor& grad) {
  TROUPE_CHECK(grad.dtype() == DType::f32, "exact gradient sums need an f32 gradient buffer");
  std::lock_guard lock(exact_mu_);
  std::vector<ExactSum>& acc = exact_[grad.f32()];
  // A buffer freed and another allocated at the same address: start from a clear accumulator.
  if (acc.size() != static_cast<std::size_t>(grad.numel())) acc.assign(static_cast<std::size_t>(grad.numel()), 0);
  return acc;
}

void CpuBackend::flush_exact_grad(const Tensor& grad) {
  std::span<ExactSum> acc = exact_grad(grad);
  float* g = grad.f32();
  pool_->parallel_for(static_cast<std::int64_t>(acc.size()), [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t i = i0; i < i1; ++i) {
      if (acc[i] == 0) continue;  // nothing added: leave the gradient (and the sign of its zeros) alone
      g[i] += from_exact(acc[i]);
      acc[i] = 0;
    }
  }, 4096);
}

void CpuBackend::add_exact_parallel(std::span<ExactSum> acc, const float* x) {
  pool_->parallel_for(static_cast<std::int64_t>(acc.size()), [&](std::int64_t i0, std::int64_t i1) {
    add_exact(acc.subspan(i0, i1 - i0), x + i0);
  }, 4096);
}

void CpuBackend::embedding_backward(const Tensor& ids, const Tensor& dy, const Tensor& dtable) {
  const std::int64_t n = ids.numel(), c = dtable.dim(1);
  const std::int32_t* idp = ids.i32();
  const float* dyp = dy.f32();
  if (deterministic_) {
    // Exact sums, one row's contribution at a time (see Backend::set_deterministic).
    std::span<ExactSum> acc = exact_grad(dtable);
    pool_->parallel_for(c, [&](std::int64_t c0, std::int64_t c1) {
      for (std::int64_t i = 0; i < n; ++i) add_exact(acc.subspan(idp[i] * c + c0, c1 - c0), dyp + i * c + c0);
    }, 32);
    return;
  }
  float* dtp = dtable.f32();
  // Split over columns so every row is added in order of n (deterministic, batch-split independent).
  pool_->parallel_for(c, [&](std::int64_t c0, std::int64_t c1) {
    for (std::int64_t i = 0; i < n; ++i) {
      float* dst = dtp + idp[i] * c;
      const float* src = dyp + i * c;
      for (std::int64_t j = c0; j < c1; ++j) dst[j] += src[j];
    }
  }, 32);
}

}  // namespace troupe
