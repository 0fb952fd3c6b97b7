// Owns the in-process transport: InprocWorld, a group of ranks that are threads of one process, exchanging copied messages through mailboxes.
//
// It exists because the multi-rank tests use it (each rank a thread, gloo test/base_test.h style);
// it is also the reference for what a real transport must do. Mailboxes are keyed by
// (from, to, tag); each has its own mutex and condition variable. send() copies the bytes into the
// mailbox, as the TCP transport will copy them into a socket, so no test can pass by aliasing memory.
//
// Failure model: kill(rank) simulates a crashed rank. A group with a dead member cannot finish any
// collective, so — like an aborted NCCL communicator — the whole world is broken from then on: every
// pending and every future recv (and send) on every rank throws troupe::Error(ErrorKind::kIo) at once,
// naming the dead rank. Build a new InprocWorld to continue.
//
// A step abandoned on purpose (a supervisor re-runs it on every rank, actors/data_parallel.h) is not a
// death: abort() makes every pending and future send/recv throw comm::GroupAborted, and once no rank
// uses the world any more, reform() empties every mailbox and makes it whole again.
//
// The world is the one object for ranks that are threads of one process: besides the message-passing
// endpoints it holds the same ranks as a comm::LocalGroup (collectives by reference, no copies), and
// kill() breaks both.
#pragma once

#include <chrono>
#include <memory>

#include "runtime/comm/local_group.h"
#include "runtime/comm/transport.h"

namespace troupe::net {

class InprocWorld {
 public:
  // A world of `ranks` ranks (>= 1); every recv gives up after `timeout` (> 0) without a message.
  InprocWorld(int ranks, std::chrono::milliseconds timeout);
  ~InprocWorld();
  InprocWorld(const InprocWorld&) = delete;
  InprocWorld& operator=(const InprocWorld&) = delete;

  int size() const;

  // The endpoint of `rank`. It shares the world's state, so it stays valid after the world is
  // destroyed. More than one endpoint per rank is allowed but they share that rank's mailboxes.
  std::unique_ptr<comm::Transport> transport(int rank);

  // The same ranks as a LocalGroup (runtime/comm/local_group.h): rank r's collectives by reference.
  std::shared_ptr<comm::LocalGroup> local_group() const { return local_; }
  // Marks `rank` dead, in the transport and the local group, and wakes every waiting recv, which then
  // throws an Error naming it. Safe to call from any thread, any number of times.
  void kill(int rank);
  // Every waiting and future send/recv (and local-group collective) on every rank throws
  // comm::GroupAborted, until reform(). Any thread.
  void abort();
  // After abort(), when no rank is inside a send, recv or collective (the caller makes sure): drops
  // every message of the abandoned step and lets the ranks communicate again. A killed world stays dead.
  void reform();

  struct State;  // shared with the endpoints; defined in the .cpp

 private:
  std::shared_ptr<State> state_;
  std::shared_ptr<comm::LocalGroup> local_;
};

}  // namespace troupe::net
