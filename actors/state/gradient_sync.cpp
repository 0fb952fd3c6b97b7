// GradientSync: buckets, their hand-off to the exchange participant, and the ZeRO-1 shard exchange of one stage's replicas.
#include "actors/state/gradient_sync.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "runtime/comm/direct.h"
#include "runtime/comm/group_aborted.h"
#include "runtime/comm/ring.h"
#include "runtime/error.h"
#include "runtime/exact_sum.h"
#include "runtime/optim/clip_grad.h"

namespace troupe {

GradientSync::GradientSync(std::unique_ptr<comm::Transport> transport, GradientSyncOptions options)
    : transport_(std::move(transport)), options_(std::move(options)) {
  TROUPE_CHECK(transport_ != nullptr, "GradientSync needs a transport");
  allreduce_ = std::make_unique<comm::GroupAllreduce>(*transport_, options_.exchange, options_.local_group,
                                                   options_.replica_hosts);
  if (options_.compression.kind != comm::CompressionKind::kNone && options_.zero)
    throw Error(ErrorKind::kConfig, "comm.compression = " + options_.compression.text +
                                        " with parallel.zero = 1: ZeRO-1 reduce-scatters exact shards; use one or "
                                        "the other");
}

GradientSync::~GradientSync() = default;

int GradientSync::replica() const { return transport_->rank(); }
int GradientSync::replicas() const { return transport_->size(); }

void GradientSync::set_trace(TraceRecorder* trace, int) {
  trace_ = trace;
  // Its own track: bucket reductions overlap the stage's backward spans, which the trace should show
  // side by side rather than stacked on one row.
  track_ = trace->track("stage " + std::to_string(stage_) + " comm");
}

void GradientSync::bind(int stage, std::vector<Model*> chunks, Backend& backend) {
  stage_ = stage;
  chunks_ = std::move(chunks);
  backend_ = &backend;
  const std::size_t bucket_elements =
      std::max<std::size_t>(1, static_cast<std::size_t>(options_.bucket_mb * 1024.0 * 1024.0 / sizeof(float)));

  // Backward order: the last chunk's last layer first.
  buckets_of_layer_.assign(chunks_.size(), {});
  for (std::size_t c = chunks_.size(); c-- > 0;) {
    Model& m = *chunks_[c];
    buckets_of_layer_[c].assign(m.num_layers(), {});
    bool open = false;
    for (std::size_t l = m.num_layers(); l-- > 0;) {
      std::vector<Param*> ps = m.layer(l).params();
      std::vector<Tensor> bufs = m.grad_buffers(l);
      for (std::size_t i = 0; i < bufs.size(); ++i) {
        if (!open || buckets_.back().elements >= bucket_elements) {
          buckets_.push_back({});
          open = true;
        }
        Bucket& b = buckets_.back();
        b.items.push_back(items_.size());
        b.elements += static_cast<std::size_t>(bufs[i].numel());
        items_.push_back({static_cast<int>(c), l, bufs[i], i < ps.size() ? ps[i] : nullptr});
        auto& of_layer = buckets_of_layer_[c][l];
        if (of_layer.empty() || of_layer.back() != buckets_.size() - 1) {
          of_layer.push_back(buckets_.size() - 1);
          ++b.waiting_layers;
        }
      }
    }
  }

  // ZeRO ownership: whole parameters, largest first, each to the replica with the fewest elements so
  // far (ties: lowest rank, then parameter order) — the same on every replica.
  owner_of_item_.assign(items_.size(), -1);
  if (options_.zero) {
    std::vector<std::size_t> load(static_cast<std::size_t>(replicas()), 0);
    std::vector<std::size_t> by_size(items_.size());
    std::iota(by_size.begin(), by_size.end(), 0);
    std::stable_sort(by_size.begin(), by_size.end(),
                     [&](std::size_t a, std::size_t b) { return items_[a].grad.numel() > items_[b].grad.numel(); });
    for (std::size_t i : by_size) {
      if (!items_[i].param) continue;  // extra buffers are reduced everywhere
      const auto r = static_cast<std::size_t>(std::min_element(load.begin(), load.end()) - load.begin());
      owner_of_item_[i] = static_cast<int>(r);
      load[r] += static_cast<std::size_t>(items_[i].grad.numel());
    }
  }
  if (options_.compression.kind != comm::CompressionKind::kNone)
    for (const Bucket& b : buckets_) {
      compressors_.push_back(comm::make_compressor(options_.compression));
      std::vector<comm::BucketParam> layout;
      std::size_t at = 0;
      for (std::size_t i : b.items) {
        const Tensor& g = items_[i].grad;
        const auto rows = static_cast<std::size_t>(g.ndim() >= 1 ? g.dim(0) : 1);
        layout.push_back({at, rows, static_cast<std::size_t>(g.numel()) / std::max<std::size_t>(rows, 1)});
        at += static_cast<std::size_t>(g.numel());
      }
      layouts_.push_back(std::move(layout));
    }
  waiting_.assign(buckets_.size(), 0);
}

std::size_t GradientSync::bytes_of_elements(std::size_t n) const {
  return n * (backend_->deterministic() ? sizeof(ExactSum) : sizeof(float));
}

void GradientSync::rethrow_if_failed() {
  std::lock_guard lock(mu_);
  if (error_) std::rethrow_exception(error_);
}

void GradientSync::begin_step() {
  rethrow_if_failed();
  for (std::size_t b = 0; b < buckets_.size(); ++b) waiting_[b] = buckets_[b].waiting_layers;
  std::lock_guard lock(mu_);
  stats_ = {};
}

bool GradientSync::can_overlap() const { return replicas() > 1 && !options_.zero; }

void GradientSync::set_exchange(std::function<void(std::size_t bucket)> submit) {
  TROUPE_CHECK(can_overlap(), "stage ", stage_, ": no bucket is reduced during backward (one replica or ZeRO-1)");
  submit_ = std::move(submit);
}

void GradientSync::layer_ready(int chunk, std::size_t layer) {
  if (replicas() == 1 || options_.zero) return;
  for (std::size_t b : buckets_of_layer_.at(static_cast<std::size_t>(chunk)).at(layer)) {
    if (--waiting_[b] != 0) continue;
    if (!submit_) {
      reduce_bucket(b);
      ++enqueued_;
      ++reduced_;
      continue;
    }
    {
      std::lock_guard lock(mu_);
      ++enqueued_;
    }
    submit_(b);
  }
}

void GradientSync::reduce_submitted(std::size_t b) {
  bool failed = false;
  {
    std::lock_guard lock(mu_);
    failed = error_ != nullptr;
  }
  try {
    if (!failed) reduce_bucket(b);
  } catch (...) {
    std::lock_guard lock(mu_);
    if (!error_) error_ = std::current_exception();
  }
  {
    std::lock_guard lock(mu_);
    ++reduced_;
  }
  cv_.notify_all();
}

void GradientSync::abort(std::exception_ptr error) {
  {
    std::lock_guard lock(mu_);
    if (!error_) error_ = std::move(error);
  }
  cv_.notify_all();
}

void GradientSync::reform() {
  std::lock_guard lock(mu_);
  reduced_ = enqueued_ = 0;
  if (!error_) return;
  // Only the abort is forgotten: a failure of its own (its gradient-exchange actor is gone) stays, so
  // the re-run fails at once instead of handing buckets to nobody.
  try {
    std::rethrow_exception(error_);
  } catch (const comm::GroupAborted&) {
    error_ = nullptr;
  } catch (...) {
  }
}

void GradientSync::reduce_bucket(std::size_t b) {
  const Bucket& bucket = buckets_[b];
  const double begin = trace_ ? trace_->now_us() : 0.0;
  const bool exact = backend_->deterministic();
  std::size_t compressed_sent = SIZE_MAX;
  if (exact) {
    std::vector<ExactSum> flat(bucket.elements);
    std::size_t at = 0;
    for (std::size_t i : bucket.items) {
      std::span<ExactSum> acc = backend_->exact_grad(items_[i].grad);
      std::copy(acc.begin(), acc.end(), flat.begin() + static_cast<std::ptrdiff_t>(at));
      at += acc.size();
    }
    allreduce_->sum(std::span<ExactSum>(flat));
    at = 0;
    for (std::size_t i : bucket.items) {
      std::span<ExactSum> acc = backend_->exact_grad(items_[i].grad);
      std::copy(flat.begin() + static_cast<std::ptrdiff_t>(at), flat.begin() + static_cast<std::ptrdiff_t>(at + acc.size()),
                acc.begin());
      at += acc.size();
    }
  } else {
    std::vector<float> flat(bucket.elements);
    std::size_t at = 0;
    for (std::size_t i : bucket.items) {
      const Tensor& g = items_[i].grad;
      std::memcpy(flat.data() + at, g.f32(), static_cast<std::size_t>(g.numel()) * sizeof(float));
      at += static_cast<std::size_t>(g.numel());
    }
    if (!compressors_.empty()) {
      const comm::CompressStats c = compressors_[b]->allreduce(*transport_, flat, layouts_[b]);
      compressed_sent = c.bytes_sent;
    } else {
      allreduce_->sum(std::span<float>(flat));
    }
    at = 0;
    for (std::size_t i : bucket.items) {
      const Tensor& g = items_[i].grad;
      std::memcpy(g.f32(), flat.data() + at, static_cast<std::size_t>(g.numel()) * sizeof(float));
      at += static_cast<std::size_t>(g.numel());
    }
  }
  const std::size_t wire = allreduce_->bytes_sent(bytes_of_elements(bucket.elements), exact);
  {
    std::lock_guard lock(mu_);
    stats_.bytes_sent += compressed_sent == SIZE_MAX ? wire : compressed_sent;
    stats_.bytes_uncompressed += wire;
    ++stats_.buckets;
  }
  if (trace_) trace_->span(track_, "allreduce bucket " + std::to_string(b), "comm", begin, trace_->now_us());
}

void GradientSync::finish_backward() {
  if (replicas() == 1) return;
  if (options_.zero) {
    run_zero_reduce();
    return;
  }
  // Buckets whose layers never reported (a chunk with no backward this step cannot happen, but a
  // caller without per-layer hooks may skip them): reduce them now, in bucket order.
  {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return reduced_ == enqueued_ || error_; });
  }
  rethrow_if_failed();
  for (std::size_t b = 0; b < buckets_.size(); ++b)
    if (waiting_[b] != 0) {
      waiting_[b] = 0;
      reduce_bucket(b);
      ++enqueued_;
      ++reduced_;
    }
  std::fill(waiting_.begin(), waiting_.end(), 0);
}

