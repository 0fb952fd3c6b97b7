// The partial-path table: slots claimed with a compare-and-swap, published once their path is written.
#include "runtime/io/partial_files.h"

#include <atomic>
#include <cstring>
#include <unistd.h>

namespace troupe {

namespace {

enum SlotState : int { kFree = 0, kFilling = 1, kFile = 2, kDirectory = 3 };

struct Slot {
  std::atomic<int> state{kFree};
  char path[4096];
};

Slot g_slots[PartialPath::kSlots];

}  // namespace

PartialPath::PartialPath(const std::string& path, bool directory) {
  if (path.size() >= sizeof(Slot::path)) return;
  for (int i = 0; i < kSlots; ++i) {
    int expected = kFree;
    if (g_slots[i].state.compare_exchange_strong(expected, kFilling)) {
      std::memcpy(g_slots[i].path, path.c_str(), path.size() + 1);
      g_slots[i].state.store(directory ? kDirectory : kFile, std::memory_order_release);
      slot_ = i;
      return;
    }
  }
}

PartialPath::~PartialPath() {
  if (slot_ >= 0) g_slots[slot_].state.store(kFree, std::memory_order_release);
}

void remove_partial_paths() noexcept {
  for (Slot& s : g_slots)
    if (s.state.load(std::memory_order_acquire) == kFile) ::unlink(s.path);
  for (Slot& s : g_slots)
    if (s.state.load(std::memory_order_acquire) == kDirectory) ::rmdir(s.path);
}

}  // namespace troupe
