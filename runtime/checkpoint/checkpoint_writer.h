// Owns CheckpointWriter: persists step-boundary snapshots in the background while training goes on, at
// most one write in flight.
//
// A dedicated thread rather than an actor: checkpoints are taken by the training loop that every layout
// shares (`troupe train`, Session), which runs outside any actor system, and runtime/ may not include CAF.
// The loop copies the state in memory at the step boundary (the only pause training sees) and submits
// the copy; the thread serialises, checksums, fsyncs and renames it (checkpoint_store.h). Back-pressure:
// a submit while the previous write still runs waits for it, so snapshots never pile up in memory.
#pragma once

#include <condition_variable>
#include <exception>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "runtime/checkpoint/training_state.h"
#include "runtime/config/run_config.h"

namespace troupe {

class CheckpointWriter {
 public:
  // Checkpoints of a run configured as `config` go to `dir`, keeping the newest `keep`.
  CheckpointWriter(std::string dir, RunConfig config, int keep);
  // Waits for the write in flight (its error, if any, is dropped: the caller already failed).
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Hands `state` to the writer thread. Waits first while the previous write is still running, and
  // rethrows its error (troupe::Error(kIo)) if it failed.
  void submit(TrainingState state);
  // Waits for the write in flight; rethrows its error. Returns the newest checkpoint written ("" if none).
  std::string wait();
  // Total seconds submit() waited on a previous write (back-pressure).
  double waited_s() const { return waited_s_; }
  // Total seconds the writer thread spent writing.
  double write_s();

 private:
  void run();
  void wait_idle(std::unique_lock<std::mutex>& lock);

  std::string dir_;
  RunConfig config_;
  int keep_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<TrainingState> pending_;
  bool busy_ = false, stop_ = false;
  std::exception_ptr error_;
  std::string last_written_;
  double waited_s_ = 0.0, write_s_ = 0.0;
  std::thread thread_;
};

}  // namespace troupe
