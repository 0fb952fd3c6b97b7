// Owns GradientSync: one pipeline stage's side of data parallelism — its gradient buckets, their reduction across the stage's replicas (overlapping backward), ZeRO-1 sharding of the optimizer update.
//
// Every replica of a stage holds the same model chunks and runs the same program, so all of them meet
// the same gradient buffers in the same order. A GradientSync is attached to each replica's StageWorker
// with a Transport whose ranks are that stage's replicas (rank = replica index), and:
//
//  * buckets: the stage's gradient buffers (parameters' gradients, plus extra buffers such as the LM
//    head's tied-weight gradient) in backward order — last layer first — cut into buckets of about
//    comm.bucket_mb MiB that never span model chunks. When the last micro-batch's backward has passed
//    every layer of a bucket, the bucket goes to this stage's gradient-exchange participant — an actor
//    of its own (actors/exchange_actor.h), set with set_exchange() — which reduces it while backward
//    goes on with earlier layers (the trace shows these spans on the "comm" track). Without one (the
//    in-thread reference driver), the bucket is reduced at once on the stage's thread.
//    Earlier micro-batches only accumulate: no communication until the last one.
//  * reduction: the sum over replicas (each replica scales its loss by 1 / the global batch's loss
//    terms, so the sum is the single-device gradient). ring: comm::allreduce_ring; alltoall: direct
//    reduce-scatter + all-gather (runtime/comm/direct.h). In deterministic mode the buckets carry the
//    backend's exact sums (runtime/exact_sum.h) instead of floats, so the result is bitwise the
//    single-device gradient whatever the algorithm. With comm.compression the float bucket goes through
//    the compressor instead (lossy; not allowed in deterministic mode).
//  * ZeRO-1 (parallel.zero = 1): each parameter is owned by one replica (whole tensors, balanced by
//    size). At the end of backward, gradients are reduce-scattered to their owners; only owners clip
//    and update their parameters, so optimizer state lives on the owner alone (1/D of it per replica);
//    then updated values are all-gathered. Extra buffers are allreduced (every replica folds them).
//    Per-parameter sums of squares come from the owners, so the global norm, hence clipping, is bitwise
//    the replicated one.
//
// Errors: a failing collective (peer gone, timeout, wrong size) is rethrown by finish_backward() — or by
// whichever later call meets it — as troupe::Error(kIo) naming the stage and the peer.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <functional>
#include <vector>

#include "models/model.h"
#include "runtime/comm/compression/compressor.h"
#include "runtime/comm/group_allreduce.h"
#include "runtime/comm/local_group.h"
#include "runtime/comm/transport.h"
#include "runtime/trace/trace.h"

namespace troupe {

struct GradientSyncOptions {
  GradientExchange exchange = GradientExchange::ring;  // ring | alltoall (ps has its own trainer)
  bool zero = false;                 // ZeRO-1
  double bucket_mb = 4.0;
  comm::CompressionSpec compression;  // comm.compression, parsed
  // Replicas that are threads of one process may share a LocalGroup: ring-exchange buckets are then
  // reduced by reference (runtime/comm/local_group.h) instead of as copied messages. Rank = replica.
  std::shared_ptr<comm::LocalGroup> local_group;
  // Each replica's host (comm::host_indices of the Topology's places), by replica; empty: one host. With
  // several hosts holding several replicas each, buckets are summed hierarchically (runtime/comm/hierarchical.h).
  std::vector<int> replica_hosts;
};

// Bytes this replica moved for one step (what the training log reports).
struct CommStats {
  std::size_t bytes_sent = 0;          // on the wire, after compression
  std::size_t bytes_uncompressed = 0;  // what the same exchange would send uncompressed
  int buckets = 0;
};

class GradientSync {
 public:
  GradientSync(std::unique_ptr<comm::Transport> transport, GradientSyncOptions options);
  ~GradientSync();
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  // Called once by the StageWorker it is attached to: the stage's chunks (in chunk order) and backend.
  void bind(int stage, std::vector<Model*> chunks, Backend& backend);
  // Records bucket reductions on a track of its own, "stage s comm" (the stage's track is unused).
  void set_trace(TraceRecorder* trace, int stage_track);

