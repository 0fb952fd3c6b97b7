// PsShard: checking pushes and pulls, summing a sync step in worker order, admitting pulls by mode.
#include "actors/state/ps/ps_shard.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>

#include <fmt/format.h>

#include "runtime/error.h"
#include "runtime/optim/clip_grad.h"

namespace troupe::ps {

PsMode parse_mode(const std::string& mode) {
  if (const std::optional<PsMode> m = parse_choice<PsMode>(mode)) return *m;
  throw Error(ErrorKind::kConfig, fmt::format("ps.mode = '{}': expected one of sync, async, ssp", mode));
}

void validate(const PsOptions& o) {
  if (o.workers < 1)
    throw Error(ErrorKind::kConfig, fmt::format("{} workers: a parameter server needs at least 1 worker", o.workers));
  if (o.staleness < 0)
    throw Error(ErrorKind::kConfig, fmt::format("ps.staleness = {}: must be >= 0", o.staleness));
  if (o.staleness > 0 && o.mode != PsMode::ssp)
    throw Error(ErrorKind::kConfig,
                fmt::format("ps.staleness = {} needs ps.mode = ssp (got {})", o.staleness, o.mode));
  if (o.clip && o.mode != PsMode::sync)
    throw Error(ErrorKind::kConfig, fmt::format("clipping on the parameter servers needs ps.mode = sync (got {}); in {} "
                                                "mode each worker clips its own gradient",
                                                o.mode, o.mode));
}

PsShard::PsShard(std::shared_ptr<const PsLayout> layout, int shard, PsOptions options, const PsInit& init)
    : layout_(std::move(layout)), shard_(shard), options_(std::move(options)) {
  validate(options_);
  TROUPE_CHECK(shard_ >= 0 && shard_ < layout_->shards(), "shard ", shard_, " of ", layout_->shards());
  lr_ = options_.optim.lr_or_default();
  dense_optimizer_ = make_optimizer(options_.optim);
  table_optimizer_ = make_optimizer(options_.optim);
  for (int d : layout_->dense_of_shard(shard_)) {
    const PsParamSpec& spec = layout_->dense_spec(d);
    Tensor v = init.dense(spec.name);
    TROUPE_CHECK(v.shape() == spec.shape, "initial value of ", spec.name, " is ", shape_str(v.shape()));
    dense_.push_back(Param{spec.name, v.clone(), Tensor()});
  }
  for (int t = 0; t < layout_->num_tables(); ++t) {
    const std::int64_t n = layout_->local_rows(t, shard_);
    std::vector<std::int64_t> rows(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) rows[static_cast<std::size_t>(i)] = layout_->global_row(shard_, i);
    Tensor value = Tensor::empty({n, layout_->table_dim(t)});
    if (n > 0) init.table_rows(layout_->table_spec(t).name, rows, value);
    tables_.emplace_back(layout_->table_spec(t).name, value);
  }
  pushed_.assign(static_cast<std::size_t>(options_.workers), 0);
  pending_.resize(static_cast<std::size_t>(options_.workers));
}

std::string PsShard::where(int worker, std::int64_t step, const char* what) const {
  return fmt::format("ps shard {}: {} from worker {} for step {}", shard_, what, worker, step);
}

namespace {

// Checks that `ids` are strictly increasing rows of table t owned by `shard`.
void check_ids(const PsLayout& layout, int shard, int t, const std::vector<std::int64_t>& ids, const std::string& where) {
  const std::int64_t n = layout.table_rows(t);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const std::int64_t id = ids[i];
    if (id < 0 || id >= n)
      throw Error(ErrorKind::kInput, fmt::format("{}: table '{}' row {} is outside [0, {})", where, layout.table_spec(t).name, id, n));
    if (layout.row_shard(id) != shard)
      throw Error(ErrorKind::kInput, fmt::format("{}: table '{}' row {} belongs to shard {} (row % {}), not this one", where,
                                                 layout.table_spec(t).name, id, layout.row_shard(id), layout.shards()));
    if (i > 0 && id <= ids[i - 1])
      throw Error(ErrorKind::kInput, fmt::format("{}: table '{}' rows must be strictly increasing, got {} after {}", where,
                                                 layout.table_spec(t).name, id, ids[i - 1]));
  }
}

}  // namespace

