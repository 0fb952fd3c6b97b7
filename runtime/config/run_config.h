// Owns RunConfig: every setting of a training run, as one validated value (see config_schema.h for keys).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/comm/compression/compression_spec.h"
#include "runtime/config/choices.h"
#include "runtime/device.h"

namespace troupe {

struct ModelConfig {
  ModelKind kind = ModelKind::gpt;  // gpt | mlp | cnn | lstm | deepfm
  int n_layer = 4;
  int n_head = 4;
  int n_embd = 256;
  int block_size = 128;
  int vocab_size = 256;               // bytes
  std::vector<int> mlp_hidden = {1024, 1024};
  // cnn: stage s has cnn_blocks[s] residual blocks of cnn_channels[s] channels; every stage after the
  // first halves the resolution (its first block has stride 2). The stem has cnn_channels[0] channels.
  std::vector<int> cnn_channels = {16, 32, 64};
  std::vector<int> cnn_blocks = {1, 1, 1};
  int cnn_stem_stride = 1;  // 2: the stem's conv halves the resolution (28x28 -> 14x14) before the stages
  // cnn under data parallelism: batch-norm statistics over the whole batch (every replica's share, as
  // torch.nn.SyncBatchNorm) instead of each replica's own share (as PyTorch DDP). Not a property of the
  // weights: weight files do not record it.
  bool sync_batchnorm = false;
  // deepfm (models/wide_deep.h): each categorical field's embedding width, the deep part's hidden widths,
  // the rows of the first-order table the field ids are hashed into, and the ids of the click log's
  // largest field (its embedding table's rows, as vocab_size is the GPT's; the other five fields have
  // 1/10, 3/100, 1/100, 1/1000 and 1/10000 as many).
  std::int64_t max_cardinality = 1000000;
  int embed_dim = 8;
  std::vector<int> deep_hidden = {64, 32};
  std::int64_t hashed_rows = 1 << 20;

  friend bool operator==(const ModelConfig&, const ModelConfig&) = default;
};

struct DataConfig {
  std::string path;                   // empty: the built-in corpus (gpt, lstm) / Fashion-MNIST dir (mlp, cnn)
  DataOrder order = DataOrder::shuffled;
  // deepfm: the held-out samples of the synthetic click log (runtime/data/click_log.h) each evaluation scores.
  std::int64_t test_samples = 32768;

  friend bool operator==(const DataConfig&, const DataConfig&) = default;
};

struct TrainConfig {
  int batch_size = 16;
  std::int64_t steps = 500;
  std::uint64_t seed = 1337;
  int threads = 0;                    // 0: all hardware threads
  double grad_clip = 1.0;             // 0: off
  LrScheduleKind lr_schedule = LrScheduleKind::constant;
  std::int64_t warmup_steps = 0;
  double min_lr = 0.0;                // cosine floor
  std::int64_t eval_every = 100;      // 0: only at the end
  int eval_batches = 8;
  bool deterministic = false;
  Precision precision = Precision::f32;  // the matrix products' operands (runtime/cpu/bf16_gemm.h)
  Device device = Device::cpu();      // parsed from "cpu", "cuda" (GPU 0) or "cuda:N" (config_schema.cpp)
  NonfiniteAction on_nonfinite = NonfiniteAction::stop;  // a NaN/Inf loss or gradient: end the run, or skip the step
  // Checkpoints (runtime/checkpoint/): where, how often (steps; 0: at the end and on a stop signal only),
  // and how many to keep (the newest).
  std::string checkpoint_dir;                // "": no checkpoints
  std::int64_t checkpoint_every = 0;
  int keep_checkpoints = 3;

  friend bool operator==(const TrainConfig&, const TrainConfig&) = default;
};

struct OptimConfig {
  OptimKind kind = OptimKind::adamw;
  // Unset values take torch.optim's default for the chosen kind (e.g. lr 1e-3 for adamw, 1e-2 for rmsprop).
  std::optional<double> lr, beta1, beta2, eps, weight_decay, momentum, dampening, alpha;
  bool nesterov = false;
  bool centered = false;

  double lr_or_default() const;
  double beta1_or_default() const { return beta1.value_or(0.9); }
  double beta2_or_default() const { return beta2.value_or(0.999); }
  double eps_or_default() const { return eps.value_or(1e-8); }
  double weight_decay_or_default() const { return weight_decay.value_or(kind == OptimKind::adamw ? 1e-2 : 0.0); }
  double momentum_or_default() const { return momentum.value_or(0.0); }
  double dampening_or_default() const { return dampening.value_or(0.0); }
  double alpha_or_default() const { return alpha.value_or(0.99); }

