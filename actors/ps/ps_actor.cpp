// The shard actor (a thin shell over PsShard), the worker-side client and the cluster that spawns shards.
#include "actors/ps/ps_actor.h"

#include "actors/actor_system.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <utility>
#include <thread>

#include <fmt/format.h>

#include "actors/state/ps/ps_shard_state.h"
#include "actors/state/ps/shard_snapshot.h"
#include "actors/state/ps/sparse_table.h"
#include "runtime/optim/clip_grad.h"
#include "runtime/trace/trace.h"

namespace troupe::ps {

// Where the shards record their update spans (PsCluster::set_trace): tracks are written before the
// recorder is published, so a shard that sees the recorder sees its track.
struct ShardTrace {
  std::atomic<TraceRecorder*> recorder{nullptr};
  std::vector<int> tracks;  // per shard
};

// The shards' supervision (PsCluster::supervise), shared by the cluster and its shard actors: written by a
// shard's thread (its snapshot, its death), read by the client that restarts it.
struct ShardSupervised {
  std::atomic<bool> on{false};
  std::mutex mu;  // the fields below
  std::vector<std::optional<ShardSnapshot>> snapshots;  // per shard, the last step boundary
  std::vector<supervision::FaultClause> faults;        // not fired yet
  std::vector<std::string> died;                        // per shard: the failure that ended it ("" while alive)
  std::vector<std::vector<PsPush>> log;                 // per shard: the pushes it accepted since its snapshot
  PsShardSupervision hooks;
  std::mutex restart_mu;  // one restart at a time; escalation
  std::optional<Error> escalation;
};

namespace {

// The error tag of a request a supervised shard held when it died of its own failure.
constexpr std::int32_t kShardDied = -17;

// Did the request fail because its shard is gone (it died holding it, or was gone when it arrived)?
bool shard_died(const caf::error& e) {
  if (e == caf::sec::request_receiver_down) return true;
  const caf::message& ctx = e.context();
  return e.category() == caf::atom("system") && e == caf::sec::runtime_error && ctx.size() == 2 &&
         ctx.match_element<std::int32_t>(0) && ctx.get_as<std::int32_t>(0) == kShardDied;
}

struct ShardState {
  std::shared_ptr<PsShard> shard;
  std::shared_ptr<ShardTrace> trace;
  std::shared_ptr<ShardSupervised> sup;
  std::uint64_t next_ticket = 0;
  std::map<std::uint64_t, caf::response_promise> waiting;  // queued pulls by ticket
  static inline const char* name = "troupe.ps_shard";
};

// Answers the pulls a push or clip admitted, and the norm requests a push completed.
void deliver(caf::stateful_actor<ShardState>* self, std::vector<PsShard::Released> released) {
  for (auto& r : released) {
    auto it = self->state.waiting.find(r.ticket);
    it->second.deliver(std::move(r.reply));
    self->state.waiting.erase(it);
  }
  const std::vector<std::uint64_t> norms = self->state.shard->norms_released();
  if (norms.empty()) return;
  const std::vector<double> sums = self->state.shard->current_sum_squares();
  for (std::uint64_t ticket : norms) {
    auto it = self->state.waiting.find(ticket);
    it->second.deliver(sums);
    self->state.waiting.erase(it);
  }
}

// An "update" span (category optimizer) on the shard's track when `apply` changed its version (a push
// that completed a sync step, an async push, a clip), nothing for a push that was only buffered.
template <class F>
auto traced(caf::stateful_actor<ShardState>* self, F&& apply) {
  TraceRecorder* trace = self->state.trace->recorder.load(std::memory_order_acquire);
  const std::int64_t before = self->state.shard->version();
  const double begin = trace ? TraceRecorder::now_us() : 0.0;
  auto out = apply();
  if (trace && self->state.shard->version() != before)
    trace->span(self->state.trace->tracks.at(static_cast<std::size_t>(self->state.shard->shard())), "update", "optimizer",
                begin, TraceRecorder::now_us());
  return out;
}

// Supervised: before a shard serves anything, its first snapshot (the state it starts from).
void first_snapshot(caf::stateful_actor<ShardState>* self) {
  ShardSupervised* sup = self->state.sup.get();
  if (!sup || !sup->on.load()) return;
  const auto s = static_cast<std::size_t>(self->state.shard->shard());
  std::lock_guard lock(sup->mu);
  if (!sup->snapshots[s]) sup->snapshots[s] = take_snapshot(*self->state.shard);
}

// Supervised, after an update that moved the shard from version `before`: the fault.inject clause that makes
// this update fail (its cause), or nothing, when the new step boundary becomes the shard's snapshot.
std::optional<std::string> after_update(caf::stateful_actor<ShardState>* self, std::int64_t before) {
  ShardSupervised* sup = self->state.sup.get();
  const PsShard& shard = *self->state.shard;
  if (!sup || !sup->on.load() || shard.version() == before) return std::nullopt;
  const int s = shard.shard();
  {
    std::lock_guard lock(sup->mu);
    const auto it = std::find_if(sup->faults.begin(), sup->faults.end(),
                                 [&](const supervision::FaultClause& c) { return c.shard == s && c.step == before; });
    if (it != sup->faults.end()) {
      sup->faults.erase(it);
      std::string cause = fmt::format("fault.inject: throw shard {} at step {} (its update of step {} failed)", s, before, before);
      sup->died[static_cast<std::size_t>(s)] = cause;
      return cause;
    }
  }
  ShardSnapshot snap = take_snapshot(shard);  // outside the lock: the copy is the cost
  std::lock_guard lock(sup->mu);
  sup->snapshots[static_cast<std::size_t>(s)] = std::move(snap);
  sup->log[static_cast<std::size_t>(s)].clear();  // every push logged is in the snapshot now
  return std::nullopt;
}

// A supervised shard's own failure: every request it holds, and `current`, fail with it (tagged kShardDied,
// so that their clients have it restarted), and the actor ends.
caf::error die(caf::stateful_actor<ShardState>* self, const std::string& cause) {
  caf::error e = caf::make_error(caf::sec::runtime_error, kShardDied,
                                 fmt::format("ps shard {} died: {}", self->state.shard->shard(), cause));
  for (auto& [ticket, promise] : self->state.waiting) promise.deliver(e);
  self->state.waiting.clear();
  self->quit(caf::make_error(caf::sec::runtime_error, cause));
  return e;
}

// A push or a clip: `apply` runs the update (traced) and returns what it released, `accepted` runs once it
// did. Bad input is answered as an error and the shard keeps serving; a supervised shard's failure in the
// update ends it (die). Otherwise the released requests are answered, and the request with the new version.
template <class Apply, class Accepted>
caf::result<std::int64_t> apply_update(caf::stateful_actor<ShardState>* self, Apply apply, Accepted accepted) {
  first_snapshot(self);
  std::vector<PsShard::Released> released;
  const std::int64_t before = self->state.shard->version();
  try {
    released = traced(self, apply);
  } catch (const Error& e) {
    return caf::make_error(caf::sec::runtime_error, std::string(e.what()));
  }
  accepted();
  if (const std::optional<std::string> failed = after_update(self, before)) return die(self, *failed);
  deliver(self, std::move(released));
  return self->state.shard->version();
}

// A norm or a pull: `ask(ticket)` returns the reply, or nothing while the step it needs is incomplete; the
// request then waits under `ticket` until deliver() answers it. Bad input is answered as an error.
template <class Reply, class Ask>
caf::result<Reply> answer_or_wait(caf::stateful_actor<ShardState>* self, Ask ask) {
  first_snapshot(self);
  const std::uint64_t ticket = self->state.next_ticket++;
  std::optional<Reply> reply;
  try {
    reply = ask(ticket);
  } catch (const Error& e) {
    return caf::make_error(caf::sec::runtime_error, std::string(e.what()));
  }
  if (reply) return std::move(*reply);
  auto promise = self->make_response_promise();
  self->state.waiting.emplace(ticket, promise);
  return promise;
}

caf::behavior shard_actor(caf::stateful_actor<ShardState>* self, std::shared_ptr<PsShard> shard,
                          std::shared_ptr<ShardTrace> trace, std::shared_ptr<ShardSupervised> sup) {
  self->state.shard = std::move(shard);
  self->state.trace = std::move(trace);
  self->state.sup = std::move(sup);
  // Pulls still queued at shutdown are answered with an error: their promises hold references to this
  // actor, and an actor referenced by its own state would never be destroyed (its thread never joins).
  self->set_exit_handler([=](caf::exit_msg& msg) {
    for (auto& [ticket, promise] : self->state.waiting)
      promise.deliver(caf::make_error(
          caf::sec::runtime_error,
          fmt::format("ps shard {} stopped while this request waited: the run is ending (another worker failed, or "
                      "the job was stopped)",
                      self->state.shard->shard())));
    self->state.waiting.clear();
    self->quit(msg.reason);
  });
  // Bad input is answered as an error and the shard keeps serving; anything else ends the actor.
  return {
      [=](proto::ps_push_atom, PsPush& push) -> caf::result<std::int64_t> {
        ShardSupervised* sup = self->state.sup.get();
        std::optional<PsPush> kept;
        return apply_update(
            self,
            [&] {
              if (sup && sup->on.load()) kept = push;  // for the log, once accepted (the tensors are shared)
              return self->state.shard->push(std::move(push));
            },
            [&] {
              if (!kept) return;
              std::lock_guard lock(sup->mu);
              sup->log[static_cast<std::size_t>(self->state.shard->shard())].push_back(std::move(*kept));
            });
      },
      [=](proto::ps_norm_atom, std::int64_t step) -> caf::result<std::vector<double>> {
        return answer_or_wait<std::vector<double>>(
            self, [&](std::uint64_t ticket) { return self->state.shard->norm(step, ticket); });
      },
      [=](proto::ps_clip_atom, std::int64_t step, double coefficient) -> caf::result<std::int64_t> {
        return apply_update(self, [&] { return self->state.shard->clip(step, coefficient); }, [] {});
      },
      [=](proto::ps_pull_atom, const PsPullRequest& request) -> caf::result<PsPullReply> {
        return answer_or_wait<PsPullReply>(
            self, [&](std::uint64_t ticket) { return self->state.shard->pull(request, ticket); });
      },
      [=](proto::ps_snap_atom) {
        const PsShard& s = *self->state.shard;
        PsSnapshot snap;
        snap.shard = s.shard();
        snap.version = s.version();
        for (int d : s.layout().dense_of_shard(s.shard())) snap.dense.push_back(s.dense_value(d).clone());
        for (int t = 0; t < s.layout().num_tables(); ++t) snap.tables.push_back(s.table(t).value().clone());
        snap.state_bytes = s.state_bytes();
        return snap;
      },
      [=](proto::ps_save_atom) { return self->state.shard->save(); },
      [=](proto::ps_load_atom, PsShardState& state, std::int64_t steps_done) -> caf::result<std::int64_t> {
        try {
          self->state.shard->restore(std::move(state), steps_done);
        } catch (const Error& e) {
          return caf::make_error(caf::sec::runtime_error, std::string(e.what()));
        }
        if (ShardSupervised* sup = self->state.sup.get(); sup && sup->on.load()) {  // the restored state is the boundary
          ShardSnapshot snap = take_snapshot(*self->state.shard);
          std::lock_guard lock(sup->mu);
          sup->snapshots[static_cast<std::size_t>(self->state.shard->shard())] = std::move(snap);
          sup->log[static_cast<std::size_t>(self->state.shard->shard())].clear();
        }
        return self->state.shard->version();
      },
  };
}

// The troupe::Error text a shard sent, or CAF's rendering of any other error.
std::string error_text(const caf::error& e) {
  const caf::message& ctx = e.context();
  if (ctx.size() == 1 && ctx.match_element<std::string>(0)) return ctx.get_as<std::string>(0);
  if (ctx.size() == 2 && ctx.match_element<std::string>(1)) return ctx.get_as<std::string>(1);
  return caf::to_string(e);
}

[[noreturn]] void fail(const caf::error& e, int shard, int worker, const char* what, std::int64_t step, double timeout_s) {
  if (e == caf::sec::request_timeout)
    throw Error(ErrorKind::kIo, fmt::format("ps shard {} did not answer the {} of worker {} for step {} within {} s (did a "
                                            "worker stop? sync and ssp pulls wait for every worker)",
                                            shard, what, worker, step, timeout_s));
  if (e.category() == caf::atom("system") && e == caf::sec::runtime_error) throw Error(ErrorKind::kInput, error_text(e));
  throw Error(ErrorKind::kIo, fmt::format("ps shard {} failed during the {} of worker {} for step {}: {}", shard, what, worker,
                                          step, error_text(e)));
}

// One push per shard from `worker` for `step` (at learning rate `lr`), still without gradients.
std::vector<PsPush> push_per_shard(int shards, int worker, std::int64_t step, double lr) {
  std::vector<PsPush> pushes(static_cast<std::size_t>(shards));
  for (PsPush& p : pushes) {
    p.worker = worker;
    p.step = step;
    p.lr = lr;
  }
  return pushes;
}

void check_increasing(const std::vector<std::int64_t>& ids, const PsLayout& layout, int t, int worker, std::int64_t step) {
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= layout.table_rows(t) || (i > 0 && ids[i] <= ids[i - 1]))
      throw Error(ErrorKind::kInput, fmt::format("worker {} step {}: table '{}' row ids must be strictly increasing and in [0, {}); "
                                                 "got {} at position {}",
                                                 worker, step, layout.table_spec(t).name, layout.table_rows(t), ids[i], i));
  }
}

}  // namespace

