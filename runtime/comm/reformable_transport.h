// Owns ReformableTransport: a group's Transport that outlives the connections under it, so a group whose
// member process died can be formed again (a new mesh) under the same collectives.
//
// Data-parallel replicas that are processes (comm.transport = tcp) restart a dead member (docs/failures.md):
// every survivor abandons the step, the group is formed again with the restarted process, and the step
// is re-run. The collectives (GradientSync's GroupAllreduce) hold a reference to this object, which
// forwards to the current connections (`inner`) and, in between, is given new ones (replace()).
//
// Every troupe::Error the inner transport throws (a dead peer, a timeout) is thrown as comm::GroupAborted:
// a stage takes it as "abandon the step" and waits for the re-run order instead of dying, and the owner
// learns of it through interrupted(). break_group() ends the inner connections at once (the peers' calls
// fail too, so every process learns of the interruption); replace() clears both.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "runtime/comm/transport.h"
#include "runtime/error.h"

namespace troupe::comm {

class ReformableTransport final : public Transport {
 public:
  // `inner`: the group's connections; `break_inner`: ends them without a goodbye (safe from any thread).
  ReformableTransport(std::unique_ptr<Transport> inner, std::function<void()> break_inner);

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void send(int to, std::uint32_t tag, std::span<const std::byte> data) override;
  void recv(int from, std::uint32_t tag, std::span<std::byte> out) override;
  void send_lent(int to, std::uint32_t tag, std::span<const std::byte> data) override;
  void release_lent() noexcept override;

  // Whether a call failed since the last replace(); the first failure's words ("" when none).
  bool interrupted() const { return interrupted_.load(); }
  std::string first_failure() const;
  // Ends the inner connections (any thread): every call here and at the peers fails from now on.
  void break_group();
  // New connections for the same ranks, while no call is in progress (the step was abandoned).
  void replace(std::unique_ptr<Transport> inner, std::function<void()> break_inner);
  Transport& inner() { return *inner_; }

 private:
  [[noreturn]] void aborted(const Error& e);

  int rank_, size_;
  std::unique_ptr<Transport> inner_;
  std::function<void()> break_inner_;
  std::atomic<bool> interrupted_{false};
  mutable std::mutex mu_;  // first_
  std::string first_;
};

}  // namespace troupe::comm
