// The registered CUDA backend: a pointer set before main() by runtime/cuda/cuda_register.cpp, if linked.
#include "runtime/cuda_hooks.h"

namespace troupe {

namespace {
// Constant-initialised (zero) before any dynamic initialiser runs, so registration order cannot matter.
constinit CudaBackendHooks g_hooks{};
constinit bool g_registered = false;
}  // namespace

void register_cuda_backend(const CudaBackendHooks& hooks) {
  g_hooks = hooks;
  g_registered = true;
}

const CudaBackendHooks* cuda_backend() { return g_registered ? &g_hooks : nullptr; }

}  // namespace troupe
