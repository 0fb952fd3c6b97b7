// Owns PsLinks (one process's links in a run whose ps workers are processes) and PsLinkServer (rank 0's side: a thread per remote worker answering it through the shard actors, collecting its loss reports, and restarting its process when it dies).
//
// Used by every trainer whose workers can be processes: PsTrainer (troupe train) and the Wide & Deep
// example. Rank 0 hosts the PsCluster and worker 0; worker w > 0 has one link to rank 0 (ps_link.h).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "actors/ps/ps_actor.h"
#include "runtime/comm/transport.h"
#include "runtime/supervision/restart_intensity.h"

namespace troupe::ps {

// This process's part of a run whose workers are processes.
struct PsLinks {
  int rank = 0;  // 0: hosts the shards and worker 0; w > 0: worker w
  // rank 0: links[w - 1] joins worker w (this side rank 0 of 2); rank w: one link, to rank 0 (rank 1 of 2).
  std::vector<std::unique_ptr<comm::Transport>> links;
  // Breaks every link at once, so the peers stop waiting for a rank that failed.
  std::function<void()> abort;
  // Rank 0, the workers' supervisor: replaces worker w's process (whose link broke) with a fresh one
  // and returns its link, once connected; the new worker asks where to resume (RemotePsClient::hello).
  // Called at most max_restarts times in a run; empty: a dead worker fails the run.
  std::function<std::unique_ptr<comm::Transport>(int worker)> restart;
  int max_restarts = 0;
};

class PsLinkServer {
 public:
  // Starts one thread per link of `links` (rank 0's), serving worker w through cluster.client(w).
  // `cluster` must outlive this object. opened = false: a worker's hello (where do I start?) waits for
  // open(), so that the shards can be restored from a checkpoint first.
  PsLinkServer(PsCluster& cluster, const PsLayout& layout, PsLinks& links, bool opened = true);
  // Every worker starts at `first_step` (a resumed run's): hellos are answered from now on. Once.
  void open(std::int64_t first_step);
  // Joins the threads. Unless finish(true) was called, breaks the links first (this rank failed).
  ~PsLinkServer();
  PsLinkServer(const PsLinkServer&) = delete;
  PsLinkServer& operator=(const PsLinkServer&) = delete;

  // Each remote worker's loss report for `step`, in worker order (workers 1..D-1). A report that
  // arrived counts even if the link broke afterwards; otherwise a failed link throws its error
  // (troupe::Error kIo naming the worker).
  std::vector<std::vector<double>> wait_for_reports(std::int64_t step);
  // Throws the first link failure (troupe::Error kIo naming the worker), if any: the cause to report when
  // worker 0's own call failed, rather than that effect.
  void throw_if_failed() const;
  int restarts() const;
  // Each restart of a worker process: "ps worker w", the step it resumed at, the link's error, and its
  // times from rank 0 finding the link broken — to the newcomer's link (restarted_s), and to its push of
  // the step it resumed at (recovery_s; -1 until then).
  std::vector<supervision::Restart> restart_log() const;
  // Whether a worker failed past its restarts (throw_if_failed would throw).
  bool failed() const;
  // ok: the run is complete; waits for every worker's goodbye. Not ok: stops the shards (a serving thread
  // waiting in one for a step that will not come returns at once) and breaks the links. Then joins; no
  // worker is restarted from now on.
  void finish(bool ok);

 private:
  void serve(int w);
  std::int64_t hooks_resume_step_locked(int w) const;  // the first step worker w had not pushed; mu_ held

  PsCluster& cluster_;
  const PsLayout& layout_;
  PsLinks& links_;
  int workers_;
  std::vector<std::thread> threads_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::pair<int, std::int64_t>, std::vector<double>> reports_;  // (worker, step) -> its losses
  std::vector<bool> done_;                                               // by worker; [0] unused
  std::vector<std::int64_t> pushed_upto_;                                // by worker: steps whose push reached the shards
  std::string failure_;
  int restarts_ = 0;
  std::vector<supervision::Restart> log_;
  std::map<int, std::pair<std::size_t, std::int64_t>> recovering_;  // by worker: (its entry in log_, resume step)
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  bool finished_ = false;
  bool opened_ = true;
  bool closing_ = false;  // finish() runs: no restarts; a hello waiting for open() gives up
};

}  // namespace troupe::ps
