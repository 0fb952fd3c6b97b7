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

namespace {

struct ShardState {
  std::shared_ptr<PsShard> shard;
  std::shared_ptr<ShardTrace> trace;
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

caf::behavior shard_actor(caf::stateful_actor<ShardState>* self, std::shared_ptr<PsShard> shard,
                          std::shared_ptr<ShardTrace> trace) {
  self->state.shard = std::move(shard);
  self->state.trace = std::move(trace);
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
        std::vector<PsShard::Released> released;
        try {
          released = traced(self, [&] { return self->state.shard->push(std::move(push)); });
        } catch (const Error& e) {
          return caf::make_error(caf::sec::runtime_error, std::string(e.what()));
        }
        deliver(self, std::move(released));
        return self->state.shard->version();
      },
      [=](proto::ps_norm_atom, std::int64_t step) -> caf::result<std::vector<double>> {
        const std::uint64_t ticket = self->state.next_ticket++;
        std::optional<std::vector<double>> sums;
        try {
          sums = self->state.shard->norm(step, ticket);
        } catch (const Error& e) {
          return caf::make_error(caf::sec::runtime_error, std::string(e.what()));
        }
        if (sums) return std::move(*sums);
        auto promise = self->make_response_promise();
        self->state.waiting.emplace(ticket, promise);
        return promise;
      },
      [=](proto::ps_clip_atom, std::int64_t step, double coefficient) -> caf::result<std::int64_t> {
        std::vector<PsShard::Released> released;
        try {
          released = traced(self, [&] { return self->state.shard->clip(step, coefficient); });
        } catch (const Error& e) {
          return caf::make_error(caf::sec::runtime_error, std::string(e.what()));
        }
        deliver(self, std::move(released));
        return self->state.shard->version();
      },
      [=](proto::ps_pull_atom, const PsPullRequest& request) -> caf::result<PsPullReply> {
        const std::uint64_t ticket = self->state.next_ticket++;
        std::optional<PsPullReply> reply;
        try {
          reply = self->state.shard->pull(request, ticket);
        } catch (const Error& e) {
          return caf::make_error(caf::sec::runtime_error, std::string(e.what()));
        }
        if (reply) return std::move(*reply);
        auto promise = self->make_response_promise();
        self->state.waiting.emplace(ticket, promise);
        return promise;
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
        return self->state.shard->version();
      },
  };
}

// The troupe::Error text a shard sent, or CAF's rendering of any other error.
std::string error_text(const caf::error& e) {
  const caf::message& ctx = e.context();
  if (ctx.size() == 1 && ctx.match_element<std::string>(0)) return ctx.get_as<std::string>(0);
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
                   int worker, double timeout_s)
    : shards_(std::move(shards)),
      layout_(std::move(layout)),
      worker_(worker),
      timeout_s_(timeout_s),
      timeout_(std::chrono::microseconds(static_cast<std::int64_t>(timeout_s * 1e6))),
      self_(system) {}

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

  using Handle = decltype(self_->request(shards_[0], timeout_, proto::ps_pull_atom::value, requests[0]));
  std::vector<Handle> pending;
  for (int s = 0; s < S; ++s)
    pending.push_back(self_->request(shards_[static_cast<std::size_t>(s)], timeout_, proto::ps_pull_atom::value,
                                     std::move(requests[static_cast<std::size_t>(s)])));
  out.min_version = INT64_MAX;
  std::optional<std::pair<caf::error, int>> first_error;
  for (int s = 0; s < S; ++s) {
    pending[static_cast<std::size_t>(s)].receive(
        [&](PsPullReply& reply) {
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
        },
        [&](caf::error& e) {
          if (!first_error) first_error = {e, s};
        });
  }
  // Every answer (or timeout) is collected before failing, so nothing is left in this actor's mailbox.
  if (first_error) fail(first_error->first, first_error->second, worker_, "pull", step, timeout_s_);
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
  std::vector<PsPush> pushes(static_cast<std::size_t>(S));
  for (int s = 0; s < S; ++s) {
    PsPush& p = pushes[static_cast<std::size_t>(s)];
    p.worker = worker_;
    p.step = step;
    p.lr = lr;
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
  std::vector<PsPush> pushes(static_cast<std::size_t>(S));
  for (int s = 0; s < S; ++s) {
    PsPush& p = pushes[static_cast<std::size_t>(s)];
    p.worker = worker_;
    p.step = step;
    p.lr = lr;
    for (int d : layout_->dense_of_shard(s)) p.exact.push_back(std::move(exact[static_cast<std::size_t>(d)]));
  }
  send_pushes(step, std::move(pushes));
}

