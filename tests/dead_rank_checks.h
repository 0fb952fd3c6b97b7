// Owns the dead-rank tests both TCP and shared memory run (test_tcp_transport.cpp, test_shm_transport.cpp): a
// rank aborted mid-collective among threads, and a rank SIGKILLed among forked processes, must each fail the
// others at once, naming it.
#pragma once

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "net/tcp/tcp_transport.h"
#include "tests/rank_errors.h"
#include "tests/rank_threads.h"
#include "runtime/comm/ring.h"
#include "runtime/comm/transport.h"
#include "runtime/error.h"

namespace troupe::testing {

// `ranks` threads over `kind` (timeouts `timeout`, long: a failure must come from the abort); the last rank is
// aborted 100 ms into an allreduce of 2^20 floats it never joins. Every rank must fail within `fails_within`:
// the victim saying it aborted, the others that the group is broken, at least one of them naming the victim;
// and the group stays broken.
// `collective` is the allreduce under test (the ring over messages unless given).
using FloatCollective = std::function<void(comm::Transport&, std::span<float>)>;
inline void ring_allreduce(comm::Transport& t, std::span<float> data) { comm::allreduce_ring(t, data); }

inline void check_aborted_rank_fails_the_others(TransportKind kind, int ranks, std::chrono::milliseconds timeout,
                                                std::chrono::seconds fails_within,
                                                const FloatCollective& collective = ring_allreduce) {
  const int victim = ranks - 1;
  RankGroup group(kind, ranks, timeout);
  std::vector<std::vector<float>> data(static_cast<std::size_t>(ranks), std::vector<float>(1 << 20, 1.0f));
  std::thread killer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    group.kill(victim);
  });
  const auto start = std::chrono::steady_clock::now();
  const auto errors = group.run([&](comm::Transport& t) {
    if (t.rank() == victim) {
      std::vector<std::byte> never(1);
      t.recv(0, 0xDEAD, never);  // stands in for a rank stuck elsewhere until it crashes
      return;
    }
    collective(t, data[static_cast<std::size_t>(t.rank())]);
  });
  killer.join();
  CHECK(std::chrono::steady_clock::now() - start < fails_within);
  CHECK_THAT(io_error(errors[static_cast<std::size_t>(victim)]), Catch::Matchers::Contains("aborted"));
  // A rank that fails is killed in turn (RankGroup::run, as its process would die), so a rank may
  // learn of the break from a neighbour's death first; the victim's neighbours name it.
  int naming_victim = 0;
  for (int r = 0; r < victim; ++r) {
    CAPTURE(r);
    const std::string message = io_error(errors[static_cast<std::size_t>(r)]);
    CHECK_THAT(message, Catch::Matchers::Contains("is dead, so the group is broken"));
    naming_victim += message.find("rank " + std::to_string(victim) + " is dead") != std::string::npos;
  }
  CHECK(naming_victim >= 1);
  // And the group stays broken (every rank that failed was killed in turn by RankGroup::run).
  std::vector<std::byte> one(1);
  CHECK_THROWS_AS(group.transport(0).recv(1 % ranks, 5, one), Error);
  CHECK_THROWS_AS(group.transport(0).send(1 % ranks, 5, one), Error);
}

// How one transport connects a rank of the job.
struct ProcessTransport {
  // Rank r > 0 of `ranks`, in a forked child, joining rank 0 at `address`.
  std::function<std::unique_ptr<comm::Transport>(int r, int ranks, const std::string& address)> connect;
  // Rank 0 of `ranks`, in this process, through the listener the children connect to.
  std::function<std::unique_ptr<comm::Transport>(int ranks, net::TcpListener listener)> connect_rank0;
  // The dying rank first sends all its floats to rank 0, so that it dies with a message in flight (shm: the
  // ring to rank 0 is full of it).
  bool send_before_kill = false;
  // When set, rank 0 must fail within this long of connecting (under its timeout: the dead peer seen).
  std::optional<std::chrono::seconds> fails_within;
  // The allreduce every rank runs.
  FloatCollective collective = ring_allreduce;
};

// Runs the job; without `crash` every rank must get the exact sum, with it rank 0's error must name rank 2
// as dead, rank 2 end by its signal and rank 1 exit 4 (an error, not a hang).
inline void check_killed_rank_fails_the_others(const ProcessTransport& transport, bool crash) {
  const int ranks = 3;
  const std::size_t n = 300001;
  net::TcpListener listener("127.0.0.1:0");
  const std::string address = listener.address();
  auto expected = [&](std::size_t i) { return static_cast<float>((0 + 1 + 2) * (i % 1000)) + 3.0f; };
  std::vector<pid_t> children;
  for (int r = 1; r < ranks; ++r) {
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {  // the child: a rank of its own; reports through its exit status only
      int code = 0;
      try {
        auto t = transport.connect(r, ranks, address);
        std::vector<float> v(n);
        for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<float>(r * (i % 1000)) + 1.0f;
        if (crash && r == 2) {  // dies with the mesh up, mid-job
          if (transport.send_before_kill) t->send(0, 77, std::as_bytes(std::span(v)));
          ::kill(::getpid(), SIGKILL);
        }
        transport.collective(*t, v);
        for (std::size_t i = 0; i < n; ++i) code |= v[i] != expected(i) ? 3 : 0;
      } catch (...) {
        code = 4;
      }
      ::_exit(code);
    }
    children.push_back(pid);
  }
  std::string error;
  const auto start = std::chrono::steady_clock::now();
  {
    std::unique_ptr<comm::Transport> t;
    try {
      t = transport.connect_rank0(ranks, std::move(listener));
      std::vector<float> v(n);
      for (std::size_t i = 0; i < n; ++i) v[i] = 1.0f;
      transport.collective(*t, v);
      for (std::size_t i = 0; i < n; ++i) REQUIRE(v[i] == expected(i));
    } catch (const Error& e) {
      error = e.what();
    }
  }
  const auto took = std::chrono::steady_clock::now() - start;
  std::vector<int> status(children.size());
  for (std::size_t i = 0; i < children.size(); ++i) REQUIRE(waitpid(children[i], &status[i], 0) == children[i]);
  if (!crash) {
    CHECK(error.empty());
    for (int s : status) CHECK((WIFEXITED(s) && WEXITSTATUS(s) == 0));
  } else {
    CHECK_THAT(error, Catch::Matchers::Contains("rank 2 is dead"));
    if (transport.fails_within) CHECK(took < *transport.fails_within);
    CHECK(WIFSIGNALED(status[1]));
    CHECK((WIFEXITED(status[0]) && WEXITSTATUS(status[0]) == 4));  // rank 1 failed too, with an error
  }
}

}  // namespace troupe::testing