namespace {

// Flattens items in the order given into `flat`, and returns each owner's contiguous range.
template <class T, class Get>
std::vector<comm::ChunkRange> pack_by_owner(const std::vector<std::size_t>& order, const std::vector<int>& owner,
                                            int replicas, std::vector<T>& flat, Get span_of) {
  std::vector<comm::ChunkRange> ranges(static_cast<std::size_t>(replicas));
  std::size_t at = 0;
  for (int r = 0; r < replicas; ++r) {
    ranges[static_cast<std::size_t>(r)].offset = at;
    for (std::size_t i : order)
      if (owner[i] == r) {
        auto s = span_of(i);
        flat.insert(flat.end(), s.begin(), s.end());
        at += s.size();
      }
    ranges[static_cast<std::size_t>(r)].length = at - ranges[static_cast<std::size_t>(r)].offset;
  }
  return ranges;
}

template <class T, class Get>
void unpack_by_owner(const std::vector<std::size_t>& order, const std::vector<int>& owner, int replicas,
                     const std::vector<T>& flat, Get span_of) {
  std::size_t at = 0;
  for (int r = 0; r < replicas; ++r)
    for (std::size_t i : order)
      if (owner[i] == r) {
        auto s = span_of(i);
        std::copy(flat.begin() + static_cast<std::ptrdiff_t>(at), flat.begin() + static_cast<std::ptrdiff_t>(at + s.size()),
                  s.begin());
        at += s.size();
      }
}

}  // namespace