void PsClient::send_pushes(std::int64_t step, std::vector<PsPush> pushes) {
  const int S = layout_->shards();
  using Handle = decltype(self_->request(shards_[0], timeout_, proto::ps_push_atom::value, pushes[0]));
  std::optional<std::pair<caf::error, int>> first_error;
  std::vector<Handle> pending;
  for (int s = 0; s < S; ++s)  // ascending shard order
    pending.push_back(self_->request(shards_[static_cast<std::size_t>(s)], timeout_, proto::ps_push_atom::value,
                                     std::move(pushes[static_cast<std::size_t>(s)])));
  for (int s = 0; s < S; ++s)
    pending[static_cast<std::size_t>(s)].receive(
        [](std::int64_t) {},
        [&](caf::error& e) {
          if (!first_error) first_error = {e, s};
        });
  if (first_error) fail(first_error->first, first_error->second, worker_, "push", step, timeout_s_);
}

double PsClient::clip(std::int64_t step, double max_norm) {
  const int S = layout_->shards();
  using Handle = decltype(self_->request(shards_[0], timeout_, proto::ps_norm_atom::value, step));
  std::vector<Handle> pending;
  for (int s = 0; s < S; ++s) pending.push_back(self_->request(shards_[static_cast<std::size_t>(s)], timeout_, proto::ps_norm_atom::value, step));
  std::vector<std::vector<double>> sums(static_cast<std::size_t>(S));
  std::optional<std::pair<caf::error, int>> first_error;
  for (int s = 0; s < S; ++s)
    pending[static_cast<std::size_t>(s)].receive([&](std::vector<double>& v) { sums[static_cast<std::size_t>(s)] = std::move(v); },
                                                 [&](caf::error& e) {
                                                   if (!first_error) first_error = {e, s};
                                                 });
  if (first_error) fail(first_error->first, first_error->second, worker_, "norm round", step, timeout_s_);
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
  using Ack = decltype(self_->request(shards_[0], timeout_, proto::ps_clip_atom::value, step, coefficient));
  std::vector<Ack> acks;
  for (int s = 0; s < S; ++s)
    acks.push_back(self_->request(shards_[static_cast<std::size_t>(s)], timeout_, proto::ps_clip_atom::value, step, coefficient));
  for (int s = 0; s < S; ++s)
    acks[static_cast<std::size_t>(s)].receive([](std::int64_t) {}, [&](caf::error& e) {
      if (!first_error) first_error = {e, s};
    });
  if (first_error) fail(first_error->first, first_error->second, worker_, "clip", step, timeout_s_);
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
  for (int s = 0; s < S; ++s) {
    actors_->shards.push_back(actors_->system->get().spawn<caf::detached>(shard_actor, shards[static_cast<std::size_t>(s)],
                                                                        actors_->trace));
    Actors* a = actors_.get();
    caf::actor_system* sys = &actors_->system->get();
    caf::actor_cast<caf::abstract_actor*>(actors_->shards.back())->attach_functor([a, sys, s](const caf::error& reason) {
      std::lock_guard lock(a->mu);
      if (!a->stopping && !a->first_dead) a->first_dead = std::make_pair(s, sys->render(reason));
    });
  }
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
  return std::make_unique<PsClient>(actors_->system->get(), actors_->shards, layout_, worker, timeout_s_);
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
