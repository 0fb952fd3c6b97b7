// CudaBackend: device selection, stream, memory, host transfers, cuBLAS products and the checks around every kernel.
#include "runtime/cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/kernels.h"

namespace troupe {

namespace {
constexpr int kPartials = 1024;  // cuda_optim.cu's partial sums

cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }
cublasHandle_t as_cublas(void* h) { return static_cast<cublasHandle_t>(h); }

cudaDataType_t cuda_type(DType t) {
  if (t == DType::f32) return CUDA_R_32F;
  if (t == DType::bf16) return CUDA_R_16BF;
  throw Error(ErrorKind::kInternal, fmt::format("products take f32 or bf16, not {}", dtype_name(t)));
}

void same_count(const Tensor& a, const Tensor& b, const char* what) {
  TROUPE_CHECK(a.numel() == b.numel(), what, ": ", shape_str(a.shape()), " vs ", shape_str(b.shape()));
}
}  // namespace

CudaBackend::CudaBackend(CudaBackendOptions options) : options_(options) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    cudaGetLastError();
    throw Error(ErrorKind::kConfig,
                fmt::format("train.device = cuda:{}: no CUDA device found ({}; troupe devices lists them); use "
                            "train.device = cpu",
                            options.device, err != cudaSuccess ? cudaGetErrorString(err) : "0 devices"));
  }
  if (options.device < 0 || options.device >= count)
    throw Error(ErrorKind::kConfig, fmt::format("train.device = cuda:{}: this machine has {} CUDA device{} "
                                                "(cuda:0..cuda:{}; troupe devices lists them)",
                                                options.device, count, count == 1 ? "" : "s", count - 1));
  activate();
  cudaStream_t stream = nullptr;
  TROUPE_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  stream_ = stream;
  cublasHandle_t handle = nullptr;
  TROUPE_CUBLAS(cublasCreate(&handle));
  cublas_ = handle;
  TROUPE_CUBLAS(cublasSetStream(handle, stream));
  TROUPE_CUBLAS(cublasSetMathMode(handle, options.allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  const int dev = options.device;
  allocator_ = std::make_shared<CachingAllocator>(
      [dev](std::size_t bytes) -> void* {
        cudaSetDevice(dev);
        void* p = nullptr;
        if (cudaMalloc(&p, bytes) != cudaSuccess) {
          cudaGetLastError();  // clear it: the allocator retries or reports
          return nullptr;
        }
        return p;
      },
      [dev](void* p) {
        cudaSetDevice(dev);
        cudaFree(p);
      },
      device().str());
  scratch_ = empty({2 + kPartials + 1}, DType::i64);
  zero(scratch_);
}

CudaBackend::~CudaBackend() {
  activate();
  cudaStreamSynchronize(as_stream(stream_));
  scratch_ = Tensor();
  keep_alive_.clear();
  if (cublas_) cublasDestroy(as_cublas(cublas_));
  if (stream_) cudaStreamDestroy(as_stream(stream_));
  // allocator_ lives on while tensors from it do; it frees its cache when the last one goes.
}

void CudaBackend::activate() const { TROUPE_CUDA(cudaSetDevice(options_.device)); }

void CudaBackend::set_deterministic(bool on) {
  if (on)
    throw Error(ErrorKind::kConfig,
                "train.deterministic = true: deterministic mode (exact fixed-point gradient sums) is CPU-only; use "
                "train.device = cpu, or train.deterministic = false on " + device().str());
}

void CudaBackend::check_device(const Tensor& t, const char* op) const {
  TROUPE_CHECK(!t.defined() || t.device() == device(), op, ": tensor on ", t.device().str(), ", backend on ",
               device().str());
}

Tensor CudaBackend::empty(Shape shape, DType dtype) {
  activate();
  const std::size_t bytes = static_cast<std::size_t>(shape_numel(shape)) * dtype_size(dtype);
  auto storage = std::make_shared<Storage>();
  storage->data = allocator_->allocate(bytes);
  storage->bytes = CachingAllocator::size_class(bytes);
  storage->device = device();
  storage->deleter = [alloc = allocator_](void* p) { alloc->release(p); };
  return Tensor::on_storage(std::move(storage), std::move(shape), dtype);
}

void CudaBackend::zero(const Tensor& t) {
  check_device(t, "zero");
  activate();
  if (t.nbytes()) TROUPE_CUDA(cudaMemsetAsync(t.raw(), 0, t.nbytes(), as_stream(stream_)));
}

void CudaBackend::fill(const Tensor& t, float value) {
  check_device(t, "fill");
  activate();
  cuda::fill(t.f32(), value, t.numel(), as_stream(stream_));
}

void CudaBackend::scale(const Tensor& t, float factor) {
  check_device(t, "scale");
  activate();
  cuda::scale(t.f32(), factor, t.numel(), as_stream(stream_));
}

Tensor CudaBackend::upload(const Tensor& t) {
  Tensor d = empty(t.shape(), t.dtype());
  copy(d, t);
  return d;
}

Tensor CudaBackend::download(const Tensor& t) {
  check_device(t, "download");
  Tensor h = Tensor::empty(t.shape(), t.dtype());
  activate();
  if (t.nbytes())
    TROUPE_CUDA(cudaMemcpyAsync(h.raw(), t.raw(), t.nbytes(), cudaMemcpyDeviceToHost, as_stream(stream_)));
  synchronize();
  return h;
}

void CudaBackend::copy(const Tensor& dst, const Tensor& src) {
  TROUPE_CHECK(dst.shape() == src.shape() && dst.dtype() == src.dtype(), "copy ", shape_str(src.shape()), " ",
               dtype_name(src.dtype()), " into ", shape_str(dst.shape()), " ", dtype_name(dst.dtype()));
  activate();
  if (!src.nbytes()) return;
  const Device sd = src.device(), dd = dst.device();
  if (!sd.is_cpu() && !dd.is_cpu() && sd != dd) {
    // Another GPU: a peer copy when the devices can reach each other, staged by the driver otherwise.
    int can = 0;
    cudaDeviceCanAccessPeer(&can, dd.index, sd.index);
    if (can) {
      cudaSetDevice(dd.index);
      const cudaError_t e = cudaDeviceEnablePeerAccess(sd.index, 0);
      if (e != cudaSuccess) cudaGetLastError();  // already enabled is fine
      activate();
    }
    TROUPE_CUDA(cudaMemcpyPeerAsync(dst.raw(), dd.index, src.raw(), sd.index, src.nbytes(), as_stream(stream_)));
    return;
  }
  if (sd.is_cpu()) keep_alive_.push_back(src);  // the host source must outlive the queued copy
  TROUPE_CUDA(cudaMemcpyAsync(dst.raw(), src.raw(), src.nbytes(), cudaMemcpyDefault, as_stream(stream_)));
}

void CudaBackend::cast(const Tensor& src, const Tensor& dst) {
  check_device(src, "cast");
  check_device(dst, "cast");
  same_count(src, dst, "cast");
  activate();
  const auto s = as_stream(stream_);
  if (src.dtype() == dst.dtype()) {
    if (src.nbytes()) TROUPE_CUDA(cudaMemcpyAsync(dst.raw(), src.raw(), src.nbytes(), cudaMemcpyDeviceToDevice, s));
  } else if (src.dtype() == DType::f32 && dst.dtype() == DType::bf16) {
    cuda::f32_to_bf16(src.f32(), dst.bf16(), src.numel(), s);
  } else if (src.dtype() == DType::bf16 && dst.dtype() == DType::f32) {
    cuda::bf16_to_f32(src.bf16(), dst.f32(), src.numel(), s);
  } else {
    TROUPE_CHECK(false, "cast ", dtype_name(src.dtype()), " -> ", dtype_name(dst.dtype()), " not supported");
  }
}

CudaBackend::Event CudaBackend::record() {
  activate();
  cudaEvent_t e = nullptr;
  TROUPE_CUDA(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  Event ev{std::shared_ptr<void>(e, [dev = options_.device](void* p) {
             cudaSetDevice(dev);
             cudaEventDestroy(static_cast<cudaEvent_t>(p));
           }),
           options_.device};
  TROUPE_CUDA(cudaEventRecord(e, as_stream(stream_)));
  return ev;
}

void CudaBackend::wait(const Event& event) {
  TROUPE_CHECK(event.handle, "wait on an event that was never recorded");
  activate();
  TROUPE_CUDA(cudaStreamWaitEvent(as_stream(stream_), static_cast<cudaEvent_t>(event.handle.get()), 0));
}

void CudaBackend::synchronize() {
  activate();
  TROUPE_CUDA(cudaStreamSynchronize(as_stream(stream_)));
  keep_alive_.clear();
  // Index errors found by kernels since the last check (an id or a target outside its range).
  // Copied on this (non-blocking) stream: the legacy default stream would not order with it.
  std::int64_t flags[2] = {0, 0};
  const auto s = as_stream(stream_);
  TROUPE_CUDA(cudaMemcpyAsync(flags, scratch_.raw(), sizeof flags, cudaMemcpyDeviceToHost, s));
  TROUPE_CUDA(cudaStreamSynchronize(s));
  if (flags[0] || flags[1]) {
    TROUPE_CUDA(cudaMemsetAsync(scratch_.raw(), 0, sizeof flags, s));  // reported once
    if (flags[0])
      throw Error(ErrorKind::kInput, fmt::format("token id at position {} is outside the vocabulary (on {})",
                                                 flags[0] - 1, device().str()));
    throw Error(ErrorKind::kInput,
                fmt::format("target class at row {} is outside the vocabulary (on {})", flags[1] - 1, device().str()));
  }
}

Tensor CudaBackend::on_device(const Tensor& ids) {
  TROUPE_CHECK(ids.dtype() == DType::i32, "ids must be i32, got ", dtype_name(ids.dtype()));
  if (ids.device() == device()) return ids;
  return upload(ids);
}

void CudaBackend::gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                       const void* a, std::int64_t lda, const void* b, std::int64_t ldb, float beta, void* c,
                       std::int64_t ldc, DType ab, DType cd, int batch, std::int64_t stride_a, std::int64_t stride_b,
                       std::int64_t stride_c) {
  if (m == 0 || n == 0) return;
  activate();
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands, keep the flags.
  const cublasComputeType_t compute =
      ab == DType::f32 && options_.allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  TROUPE_CUBLAS(cublasGemmStridedBatchedEx(
      as_cublas(cublas_), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
      static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &alpha, b, cuda_type(ab), static_cast<int>(ldb),
      stride_b, a, cuda_type(ab), static_cast<int>(lda), stride_a, &beta, c, cuda_type(cd), static_cast<int>(ldc),
      stride_c, batch, compute, CUBLAS_GEMM_DEFAULT));
}

void CudaBackend::matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& c, float alpha,
                         float beta) {
  for (const Tensor* t : {&a, &b, &c}) check_device(*t, "matmul");
  TROUPE_CHECK(a.ndim() == 2 && b.ndim() == 2 && c.ndim() == 2 && a.dtype() == b.dtype(), "matmul operands ",
               shape_str(a.shape()), " ", shape_str(b.shape()), " ", shape_str(c.shape()));
  const std::int64_t m = c.dim(0), n = c.dim(1), k = trans_a ? a.dim(0) : a.dim(1);
  TROUPE_CHECK((trans_a ? a.dim(1) : a.dim(0)) == m && (trans_b ? b.dim(1) : b.dim(0)) == k &&
                   (trans_b ? b.dim(0) : b.dim(1)) == n,
               "matmul shapes ", shape_str(a.shape()), trans_a ? "^T" : "", " @ ", shape_str(b.shape()),
               trans_b ? "^T" : "", " -> ", shape_str(c.shape()));
  gemm(trans_a, trans_b, m, n, k, alpha, a.raw(), a.dim(1), b.raw(), b.dim(1), beta, c.raw(), n, a.dtype(), c.dtype());
}