PsClient::PsClient(caf::actor_system& system, std::vector<caf::actor> shards, std::shared_ptr<const PsLayout> layout,
                   int worker, double timeout_s, ShardRecovery recovery)
    : shards_(std::move(shards)),
      layout_(std::move(layout)),
      worker_(worker),
      timeout_s_(timeout_s),
      timeout_(std::chrono::microseconds(static_cast<std::int64_t>(timeout_s * 1e6))),
      self_(system),
      recovery_(std::move(recovery)) {}

PsClient::Pulled PsClient::pull(std::int64_t step, const std::vector<std::vector<std::int64_t>>& ids, bool dense) {
  const int S = layout_->shards(), T = layout_->num_tables();
  if (!ids.empty() && static_cast<int>(ids.size()) != T)
    throw Error(ErrorKind::kInput, fmt::format("worker {} step {}: row ids for {} tables, the model has {}", worker_, step,
                                               ids.size(), T));
  std::vector<PsPullRequest> requests(static_cast<std::size_t>(S));
  // positions[s][t]: where shard s's rows of table t go in the answer.
  std::vector<std::vector<std::vector<std::size_t>>> positions(static_cast<std::size_t>(S));
  for (int s = 0; s < S; ++s) {
    PsPullRequest& r = requests[static_cast<std::size_t>(s)];
    r.worker = worker_;
    r.step = step;
    r.dense = dense;
    if (!ids.empty()) r.rows.resize(static_cast<std::size_t>(T));
    positions[static_cast<std::size_t>(s)].resize(static_cast<std::size_t>(T));
  }
  Pulled out;
  for (int t = 0; t < static_cast<int>(ids.size()); ++t) {
    const auto& list = ids[static_cast<std::size_t>(t)];
    check_increasing(list, *layout_, t, worker_, step);
    for (std::size_t i = 0; i < list.size(); ++i) {
      const int s = layout_->row_shard(list[i]);
      requests[static_cast<std::size_t>(s)].rows[static_cast<std::size_t>(t)].push_back(list[i]);
      positions[static_cast<std::size_t>(s)][static_cast<std::size_t>(t)].push_back(i);
    }
    out.tables.push_back(Tensor::empty({static_cast<std::int64_t>(list.size()), layout_->table_dim(t)}));
  }
  if (dense) out.dense.resize(static_cast<std::size_t>(layout_->num_dense()));

  out.min_version = INT64_MAX;
  ask_shards<PsPullReply>(
      "pull", step,
      [&](int s) {
        return self_->request(shards_[static_cast<std::size_t>(s)], timeout_, proto::ps_pull_atom::value,
                              requests[static_cast<std::size_t>(s)]);
      },
      [&](int s, PsPullReply& reply) {
        out.min_version = std::min(out.min_version, reply.version);
        const auto& mine = layout_->dense_of_shard(s);
        for (std::size_t j = 0; j < reply.dense.size(); ++j) out.dense[static_cast<std::size_t>(mine[j])] = reply.dense[j];
        for (std::size_t t = 0; t < reply.tables.size(); ++t) {
          const auto& pos = positions[static_cast<std::size_t>(s)][t];
          const std::int64_t dim = layout_->table_dim(static_cast<int>(t));
          const float* src = reply.tables[t].f32();
          float* dst = out.tables[t].f32();
          for (std::size_t i = 0; i < pos.size(); ++i)
            std::copy(src + static_cast<std::int64_t>(i) * dim, src + static_cast<std::int64_t>(i + 1) * dim,
                      dst + static_cast<std::int64_t>(pos[i]) * dim);
        }
      });
  return out;
}

