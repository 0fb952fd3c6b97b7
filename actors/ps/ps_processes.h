// Owns PsProcesses: a run's ps workers as local processes over authenticated TCP links — rank 0 binds a listener per worker, starts workers 1..W-1 as copies of this program, connects, and restarts one that dies; a started worker joins its link.
//
//   PsProcesses procs(rank, {.workers = W, .address = "127.0.0.1:0", .args = my_args});
//   ... PsTrainer trainer(config, procs.links()); ... (procs must outlive the links)
//   rank 0: procs.wait_all() after training.
// Rank 0 hands each started worker the job's secret (TROUPE_SECRET, never on the command line) and the
// rendezvous addresses (TROUPE_PS_ADDRESSES) in its environment; a restarted worker also gets
// TROUPE_RESTART=1. A worker process's stdout is discarded (rank 0 reports for everyone).
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "actors/ps/ps_link_server.h"

namespace troupe {
class ReplicaProcesses;
namespace net {
class TcpTransport;
}
}  // namespace troupe

namespace troupe::ps {

struct PsProcessOptions {
  int workers = 1;
  // Rank 0's rendezvous for worker 1; worker w waits at port + w - 1 (port 0: the system picks each).
  std::string address = "127.0.0.1:0";
  std::string address_setting = "comm.address";  // where `address` came from, for its errors
  std::chrono::milliseconds timeout{60000};  // how long a link waits for a silent peer
  int max_restarts = 0;
  // > 0: every worker process beats (runtime/process/heartbeat.h); one silent this long is killed, and so
  // restarted like a dead one. 0: none (a hung worker is found by the shards' timeout).
  std::chrono::milliseconds heartbeat_limit{0};
  std::vector<std::string> args;  // this program's arguments; worker w runs it with args + {"--rank", w}
  std::string program = "/proc/self/exe";
};

class PsProcesses {
 public:
  // Rank 0: binds, starts the workers and waits for each link (troupe::Error kIo / kConfig on failure,
  // with the started processes stopped). Rank w > 0: joins its link from the environment.
  PsProcesses(int rank, PsProcessOptions options);
  ~PsProcesses();
  PsProcesses(const PsProcesses&) = delete;
  PsProcesses& operator=(const PsProcesses&) = delete;

  // This process's links, abort and (rank 0) restart wired to these processes. Once.
  PsLinks links();
  // Rank 0: the listeners' addresses, comma-separated.
  const std::string& rendezvous() const { return rendezvous_; }
  // Rank 0: waits for every worker process; "" when all exited with status 0, else the first failure.
  std::string wait_all();
  // Whether this process was started as a replacement for a dead worker.
  static bool restarted();

 private:
  std::unique_ptr<comm::Transport> restart(int worker);

  int rank_;
  PsProcessOptions options_;
  std::string secret_;
  std::string host_;
  std::string rendezvous_;
  std::vector<std::string> addresses_;
  std::unique_ptr<ReplicaProcesses> children_;
  std::vector<std::unique_ptr<comm::Transport>> links_;
  std::mutex mu_;
  std::vector<net::TcpTransport*> tcp_;  // the same links, for abort()
};

}  // namespace troupe::ps