void CudaBackend::linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,
                                 std::int64_t) {
  for (const Tensor* t : {&x, &w, &bias, &y}) check_device(*t, "linear_forward");
  const std::int64_t out = w.dim(0), in = w.dim(1), n = x.numel() / in;
  TROUPE_CHECK(x.dtype() == w.dtype() && x.numel() == n * in && y.numel() == n * out, "linear shapes x ",
               shape_str(x.shape()), " w ", shape_str(w.shape()), " y ", shape_str(y.shape()));
  gemm(false, true, n, out, in, 1.0f, x.raw(), in, w.raw(), in, 0.0f, y.raw(), out, x.dtype(), y.dtype());
  if (bias.defined()) {
    if (y.dtype() == DType::bf16) cuda::add_bias(y.bf16(), bias.f32(), n, out, as_stream(stream_));
    else cuda::add_bias(y.f32(), bias.f32(), n, out, as_stream(stream_));
  }
}

void CudaBackend::linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& dx,
                                  const Tensor& dw, const Tensor& dbias, std::int64_t) {
  for (const Tensor* t : {&dy, &x, &w, &dx, &dw, &dbias}) check_device(*t, "linear_backward");
  const std::int64_t out = w.dim(0), in = w.dim(1), n = x.numel() / in;
  TROUPE_CHECK(dy.numel() == n * out && dy.dtype() == x.dtype() && x.dtype() == w.dtype(), "linear backward dy ",
               shape_str(dy.shape()), " x ", shape_str(x.shape()), " w ", shape_str(w.shape()));
  if (dx.defined()) gemm(false, false, n, in, out, 1.0f, dy.raw(), out, w.raw(), in, 0.0f, dx.raw(), in, dy.dtype(), dx.dtype());
  if (dw.defined()) {
    TROUPE_CHECK(dw.dtype() == DType::f32 && dw.numel() == out * in, "dw must be f32 ", shape_str(w.shape()));
    gemm(true, false, out, in, n, 1.0f, dy.raw(), out, x.raw(), in, 1.0f, dw.raw(), in, dy.dtype(), DType::f32);
  }
  if (dbias.defined()) {
    const Tensor partials = empty({cuda::column_sum_partials(n, out)});
    if (dy.dtype() == DType::bf16) cuda::column_sum_add(dy.bf16(), dbias.f32(), n, out, partials.f32(), as_stream(stream_));
    else cuda::column_sum_add(dy.f32(), dbias.f32(), n, out, partials.f32(), as_stream(stream_));
  }
}