  friend bool operator==(const OptimConfig&, const OptimConfig&) = default;
};

// Pipeline parallelism (parallel.*). pipeline = 1 is the single-device reference trainer.
struct ParallelConfig {
  int pipeline = 1;                // stages, one actor each
  int microbatches = 1;            // per step; must divide train.batch_size
  ScheduleKind schedule = ScheduleKind::one_f_one_b;
  int virtual_stages = 1;          // model chunks per stage (interleaved only)
  std::string boundaries;          // "" = balanced by estimated cost; else first layer of each (virtual) stage
  int credits = 0;                 // activations in flight per link before a sender waits; 0: as the schedule sends
  int data = 1;                    // data-parallel replicas (of every stage)
  int tensor = 1;                  // tensor-parallel shards of every stage (Megatron-style split layers)
  bool sequence_parallel = false;  // the GPT's LayerNorm/residual regions split along the sequence over the shards
  GradientExchange gradient_exchange = GradientExchange::ring;
  int zero = 0;                    // 1: optimizer state sharded over the data-parallel ranks (ZeRO-1)
  // Empty: every stage on train.device; else one device per stage, parsed from e.g. "cuda:0,cpu"
  // (runtime/config/stage_devices.h).
  std::vector<Device> placement;
  friend bool operator==(const ParallelConfig&, const ParallelConfig&) = default;
};

// How data-parallel replicas talk (comm.*).
struct CommConfig {
  TransportKind transport = TransportKind::inproc;
  double bucket_mb = 4.0;            // gradient bucket size in MiB, reduced as soon as its gradients are ready
  comm::CompressionSpec compression;  // parsed from none | fp16 | bf16 | int8 | topk:<fraction> | powersgd:<rank>
  std::string address = "127.0.0.1:29500";  // tcp: rank 0's rendezvous address
  int rank = -1;                     // this process's rank in a job a launcher started; -1: from its environment
  int world_size = 0;                // that job's processes; 0: from the launcher's environment (runtime/launch/join_spec.h)
  SameHostLinks same_host = SameHostLinks::shm;  // a multi-host job's co-located ranks: shared memory or tcp
  std::string interface;             // the network interface ranks listen on and advertise; "": any / the route to rank 0
  std::string secret_file;           // tcp: a private file holding the job's secret; "": TROUPE_SECRET (net/tcp/secret_source.h)
  // tcp: frames of a link authenticated after the handshake (auto: links whose peer is not on loopback)
  IntegrityPolicy integrity = IntegrityPolicy::automatic;
  bool encrypt = false;              // tcp: every link's frame payloads encrypted too (AES-256-GCM; implies integrity)
  double timeout_s = 60.0;           // a peer silent this long fails the collective
  int poll_us = 50;                  // an idle stage actor polls this long for its next message before sleeping
  friend bool operator==(const CommConfig&, const CommConfig&) = default;
};

// Parameter servers (parallel.gradient_exchange = ps).
struct PsConfig {
  int shards = 1;                    // parameter-server actors; parameters are split across them
  PsMode mode = PsMode::sync;
  int staleness = 0;                 // ssp: how many steps the fastest worker may run ahead of the slowest
  int max_restarts = 3;              // tcp: worker processes rank 0 may restart after they die, before the run fails
  // sync: each shard keeps a step-boundary snapshot, so a failed shard actor restarts from it. Off by default:
  // the copy is of whole tables while a step touches a few rows (measured: about 30% of a 3 ms DeepFM step).
  bool shard_snapshots = false;
  friend bool operator==(const PsConfig&, const PsConfig&) = default;
};

// Supervision and fault drills (fault.*): how often a replica's supervisor restarts a failed actor,
// and the faults a run injects into itself (runtime/supervision/fault_plan.h parses fault.inject).
struct FaultConfig {
  int max_restarts = 3;             // restarts allowed within restart_window_s; one more escalates (0: none)
  double restart_window_s = 60.0;   // the sliding window of the restart intensity, in seconds
  std::string inject;               // "" or a fault plan: "kill stage 1 at step 7; throw stage 0 at step 3"
  friend bool operator==(const FaultConfig&, const FaultConfig&) = default;
};

struct RunConfig {
  ModelConfig model;
  DataConfig data;
  TrainConfig train;
  OptimConfig optim;
  ParallelConfig parallel;
  CommConfig comm;
  PsConfig ps;
  FaultConfig fault;

  // Field by field; an unset optional equals only an unset one (lr unset != lr = 1e-3).
  friend bool operator==(const RunConfig&, const RunConfig&) = default;
};

inline double OptimConfig::lr_or_default() const {
  if (lr) return *lr;
  return kind == OptimKind::rmsprop ? 1e-2 : 1e-3;
}

}  // namespace troupe