void GradientSync::run_zero_reduce() {
  const double begin = trace_ ? trace_->now_us() : 0.0;
  const int n = replicas();
  std::vector<std::size_t> order(items_.size());
  std::iota(order.begin(), order.end(), 0);
  // Extra buffers (owner -1) are summed everywhere: reduce-scatter them over equal ranges, then all-gather.
  std::vector<int> owner = owner_of_item_;
  const bool exact = backend_->deterministic();
  auto run = [&](auto tag) {
    using T = decltype(tag);
    auto span_of = [&](std::size_t i) {
      if constexpr (std::is_same_v<T, ExactSum>) return backend_->exact_grad(items_[i].grad);
      else return std::span<float>(items_[i].grad.f32(), static_cast<std::size_t>(items_[i].grad.numel()));
    };
    std::vector<T> flat;
    const auto ranges = pack_by_owner<T>(order, owner, n, flat, span_of);
    comm::reduce_scatter_direct<T>(*transport_, flat, ranges);
    unpack_by_owner<T>(order, owner, n, flat, span_of);
    // The extra buffers: every replica needs their full sum.
    std::vector<T> extra;
    for (std::size_t i : order)
      if (owner[i] < 0) {
        auto s = span_of(i);
        extra.insert(extra.end(), s.begin(), s.end());
      }
    if (!extra.empty()) {
      const auto er = comm::equal_ranges(extra.size(), n);
      comm::reduce_scatter_direct<T>(*transport_, extra, er);
      comm::all_gather_direct<T>(*transport_, extra, er);
      std::size_t at = 0;
      for (std::size_t i : order)
        if (owner[i] < 0) {
          auto s = span_of(i);
          std::copy(extra.begin() + static_cast<std::ptrdiff_t>(at), extra.begin() + static_cast<std::ptrdiff_t>(at + s.size()),
                    s.begin());
          at += s.size();
        }
    }
    std::lock_guard lock(mu_);
    const std::size_t total = flat.size() * sizeof(T), ex = extra.size() * sizeof(T);
    stats_.bytes_sent += total * static_cast<std::size_t>(n - 1) / static_cast<std::size_t>(n) +
                         2 * ex * static_cast<std::size_t>(n - 1) / static_cast<std::size_t>(n);
    stats_.bytes_uncompressed = stats_.bytes_sent;
    ++stats_.buckets;
  };
  if (exact) run(ExactSum{});
  else run(float{});
  if (trace_) trace_->span(track_, "reduce-scatter (ZeRO-1)", "comm", begin, trace_->now_us());
}