void CudaBackend::gelu_forward(const Tensor& x, const Tensor& y) {
  check_device(x, "gelu");
  check_device(y, "gelu");
  same_count(x, y, "gelu");
  activate();
  cuda::gelu_forward(x.f32(), y.f32(), x.numel(), as_stream(stream_));
}

void CudaBackend::gelu_backward(const Tensor& x, const Tensor& dy, const Tensor& dx) {
  for (const Tensor* t : {&x, &dy, &dx}) check_device(*t, "gelu backward");
  same_count(x, dy, "gelu backward");
  same_count(x, dx, "gelu backward");
  activate();
  cuda::gelu_backward(x.f32(), dy.f32(), dx.f32(), x.numel(), as_stream(stream_));
}

void CudaBackend::relu_forward(const Tensor& x, const Tensor& y) {
  check_device(x, "relu");
  check_device(y, "relu");
  same_count(x, y, "relu");
  activate();
  cuda::relu_forward(x.f32(), y.f32(), x.numel(), as_stream(stream_));
}

void CudaBackend::relu_backward(const Tensor& y, const Tensor& dy, const Tensor& dx) {
  for (const Tensor* t : {&y, &dy, &dx}) check_device(*t, "relu backward");
  same_count(y, dy, "relu backward");
  same_count(y, dx, "relu backward");
  activate();
  cuda::relu_backward(y.f32(), dy.f32(), dx.f32(), y.numel(), as_stream(stream_));
}

