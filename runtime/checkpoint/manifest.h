// Owns the checkpoint manifest (manifest.json): what a checkpoint holds besides tensors, and the size and
// CRC-32 of each of its files, so that a reader can tell a whole checkpoint from a damaged one.
//
//   {"format": "troupe-checkpoint", "version": 1, "troupe_version": "0.x", "step": 30,
//    "data": {"next_step": 30, "order": "shuffled", "seed": 1337, "batch_size": 16},
//    "random_streams": {"data_order": {"function": "order_hash (splitmix64)", "seed": 1337}},
//    "lr_schedule": {"kind": "cosine", "base_lr": 0.001, "warmup_steps": 10, "min_lr": 0, "total_steps": 500,
//                    "next_lr": 0.00098},
//    "optimizer": {"kind": "adamw", "step": 30, "param_steps": {"lm_head.weight": 30, ...}},
//    "files": {"model.safetensors": {"bytes": 13045952, "crc32": "1a2b3c4d"}, ...}}
//
// The data position and every random stream are functions of (seed, step): troupe draws no other random
// numbers during training (no dropout), so "data" and "random_streams" record the inputs of those
// functions, which resuming checks against the configuration. The learning rate is likewise a function
// of the step; "lr_schedule" records its inputs and the next step's rate.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "runtime/checkpoint/checksum.h"
#include "runtime/checkpoint/training_state.h"
#include "runtime/config/run_config.h"

namespace troupe {

struct Manifest {
  std::int64_t step = 0;
  std::string troupe_version;
  std::string optimizer_kind;
  std::int64_t optimizer_step = 0;
  std::map<std::string, std::int64_t> param_steps;  // per parameter: updates applied (torch's state["step"])
  std::map<std::string, FileChecksum> files;        // file name in the checkpoint -> its size and CRC-32
  std::string json;                                 // everything, as written (data, random streams, schedule)
};

// The manifest of `state` written by a run configured as `config`, with `files`' checksums.
Manifest make_manifest(const TrainingState& state, const RunConfig& config,
                       const std::map<std::string, FileChecksum>& files);
std::string manifest_to_json(const Manifest& manifest);
// Parses manifest.json text; throws troupe::Error(kInput) naming `source` and the field when it is not a
// troupe checkpoint manifest of a version this troupe reads.
Manifest parse_manifest(const std::string& text, const std::string& source);

}  // namespace troupe