void PsShard::check_push(const PsPush& p) const {
  if (p.worker < 0 || p.worker >= options_.workers)
    throw Error(ErrorKind::kInput, fmt::format("ps shard {}: push from worker {}, but there are {} workers (0..{})", shard_,
                                               p.worker, options_.workers, options_.workers - 1));
  const std::string at = where(p.worker, p.step, "push");
  const std::int64_t expected = pushed_[static_cast<std::size_t>(p.worker)];
  if (p.step != expected)
    throw Error(ErrorKind::kInput, fmt::format("{}: expected step {} (each worker pushes its steps in order)", at, expected));
  if (options_.mode == PsMode::sync && p.step != version_)
    throw Error(ErrorKind::kInput, fmt::format("{}: step {} is not applied yet (sync: a worker cannot run ahead)", at, version_));
  if (!std::isfinite(p.lr))
    throw Error(ErrorKind::kInput, fmt::format("{}: learning rate {} is not finite", at, p.lr));
  if (options_.mode == PsMode::sync)
    for (const auto& other : pending_)
      if (other && other->lr != p.lr)
        throw Error(ErrorKind::kInput, fmt::format("{}: learning rate {} differs from worker {}'s {} for the same step (sync: one "
                                                   "update per step)",
                                                   at, p.lr, other->worker, other->lr));
  const auto& mine = layout_->dense_of_shard(shard_);
  if (!p.dense.empty()) {
    if (p.dense.size() != mine.size())
      throw Error(ErrorKind::kInput, fmt::format("{}: {} dense gradients, this shard holds {} dense parameters", at,
                                                 p.dense.size(), mine.size()));
    for (std::size_t j = 0; j < mine.size(); ++j) {
      const Tensor& g = p.dense[j];
      if (!g.defined() || g.dtype() != DType::f32 || g.shape() != dense_[j].value.shape())
        throw Error(ErrorKind::kInput, fmt::format("{}: gradient of '{}' is {}, expected f32 {}", at, dense_[j].name,
                                                   g.defined() ? shape_str(g.shape()) : "undefined",
                                                   shape_str(dense_[j].value.shape())));
    }
  }
  if (!p.exact.empty()) {
    if (options_.mode != PsMode::sync || !p.dense.empty())
      throw Error(ErrorKind::kInput, fmt::format("{}: exact gradients go alone (no float ones) and only in sync mode", at));
    if (p.exact.size() != mine.size())
      throw Error(ErrorKind::kInput, fmt::format("{}: {} exact gradients, this shard holds {} dense parameters", at,
                                                 p.exact.size(), mine.size()));
    for (std::size_t j = 0; j < mine.size(); ++j) {
      const ExactGrad& g = p.exact[j];
      const std::size_t n = static_cast<std::size_t>(dense_[j].value.numel());
      if (g.buffers < 1 || g.sums.size() != n * static_cast<std::size_t>(g.buffers))
        throw Error(ErrorKind::kInput, fmt::format("{}: exact gradient of '{}' holds {} sums in {} buffers, expected {} per buffer",
                                                   at, dense_[j].name, g.sums.size(), g.buffers, n));
    }
  }
  if (options_.mode == PsMode::sync)
    for (const auto& other : pending_)
      if (other && other->exact.empty() != p.exact.empty())
        throw Error(ErrorKind::kInput, fmt::format("{}: worker {} pushed {} gradients for this step, this push {} (all or none "
                                                   "exact: train.deterministic must agree)",
                                                   at, other->worker, other->exact.empty() ? "float" : "exact",
                                                   p.exact.empty() ? "float" : "exact"));
  if (!p.tables.empty()) {
    if (p.tables.size() != static_cast<std::size_t>(layout_->num_tables()))
      throw Error(ErrorKind::kInput, fmt::format("{}: {} sparse gradients, there are {} tables", at, p.tables.size(),
                                                 layout_->num_tables()));
    for (int t = 0; t < layout_->num_tables(); ++t) {
      const SparseRows& s = p.tables[static_cast<std::size_t>(t)];
      check_ids(*layout_, shard_, t, s.ids, at);
      const Shape want{static_cast<std::int64_t>(s.ids.size()), layout_->table_dim(t)};
      if (s.ids.empty() && !s.rows.defined()) continue;
      if (!s.rows.defined() || s.rows.dtype() != DType::f32 || s.rows.shape() != want)
        throw Error(ErrorKind::kInput, fmt::format("{}: table '{}' gradient rows are {}, expected f32 {} ({} ids)", at,
                                                   layout_->table_spec(t).name,
                                                   s.rows.defined() ? shape_str(s.rows.shape()) : "undefined",
                                                   shape_str(want), s.ids.size()));
    }
  }
}

