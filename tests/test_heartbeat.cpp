// HeartbeatMonitor over real pipes, without processes: a silent writer is reported once, by rank; a
// beating one is not; one that closes its end (a child that exited) is dropped, not reported.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "runtime/process/heartbeat.h"

using namespace troupe;

TEST_CASE("heartbeats: a silent rank is reported once, a beating or exited one never", "[process][heartbeat]") {
  std::atomic<int> reports{0}, reported_rank{-1};
  std::atomic<pid_t> reported_pid{0};
  HeartbeatMonitor monitor(std::chrono::milliseconds(300), [&](int rank, pid_t pid, double silent_s) {
    CHECK(silent_s >= 0.3);
    reported_rank = rank;
    reported_pid = pid;
    ++reports;
  });
  int beating[2], silent[2], exiting[2];
  REQUIRE(pipe(beating) == 0);
  REQUIRE(pipe(silent) == 0);
  REQUIRE(pipe(exiting) == 0);
  monitor.watch(1, 101, beating[0]);
  monitor.watch(2, 102, silent[0]);
  monitor.watch(3, 103, exiting[0]);
  ::close(exiting[1]);  // exited: end of file
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(1200);
  while (std::chrono::steady_clock::now() < until) {
    const char beat = 1;
    CHECK(::write(beating[1], &beat, 1) == 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(reports == 1);
  CHECK(reported_rank == 2);
  CHECK(reported_pid == 102);
  ::close(beating[1]);
  ::close(silent[1]);
}

TEST_CASE("heartbeats: the interval is a quarter of the limit, 10 ms to 1 s", "[process][heartbeat]") {
  CHECK(heartbeat_interval(std::chrono::milliseconds(4000)) == std::chrono::milliseconds(1000));
  CHECK(heartbeat_interval(std::chrono::milliseconds(30000)) == std::chrono::milliseconds(1000));
  CHECK(heartbeat_interval(std::chrono::milliseconds(400)) == std::chrono::milliseconds(100));
  CHECK(heartbeat_interval(std::chrono::milliseconds(8)) == std::chrono::milliseconds(10));
}