void CudaBackend::add(const Tensor& a, const Tensor& b, const Tensor& out) {
  for (const Tensor* t : {&a, &b, &out}) check_device(*t, "add");
  same_count(a, b, "add");
  same_count(a, out, "add");
  activate();
  cuda::add(a.f32(), b.f32(), out.f32(), a.numel(), as_stream(stream_));
}

void CudaBackend::add_inplace(const Tensor& acc, const Tensor& b) { add(acc, b, acc); }

void CudaBackend::softmax_forward(const Tensor& x, const Tensor& y) {
  check_device(x, "softmax");
  check_device(y, "softmax");
  same_count(x, y, "softmax");
  const std::int64_t c = x.dim(-1);
  activate();
  cuda::softmax_forward(x.f32(), y.f32(), x.numel() / c, c, as_stream(stream_));
}

void CudaBackend::softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx) {
  for (const Tensor* t : {&y, &dy, &dx}) check_device(*t, "softmax backward");
  const std::int64_t c = y.dim(-1);
  activate();
  cuda::softmax_backward(y.f32(), dy.f32(), dx.f32(), y.numel() / c, c, as_stream(stream_));
}

void CudaBackend::layernorm_forward(const Tensor& x, const Tensor& w, const Tensor& b, float eps, const Tensor& y,
                                    const Tensor& mean, const Tensor& rstd) {
  for (const Tensor* t : {&x, &w, &b, &y, &mean, &rstd}) check_device(*t, "layernorm");
  const std::int64_t c = w.numel(), rows = x.numel() / c;
  TROUPE_CHECK(x.numel() == rows * c && y.numel() == x.numel() && mean.numel() == rows && rstd.numel() == rows,
               "layernorm shapes ", shape_str(x.shape()), " with C=", c);
  activate();
  cuda::layernorm_forward(x.f32(), w.f32(), b.f32(), eps, y.f32(), mean.f32(), rstd.f32(), rows, c, as_stream(stream_));
}