void PsShard::check_pull(const PsPullRequest& r) const {
  if (r.worker < 0 || r.worker >= options_.workers)
    throw Error(ErrorKind::kInput, fmt::format("ps shard {}: pull from worker {}, but there are {} workers (0..{})", shard_,
                                               r.worker, options_.workers, options_.workers - 1));
  const std::string at = where(r.worker, r.step, "pull");
  const std::int64_t next = pushed_[static_cast<std::size_t>(r.worker)];
  if (r.step < 0 || r.step > next)
    throw Error(ErrorKind::kInput, fmt::format("{}: the worker has pushed {} steps, so it may pull for steps 0..{}", at, next, next));
  if (!r.rows.empty()) {
    if (r.rows.size() != static_cast<std::size_t>(layout_->num_tables()))
      throw Error(ErrorKind::kInput, fmt::format("{}: rows for {} tables, there are {}", at, r.rows.size(), layout_->num_tables()));
    for (int t = 0; t < layout_->num_tables(); ++t) check_ids(*layout_, shard_, t, r.rows[static_cast<std::size_t>(t)], at);
  }
}

bool PsShard::admits(int worker, std::int64_t step) const {
  switch (options_.mode) {
    case PsMode::sync: return version_ >= step;
    case PsMode::async: return true;
    case PsMode::ssp: return *std::min_element(pushed_.begin(), pushed_.end()) >= step - options_.staleness;
  }
  return false;
}