void PsClient::push(std::int64_t step, const std::vector<Tensor>& dense, const std::vector<SparseRows>& tables, double lr) {
  const int S = layout_->shards(), T = layout_->num_tables();
  if (!dense.empty() && static_cast<int>(dense.size()) != layout_->num_dense())
    throw Error(ErrorKind::kInput, fmt::format("worker {} step {}: {} dense gradients, the model has {} dense parameters",
                                               worker_, step, dense.size(), layout_->num_dense()));
  if (!tables.empty() && static_cast<int>(tables.size()) != T)
    throw Error(ErrorKind::kInput, fmt::format("worker {} step {}: sparse gradients for {} tables, the model has {}", worker_,
                                               step, tables.size(), T));
  std::vector<PsPush> pushes = push_per_shard(S, worker_, step, lr);
  for (int s = 0; s < S; ++s) {
    PsPush& p = pushes[static_cast<std::size_t>(s)];
    if (!dense.empty())
      for (int d : layout_->dense_of_shard(s)) p.dense.push_back(dense[static_cast<std::size_t>(d)]);
    if (!tables.empty()) p.tables.resize(static_cast<std::size_t>(T));
  }
  for (int t = 0; t < static_cast<int>(tables.size()); ++t) {
    const SparseRows& g = tables[static_cast<std::size_t>(t)];
    check_increasing(g.ids, *layout_, t, worker_, step);
    const std::int64_t dim = layout_->table_dim(t);
    if (!g.ids.empty() && (!g.rows.defined() || g.rows.shape() != Shape{static_cast<std::int64_t>(g.ids.size()), dim}))
      throw Error(ErrorKind::kInput, fmt::format("worker {} step {}: table '{}' gradient rows are {}, expected [{}, {}]", worker_,
                                                 step, layout_->table_spec(t).name,
                                                 g.rows.defined() ? shape_str(g.rows.shape()) : "undefined", g.ids.size(), dim));
    if (S == 1) {
      pushes[0].tables[static_cast<std::size_t>(t)] = g;
      continue;
    }
    std::vector<std::vector<std::int64_t>> at(static_cast<std::size_t>(S));
    for (std::size_t i = 0; i < g.ids.size(); ++i) {
      const int s = layout_->row_shard(g.ids[i]);
      pushes[static_cast<std::size_t>(s)].tables[static_cast<std::size_t>(t)].ids.push_back(g.ids[i]);
      at[static_cast<std::size_t>(s)].push_back(static_cast<std::int64_t>(i));
    }
    for (int s = 0; s < S; ++s) {
      SparseRows& part = pushes[static_cast<std::size_t>(s)].tables[static_cast<std::size_t>(t)];
      part.rows = Tensor::empty({static_cast<std::int64_t>(part.ids.size()), dim});
      if (!part.ids.empty()) gather_rows(g.rows, at[static_cast<std::size_t>(s)], part.rows);
    }
  }
  send_pushes(step, std::move(pushes));
}