void CudaBackend::layernorm_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& mean,
                                     const Tensor& rstd, const Tensor& dx, const Tensor& dw, const Tensor& db) {
  for (const Tensor* t : {&dy, &x, &w, &mean, &rstd, &dx, &dw, &db}) check_device(*t, "layernorm backward");
  const std::int64_t c = w.numel(), rows = x.numel() / c;
  const Tensor partials = empty({2 * cuda::column_sum_partials(rows, c)});
  activate();
  cuda::layernorm_backward(dy.f32(), x.f32(), w.f32(), mean.f32(), rstd.f32(), dx.f32(), dw.f32(), db.f32(), rows, c,
                           partials.f32(), as_stream(stream_));
}

void CudaBackend::embedding_forward(const Tensor& ids, const Tensor& table, const Tensor& y) {
  check_device(table, "embedding");
  check_device(y, "embedding");
  const std::int64_t n = ids.numel(), c = table.dim(1), v = table.dim(0);
  TROUPE_CHECK(y.numel() == n * c, "embedding output ", shape_str(y.shape()));
  const Tensor d = on_device(ids);
  activate();
  cuda::embedding_forward(d.i32(), table.f32(), y.f32(), n, c, v, scratch_.i64(), as_stream(stream_));
}

void CudaBackend::embedding_backward(const Tensor& ids, const Tensor& dy, const Tensor& dtable) {
  check_device(dy, "embedding backward");
  check_device(dtable, "embedding backward");
  const std::int64_t n = ids.numel(), c = dtable.dim(1);
  const Tensor d = on_device(ids);
  const std::size_t bytes = cuda::embedding_backward_workspace(n);
  const Tensor workspace = empty({static_cast<std::int64_t>((bytes + 3) / 4)}, DType::i32);
  activate();
  cuda::embedding_backward(d.i32(), dy.f32(), dtable.f32(), n, c, dtable.dim(0), workspace.raw(), as_stream(stream_));
}