  // --- the exchange participant (an actor shell drives these) --------------------------------------
  // Whether buckets can be reduced during backward at all (more than one replica, no ZeRO-1: ZeRO
  // reduce-scatters the whole stage once backward is done).
  bool can_overlap() const;
  // From now on a ready bucket is handed to `submit` instead of being reduced on the stage's thread;
  // whoever receives it calls reduce_submitted(b), in submission order, on one thread.
  void set_exchange(std::function<void(std::size_t bucket)> submit);
  // Reduces submitted bucket `b` (after a failure: only counts it); a failure is kept for the stage's
  // thread, which rethrows it from finish_backward() or the next call.
  void reduce_submitted(std::size_t b);
  // The exchange participant is gone: waiting and later calls fail with `error` instead of waiting
  // forever for buckets nobody will reduce.
  void abort(std::exception_ptr error);
  // The step was abandoned on every replica and its group reformed (actors/data_parallel.h): forgets the
  // abandoned step's buckets and its abort (a comm::GroupAborted), so that the re-run starts clean; any
  // other failure (abort() by a dead exchange participant) stays. Only while no bucket is being reduced.
  void reform();

  int stage() const { return stage_; }
  int replica() const;
  int replicas() const;

  // --- during a step, from the stage's thread ------------------------------------------------------
  // A step starts: every bucket waits for all its layers again.
  void begin_step();
  // The last micro-batch's backward has passed layer `layer` of chunk `chunk`.
  void layer_ready(int chunk, std::size_t layer);
  // Every gradient of the stage is final: reduces what is left, waits for the communication thread.
  void finish_backward();
  // Per-parameter gradient sums of squares, chunk by chunk, equal on every replica (after folding),
  // from this replica's own (`local`: what grad_sum_squares gives for each chunk's parameters).
  std::vector<std::vector<double>> sum_squares(std::vector<std::vector<double>> local);
  // The parameters this replica updates: all of them, or its ZeRO shard.
  std::vector<Param*> owned(const std::vector<Param*>& all) const;
  // After the owners' update: every replica's parameter values equal again (ZeRO all-gather).
  void params_updated();
  // This replica's per-token losses -> every replica's, concatenated in replica order.
  std::vector<float> all_gather_losses(const std::vector<float>& local);

  const CommStats& last_step_stats() const { return stats_; }
  // Parameters of this stage and replica, and how they are owned: for reports (ZeRO: 1/D each).
  std::size_t owned_param_count() const;

 private:
  struct Item {
    int chunk = 0;
    std::size_t layer = 0;
    Tensor grad;
    Param* param = nullptr;  // null for an extra buffer (a tied weight's gradient)
  };
  struct Bucket {
    std::vector<std::size_t> items;
    std::size_t elements = 0;
    int waiting_layers = 0;
  };

  void reduce_bucket(std::size_t b);
  void run_zero_reduce();
  void rethrow_if_failed();
  std::size_t bytes_of_elements(std::size_t n) const;

  std::unique_ptr<comm::Transport> transport_;
  std::unique_ptr<comm::GroupAllreduce> allreduce_;  // the bucket sum, its algorithm chosen once
  GradientSyncOptions options_;
  int stage_ = 0;
  Backend* backend_ = nullptr;
  std::vector<Model*> chunks_;
  std::vector<Item> items_;
  std::vector<Bucket> buckets_;
  std::vector<std::vector<std::vector<std::size_t>>> buckets_of_layer_;  // [chunk][layer] -> buckets
  std::vector<int> owner_of_item_;                                      // ZeRO: replica owning each item
  std::vector<int> waiting_;                                            // per bucket, this step
  // comm.compression: per bucket, its compressor (error-feedback state) and parameter layout.
  std::vector<std::unique_ptr<comm::GradientCompressor>> compressors_;
  std::vector<std::vector<comm::BucketParam>> layouts_;
  CommStats stats_;
  TraceRecorder* trace_ = nullptr;
  int track_ = 0;

  std::function<void(std::size_t)> submit_;  // the exchange participant; empty: reduce in place
  std::mutex mu_;  // guards what the exchange participant and the stage's thread share, below
  std::condition_variable cv_;
  std::size_t reduced_ = 0, enqueued_ = 0;
  std::exception_ptr error_;
};

}  // namespace troupe
