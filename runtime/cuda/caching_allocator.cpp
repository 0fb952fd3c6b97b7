// CachingAllocator: size classes, reuse, and one retry after emptying the cache when memory runs out.
#include "runtime/cuda/caching_allocator.h"

#include <fmt/format.h>

#include "runtime/error.h"

namespace troupe {

CachingAllocator::CachingAllocator(RawAlloc raw_alloc, RawFree raw_free, std::string device_name)
    : raw_alloc_(std::move(raw_alloc)), raw_free_(std::move(raw_free)), device_name_(std::move(device_name)) {}

CachingAllocator::~CachingAllocator() { empty_cache(); }

std::size_t CachingAllocator::size_class(std::size_t bytes) {
  if (bytes == 0) return 0;
  constexpr std::size_t kSmall = 1 << 20;
  if (bytes <= kSmall) return (bytes + 511) / 512 * 512;
  std::size_t pow2 = kSmall;
  while (pow2 * 2 <= bytes) pow2 *= 2;  // pow2 <= bytes < 2 * pow2
  const std::size_t step = pow2 / 4;
  return (bytes + step - 1) / step * step;
}

void* CachingAllocator::allocate(std::size_t bytes) {
  const std::size_t cls = size_class(bytes);
  if (cls == 0) return nullptr;
  std::lock_guard lock(mu_);
  auto it = cached_.find(cls);
  if (it != cached_.end() && !it->second.empty()) {
    void* p = it->second.back();
    it->second.pop_back();
    in_use_.emplace(p, cls);
    stats_.bytes_cached -= cls;
    stats_.bytes_in_use += cls;
    ++stats_.reuses;
    return p;
  }
  void* p = raw_alloc_(cls);
  if (!p) {
    // Cached blocks of other sizes may be what stands in the way: give them back and try once more.
    for (auto& [size, blocks] : cached_)
      for (void* b : blocks) raw_free_(b);
    cached_.clear();
    stats_.bytes_cached = 0;
    p = raw_alloc_(cls);
  }
  if (!p)
    throw Error(ErrorKind::kInternal,
                fmt::format("out of memory on {} allocating {:.1f} MiB ({:.1f} MiB in use by troupe); use a smaller "
                            "train.batch_size or model",
                            device_name_, cls / 1048576.0, stats_.bytes_in_use / 1048576.0));
  in_use_.emplace(p, cls);
  stats_.bytes_in_use += cls;
  ++stats_.raw_allocs;
  return p;
}

void CachingAllocator::release(void* p) {
  if (!p) return;
  std::lock_guard lock(mu_);
  auto it = in_use_.find(p);
  TROUPE_CHECK(it != in_use_.end(), "release of a block this allocator did not hand out");
  const std::size_t cls = it->second;
  in_use_.erase(it);
  cached_[cls].push_back(p);
  stats_.bytes_in_use -= cls;
  stats_.bytes_cached += cls;
}

void CachingAllocator::empty_cache() {
  std::lock_guard lock(mu_);
  for (auto& [size, blocks] : cached_)
    for (void* b : blocks) raw_free_(b);
  cached_.clear();
  stats_.bytes_cached = 0;
}

CachingAllocator::Stats CachingAllocator::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace troupe
