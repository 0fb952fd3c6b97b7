// Owns CudaBackend: Backend on one CUDA device, with its own stream, cuBLAS handle and caching allocator.
//
// One CudaBackend per actor (stage, shard, optimizer): its work runs in order on its own stream, so
// actors on one GPU overlap (record()/wait() order work across them), and device memory it hands out is recycled through its CachingAllocator.
// Every op of Backend is implemented (products through cuBLAS, the rest as troupe kernels in
// runtime/cuda/*.cu) and checked against CpuBackend by tests/test_cuda_*.cpp.
//
// Calls return as soon as the work is queued, except where a host value is needed: download(),
// cross_entropy_forward (returns the loss sum), sum_squares() and synchronize(). Errors of queued work
// surface at the next such call. A device tensor's memory may be released while queued kernels still
// use it: the allocator gives it only to work queued later on the same stream.
//
// Precision: f32 by default. matmul and linear also take bf16 operands (f32 accumulation; outputs f32
// or bf16), which is how a bf16 run computes: bf16 copies of activations and weights feed the tensor
// cores while master weights, gradients and optimizer state stay f32. Elementwise ops, norms, attention
// and losses take f32. With allow_tf32, f32 products may use TF32 tensor cores (faster, ~1e-3 relative).
//
// Deterministic mode (exact fixed-point gradient sums) is CPU-only: set_deterministic(true) throws
// troupe::Error (kConfig). Results are nevertheless repeatable run to run: parameter-gradient
// reductions use a fixed order (no atomics) and cuBLAS is deterministic on one stream.
//
// Host index tensors (token ids, targets) may be passed where an op reads i32 ids: they are copied to
// the device first (a small transfer), so a data loader can stay on the host.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "runtime/backend.h"
#include "runtime/cuda/caching_allocator.h"
#include "runtime/cuda/optim_scalars.h"

namespace troupe {

struct CudaBackendOptions {
  int device = 0;           // cuda:N
  bool allow_tf32 = false;  // f32 products on TF32 tensor cores
};

class CudaBackend final : public Backend {
 public:
  // Throws troupe::Error (kConfig) when the device does not exist or CUDA cannot start.
  explicit CudaBackend(CudaBackendOptions options = {});
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  Device device() const override { return Device::cuda(options_.device); }
  int threads() const override { return 1; }
  void set_deterministic(bool on) override;
  bool deterministic() const override { return false; }

  Tensor empty(Shape shape, DType dtype = DType::f32) override;
  void zero(const Tensor& t) override;

  void matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& c, float alpha,
              float beta) override;
  void linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,
                      std::int64_t row_block = 0) override;
  void linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& dx, const Tensor& dw,
                       const Tensor& dbias, std::int64_t row_block) override;

  void gelu_forward(const Tensor& x, const Tensor& y) override;
  void gelu_backward(const Tensor& x, const Tensor& dy, const Tensor& dx) override;
  void relu_forward(const Tensor& x, const Tensor& y) override;
  void relu_backward(const Tensor& y, const Tensor& dy, const Tensor& dx) override;
  void add(const Tensor& a, const Tensor& b, const Tensor& out) override;
  void add_inplace(const Tensor& acc, const Tensor& b) override;

  void softmax_forward(const Tensor& x, const Tensor& y) override;
  void softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx) override;
  void layernorm_forward(const Tensor& x, const Tensor& w, const Tensor& b, float eps, const Tensor& y,
                         const Tensor& mean, const Tensor& rstd) override;
  void layernorm_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& mean,
                          const Tensor& rstd, const Tensor& dx, const Tensor& dw, const Tensor& db) override;

  void embedding_forward(const Tensor& ids, const Tensor& table, const Tensor& y) override;
  void embedding_backward(const Tensor& ids, const Tensor& dy, const Tensor& dtable) override;

  void attention_forward(const Tensor& qkv, int n_head, const Tensor& out, const Tensor& probs) override;
  void attention_backward(const Tensor& dout, const Tensor& qkv, const Tensor& probs, int n_head,
                          const Tensor& dqkv) override;

  double cross_entropy_forward(const Tensor& logits, const Tensor& targets, const Tensor& probs,
                               const Tensor& losses) override;
  void cross_entropy_backward(const Tensor& probs, const Tensor& targets, float scale,
                              const Tensor& dlogits) override;

  // --- Beyond Backend: moving data, conversions, optimizer updates ---

  // A device copy of a host (or device) tensor; queued, the host tensor must stay alive until the next
  // synchronize (it is kept alive by the backend until then).
  Tensor upload(const Tensor& t);
  // A host copy of a device tensor; waits for the stream.
  Tensor download(const Tensor& t);
  // dst = src between any two devices (host, this GPU, another GPU: peer copy, no host round trip);
  // same shape and dtype; queued on this stream.
  void copy(const Tensor& dst, const Tensor& src);
  // dst = src converted (f32 <-> bf16, or a plain copy for equal dtypes), both on this device.
  void cast(const Tensor& src, const Tensor& dst);
  void fill(const Tensor& t, float value);
  void scale(const Tensor& t, float factor);
  // Sum of squares of an f32 device tensor, in double; waits for the stream.
  double sum_squares(const Tensor& t);
  // One optimizer update of parameter w (f32) with gradient g; state tensors f32 shaped like w (see
  // kernels.h for which are read). Scalars from optim_scalars.h, so the result matches runtime/optim.
  void adam_update(const Tensor& w, const Tensor& g, const Tensor& m, const Tensor& v, const AdamStep& k);
  void sgd_update(const Tensor& w, const Tensor& g, const Tensor& buf, const SgdStep& k);
  void rmsprop_update(const Tensor& w, const Tensor& g, const Tensor& square_avg, const Tensor& grad_avg,
                      const Tensor& buf, const RmspropStep& k);

  // Cross-actor dependencies without blocking a host thread: record() marks the current end of this
  // backend's stream; another backend (another actor's stream, on this GPU or another) calls
  // wait(event) before queueing work that reads what was written before the mark. The event may be
  // sent with the tensor it guards.
  struct Event {
    std::shared_ptr<void> handle;  // cudaEvent_t, destroyed with the last copy
    int device = 0;
  };
  Event record();
  void wait(const Event& event);

  // Waits for every queued op and reports any asynchronous CUDA error as troupe::Error (kInternal).
  void synchronize();
  void* stream() const { return stream_; }  // the cudaStream_t
  CachingAllocator::Stats memory_stats() const { return allocator_->stats(); }

 private:
  void activate() const;  // cudaSetDevice(options_.device) for the calling thread
  Tensor on_device(const Tensor& ids);  // i32 ids on this device (uploads host ones)
  void check_device(const Tensor& t, const char* op) const;
  void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const void* a,
            std::int64_t lda, const void* b, std::int64_t ldb, float beta, void* c, std::int64_t ldc, DType ab,
            DType cd, int batch = 1, std::int64_t stride_a = 0, std::int64_t stride_b = 0, std::int64_t stride_c = 0);
  void throw_if_bad_index(const char* what, std::int64_t limit);

  CudaBackendOptions options_;
  void* stream_ = nullptr;  // cudaStream_t
  void* cublas_ = nullptr;  // cublasHandle_t
  std::shared_ptr<CachingAllocator> allocator_;
  Tensor scratch_;          // device: an i64 flag for bad indices, then 1024 + 1 doubles for sums
  std::vector<Tensor> keep_alive_;  // host sources of queued uploads, released at synchronize()
};

}  // namespace troupe
