// Owns CachingAllocator: device memory blocks kept for reuse by size class, so steady-state training allocates nothing.
//
// cudaMalloc and cudaFree synchronise the device and cost tens of microseconds; a training step makes
// hundreds of temporary tensors of the same few sizes. Blocks freed by a tensor go back into a per-size
// cache and the next request of that size class takes one, with no call into the driver.
//
// The allocator is generic over the raw allocation functions (the CUDA backend passes cudaMalloc and
// cudaFree; tests pass malloc and free), so its bookkeeping is tested without a GPU.
//
// Stream safety: one allocator serves one backend, whose work runs in order on one stream. A block
// released while kernels that use it are still queued can only be handed to work queued later on the
// same stream, which runs after them; so no event is needed. (Sharing one allocator across streams would
// need an event per block, as PyTorch records.)
//
// Thread safety: allocate and release may be called from any thread (a tensor may be dropped by another
// actor's thread).
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace troupe {

class CachingAllocator {
 public:
  // raw_alloc returns nullptr when out of memory; raw_free releases what raw_alloc returned.
  using RawAlloc = std::function<void*(std::size_t)>;
  using RawFree = std::function<void(void*)>;

  struct Stats {
    std::size_t bytes_in_use = 0;  // by size class, in blocks handed out
    std::size_t bytes_cached = 0;  // in blocks waiting for reuse
    std::size_t raw_allocs = 0;    // calls to raw_alloc that succeeded
    std::size_t reuses = 0;        // requests served from the cache
  };

  CachingAllocator(RawAlloc raw_alloc, RawFree raw_free, std::string device_name);
  ~CachingAllocator();  // frees every cached block (blocks still out must be released before)
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // A block of at least `bytes` (size_class(bytes)); nullptr for 0 bytes. When raw_alloc fails, the cache
  // is emptied and the allocation retried once; then troupe::Error (kInternal) says how much was asked,
  // in use and cached on which device.
  void* allocate(std::size_t bytes);
  // Returns a block from allocate() to the cache; nullptr is ignored.
  void release(void* p);
  // Frees every cached block (not those in use).
  void empty_cache();
  Stats stats() const;

  // The size a request is rounded to: multiples of 512 bytes up to 1 MiB; above, quarter steps between
  // powers of two (1, 1.25, 1.5, 1.75 x 2^k), so at most 25% is wasted and few distinct sizes exist.
  static std::size_t size_class(std::size_t bytes);

 private:
  RawAlloc raw_alloc_;
  RawFree raw_free_;
  std::string device_name_;
  mutable std::mutex mu_;
  std::map<std::size_t, std::vector<void*>> cached_;  // by size class
  std::unordered_map<void*, std::size_t> in_use_;     // block -> size class
  Stats stats_;
};

}  // namespace troupe