double CudaBackend::cross_entropy_forward(const Tensor& logits, const Tensor& targets, const Tensor& probs,
                                          const Tensor& losses) {
  for (const Tensor* t : {&logits, &probs, &losses}) check_device(*t, "cross_entropy");
  const std::int64_t v = logits.dim(-1), rows = logits.numel() / v;
  TROUPE_CHECK(targets.numel() == rows && probs.numel() == logits.numel() && losses.numel() == rows,
               "cross-entropy shapes ", shape_str(logits.shape()), " targets ", shape_str(targets.shape()));
  const Tensor d = on_device(targets);
  activate();
  cuda::cross_entropy_forward(logits.f32(), d.i32(), probs.f32(), losses.f32(), rows, v, scratch_.i64() + 1,
                              as_stream(stream_));
  const Tensor host = download(losses);  // synchronises: reports a bad target
  double total = 0.0;
  for (float l : host.span_f32()) total += l;  // row order, as the CPU
  return total;
}

void CudaBackend::cross_entropy_backward(const Tensor& probs, const Tensor& targets, float scale,
                                         const Tensor& dlogits) {
  check_device(probs, "cross_entropy backward");
  check_device(dlogits, "cross_entropy backward");
  const std::int64_t v = probs.dim(-1), rows = probs.numel() / v;
  const Tensor d = on_device(targets);
  activate();
  cuda::cross_entropy_backward(probs.f32(), d.i32(), scale, dlogits.f32(), rows, v, as_stream(stream_));
}

double CudaBackend::sum_squares(const Tensor& t) {
  check_device(t, "sum_squares");
  activate();
  double* partials = reinterpret_cast<double*>(scratch_.i64() + 2);
  cuda::sum_squares(t.f32(), t.numel(), partials, partials + kPartials, as_stream(stream_));
  double out = 0.0;
  TROUPE_CUDA(cudaMemcpyAsync(&out, partials + kPartials, sizeof out, cudaMemcpyDeviceToHost, as_stream(stream_)));
  synchronize();
  return out;
}

void CudaBackend::adam_update(const Tensor& w, const Tensor& g, const Tensor& m, const Tensor& v, const AdamStep& k) {
  for (const Tensor* t : {&w, &g, &m, &v}) check_device(*t, "adam_update");
  same_count(w, g, "adam_update");
  same_count(w, m, "adam_update");
  same_count(w, v, "adam_update");
  activate();
  cuda::adam_update(w.f32(), g.f32(), m.f32(), v.f32(), w.numel(), k, as_stream(stream_));
}

void CudaBackend::sgd_update(const Tensor& w, const Tensor& g, const Tensor& buf, const SgdStep& k) {
  for (const Tensor* t : {&w, &g, &buf}) check_device(*t, "sgd_update");
  same_count(w, g, "sgd_update");
  TROUPE_CHECK(!k.momentum || buf.numel() == w.numel(), "sgd_update: momentum buffer ", shape_str(buf.shape()));
  activate();
  cuda::sgd_update(w.f32(), g.f32(), k.momentum ? buf.f32() : nullptr, w.numel(), k, as_stream(stream_));
}

void CudaBackend::rmsprop_update(const Tensor& w, const Tensor& g, const Tensor& square_avg, const Tensor& grad_avg,
                                 const Tensor& buf, const RmspropStep& k) {
  for (const Tensor* t : {&w, &g, &square_avg, &grad_avg, &buf}) check_device(*t, "rmsprop_update");
  same_count(w, g, "rmsprop_update");
  same_count(w, square_avg, "rmsprop_update");
  TROUPE_CHECK(!k.centered || grad_avg.numel() == w.numel(), "rmsprop_update: grad_avg");
  TROUPE_CHECK(!k.momentum || buf.numel() == w.numel(), "rmsprop_update: momentum buffer");
  activate();
  cuda::rmsprop_update(w.f32(), g.f32(), square_avg.f32(), k.centered ? grad_avg.f32() : nullptr,
                       k.momentum ? buf.f32() : nullptr, w.numel(), k, as_stream(stream_));
}

}  // namespace troupe
