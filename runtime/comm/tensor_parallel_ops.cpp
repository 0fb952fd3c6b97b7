// The tensor group's operations: one-round reduce-scatter and all-gather (every rank sends each peer its chunk), and f, g, gather, scatter made of them.
#include "runtime/comm/tensor_parallel_ops.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "runtime/comm/ring.h"
#include "runtime/error.h"

namespace troupe::comm {

namespace {

// Chunk r of `whole` summed over ranks into `out` (chunk r's length), in rank order. combine(acc, x)
// folds one rank's value in; rank 0's chunk is the starting value.
template <class T, class Combine>
void reduce_scatter(TensorGroup group, std::span<const T> whole, std::span<T> out, Combine combine) {
  Transport& t = *group.transport;
  const int n = t.size(), me = t.rank();
  const ChunkRange mine = ring_chunk(whole.size(), n, me);
  TROUPE_CHECK(out.size() == mine.length, "reduce-scatter output of ", out.size(), " for a chunk of ", mine.length);
  for (int peer = 0; peer < n; ++peer) {
    if (peer == me) continue;
    const ChunkRange c = ring_chunk(whole.size(), n, peer);
    if (c.length) t.send(peer, kTensorReduceScatterTag, std::as_bytes(whole.subspan(c.offset, c.length)));
  }
  if (mine.length == 0) return;
  std::vector<T> incoming(mine.length);
  for (int from = 0; from < n; ++from) {
    const T* src = whole.data() + mine.offset;
    if (from != me) {
      t.recv(from, kTensorReduceScatterTag, std::as_writable_bytes(std::span<T>(incoming)));
      src = incoming.data();
    }
    if (from == 0) {
      std::copy(src, src + mine.length, out.begin());
    } else {
      for (std::size_t i = 0; i < mine.length; ++i) out[i] = combine(out[i], src[i]);
    }
  }
}

template <class T>
void all_gather(TensorGroup group, std::span<const T> local, std::span<T> whole) {
  Transport& t = *group.transport;
  const int n = t.size(), me = t.rank();
  const ChunkRange mine = ring_chunk(whole.size(), n, me);
  TROUPE_CHECK(local.size() == mine.length, "all-gather input of ", local.size(), " for a chunk of ", mine.length);
  for (int peer = 0; peer < n; ++peer)
    if (peer != me && mine.length) t.send(peer, kTensorAllGatherTag, std::as_bytes(local));
  if (whole.data() + mine.offset != local.data()) std::copy(local.begin(), local.end(), whole.begin() + mine.offset);
  for (int from = 0; from < n; ++from) {
    const ChunkRange c = ring_chunk(whole.size(), n, from);
    if (from != me && c.length) t.recv(from, kTensorAllGatherTag, std::as_writable_bytes(whole.subspan(c.offset, c.length)));
  }
}

template <class T, class Combine>
void allreduce(TensorGroup group, std::span<T> data, Combine combine) {
  if (!group.split() || data.empty()) return;
  const ChunkRange mine = ring_chunk(data.size(), group.size(), group.rank());
  std::vector<T> reduced(mine.length);
  reduce_scatter<T>(group, data, reduced, combine);
  all_gather<T>(group, reduced, data);
}

float plus(float a, float b) { return a + b; }

// Reorders between the sequence split's two layouts of `samples` x T runs of `per` values each: by
// sample ([samples, T, per], the activations' own order) and by shard ([T, samples, per], the order in
// which shard r's part is chunk r of the buffer, as the collectives above cut it).
template <class T>
void by_shard_from_by_sample(std::span<const T> by_sample, std::span<T> by_shard, std::int64_t samples, int shards) {
  const std::size_t per = by_sample.size() / static_cast<std::size_t>(samples * shards);
  for (std::int64_t b = 0; b < samples; ++b)
    for (int r = 0; r < shards; ++r)
      std::copy_n(by_sample.data() + (b * shards + r) * per, per, by_shard.data() + (r * samples + b) * per);
}
template <class T>
void by_sample_from_by_shard(std::span<const T> by_shard, std::span<T> by_sample, std::int64_t samples, int shards) {
  const std::size_t per = by_sample.size() / static_cast<std::size_t>(samples * shards);
  for (std::int64_t b = 0; b < samples; ++b)
    for (int r = 0; r < shards; ++r)
      std::copy_n(by_shard.data() + (r * samples + b) * per, per, by_sample.data() + (b * shards + r) * per);
}

void check_sequence(TensorGroup group, std::size_t whole, std::size_t local, std::int64_t samples) {
  const std::size_t runs = static_cast<std::size_t>(samples) * static_cast<std::size_t>(group.size());
  TROUPE_CHECK(samples > 0 && whole % runs == 0 && local * static_cast<std::size_t>(group.size()) == whole,
               "sequence split of ", whole, " values over ", samples, " samples and ", group.size(), " shards into ",
               local);
}

template <class T, class Combine>
void reduce_scatter_seq(TensorGroup group, std::span<const T> whole, std::span<T> local, std::int64_t samples,
                        Combine combine) {
  check_sequence(group, whole.size(), local.size(), samples);
  if (!group.split()) {
    std::copy(whole.begin(), whole.end(), local.begin());
    return;
  }
  if (samples == 1) return reduce_scatter<T>(group, whole, local, combine);
  std::vector<T> by_shard(whole.size());
  by_shard_from_by_sample<T>(whole, by_shard, samples, group.size());
  reduce_scatter<T>(group, by_shard, local, combine);
}

}  // namespace

void allreduce_sum(TensorGroup group, std::span<float> data) { allreduce(group, data, plus); }
void allreduce_sum(TensorGroup group, std::span<double> data) {
  allreduce(group, data, [](double a, double b) { return a + b; });
}
void allreduce_sum(TensorGroup group, std::span<ExactSum> data) { allreduce(group, data, exact_add); }
void allreduce_max(TensorGroup group, std::span<float> data) {
  allreduce(group, data, [](float a, float b) { return std::max(a, b); });
}

void reduce_scatter_rows(TensorGroup group, std::span<const float> whole, std::span<float> local) {
  if (!group.split()) {
    TROUPE_CHECK(local.size() == whole.size(), "reduce-scatter of ", whole.size(), " into ", local.size());
    std::copy(whole.begin(), whole.end(), local.begin());
    return;
  }
  reduce_scatter<float>(group, whole, local, plus);
}

void all_gather_rows(TensorGroup group, std::span<const float> local, std::span<float> whole) {
  if (!group.split()) {
    TROUPE_CHECK(local.size() == whole.size(), "all-gather of ", local.size(), " into ", whole.size());
    if (local.data() != whole.data()) std::copy(local.begin(), local.end(), whole.begin());
    return;
  }
  all_gather<float>(group, local, whole);
}

void reduce_scatter_sequence(TensorGroup group, std::span<const float> whole, std::span<float> local,
                             std::int64_t samples) {
  reduce_scatter_seq<float>(group, whole, local, samples, plus);
}
void reduce_scatter_sequence(TensorGroup group, std::span<const ExactSum> whole, std::span<ExactSum> local,
                             std::int64_t samples) {
  reduce_scatter_seq<ExactSum>(group, whole, local, samples, exact_add);
}

void all_gather_sequence(TensorGroup group, std::span<const float> local, std::span<float> whole,
                         std::int64_t samples) {
  check_sequence(group, whole.size(), local.size(), samples);
  if (!group.split() || samples == 1) return all_gather_rows(group, local, whole);
  std::vector<float> by_shard(whole.size());
  all_gather<float>(group, local, by_shard);
  by_sample_from_by_shard<float>(by_shard, whole, samples, group.size());
}

void f_backward(TensorGroup group, std::span<float> grad) { allreduce_sum(group, grad); }
void g_forward(TensorGroup group, std::span<float> y) { allreduce_sum(group, y); }
void gather_forward(TensorGroup group, std::span<const float> local, std::span<float> whole, std::int64_t samples) {
  all_gather_sequence(group, local, whole, samples);
}
void gather_backward(TensorGroup group, std::span<float> whole, std::span<float> local, std::int64_t samples) {
  reduce_scatter_sequence(group, whole, local, samples);
}
void scatter_forward(TensorGroup group, std::span<float> whole, std::span<float> local, std::int64_t samples) {
  reduce_scatter_sequence(group, whole, local, samples);
}
void scatter_backward(TensorGroup group, std::span<const float> local, std::span<float> whole, std::int64_t samples) {
  all_gather_sequence(group, local, whole, samples);
}

void g_forward_exact(TensorGroup group, std::span<ExactSum> partial, std::span<float> out) {
  TROUPE_CHECK(partial.size() == out.size(), "exact sum of ", partial.size(), " into ", out.size());
  allreduce_sum(group, partial);
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = from_exact(partial[i]);
}
void f_backward_exact(TensorGroup group, std::span<ExactSum> partial, std::span<float> out) {
  g_forward_exact(group, partial, out);
}
void scatter_forward_exact(TensorGroup group, std::span<const ExactSum> partial, std::span<float> out,
                           std::int64_t samples) {
  std::vector<ExactSum> mine(out.size());
  reduce_scatter_sequence(group, partial, mine, samples);
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = from_exact(mine[i]);
}
void gather_backward_exact(TensorGroup group, std::span<const ExactSum> partial, std::span<float> out,
                           std::int64_t samples) {
  scatter_forward_exact(group, partial, out, samples);
}

std::size_t reduce_scatter_bytes(std::size_t bytes, int ranks) {
  return ranks <= 1 ? 0 : bytes / static_cast<std::size_t>(ranks) * static_cast<std::size_t>(ranks - 1);
}
std::size_t all_gather_bytes(std::size_t bytes, int ranks) { return reduce_scatter_bytes(bytes, ranks); }
std::size_t allreduce_bytes(std::size_t bytes, int ranks) { return 2 * reduce_scatter_bytes(bytes, ranks); }

Shape gather_shape(const Param& param) {
  Shape whole = param.value.shape();
  if (param.split.split()) whole[static_cast<std::size_t>(param.split.dim)] *= param.split.shards;
  return whole;
}

Tensor gather_whole(TensorGroup group, const Param& param) {
  if (!param.split.split()) return param.value.clone();
  TROUPE_CHECK(param.split.shards == group.size() && param.split.index == group.rank(), param.name,
               ": shard ", param.split.index, " of ", param.split.shards, " in a group of ", group.size());
  const std::int64_t n = param.value.numel(), tp = group.size();
  Tensor by_shard = Tensor::empty({tp * n});
  all_gather_rows(group, param.value.span_f32(), by_shard.span_f32());
  Tensor out = Tensor::empty(gather_shape(param));
  for (int t = 0; t < tp; ++t) {
    TensorSplit s = param.split;
    s.index = t;
    place_shard(out, by_shard.slice(t * n, (t + 1) * n).view(param.value.shape()), s);
  }
  return out;
}

}  // namespace troupe::comm