void PsShard::sum(const std::vector<const PsPush*>& pushes) {
  // Exact: integer sums per buffer (any order gives the same), one rounding each, buffers added in order.
  const bool exact = std::any_of(pushes.begin(), pushes.end(), [](const PsPush* p) { return !p->exact.empty(); });
  for (std::size_t j = 0; exact && j < dense_.size(); ++j) {
    const std::size_t n = static_cast<std::size_t>(dense_[j].value.numel());
    int buffers = 1;
    for (const PsPush* p : pushes) buffers = std::max(buffers, p->exact[j].buffers);
    Tensor grad = Tensor::zeros(dense_[j].value.shape());
    float* g = grad.f32();
    std::vector<ExactSum> acc(n);
    for (int k = 0; k < buffers; ++k) {
      std::fill(acc.begin(), acc.end(), ExactSum{0});
      for (const PsPush* p : pushes)
        if (k < p->exact[j].buffers) {
          const ExactSum* x = p->exact[j].sums.data() + static_cast<std::size_t>(k) * n;
          for (std::size_t i = 0; i < n; ++i) acc[i] = exact_add(acc[i], x[i]);
        }
      for (std::size_t i = 0; i < n; ++i)
        if (acc[i] != 0) g[i] += from_exact(acc[i]);  // as Backend::flush_exact_grad, then the fold's float add
    }
    dense_[j].grad = grad;
  }
  // Dense: worker order, the first contribution copied (no 0 + x), the rest added.
  for (std::size_t j = 0; !exact && j < dense_.size(); ++j) {
    Tensor sum;
    for (const PsPush* p : pushes) {
      if (p->dense.empty()) continue;
      const Tensor& g = p->dense[j];
      if (!sum.defined()) {
        sum = g.clone();
        continue;
      }
      float* s = sum.f32();
      const float* x = g.f32();
      for (std::int64_t i = 0, n = sum.numel(); i < n; ++i) s[i] += x[i];
    }
    dense_[j].grad = sum;
  }
  table_sums_.assign(static_cast<std::size_t>(layout_->num_tables()), {});
  table_pushed_.assign(static_cast<std::size_t>(layout_->num_tables()),
                       std::any_of(pushes.begin(), pushes.end(), [](const PsPush* p) { return !p->tables.empty(); }));
  for (int t = 0; t < layout_->num_tables(); ++t) {
    const std::int64_t dim = layout_->table_dim(t);
    std::vector<const SparseRows*> parts;
    for (const PsPush* p : pushes)
      if (!p->tables.empty() && !p->tables[static_cast<std::size_t>(t)].ids.empty()) parts.push_back(&p->tables[static_cast<std::size_t>(t)]);
    if (parts.empty()) continue;
    std::vector<std::int64_t> ids;
    Tensor grad;
    if (parts.size() == 1) {
      ids = parts[0]->ids;
      grad = parts[0]->rows.clone();  // clipping may scale it
    } else {
      // Union of the rows, each summed over the workers that sent it, in worker order.
      std::map<std::int64_t, std::int64_t> slot;
      for (const SparseRows* s : parts)
        for (std::int64_t id : s->ids) slot.emplace(id, 0);
      std::int64_t k = 0;
      for (auto& [id, index] : slot) {
        index = k++;
        ids.push_back(id);
      }
      grad = Tensor::empty({k, dim});
      std::vector<bool> seen(static_cast<std::size_t>(k), false);
      float* g = grad.f32();
      for (const SparseRows* s : parts) {
        const float* x = s->rows.f32();
        for (std::size_t i = 0; i < s->ids.size(); ++i) {
          const std::int64_t at = slot[s->ids[i]];
          float* dst = g + at * dim;
          const float* src = x + static_cast<std::int64_t>(i) * dim;
          if (!seen[static_cast<std::size_t>(at)]) {
            std::copy(src, src + dim, dst);
            seen[static_cast<std::size_t>(at)] = true;
          } else {
            for (std::int64_t c = 0; c < dim; ++c) dst[c] += src[c];
          }
        }
      }
    }
    table_sums_[static_cast<std::size_t>(t)] = {std::move(ids), grad};
  }
}

void PsShard::apply(double lr, double coefficient) {
  std::vector<Param*> params;
  for (Param& p : dense_) params.push_back(&p);
  if (coefficient != 1.0) {  // as clip_grad_norm: scale_grads skips a coefficient that rounds to 1.0f
    scale_grads(params, coefficient);
    const float c = static_cast<float>(coefficient);
    if (c != 1.0f)
      for (auto& [ids, grad] : table_sums_)
        if (grad.defined())
          for (float& x : grad.span_f32()) x *= c;
  }
  dense_optimizer_->step(params, lr);
  for (Param& p : dense_) p.grad = Tensor();
  for (int t = 0; t < layout_->num_tables(); ++t) {
    auto& [ids, grad] = table_sums_[static_cast<std::size_t>(t)];
    if (ids.empty()) {
      // The table's step count is the whole table's, not this slice's (sparse_table.h: count_step).
      if (table_pushed_[static_cast<std::size_t>(t)]) tables_[static_cast<std::size_t>(t)].count_step();
      continue;
    }
    for (std::int64_t& id : ids) id = layout_->local_row(id);
    tables_[static_cast<std::size_t>(t)].apply(*table_optimizer_, ids, grad, lr);
  }
  table_sums_.clear();
  ++version_;
}

