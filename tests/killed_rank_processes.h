// Owns the test both process transports run (test_tcp_transport.cpp, test_shm_transport.cpp): 3 ranks as
// forked processes allreduce 300,001 floats; with `crash`, rank 2 SIGKILLs itself with the mesh up, and rank 0
// must fail naming it while rank 1 fails with an error of its own.
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
#include <vector>

#include "net/tcp/tcp_transport.h"
#include "runtime/comm/ring.h"
#include "runtime/comm/transport.h"
#include "runtime/error.h"

namespace troupe::testing {

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
        comm::allreduce_ring(*t, v);
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
      comm::allreduce_ring(*t, v);
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
