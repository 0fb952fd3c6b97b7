// Owns the multi-rank test harness: a group of ranks as threads of this process over any transport (in-process, TCP over loopback, shared memory), and ways to make one rank fail.
//
// gloo's test/base_test.h spawn() is the model. Each TEST_CASE that crosses transports does
//   const auto kind = GENERATE(TransportKind::inproc, TransportKind::tcp, TransportKind::shm);
//   require_no_errors(spawn_ranks(kind, ranks, 5s, [&](comm::Transport& t) { ... }));
// A TCP group is a real loopback mesh on a fresh port (authenticated, one connection per pair),
// set up in a few milliseconds, so every case can afford its own.
#pragma once

#include <algorithm>
#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "net/inproc/inproc_transport.h"
#include "net/shm/shm_transport.h"
#include "net/tcp/tcp_transport.h"
#include "runtime/comm/transport.h"
#include "runtime/config/choices.h"
#include "runtime/error.h"

namespace troupe::testing {

// The transports are troupe::TransportKind (runtime/config/choices.h), printed by name.
using troupe::TransportKind;

// `ranks` connected transports of one kind.
class RankGroup {
 public:
  // TCP: chunk_bytes 0 keeps TcpOptions' default; a small value sends even small messages in many
  // frames. Shared memory: chunk_bytes 0 keeps ShmOptions' slots, a small value (a multiple of 64) makes
  // 3 slots of that size, so even small messages wrap the ring and overflow to the flusher, and 3
  // staging pieces of that size, so the shared-memory allreduce cycles through its slots. The
  // rendezvous may take up to max(timeout, 10 s) (a loaded machine starts threads slowly).
  RankGroup(TransportKind kind, int ranks, std::chrono::milliseconds timeout, std::size_t chunk_bytes = 0)
      : kind_(kind),
        transports_(static_cast<std::size_t>(ranks)),
        tcp_(static_cast<std::size_t>(ranks)),
        shm_(static_cast<std::size_t>(ranks)) {
    if (kind == TransportKind::inproc) {
      world_ = std::make_unique<net::InprocWorld>(ranks, timeout);
      for (int r = 0; r < ranks; ++r) transports_[static_cast<std::size_t>(r)] = world_->transport(r);
      return;
    }
    net::TcpListener listener("127.0.0.1:0");
    net::TcpOptions base;
    base.size = ranks;
    base.address = listener.address();
    base.secret = "rank-threads-test-secret";
    base.timeout = timeout;
    base.rendezvous_timeout = std::max<std::chrono::milliseconds>(timeout, std::chrono::seconds(10));
    if (chunk_bytes && kind == TransportKind::tcp) base.chunk_bytes = chunk_bytes;
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(ranks));
    std::vector<std::thread> threads;
    for (int r = 0; r < ranks; ++r) {
      threads.emplace_back([&, r] {
        try {
          net::TcpOptions o = base;
          o.rank = r;
          if (kind == TransportKind::shm) {
            net::ShmOptions so{.tcp = o};
            if (chunk_bytes) {
              so.slot_bytes = chunk_bytes;
              so.slots = 3;
              so.piece_bytes = chunk_bytes;  // the shared-memory allreduce in many pieces, too
              so.pieces = 3;
            }
            auto t = r == 0 ? net::connect_shm(so, std::move(listener)) : net::connect_shm(so);
            shm_[static_cast<std::size_t>(r)] = t.get();
            transports_[static_cast<std::size_t>(r)] = std::move(t);
            return;
          }
          auto t = r == 0 ? net::connect_tcp(o, std::move(listener)) : net::connect_tcp(o);
          tcp_[static_cast<std::size_t>(r)] = t.get();
          transports_[static_cast<std::size_t>(r)] = std::move(t);
        } catch (...) {
          errors[static_cast<std::size_t>(r)] = std::current_exception();
        }
      });
    }
    for (auto& t : threads) t.join();
    for (auto& e : errors) {
      if (e) std::rethrow_exception(e);
    }
  }

  int size() const { return static_cast<int>(transports_.size()); }
  TransportKind kind() const { return kind_; }
  comm::Transport& transport(int rank) { return *transports_.at(static_cast<std::size_t>(rank)); }

  // Makes `rank` fail as a crashed process would: inproc kill(); TCP and shm abort() (its connections drop
  // without a goodbye, and its own calls throw). Safe from any thread, during run().
  void kill(int rank) {
    if (world_) {
      world_->kill(rank);
    } else if (kind_ == TransportKind::shm) {
      shm_.at(static_cast<std::size_t>(rank))->abort();
    } else {
      tcp_.at(static_cast<std::size_t>(rank))->abort();
    }
  }

  // Destroys `rank`'s transport as a rank that finished would (TCP, shm: in order, with a goodbye).
  void close(int rank) {
    transports_.at(static_cast<std::size_t>(rank)).reset();
    tcp_[static_cast<std::size_t>(rank)] = nullptr;
    shm_[static_cast<std::size_t>(rank)] = nullptr;
  }

  // Runs fn on one thread per rank; returns what each rank threw (null when it returned). A rank
  // that throws is killed, as its process would die, so its peers fail at once instead of waiting
  // for their timeout.
  std::vector<std::exception_ptr> run(const std::function<void(comm::Transport&)>& fn) {
    std::vector<std::exception_ptr> errors(transports_.size());
    std::vector<std::thread> threads;
    for (std::size_t r = 0; r < transports_.size(); ++r) {
      threads.emplace_back([&, r] {
        try {
          fn(*transports_[r]);
        } catch (...) {
          errors[r] = std::current_exception();
          kill(static_cast<int>(r));
        }
      });
    }
    for (auto& t : threads) t.join();
    return errors;
  }

 private:
  TransportKind kind_;
  std::unique_ptr<net::InprocWorld> world_;
  std::vector<std::unique_ptr<comm::Transport>> transports_;
  std::vector<net::TcpTransport*> tcp_;  // the same objects, for abort()
  std::vector<net::ShmTransport*> shm_;
};

// One group, one run: what each rank threw.
inline std::vector<std::exception_ptr> spawn_ranks(TransportKind kind, int ranks, std::chrono::milliseconds timeout,
                                                   const std::function<void(comm::Transport&)>& fn) {
  RankGroup group(kind, ranks, timeout);
  return group.run(fn);
}

}  // namespace troupe::testing
