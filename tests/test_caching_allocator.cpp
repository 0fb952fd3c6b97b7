// CachingAllocator's bookkeeping on host memory: size classes, reuse, and the retry when memory runs out.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <map>

#include "runtime/cuda/caching_allocator.h"
#include "runtime/error.h"

using namespace troupe;

namespace {
// malloc with a byte budget, standing in for a device of `limit` bytes.
struct FakeDevice {
  std::size_t limit, used = 0, frees = 0;
  std::map<void*, std::size_t> live;
  CachingAllocator::RawAlloc alloc() {
    return [this](std::size_t n) -> void* {
      if (used + n > limit) return nullptr;
      void* p = std::malloc(n);
      live[p] = n;
      used += n;
      return p;
    };
  }
  CachingAllocator::RawFree release() {
    return [this](void* p) {
      used -= live.at(p);
      live.erase(p);
      ++frees;
      std::free(p);
    };
  }
};
}  // namespace

TEST_CASE("size classes: 512-byte steps to 1 MiB, quarter-octave steps above", "[cuda-alloc]") {
  CHECK(CachingAllocator::size_class(0) == 0);
  CHECK(CachingAllocator::size_class(1) == 512);
  CHECK(CachingAllocator::size_class(512) == 512);
  CHECK(CachingAllocator::size_class(513) == 1024);
  CHECK(CachingAllocator::size_class(1 << 20) == 1 << 20);
  CHECK(CachingAllocator::size_class((1 << 20) + 1) == (1 << 20) + (1 << 18));
  CHECK(CachingAllocator::size_class(3 << 20) == 3 << 20);
  CHECK(CachingAllocator::size_class((3 << 20) + 1) == (7 << 19));
  for (std::size_t n : {std::size_t{1000}, std::size_t{5'000'000}, std::size_t{123'456'789}}) {
    const std::size_t c = CachingAllocator::size_class(n);
    CHECK(c >= n);
    CHECK(c <= n + n / 4 + 512);  // at most a quarter wasted
  }
}

TEST_CASE("a released block is reused for the next request of its size class", "[cuda-alloc]") {
  FakeDevice dev{1 << 24};
  CachingAllocator a(dev.alloc(), dev.release(), "fake:0");
  void* p = a.allocate(1000);
  CHECK(a.stats().bytes_in_use == 1024);
  a.release(p);
  CHECK(a.stats().bytes_cached == 1024);
  void* q = a.allocate(700);  // same class (1024)
  CHECK(q == p);
  CHECK(a.stats().reuses == 1);
  CHECK(a.stats().raw_allocs == 1);
  void* r = a.allocate(5000);  // another class: a new block
  CHECK(r != p);
  CHECK(a.stats().raw_allocs == 2);
  a.release(q);
  a.release(r);
  a.empty_cache();
  CHECK(dev.used == 0);
  CHECK(a.allocate(0) == nullptr);
}

TEST_CASE("out of memory: the cache is emptied and the request retried, then a precise error", "[cuda-alloc]") {
  FakeDevice dev{3 << 20};
  CachingAllocator a(dev.alloc(), dev.release(), "fake:0");
  void* big = a.allocate(2 << 20);
  a.release(big);                   // 2 MiB cached
  void* other = a.allocate(1536 << 10);  // needs the cached block's memory: retried after emptying the cache
  CHECK(other != nullptr);
  CHECK(dev.frees == 1);
  try {
    a.allocate(2 << 20);
    FAIL("expected out of memory");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("out of memory on fake:0 allocating 2.0 MiB (1.5 MiB in use"));
  }
  a.release(other);
}
