// Owns ReplicaProcesses: the local processes of a multi-process data-parallel run — rank 0 (the process the user started) spawns ranks 1..D-1 as copies of itself and supervises them.
//
// Each child runs the same `troupe train` command line plus `--rank r`, with the job's shared secret in
// its environment (TROUPE_SECRET; never on the command line, where `ps` would show it), its stdout
// discarded (rank 0 reports for everyone) and its stderr shared (a child's error names its rank).
// When rank 0 stops early the children are killed and reaped, so a failed run leaves no stray processes;
// when rank 0 itself is killed, each child notices through its parent watch (parent_watch.h) and exits.
// With heartbeats on (heartbeat.h), a child that hangs — stops beating for the limit — is killed
// (SIGKILL) at once and reported by rank, so its peers fail on its closed links within the limit instead
// of waiting out comm.timeout_s and blaming whichever neighbour they wait on.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <sys/types.h>
#include <utility>
#include <vector>

namespace troupe {

// A fresh 128-bit secret from /dev/urandom, as 32 hex digits; throws troupe::Error(kIo) if it cannot be read.
std::string random_secret();

class ReplicaProcesses {
 public:
  // Starts ranks 1..replicas-1 running `program` with `args` + {"--rank", r}. Throws troupe::Error(kIo)
  // when a process cannot be started (the ones already started are killed).
  // heartbeat_limit > 0: every child beats (heartbeat.h), and one silent that long is killed and
  // reported (hung()).
  ReplicaProcesses(const std::string& program, const std::vector<std::string>& args, int replicas,
                   const std::string& secret, std::chrono::milliseconds heartbeat_limit = std::chrono::milliseconds(0));
  // Kills (SIGTERM, then SIGKILL after a grace period) and reaps every child still running.
  ~ReplicaProcesses();
  ReplicaProcesses(const ReplicaProcesses&) = delete;
  ReplicaProcesses& operator=(const ReplicaProcesses&) = delete;

  // Replaces rank `rank`'s process (dead, or killed now) with a fresh one whose environment also has
  // `env` (name, value) pairs; returns how the old one ended ("exited with status 3"). Safe to call
  // from any thread while others run: the child only execs what the parent prepared before forking.
  std::string restart(int rank, const std::vector<std::pair<std::string, std::string>>& env);

  // Waits for every child to exit; returns "" when all exited with status 0, else a description of
  // the first failure ("rank 2 exited with status 1", "rank 1 was killed by signal 9").
  std::string wait_all();
  // Stops every child now (rank 0 failed).
  void kill_all();
  // The first child found hung and killed by its heartbeats, and not restarted since, as a sentence
  // naming its rank; "" if none.
  std::string hung() const;

  // A child that ended, found by exited().
  struct Ended {
    int rank = 0;
    pid_t pid = 0;
    std::string how;  // "was killed by signal 9", or "sent no heartbeat ..." when its heartbeats killed it
  };
  // Reaps, without waiting, every child that has ended since; they stay down until restart().
  std::vector<Ended> exited();
  // Rank r's process id (-1 while it is down).
  pid_t pid_of(int rank);

  // A report a child sent rank 0 (rank_reports.h): its rank, its process, the text.
  struct Report {
    int rank = 0;
    pid_t pid = 0;
    std::string text;
  };
  // The children's reports since the last call, oldest first, including whatever their pipes hold now (none
  // without heartbeats: the reports travel beside them).
  std::vector<Report> take_reports();

 private:
  // Starts rank r with the job's environment plus `env`; throws troupe::Error(kIo) when fork fails.
  pid_t spawn(int rank, const std::vector<std::pair<std::string, std::string>>& env);
  // Closes the write end of a reaped child's parent watch (parent_watch.h). Under mu_.
  void close_watch(pid_t pid);

  std::string program_;
  std::vector<std::string> args_;
  std::string secret_;
  std::mutex mu_;
  std::vector<pid_t> children_;  // index r - 1 holds rank r
  std::map<pid_t, int> watch_fds_;  // child -> the write end of its parent watch, open while it may run
  mutable std::mutex hung_mu_;      // not mu_: wait_all holds that while a hung child must still be killed
  std::map<int, std::string> hung_;  // by rank: killed by its heartbeats, not restarted since
  std::unique_ptr<class HeartbeatMonitor> heartbeats_;  // when heartbeats are on
};

}  // namespace troupe
