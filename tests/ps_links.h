// Owns the test harness for parameter servers whose workers are processes, run as threads: one two-rank link per remote worker (tests/rank_threads.h groups, in-process or TCP), lent to the trainers as PsLinks.
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include "actors/ps/ps_link_server.h"
#include "runtime/comm/transport.h"
#include "tests/rank_threads.h"

namespace troupe::testing {

// A Transport a test's RankGroup keeps owning, lent to a PsTrainer that wants to own its links.
class BorrowedTransport : public comm::Transport {
 public:
  explicit BorrowedTransport(comm::Transport& t) : t_(t) {}
  int rank() const override { return t_.rank(); }
  int size() const override { return t_.size(); }
  void send(int to, std::uint32_t tag, std::span<const std::byte> data) override { t_.send(to, tag, data); }
  void recv(int from, std::uint32_t tag, std::span<std::byte> out) override { t_.recv(from, tag, out); }

 private:
  comm::Transport& t_;
};

// One two-rank link per remote worker (server rank 0, worker rank 1), as troupe train builds over TCP.
struct PsTestLinks {
  PsTestLinks(TransportKind kind, int workers) {
    for (int w = 1; w < workers; ++w) groups.push_back(std::make_unique<RankGroup>(kind, 2, std::chrono::seconds(20)));
  }
  ps::PsLinks for_rank(int rank) {
    ps::PsLinks l;
    l.rank = rank;
    if (rank == 0) {
      for (auto& g : groups) l.links.push_back(std::make_unique<BorrowedTransport>(g->transport(0)));
      l.abort = [this] {
        for (auto& g : groups) g->kill(0);
      };
    } else {
      RankGroup& g = *groups.at(static_cast<std::size_t>(rank - 1));
      l.links.push_back(std::make_unique<BorrowedTransport>(g.transport(1)));
      l.abort = [&g] { g.kill(1); };
    }
    return l;
  }
  std::vector<std::unique_ptr<RankGroup>> groups;
};

}  // namespace troupe::testing