std::vector<std::vector<double>> GradientSync::sum_squares(std::vector<std::vector<double>> local) {
  TROUPE_CHECK(local.size() == chunks_.size(), local.size(), " sums for ", chunks_.size(), " chunks");
  std::vector<std::vector<double>> out = std::move(local);
  if (!options_.zero || replicas() == 1) return out;
  // Only owners hold reduced gradients: each replica contributes its own parameters' sums, zeros for
  // the rest; adding zeros changes no bits, so the result is the replicated one.
  std::vector<double> flat;
  for (std::size_t c = 0; c < chunks_.size(); ++c) {
    const auto& ps = chunks_[c]->params().all();
    for (std::size_t j = 0; j < ps.size(); ++j) {
      bool mine = false;
      for (std::size_t i = 0; i < items_.size(); ++i)
        if (items_[i].param == ps[j]) mine = owner_of_item_[i] == replica();
      flat.push_back(mine ? out[c][j] : 0.0);
    }
  }
  const auto ranges = comm::equal_ranges(flat.size(), replicas());
  comm::reduce_scatter_direct<double>(*transport_, flat, ranges);
  comm::all_gather_direct<double>(*transport_, flat, ranges);
  std::size_t at = 0;
  for (auto& chunk : out)
    for (double& v : chunk) v = flat[at++];
  return out;
}

std::vector<Param*> GradientSync::owned(const std::vector<Param*>& all) const {
  if (!options_.zero || replicas() == 1) return all;
  std::vector<Param*> mine;
  for (Param* p : all)
    for (std::size_t i = 0; i < items_.size(); ++i)
      if (items_[i].param == p && owner_of_item_[i] == replica()) mine.push_back(p);
  return mine;
}

std::size_t GradientSync::owned_param_count() const {
  std::size_t n = 0;
  for (std::size_t i = 0; i < items_.size(); ++i)
    if (items_[i].param && (!options_.zero || owner_of_item_[i] == replica()))
      n += static_cast<std::size_t>(items_[i].grad.numel());
  return n;
}

void GradientSync::params_updated() {
  if (!options_.zero || replicas() == 1) return;
  const double begin = trace_ ? trace_->now_us() : 0.0;
  std::vector<std::size_t> order(items_.size());
  std::iota(order.begin(), order.end(), 0);
  auto span_of = [&](std::size_t i) {
    const Tensor& v = items_[i].param->value;
    return std::span<float>(v.f32(), static_cast<std::size_t>(v.numel()));
  };
  std::vector<float> flat;
  const auto ranges = pack_by_owner<float>(order, owner_of_item_, replicas(), flat, span_of);
  comm::all_gather_direct<float>(*transport_, flat, ranges);
  unpack_by_owner<float>(order, owner_of_item_, replicas(), flat, span_of);
  {
    std::lock_guard lock(mu_);
    stats_.bytes_sent += static_cast<std::size_t>(replicas() - 1) * ranges[static_cast<std::size_t>(replica())].length * sizeof(float);
    stats_.bytes_uncompressed = stats_.bytes_sent;
  }
  if (trace_) trace_->span(track_, "all-gather parameters (ZeRO-1)", "comm", begin, trace_->now_us());
}

std::vector<float> GradientSync::all_gather_losses(const std::vector<float>& local) {
  const int n = replicas();
  std::vector<float> all(local.size() * static_cast<std::size_t>(n));
  std::copy(local.begin(), local.end(), all.begin() + static_cast<std::ptrdiff_t>(local.size() * static_cast<std::size_t>(replica())));
  if (n == 1) return all;
  std::vector<comm::ChunkRange> ranges;
  for (int r = 0; r < n; ++r) ranges.push_back({local.size() * static_cast<std::size_t>(r), local.size()});
  comm::all_gather_direct<float>(*transport_, all, ranges);
  return all;
}

}  // namespace troupe