std::vector<double> PsShard::current_sum_squares() const {
  // One entry per parameter (0 for one without a gradient), so positions match dense_of_shard.
  std::vector<double> out;
  for (const Param& p : dense_) {
    std::vector<Param*> one{const_cast<Param*>(&p)};
    out.push_back(p.grad.defined() ? grad_sum_squares(one).at(0) : 0.0);
  }
  for (const auto& [ids, grad] : table_sums_) {
    double s = 0;
    if (grad.defined())
      for (float x : grad.span_f32()) s += static_cast<double>(x) * x;
    out.push_back(s);
  }
  return out;
}

std::optional<std::vector<double>> PsShard::norm(std::int64_t step, std::uint64_t ticket) {
  if (!options_.clip)
    throw Error(ErrorKind::kInput, fmt::format("ps shard {}: norm for step {}, but clipping is off", shard_, step));
  if (step != version_)
    throw Error(ErrorKind::kInput, fmt::format("ps shard {}: norm for step {}, but the shard is at step {}", shard_, step, version_));
  if (summed_) return current_sum_squares();
  norm_waiting_.push_back(ticket);
  return std::nullopt;
}

std::vector<std::uint64_t> PsShard::norms_released() { return std::exchange(norm_ready_, {}); }

std::vector<PsShard::Released> PsShard::clip(std::int64_t step, double coefficient) {
  if (!summed_ || step != version_)
    throw Error(ErrorKind::kInput, fmt::format("ps shard {}: clip for step {}, but {}", shard_, step,
                                               summed_ ? fmt::format("step {} is the one waiting", version_)
                                                       : std::string("no step is waiting for its clip coefficient")));
  if (!(coefficient >= 0.0))
    throw Error(ErrorKind::kInput, fmt::format("ps shard {}: clip coefficient {} for step {}", shard_, coefficient, step));
  summed_ = false;
  apply(summed_lr_, coefficient);
  return release();
}

std::vector<PsShard::Released> PsShard::push(PsPush p) {
  if (repeats_ok_ && p.worker >= 0 && p.worker < options_.workers && p.step < pushed_[static_cast<std::size_t>(p.worker)])
    return {};  // held already (a revived shard): acknowledged, not applied twice
  check_push(p);
  const std::size_t w = static_cast<std::size_t>(p.worker);
  if (options_.mode == PsMode::sync) {
    pending_[w] = std::move(p);
    ++pushed_[w];
    if (std::all_of(pending_.begin(), pending_.end(), [](const auto& x) { return x.has_value(); })) {
      std::vector<const PsPush*> ordered;
      for (const auto& x : pending_) ordered.push_back(&*x);
      const double lr = ordered[0]->lr < 0 ? lr_ : ordered[0]->lr;
      sum(ordered);
      for (auto& x : pending_) x.reset();
      if (options_.clip) {
        // The coefficient needs every shard's sums of squares: wait for clip().
        summed_ = true;
        summed_lr_ = lr;
        norm_ready_.insert(norm_ready_.end(), norm_waiting_.begin(), norm_waiting_.end());
        norm_waiting_.clear();
      } else {
        apply(lr);
      }
    }
  } else {
    sum({&p});
    apply(p.lr < 0 ? lr_ : p.lr);
    ++pushed_[w];
  }
  return release();
}