void PsClient::push_exact(std::int64_t step, std::vector<ExactGrad> exact, const std::vector<SparseRows>& tables, double lr) {
  if (static_cast<int>(exact.size()) != layout_->num_dense())
    throw Error(ErrorKind::kInput, fmt::format("worker {} step {}: {} exact gradients, the model has {} dense parameters",
                                               worker_, step, exact.size(), layout_->num_dense()));
  // Exact sums exist for dense gradients only (the deterministic trainer's models have no sparse tables).
  if (!tables.empty())
    throw Error(ErrorKind::kInput, fmt::format("worker {} step {}: exact pushes carry dense gradients only", worker_, step));
  const int S = layout_->shards();
  std::vector<PsPush> pushes = push_per_shard(S, worker_, step, lr);
  for (int s = 0; s < S; ++s)
    for (int d : layout_->dense_of_shard(s))
      pushes[static_cast<std::size_t>(s)].exact.push_back(std::move(exact[static_cast<std::size_t>(d)]));
  send_pushes(step, std::move(pushes));
}

template <class Reply, class Ask, class Got>
void PsClient::ask_shards(const char* what, std::int64_t step, Ask ask, Got got) {
  const int S = layout_->shards();
  using Handle = decltype(ask(0));
  std::vector<Handle> pending;
  for (int s = 0; s < S; ++s) pending.push_back(ask(s));  // ascending shard order
  std::vector<std::pair<int, caf::error>> failed;
  // Every answer (or timeout) is collected before anything else, so nothing is left in this actor's mailbox.
  for (int s = 0; s < S; ++s)
    pending[static_cast<std::size_t>(s)].receive([&](Reply& r) { got(s, r); },
                                                 [&](caf::error& e) { failed.emplace_back(s, std::move(e)); });
  for (auto& failure : failed) {
    const int s = failure.first;
    caf::error error = std::move(failure.second);
    // A restarted shard holds what it had received since its snapshot (a push it has already is acknowledged,
    // not applied twice): the request is simply made again.
    while (revive(s, error)) {
      error = caf::error();
      ask(s).receive([&](Reply& r) { got(s, r); }, [&](caf::error& again) { error = std::move(again); });
      if (!error) break;
    }
    if (error) fail(error, s, worker_, what, step, timeout_s_);
  }
}

