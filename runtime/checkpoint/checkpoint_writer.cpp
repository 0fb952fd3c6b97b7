// CheckpointWriter: one pending snapshot, one thread writing it.
#include "runtime/checkpoint/checkpoint_writer.h"

#include <chrono>

#include "runtime/checkpoint/checkpoint_store.h"

namespace troupe {

CheckpointWriter::CheckpointWriter(std::string dir, RunConfig config, int keep)
    : dir_(std::move(dir)), config_(std::move(config)), keep_(keep), thread_([this] { run(); }) {}

CheckpointWriter::~CheckpointWriter() {
  {
    std::unique_lock lock(mu_);
    wait_idle(lock);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void CheckpointWriter::wait_idle(std::unique_lock<std::mutex>& lock) {
  cv_.wait(lock, [this] { return !busy_ && !pending_; });
}

void CheckpointWriter::submit(TrainingState state) {
  std::unique_lock lock(mu_);
  const auto start = std::chrono::steady_clock::now();
  wait_idle(lock);
  waited_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  pending_ = std::move(state);
  cv_.notify_all();
}

std::string CheckpointWriter::wait() {
  std::unique_lock lock(mu_);
  wait_idle(lock);
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  return last_written_;
}

double CheckpointWriter::write_s() {
  std::lock_guard lock(mu_);
  return write_s_;
}

void CheckpointWriter::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stop_ || pending_; });
    if (!pending_) return;  // stop_, nothing left
    TrainingState state = std::move(*pending_);
    pending_.reset();
    busy_ = true;
    lock.unlock();
    const auto start = std::chrono::steady_clock::now();
    std::string written;
    std::exception_ptr error;
    try {
      written = write_checkpoint(dir_, state, config_, keep_);
    } catch (...) {
      error = std::current_exception();
    }
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    lock.lock();
    write_s_ += took;
    if (error) error_ = error;
    else last_written_ = written;
    busy_ = false;
    cv_.notify_all();
  }
}

}  // namespace troupe
