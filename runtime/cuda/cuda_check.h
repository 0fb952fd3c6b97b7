// Owns the CUDA and cuBLAS status checks of the CUDA backend's host code (compiled only with CUDA).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <string>

#include "runtime/error.h"

namespace troupe::cuda_detail {

[[noreturn]] inline void fail(const std::string& what, const char* expr, const char* file, int line) {
  throw Error(ErrorKind::kInternal, what + " in " + expr + " (" + file + ":" + std::to_string(line) + ")");
}

}  // namespace troupe::cuda_detail

// A failing CUDA runtime call becomes troupe::Error (kInternal) naming the call and the CUDA error.
#define TROUPE_CUDA(expr)                                                                                        \
  do {                                                                                                           \
    const cudaError_t troupe_err_ = (expr);                                                                      \
    if (troupe_err_ != cudaSuccess)                                                                              \
      ::troupe::cuda_detail::fail(std::string("CUDA error: ") + cudaGetErrorString(troupe_err_), #expr, __FILE__, \
                                  __LINE__);                                                                     \
  } while (0)

#define TROUPE_CUBLAS(expr)                                                                                         \
  do {                                                                                                              \
    const cublasStatus_t troupe_st_ = (expr);                                                                       \
    if (troupe_st_ != CUBLAS_STATUS_SUCCESS)                                                                        \
      ::troupe::cuda_detail::fail(std::string("cuBLAS error: ") + cublasGetStatusString(troupe_st_), #expr, __FILE__, \
                                  __LINE__);                                                                        \
  } while (0)
