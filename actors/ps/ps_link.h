// Owns the two ends of a worker's link to the parameter-server process: RemotePsClient (the worker's PsEndpoint over a comm::Transport) and serve_remote_worker (the server's loop that answers it through a local PsClient).
//
// comm.transport = tcp with parallel.gradient_exchange = ps: the process the user started hosts the
// shard actors and worker 0; worker w > 0 is a process of its own, joined to it by a two-rank group
// (server rank 0, worker rank 1). Requests and answers follow ps_wire.h, one at a time. The server
// runs one serve_remote_worker thread per link; it turns each request into the same PsClient call
// an in-process worker makes, so the shards cannot tell a remote worker from a local one (and sync
// mode stays bitwise the single-device step).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "actors/state/ps/ps_endpoint.h"
#include "actors/state/ps/ps_layout.h"
#include "actors/state/ps/ps_wire.h"
#include "runtime/comm/transport.h"

namespace troupe::ps {

class RemotePsClient : public PsEndpoint {
 public:
  // link: this worker's group with the server (server rank 0, this worker rank 1).
  RemotePsClient(comm::Transport& link, std::shared_ptr<const PsLayout> layout, int worker);

  PsPulled pull(std::int64_t step, const std::vector<std::vector<std::int64_t>>& ids, bool dense = true) override;
  void push(std::int64_t step, const std::vector<Tensor>& dense, const std::vector<SparseRows>& tables,
            double lr = -1.0) override;
  void push_exact(std::int64_t step, std::vector<ExactGrad> exact, const std::vector<SparseRows>& tables,
                  double lr = -1.0) override;
  double clip(std::int64_t step, double max_norm) override;
  int worker() const override { return worker_; }

  // This worker's losses for `step` (per row, or a sum: the trainer's choice), for rank 0 to report the
  // whole batch's loss. Sent before the step's push, so a worker restarted after its push never owes one.
  void report(std::int64_t step, const std::vector<double>& losses);
  // The first step this worker has not pushed yet: 0 for a new worker, where a restarted one resumes.
  std::int64_t hello();
  // Tells the server this worker is done; its serve_remote_worker returns.
  void bye();

 private:
  // One request and its answer; an error answer is rethrown with the server's text.
  std::vector<std::byte> call(wire::Kind kind, std::int64_t step, double scalar, std::vector<std::byte> payload);

  comm::Transport& link_;
  std::shared_ptr<const PsLayout> layout_;
  int worker_;
};

// What the server does beyond the shards' calls.
struct PsServeHooks {
  std::function<void(std::int64_t step, std::vector<double> losses)> on_report;  // a worker's losses for a step
  std::function<void(std::int64_t step)> on_pushed;                  // its push of `step` reached every shard
  std::function<std::int64_t()> resume_step;                         // hello's answer
};

// Answers worker `worker`'s requests on `link` (this side rank 0) through `client` until the worker says
// goodbye. A request the shards refuse is answered with the error text and serving goes on; a broken
// link or a malformed message throws troupe::Error(kIo) naming the worker.
void serve_remote_worker(comm::Transport& link, int worker, const PsLayout& layout, PsEndpoint& client,
                         const PsServeHooks& hooks);

}  // namespace troupe::ps