bool PsClient::revive(int s, const caf::error& e) {
  if (!recovery_ || !shard_died(e)) return false;
  const std::optional<caf::actor> back = recovery_(s, shards_[static_cast<std::size_t>(s)]);
  if (!back) return false;
  shards_[static_cast<std::size_t>(s)] = *back;
  return true;
}

void PsClient::send_pushes(std::int64_t step, std::vector<PsPush> pushes) {
  ask_shards<std::int64_t>(
      "push", step,
      [&](int s) {
        // Kept for a second ask (a shard restarted meanwhile); the tensors are shared, never changed by a shard.
        return self_->request(shards_[static_cast<std::size_t>(s)], timeout_, proto::ps_push_atom::value,
                              recovery_ ? PsPush(pushes[static_cast<std::size_t>(s)]) : std::move(pushes[static_cast<std::size_t>(s)]));
      },
      [](int, std::int64_t) {});
}

double PsClient::clip(std::int64_t step, double max_norm) {
  const int S = layout_->shards();
  std::vector<std::vector<double>> sums(static_cast<std::size_t>(S));
  ask_shards<std::vector<double>>(
      "norm round", step,
      [&](int s) { return self_->request(shards_[static_cast<std::size_t>(s)], timeout_, proto::ps_norm_atom::value, step); },
      [&](int s, std::vector<double>& v) { sums[static_cast<std::size_t>(s)] = std::move(v); });
  // Global parameter order, as grad_norm adds on one device: dense parameters, then tables shard by shard.
  double total = 0.0;
  for (int d = 0; d < layout_->num_dense(); ++d) {
    const int s = layout_->dense_owner(d);
    const auto& mine = layout_->dense_of_shard(s);
    total += sums[static_cast<std::size_t>(s)][static_cast<std::size_t>(std::find(mine.begin(), mine.end(), d) - mine.begin())];
  }
  for (int t = 0; t < layout_->num_tables(); ++t)
    for (int s = 0; s < S; ++s)
      total += sums[static_cast<std::size_t>(s)][layout_->dense_of_shard(s).size() + static_cast<std::size_t>(t)];
  const double norm = std::sqrt(total);
  const double coefficient = clip_coefficient(norm, max_norm);
  ask_shards<std::int64_t>(
      "clip", step,
      [&](int s) { return self_->request(shards_[static_cast<std::size_t>(s)], timeout_, proto::ps_clip_atom::value, step, coefficient); },
      [](int, std::int64_t) {});
  return norm;
}

