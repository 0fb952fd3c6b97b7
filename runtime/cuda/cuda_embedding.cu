// CUDA embedding backward: a stable radix sort of the ids groups each table row's positions in order, then
// one thread per (table row, column) adds them, so the sum has the CPU's order and needs no atomics.
#include <cub/device/device_radix_sort.cuh>

#include "runtime/cuda/kernels.h"
#include "runtime/cuda/launch.cuh"

namespace troupe::cuda {

namespace {
constexpr std::size_t kAlign = 256;

std::size_t align_up(std::size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

std::size_t sort_temp_bytes(i64 n) {
  std::size_t bytes = 0;
  cub::DeviceRadixSort::SortPairs(nullptr, bytes, static_cast<const std::int32_t*>(nullptr),
                                  static_cast<std::int32_t*>(nullptr), static_cast<const std::int32_t*>(nullptr),
                                  static_cast<std::int32_t*>(nullptr), static_cast<int>(n));
  return bytes;
}

__global__ void iota_kernel(std::int32_t* v, i64 n) { TROUPE_GRID_STRIDE(i, n) v[i] = static_cast<std::int32_t>(i); }

// Thread (column c, sorted position p): when p starts a run of equal ids, add the run's rows in order.
__global__ void add_runs_kernel(const std::int32_t* keys, const std::int32_t* rows, const float* dy, float* dtable,
                                i64 n, i64 cols, i64 vocab) {
  const i64 c = static_cast<i64>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  for (i64 p = blockIdx.y; p < n; p += gridDim.y) {
    const std::int32_t id = keys[p];
    if ((p > 0 && keys[p - 1] == id) || id < 0 || id >= vocab) continue;
    float* dst = dtable + static_cast<i64>(id) * cols + c;
    float acc = *dst;
    for (i64 q = p; q < n && keys[q] == id; ++q) acc = __fadd_rn(acc, dy[static_cast<i64>(rows[q]) * cols + c]);
    *dst = acc;
  }
}
}  // namespace

std::size_t embedding_backward_workspace(i64 n) {
  return 3 * align_up(static_cast<std::size_t>(n) * sizeof(std::int32_t)) + align_up(sort_temp_bytes(n));
}

void embedding_backward(const std::int32_t* ids, const float* dy, float* dtable, i64 n, i64 cols, i64 vocab,
                        void* workspace, cudaStream_t s) {
  if (!n || !cols) return;
  char* w = static_cast<char*>(workspace);
  const std::size_t ids_bytes = align_up(static_cast<std::size_t>(n) * sizeof(std::int32_t));
  auto* keys = reinterpret_cast<std::int32_t*>(w);
  auto* rows_in = reinterpret_cast<std::int32_t*>(w + ids_bytes);
  auto* rows = reinterpret_cast<std::int32_t*>(w + 2 * ids_bytes);
  void* temp = w + 3 * ids_bytes;
  std::size_t temp_bytes = sort_temp_bytes(n);
  iota_kernel<<<grid_for(n), kThreads, 0, s>>>(rows_in, n);
  cub::DeviceRadixSort::SortPairs(temp, temp_bytes, ids, keys, rows_in, rows, static_cast<int>(n), 0, 32, s);
  const dim3 grid(static_cast<unsigned>((cols + 127) / 128), static_cast<unsigned>(n < 65535 ? n : 65535));
  add_runs_kernel<<<grid, 128, 0, s>>>(keys, rows, dy, dtable, n, cols, vocab);
}

}  // namespace troupe::cuda