PsPullReply PsShard::answer(const PsPullRequest& r) const {
  PsPullReply reply;
  reply.shard = shard_;
  reply.version = version_;
  if (r.dense)
    for (const Param& p : dense_) reply.dense.push_back(p.value.clone());
  for (std::size_t t = 0; t < r.rows.size(); ++t) {
    std::vector<std::int64_t> local;
    local.reserve(r.rows[t].size());
    for (std::int64_t id : r.rows[t]) local.push_back(layout_->local_row(id));
    reply.tables.push_back(tables_[t].gather(local));
  }
  return reply;
}

std::optional<PsPullReply> PsShard::pull(const PsPullRequest& r, std::uint64_t ticket) {
  check_pull(r);
  if (admits(r.worker, r.step)) return answer(r);
  queue_.emplace_back(ticket, r);
  return std::nullopt;
}

std::vector<PsShard::Released> PsShard::release() {
  std::vector<Released> out;
  for (auto it = queue_.begin(); it != queue_.end();) {
    if (admits(it->second.worker, it->second.step)) {
      out.push_back({it->first, answer(it->second)});
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
  return out;
}

const Tensor& PsShard::dense_value(int d) const {
  const auto& mine = layout_->dense_of_shard(shard_);
  auto it = std::find(mine.begin(), mine.end(), d);
  TROUPE_CHECK(it != mine.end(), "dense parameter ", d, " is not on shard ", shard_);
  return dense_[static_cast<std::size_t>(it - mine.begin())].value;
}

PsShardState PsShard::save() const {
  // Pushes buffered for the next sync step and pulls queued for later steps are not applied yet: they
  // stay out of the state (worker processes run ahead of rank 0's step boundary).
  TROUPE_CHECK(!summed_, "ps shard ", shard_, " saved while step ", version_, " waits for its clip coefficient");
  PsShardState out;
  for (const Param& p : dense_) out.dense.push_back(p.value.clone());
  out.dense_optimizer = dense_optimizer_->state().clone();
  for (const SparseTable& t : tables_) out.tables.push_back(t.save());
  return out;
}

void PsShard::restore(PsShardState state, std::int64_t steps_done) {
  if (summed_ || !queue_.empty() || std::any_of(pending_.begin(), pending_.end(), [](const auto& p) { return p.has_value(); }))
    throw Error(ErrorKind::kInput, fmt::format("ps shard {}: restore while a step is in flight (restore between steps)", shard_));
  if (state.dense.size() != dense_.size() || state.tables.size() != tables_.size())
    throw Error(ErrorKind::kInput, fmt::format("ps shard {}: restore of {} dense parameters and {} tables, the shard holds {} "
                                               "and {}",
                                               shard_, state.dense.size(), state.tables.size(), dense_.size(), tables_.size()));
  for (std::size_t j = 0; j < dense_.size(); ++j) {
    const Tensor& v = state.dense[j];
    if (!v.defined() || v.dtype() != DType::f32 || v.shape() != dense_[j].value.shape())
      throw Error(ErrorKind::kInput, fmt::format("ps shard {}: restored '{}' is {}, expected f32 {}", shard_, dense_[j].name,
                                                 v.defined() ? shape_str(v.shape()) : "undefined",
                                                 shape_str(dense_[j].value.shape())));
  }
  for (std::size_t t = 0; t < tables_.size(); ++t) tables_[t].check(state.tables[t]);  // all before any change
  for (std::size_t j = 0; j < dense_.size(); ++j) dense_[j].value = std::move(state.dense[j]);
  dense_optimizer_->state() = std::move(state.dense_optimizer);
  for (std::size_t t = 0; t < tables_.size(); ++t) tables_[t].restore(std::move(state.tables[t]));
  pushed_.assign(static_cast<std::size_t>(options_.workers), steps_done);
  version_ = options_.mode == PsMode::sync ? steps_done : dense_optimizer_->state().step;
}

std::size_t PsShard::state_bytes() const {
  std::size_t total = dense_optimizer_->state_bytes();
  for (const SparseTable& t : tables_) total += t.state_bytes();
  return total;
}

}  // namespace troupe::ps
