// Owns the rank processes' heartbeats: a rank process that troupe started says "alive" to its rank 0
// several times a second, and rank 0 names — and ends — one that falls silent, however it hangs
// (SIGSTOP, a deadlock, a machine too loaded to schedule it).
//
// How: rank 0 (ReplicaProcesses) keeps the read end of a pipe per child; the child holds the write end
// as descriptor kHeartbeatFd and, with TROUPE_HEARTBEAT_MS in its environment, writes one byte per
// interval from a thread of its own. A HeartbeatMonitor in rank 0 polls every read end; a child whose
// pipe stays silent for the limit (half of comm.timeout_s, so that it is found, killed and reported
// before any collective waiting for it times out and blames a neighbour instead) is reported once,
// and its owner kills it. A child that exits closes its end: end of file, no longer watched (its exit
// status is reported by whoever reaps it). The same pipe carries the child's reports to rank 0
// (rank_reports.h), which the monitor keeps until its owner takes them.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <sys/types.h>
#include <thread>
#include <vector>

#include "runtime/process/rank_reports.h"

namespace troupe {

inline constexpr int kHeartbeatFd = 201;  // beside the parent watch's (parent_watch.h)
inline constexpr const char* kHeartbeatEnv = "TROUPE_HEARTBEAT_MS";

// The interval a child beats at, for a silence limit: four beats per limit, 10 ms to 1 s.
std::chrono::milliseconds heartbeat_interval(std::chrono::milliseconds limit);

// In a process started with TROUPE_HEARTBEAT_MS: starts beating (a detached thread). Without it: nothing.
void send_heartbeats_from_environment();

class HeartbeatMonitor {
 public:
  // `on_silent(rank, pid, silent_s)` runs on the monitor's thread, once per rank that stays silent for
  // `limit` (> 0); the rank is no longer watched after it.
  HeartbeatMonitor(std::chrono::milliseconds limit, std::function<void(int rank, pid_t pid, double silent_s)> on_silent);
  // Stops watching and closes every read end.
  ~HeartbeatMonitor();
  HeartbeatMonitor(const HeartbeatMonitor&) = delete;
  HeartbeatMonitor& operator=(const HeartbeatMonitor&) = delete;

  // Watches rank `rank` (process `pid`) on `fd`, the read end of its pipe (taken over: closed when done).
  // A rank watched before (restarted) is replaced.
  void watch(int rank, pid_t pid, int fd);
  std::chrono::milliseconds limit() const { return limit_; }

  // A report a child sent (rank_reports.h).
  struct Report {
    int rank = 0;
    pid_t pid = 0;
    std::string text;
  };
  // Every report received since the last call, oldest first — after reading now whatever the pipes hold,
  // so that a report written before something its owner has seen since (a message over the group, a
  // child's exit) is among them.
  std::vector<Report> take_reports();

 private:
  struct Watched {
    pid_t pid = 0;
    int fd = -1;
    std::chrono::steady_clock::time_point last;
    RankReportReader reader;
  };
  void run();
  // Reads what `w`'s pipe holds, keeping its reports; false when the child's end is closed. Under mu_.
  bool read_locked(int rank, Watched& w, std::chrono::steady_clock::time_point now);

  std::chrono::milliseconds limit_;
  std::function<void(int, pid_t, double)> on_silent_;
  std::mutex mu_;
  std::map<int, Watched> watched_;  // by rank
  std::vector<Report> reports_;     // not taken yet
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace troupe
