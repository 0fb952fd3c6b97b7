// Owns the registry of files and directories being written right now: what an abort (a second SIGINT or
// SIGTERM, runtime/signals/stop_signal.h) removes before the process exits, so that not even an abort
// leaves a partial file behind.
//
// The registry is a fixed table of path buffers, so remove_partial_paths() can run inside a signal
// handler: it only reads the table and calls unlink() and rmdir(), which are async-signal-safe. A path
// is registered for as long as its PartialPath lives; registering more than kSlots at once leaves the
// extra ones unregistered (they are then only removed by the ordinary error paths).
#pragma once

#include <string>

namespace troupe {

class PartialPath {
 public:
  static constexpr int kSlots = 64;
  // Registers `path` (a file, or with `directory` an empty-at-the-end directory: removed after the files).
  explicit PartialPath(const std::string& path, bool directory = false);
  ~PartialPath();
  PartialPath(const PartialPath&) = delete;
  PartialPath& operator=(const PartialPath&) = delete;

 private:
  int slot_ = -1;
};

// Unlinks every registered file, then removes every registered directory. Async-signal-safe.
void remove_partial_paths() noexcept;

}  // namespace troupe