struct PsCluster::Actors {
  std::shared_ptr<ActorSystem> system;
  std::shared_ptr<ShardTrace> trace = std::make_shared<ShardTrace>();
  std::vector<caf::actor> shards;
  // Written by a dying shard's thread (attach_functor), read by the trainer's.
  mutable std::mutex mu;
  std::optional<std::pair<int, std::string>> first_dead;
  bool stopping = false;  // the cluster stops its shards itself: not a death
  std::shared_ptr<ShardSupervised> sup = std::make_shared<ShardSupervised>();
};

PsCluster::PsCluster(std::shared_ptr<const PsLayout> layout, PsOptions options, const PsInit& init, double timeout_s,
                     std::shared_ptr<ActorSystem> system)
    : layout_(std::move(layout)), options_(std::move(options)), timeout_s_(timeout_s), actors_(std::make_unique<Actors>()) {
  validate(options_);
  if (!(timeout_s > 0)) throw Error(ErrorKind::kConfig, fmt::format("ps timeout {} s: must be > 0", timeout_s));
  // Shards initialise their slices in parallel (a large table's rows are many hashes).
  const int S = layout_->shards();
  std::vector<std::shared_ptr<PsShard>> shards(static_cast<std::size_t>(S));
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(S));
  std::vector<std::thread> threads;
  for (int s = 0; s < S; ++s)
    threads.emplace_back([&, s] {
      try {
        shards[static_cast<std::size_t>(s)] = std::make_shared<PsShard>(layout_, s, options_, init);
      } catch (...) {
        errors[static_cast<std::size_t>(s)] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  actors_->system = system ? std::move(system) : std::make_shared<ActorSystem>();
  actors_->sup->snapshots.resize(static_cast<std::size_t>(S));
  actors_->sup->died.resize(static_cast<std::size_t>(S));
  actors_->sup->log.resize(static_cast<std::size_t>(S));
  for (int s = 0; s < S; ++s) actors_->shards.push_back(spawn_shard(s, shards[static_cast<std::size_t>(s)]));
}

caf::actor PsCluster::spawn_shard(int s, std::shared_ptr<PsShard> shard) {
  caf::actor actor = actors_->system->get().spawn<caf::detached>(shard_actor, std::move(shard), actors_->trace, actors_->sup);
  Actors* a = actors_.get();
  caf::actor_system* sys = &actors_->system->get();
  caf::actor_cast<caf::abstract_actor*>(actor)->attach_functor([a, sys, s](const caf::error& reason) {
    {
      // A supervised shard that died of its own failure is the supervisor's to restart, not a death to report.
      std::lock_guard lock(a->sup->mu);
      if (a->sup->on.load() && !a->sup->died[static_cast<std::size_t>(s)].empty()) return;
    }
    std::lock_guard lock(a->mu);
    if (!a->stopping && !a->first_dead) a->first_dead = std::make_pair(s, sys->render(reason));
  });
  return actor;
}

void PsCluster::supervise(PsShardSupervision supervision) {
  if (options_.mode != PsMode::sync)
    throw Error(ErrorKind::kConfig, fmt::format("parameter-server shards are restarted in ps.mode = sync only (got {}): an "
                                                "{} shard applies each push as it comes, so a restart from its last "
                                                "snapshot would lose the pushes applied since",
                                                options_.mode, options_.mode));
  ShardSupervised& sup = *actors_->sup;
  std::lock_guard lock(sup.mu);
  sup.faults = std::move(supervision.faults);
  sup.hooks = std::move(supervision);
  sup.on = true;
}

std::optional<Error> PsCluster::escalation() const {
  std::lock_guard lock(actors_->sup->restart_mu);
  return actors_->sup->escalation;
}

std::optional<caf::actor> PsCluster::recover(int s, const caf::actor& failed) {
  ShardSupervised& sup = *actors_->sup;
  const auto at = static_cast<std::size_t>(s);
  std::lock_guard restart(sup.restart_mu);
  if (sup.escalation) throw *sup.escalation;
  {
    std::lock_guard lock(actors_->mu);
    if (actors_->stopping) return std::nullopt;
    if (actors_->shards.at(at) != failed) return actors_->shards[at];  // another client restarted it already
  }
  std::string cause;
  {
    std::lock_guard lock(sup.mu);
    cause = sup.died[at];
  }
  if (cause.empty()) return std::nullopt;  // ended from outside (killed): reported, not restarted
  {
    caf::scoped_actor self(actors_->system->get());
    self->wait_for(failed);
  }
  std::shared_ptr<PsShard> revived;
  for (;;) {
    ShardSnapshot snapshot;
    std::vector<PsPush> log;
    {
      std::lock_guard lock(sup.mu);
      TROUPE_CHECK(sup.snapshots[at].has_value(), "ps shard ", s, " died before its first snapshot");
      snapshot = copy_snapshot(*sup.snapshots[at]);
      log = sup.log[at];
    }
    try {
      if (sup.hooks.on_death) sup.hooks.on_death(s, snapshot.version, cause);
    } catch (const Error& e) {
      sup.escalation = e;
      abort();  // every shard stops: every waiting client fails at once
      throw;
    }
    // The snapshot, then the pushes accepted since, in their order: the shard as it stood when it failed,
    // but for the update that failed (made again here when those pushes complete it, as the clipping
    // round's clip does in the actor).
    revived = revive_shard(layout_, s, options_, snapshot);
    revived->accept_repeated_pushes();
    for (const PsPush& p : log) revived->push(PsPush(p));
    if (revived->version() == snapshot.version) break;
    std::lock_guard lock(sup.mu);
    const auto it = std::find_if(sup.faults.begin(), sup.faults.end(), [&](const supervision::FaultClause& c) {
      return c.shard == s && c.step == snapshot.version;
    });
    if (it == sup.faults.end()) {
      sup.snapshots[at] = take_snapshot(*revived);
      sup.log[at].clear();
      break;
    }
    sup.faults.erase(it);  // a fault in the re-run of the update: it fails again
    cause = fmt::format("fault.inject: throw shard {} at step {} (its update of step {} failed)", s, snapshot.version,
                        snapshot.version);
  }
  caf::actor actor = spawn_shard(s, std::move(revived));
  {
    std::lock_guard lock(sup.mu);
    sup.died[at].clear();
  }
  {
    std::lock_guard lock(actors_->mu);
    actors_->shards[at] = actor;
  }
  if (sup.hooks.on_restarted) sup.hooks.on_restarted();
  return actor;
}

std::optional<std::pair<int, std::string>> PsCluster::dead_shard() const {
  std::lock_guard lock(actors_->mu);
  return actors_->first_dead;
}

void PsCluster::kill_shard(int s) {
  const caf::actor& shard = actors_->shards.at(static_cast<std::size_t>(s));
  caf::anon_send_exit(shard, caf::exit_reason::kill);
  caf::scoped_actor self(actors_->system->get());
  self->wait_for(shard);
}

PsCluster::~PsCluster() {
  {
    std::lock_guard lock(actors_->mu);
    actors_->stopping = true;
  }
  // Waits for its own shards only: the system may hold other actors of the job, still running.
  for (auto& a : actors_->shards) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  caf::scoped_actor self(actors_->system->get());
  self->wait_for(actors_->shards);
  actors_->shards.clear();
}

ActorSystem& PsCluster::system() { return *actors_->system; }

void PsCluster::abort() {
  {
    std::lock_guard lock(actors_->mu);
    actors_->stopping = true;
  }
  for (auto& a : actors_->shards) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
}

std::unique_ptr<PsClient> PsCluster::client(int worker) {
  if (worker < 0 || worker >= options_.workers)
    throw Error(ErrorKind::kInput, fmt::format("worker {}: there are {} workers (0..{})", worker, options_.workers, options_.workers - 1));
  ShardRecovery recovery;
  if (actors_->sup->on.load())
    recovery = [this](int s, const caf::actor& failed) { return recover(s, failed); };
  std::vector<caf::actor> shards;
  {
    std::lock_guard lock(actors_->mu);
    shards = actors_->shards;
  }
  return std::make_unique<PsClient>(actors_->system->get(), std::move(shards), layout_, worker, timeout_s_, std::move(recovery));
}

PsCluster::Model PsCluster::snapshot() {
  const int S = layout_->shards();
  Model m;
  m.dense.resize(static_cast<std::size_t>(layout_->num_dense()));
  for (int t = 0; t < layout_->num_tables(); ++t) m.tables.push_back(Tensor::empty({layout_->table_rows(t), layout_->table_dim(t)}));
  caf::scoped_actor self(actors_->system->get());
  for (int s = 0; s < S; ++s) {
    self->request(actors_->shards[static_cast<std::size_t>(s)], std::chrono::seconds(static_cast<std::int64_t>(timeout_s_) + 1),
                  proto::ps_snap_atom::value)
        .receive(
            [&](PsSnapshot& snap) {
              m.versions.push_back(snap.version);
              m.state_bytes += snap.state_bytes;
              const auto& mine = layout_->dense_of_shard(s);
              for (std::size_t j = 0; j < mine.size(); ++j) m.dense[static_cast<std::size_t>(mine[j])] = snap.dense[j];
              for (int t = 0; t < layout_->num_tables(); ++t) {
                const std::int64_t dim = layout_->table_dim(t);
                const Tensor& part = snap.tables[static_cast<std::size_t>(t)];
                for (std::int64_t i = 0; i < part.dim(0); ++i)
                  std::copy(part.f32() + i * dim, part.f32() + (i + 1) * dim,
                            m.tables[static_cast<std::size_t>(t)].f32() + layout_->global_row(s, i) * dim);
              }
            },
            [&](caf::error& e) { fail(e, s, -1, "snapshot", -1, timeout_s_); });
  }
  return m;
}

void PsCluster::set_trace(TraceRecorder* trace) {
  ShardTrace& t = *actors_->trace;
  TROUPE_CHECK(t.recorder.load() == nullptr || t.recorder.load() == trace, "ps shards traced into a second recorder");
  if (!trace) return;
  t.tracks.clear();
  for (int s = 0; s < layout_->shards(); ++s) t.tracks.push_back(trace->track("ps shard " + std::to_string(s)));
  t.recorder.store(trace, std::memory_order_release);
}

TrainingState PsCluster::training_state(std::int64_t steps_done) {
  const int S = layout_->shards();
  std::vector<PsShardState> states(static_cast<std::size_t>(S));
  caf::scoped_actor self(actors_->system->get());
  const auto wait = std::chrono::seconds(static_cast<std::int64_t>(timeout_s_) + 1);
  // Every shard copies its slice at once, each on its own thread (the shard actors are detached).
  using Handle = decltype(self->request(actors_->shards[0], wait, proto::ps_save_atom::value));
  std::vector<Handle> pending;
  for (int s = 0; s < S; ++s)
    pending.push_back(self->request(actors_->shards[static_cast<std::size_t>(s)], wait, proto::ps_save_atom::value));
  std::optional<std::pair<caf::error, int>> first_error;
  for (int s = 0; s < S; ++s)
    pending[static_cast<std::size_t>(s)].receive(
        [&](PsShardState& state) { states[static_cast<std::size_t>(s)] = std::move(state); },
        [&](caf::error& e) {
          if (!first_error) first_error = {e, s};
        });
  if (first_error) fail(first_error->first, first_error->second, -1, "checkpoint", steps_done, timeout_s_);
  return gather_ps_state(*layout_, states, steps_done);
}

void PsCluster::restore(const TrainingState& whole, const std::string& source) {
  const int S = layout_->shards();
  // Every share is cut (and so the whole state checked) before any shard changes.
  std::vector<PsShardState> shares;
  for (int s = 0; s < S; ++s) shares.push_back(cut_ps_state(whole, *layout_, s, source));
  caf::scoped_actor self(actors_->system->get());
  const auto wait = std::chrono::seconds(static_cast<std::int64_t>(timeout_s_) + 1);
  for (int s = 0; s < S; ++s)
    self->request(actors_->shards[static_cast<std::size_t>(s)], wait, proto::ps_load_atom::value,
                  std::move(shares[static_cast<std::size_t>(s)]), whole.step)
        .receive([](std::int64_t) {}, [&](caf::error& e) { fail(e, s, -1, "restore", whole.step, timeout_s_); });
}

}  // namespace troupe::ps
