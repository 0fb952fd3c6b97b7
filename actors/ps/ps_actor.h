// Owns the parameter-server actors: PsCluster (one detached CAF actor per shard, each holding a PsShard)
// and PsClient (a worker's side: fans pushes and pulls out to the shards and reassembles the answers).
//
// Use: build a PsLayout of the model's parameters, a PsCluster over it, then one PsClient per worker
// thread (a client is not thread-safe; each has its own CAF scoped actor). A worker's step t:
//     auto got = client.pull(t, ids);      // dense parameters + the table rows it needs, as the mode allows
//     ... forward/backward ...
//     client.push(t, dense_grads, sparse_grads);
// Dense tensors are in dense-index order (PsLayout), tables in table order; row ids are global.
// Pushes to the shards go out in ascending shard order, and each shard applies one push at a time
// (its mailbox is the lock), so concurrent async workers never interleave within a shard.
// A shard that answers nothing within timeout_s (a worker died in sync mode, say) makes the call throw
// troupe::Error (kIo) naming the shard and the step — never a hang; a rejected push or pull throws the
// shard's troupe::Error text (kInput).
#pragma once

#include <caf/all.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "actors/state/ps/ps_endpoint.h"
#include "actors/ps/ps_protocol.h"
#include "runtime/checkpoint/training_state.h"

namespace troupe {
class ActorSystem;
class TraceRecorder;
}

namespace troupe::ps {

class PsClient : public PsEndpoint {
 public:
  PsClient(caf::actor_system& system, std::vector<caf::actor> shards, std::shared_ptr<const PsLayout> layout, int worker,
           double timeout_s);

  using Pulled = PsPulled;
  Pulled pull(std::int64_t step, const std::vector<std::vector<std::int64_t>>& ids, bool dense = true) override;
  void push(std::int64_t step, const std::vector<Tensor>& dense, const std::vector<SparseRows>& tables,
            double lr = -1.0) override;
  void push_exact(std::int64_t step, std::vector<ExactGrad> exact, const std::vector<SparseRows>& tables,
                  double lr = -1.0) override;
  // The clipping round of a sync step: collects every shard's sums of squares (waiting for the step's
  // last push), adds them in global parameter order (clip_grad_norm's total), and has every shard scale
  // by clip_coefficient(norm, max_norm) and apply. The other workers' pulls for step + 1 wait until then.
  double clip(std::int64_t step, double max_norm) override;

  int worker() const override { return worker_; }

 private:
  void send_pushes(std::int64_t step, std::vector<PsPush> pushes);

  std::vector<caf::actor> shards_;
  std::shared_ptr<const PsLayout> layout_;
  int worker_;
  double timeout_s_;
  caf::duration timeout_;
  caf::scoped_actor self_;
};

class PsCluster {
 public:
  // Spawns layout->shards() shard actors into `system` (the process's one actor system; without one
  // the cluster makes its own); each initialises its slice from `init` on its own thread (init must
  // stay valid until the shards are built: the constructor waits for them).
  PsCluster(std::shared_ptr<const PsLayout> layout, PsOptions options, const PsInit& init, double timeout_s = 60.0,
            std::shared_ptr<ActorSystem> system = nullptr);
  ~PsCluster();
  PsCluster(const PsCluster&) = delete;
  PsCluster& operator=(const PsCluster&) = delete;

  const PsLayout& layout() const { return *layout_; }
  const PsOptions& options() const { return options_; }
  // The actor system its shards live in (the job's, or its own).
  ActorSystem& system();
  // A client for `worker` (0..workers-1), to be used from one thread.
  std::unique_ptr<PsClient> client(int worker);

  struct Model {
    std::vector<Tensor> dense;   // dense-index order
    std::vector<Tensor> tables;  // full tables [rows, dim], reassembled from the shards
    std::vector<std::int64_t> versions;  // per shard
    std::size_t state_bytes = 0;          // optimizer state over all shards
  };
  // Every parameter as the shards hold it now.
  Model snapshot();
  // Checkpoints (actors/state/ps/ps_shard_state.h), between steps: every parameter and its optimizer
  // state whole by name, gathered from the shards; and back, cut for each shard of this layout — any
  // shard count — as if every worker had pushed whole.step steps. A state that does not fit the model
  // is troupe::Error (kInput) naming `source` and the tensor, and no shard changes.
  TrainingState training_state(std::int64_t steps_done);
  // Each shard records an "update" span (category optimizer) on track "ps shard s" of `trace` whenever
  // it applies an update, from now on. Once per cluster (the recorder must outlive it).
  void set_trace(TraceRecorder* trace);
  void restore(const TrainingState& whole, const std::string& source);
  // Stops every shard now (a worker process died): waiting and later requests fail at once instead of
  // waiting out the timeout. Only destruction may follow.
  void abort();
  // The first shard actor that ended other than by the cluster's own stop (a crash, a kill): its index
  // and exit reason, for the supervisor to report by name and place.
  std::optional<std::pair<int, std::string>> dead_shard() const;
  // Test hook: ends shard `s`'s actor as a crash would (exit reason kill) and waits until it has ended.
  void kill_shard(int s);

 private:
  struct Actors;
  std::shared_ptr<const PsLayout> layout_;
  PsOptions options_;
  double timeout_s_;
  std::unique_ptr<Actors> actors_;
};

}  // namespace troupe::ps
