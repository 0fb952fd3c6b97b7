// troupe_bench_gpu: the GPU check's measurements on one GPU, printed as one table (scripts/gpu-check runs it).
//
//   matmul    troupe's CudaBackend::matmul (bf16 and f32, M = N = K) against a direct cublasGemmEx of the
//             same shape and types (the cuBLAS figure is the "peak for that shape" the issue asks for);
//   copy      device-to-device copy through CudaBackend::copy, GB/s of bytes copied;
//   GPT       DeviceGpt training steps (bf16 linears, f32 master weights, AdamW) for a GPT-2 124M shape
//             (12 layers, 12 heads, width 768, context 1024, vocabulary 50257 padded to 50304), random
//             tokens; tokens/s and model-FLOP utilisation 6 N tokens/s / peak (790 TFLOP/s bf16 dense
//             for an H200 as measured by this workplace; --peak to change).
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include <fmt/format.h>

#include "models/device_gpt.h"
#include "bench/gpu_report.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/device_info.h"

using namespace troupe;

namespace {
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Times `body` (which queues work on `be`'s stream) over enough repetitions to take ~0.5 s.
template <class F>
double time_per_call(CudaBackend& be, F&& body) {
  body();
  be.synchronize();
  int reps = 1;
  while (true) {
    const auto t0 = Clock::now();
    for (int i = 0; i < reps; ++i) body();
    be.synchronize();
    const double s = seconds_since(t0);
    if (s > 0.5 || reps >= 1 << 14) return s / reps;
    reps *= 4;
  }
}

GpuReportRow matmul_row(CudaBackend& be, std::int64_t n, DType dt) {
  Tensor a = be.empty({n, n}, dt), b = be.empty({n, n}, dt), c = be.empty({n, n}, DType::f32);
  for (Tensor* t : {&a, &b}) {
    Tensor f = be.empty({n, n});
    be.fill(f, 0.5f);
    be.cast(f, *t);
  }
  const double flops = 2.0 * n * n * n;
  const double ours = time_per_call(be, [&] { be.matmul(a, false, b, false, c, 1.0f, 0.0f); });
  // The same product straight through cuBLAS (no troupe code in between).
  cublasHandle_t h = nullptr;
  cublasCreate(&h);
  cublasSetStream(h, static_cast<cudaStream_t>(be.stream()));
  const cudaDataType_t t = dt == DType::bf16 ? CUDA_R_16BF : CUDA_R_32F;
  const float one = 1.0f, zero = 0.0f;
  const int ni = static_cast<int>(n);
  const double direct = time_per_call(be, [&] {
    cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, ni, ni, ni, &one, b.raw(), t, ni, a.raw(), t, ni, &zero, c.raw(),
                 CUDA_R_32F, ni, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  });
  cublasDestroy(h);
  return {fmt::format("matmul {} {}^3", dtype_name(dt), n), flops / ours / 1e12, "TFLOP/s", flops / direct / 1e12,
          "cuBLAS direct"};
}

GpuReportRow copy_row(CudaBackend& be, std::int64_t bytes) {
  Tensor a = be.empty({bytes / 4}), b = be.empty({bytes / 4});
  be.fill(a, 1.0f);
  const double s = time_per_call(be, [&] { be.copy(b, a); });
  return {fmt::format("copy device to device {} MiB", bytes >> 20), static_cast<double>(bytes) / s / 1e9, "GB/s", 0.0, ""};
}

}  // namespace

int main(int argc, char** argv) {
  int device = 0, batch = 8, steps = 10;
  double peak = 790e12;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--device") device = std::atoi(argv[i + 1]);
    else if (k == "--batch") batch = std::atoi(argv[i + 1]);
    else if (k == "--steps") steps = std::atoi(argv[i + 1]);
    else if (k == "--peak") peak = std::atof(argv[i + 1]) * 1e12;
    else {
      std::fprintf(stderr, "usage: troupe_bench_gpu [--device N] [--batch B] [--steps S] [--peak TFLOPS]\n");
      return 2;
    }
  }
  try {
    const DeviceInventory inv = query_devices();
    if (inv.cuda_devices.empty()) {
      std::printf("SKIPPED: no CUDA device (%s)\n", inv.cuda_status.c_str());
      return 77;
    }
    std::vector<GpuReportRow> rows;
    {
      CudaBackend be(CudaBackendOptions{device, false});
      rows.push_back(matmul_row(be, 8192, DType::bf16));
      rows.push_back(matmul_row(be, 4096, DType::f32));
      rows.push_back(copy_row(be, std::int64_t{1} << 30));
    }

    RunConfig config;
    config.model.kind = ModelKind::gpt;
    config.model.n_layer = 12;
    config.model.n_head = 12;
    config.model.n_embd = 768;
    config.model.block_size = 1024;
    config.model.vocab_size = static_cast<int>(padded_vocab(50257, 128));
    config.train.batch_size = batch;
    config.optim.kind = OptimKind::adamw;
    config.optim.lr = 6e-4;
    auto ops = make_cuda_ops(config, device, /*allow_tf32=*/true);
    DeviceGpt gpt(config, *ops, Precision::bf16);
    std::mt19937 rng(1);
    std::uniform_int_distribution<int> tok(0, 50256);
    Batch b;
    b.inputs = Tensor::empty({batch, config.model.block_size}, DType::i32);
    b.targets = Tensor::empty({batch, config.model.block_size}, DType::i32);
    for (std::int64_t i = 0; i < b.inputs.numel(); ++i) {
      b.inputs.i32()[i] = tok(rng);
      b.targets.i32()[i] = tok(rng);
    }
    double first_loss = 0.0, last_loss = 0.0;
    first_loss = gpt.step(b, 0).loss;  // two warm-up steps: allocations, cuBLAS heuristics
    gpt.step(b, 1);
    ops->synchronize();
    const auto t0 = Clock::now();
    for (int s = 0; s < steps; ++s) last_loss = gpt.step(b, 2 + s).loss;
    ops->synchronize();
    const double sec = seconds_since(t0);
    const double tokens_per_s = static_cast<double>(batch) * config.model.block_size * steps / sec;
    rows.push_back({fmt::format("GPT-2 124M bf16 train, batch {}x1024", batch), tokens_per_s, "tokens/s", 0.0, ""});
    rows.push_back({"  model-FLOP utilisation (6N tok/s / peak)",
                    100.0 * model_flop_utilisation(gpt.num_params(), tokens_per_s, peak), "%", 0.0, ""});
    std::printf("%s", format_gpu_report(fmt::format("troupe GPU check on cuda:{} ({}), {:.1f}M parameters, loss {:.3f} -> {:.3f}",
                                                    device, inv.cuda_devices.at(device).name, gpt.num_params() / 1e6,
                                                    first_loss, last_loss),
                                        rows)
                          .c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "troupe_bench_gpu: error: %s\n", e.what());
    return 1;
  }
}
