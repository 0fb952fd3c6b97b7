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
//
// Supervised shards (PsCluster::supervise, sync mode): each shard keeps, outside its actor, a step-boundary
// snapshot (shard_snapshot.h) taken after every update it completes, and a log of the pushes it accepted
// since. A shard whose update fails (fault.inject's "throw shard S at step N") answers every request it holds
// with that failure and ends; the first client to see it has the cluster restart it one-for-one (the
// supervision's on_death decides, and may escalate): the snapshot, then the logged pushes applied again.
// Every client asks its failed request again (a push the restarted shard already holds is acknowledged, not
// applied twice): the interrupted step completes as if nothing had happened, the other shards untouched. A
// shard ended from outside (an exit by kill, kill_shard) is not restarted: it is reported, as is every
// shard's death without supervision.
#pragma once

#include <caf/all.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "actors/state/ps/ps_endpoint.h"
#include "actors/ps/ps_protocol.h"
#include "runtime/checkpoint/training_state.h"
#include "runtime/supervision/fault_plan.h"

namespace troupe {
class ActorSystem;
class TraceRecorder;
}

namespace troupe::ps {

// A client's way back to a dead supervised shard: given the shard and the actor that failed, the shard's
// actor now; nullopt when the shard is not restarted (a death to report). Throws the troupe::Error that ends
// the run when the supervisor gives up.
using ShardRecovery = std::function<std::optional<caf::actor>(int shard, const caf::actor& failed)>;

class PsClient : public PsEndpoint {
 public:
  PsClient(caf::actor_system& system, std::vector<caf::actor> shards, std::shared_ptr<const PsLayout> layout, int worker,
           double timeout_s, ShardRecovery recovery = {});

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
  // Shard s failed a request with `e`: true when it was restarted (recovery_) and shards_[s] is its new
  // actor; false when it is not restarted (e is then the failure to report).
  bool revive(int s, const caf::error& e);
  // Asks every shard (ask(s)), each answer to got(s, reply); a supervised shard that died is restarted and
  // asked again; any other failure throws (fail()).
  template <class Reply, class Ask, class Got>
  void ask_shards(const char* what, std::int64_t step, Ask ask, Got got);

  std::vector<caf::actor> shards_;
  std::shared_ptr<const PsLayout> layout_;
  int worker_;
  double timeout_s_;
  caf::duration timeout_;
  caf::scoped_actor self_;
  ShardRecovery recovery_;
};

// A cluster's shard supervision (sync mode only).
struct PsShardSupervision {
  // fault.inject's "throw shard S at step N": shard S's update of step N throws, once per clause.
  std::vector<supervision::FaultClause> faults;
  // Called once per death, by the first client to find shard s dead, before its restart: `step` is the
  // update it lost (its snapshot's version). Records the restart, or throws the troupe::Error that ends
  // the run (the cluster then stops every shard, and every client's request fails with that error).
  std::function<void(int shard, std::int64_t step, const std::string& cause)> on_death;
  // After the restart: the shard serves again.
  std::function<void()> on_restarted;
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
  // From now on each shard keeps a step-boundary snapshot and a shard whose update fails is restarted from
  // it (the header's comment). Before any client is made; sync mode only (troupe::Error kConfig otherwise,
  // naming ps.mode: an async shard's snapshot would lose the pushes applied since).
  void supervise(PsShardSupervision supervision);
  // The error the supervision ended the run with, if it did.
  std::optional<Error> escalation() const;

 private:
  // Restarts supervised shard s when `failed` is its actor and it died of a failure of its own.
  std::optional<caf::actor> recover(int s, const caf::actor& failed);
  caf::actor spawn_shard(int s, std::shared_ptr<PsShard> shard);

  struct Actors;
  std::shared_ptr<const PsLayout> layout_;
  PsOptions options_;
  double timeout_s_;
  std::unique_ptr<Actors> actors_;
};

}  // namespace troupe::ps
