// Owns the checkpoint directory (train.checkpoint_dir): the names of its checkpoints, writing one
// atomically, checking and reading one, choosing the newest whole one, and keeping only the newest K.
//
// Layout: DIR/step-000030/ holds
//   model.safetensors      every parameter and buffer by name, whole, f32, with the model config in its
//                          metadata (so it also serves --init-from, and torch's safetensors.torch.load_file)
//   optimizer.safetensors  every optimizer state tensor as "<parameter>.<slot>" (slot: exp_avg,
//                          exp_avg_sq, momentum_buffer, square_avg, grad_avg: torch.optim's names)
//   config.toml            the configuration of the run that wrote it
//   manifest.json          step, data position, random streams, schedule, optimizer step counts, and the
//                          size and CRC-32 of the three files above (runtime/checkpoint/manifest.h)
// Writing: everything goes into DIR/.tmp-step-000030-<pid>/, each file fsynced, manifest last; the
// directory is fsynced and renamed to step-000030, then DIR is fsynced. A crash at any moment leaves
// either no step-000030 or a whole one, and older checkpoints untouched; a leftover .tmp-* directory is
// removed by the next writer. The step is zero-padded to 6 digits (more when it needs them), so names
// sort like their steps up to step 999999; listings sort by the parsed number regardless.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "runtime/checkpoint/manifest.h"
#include "runtime/checkpoint/training_state.h"
#include "runtime/config/run_config.h"

namespace troupe {

// "step-000030".
std::string checkpoint_name(std::int64_t step);
// The step of a checkpoint directory name, or nothing for any other name.
std::optional<std::int64_t> parse_checkpoint_name(const std::string& name);

// Checkpoint directories in `dir` (paths), oldest first by step. Does not check them.
std::vector<std::string> list_checkpoints(const std::string& dir);

// Creates `dir` if needed and proves it writable (a probe file, created and removed), so that a run
// learns before its first step, not at its first checkpoint; troupe::Error(kConfig) naming `key` and
// saying what to do otherwise.
void check_checkpoint_dir(const std::string& dir, const std::string& key);

// Writes `state` of a run configured as `config` as DIR/step-<state.step>, atomically (see above), then
// removes all but the newest `keep` checkpoints. Returns the checkpoint's path. troupe::Error(kIo) when
// it cannot be written; nothing half-written is left under a checkpoint's name.
std::string write_checkpoint(const std::string& dir, const TrainingState& state, const RunConfig& config, int keep);

// Why the checkpoint at `path` cannot be used ("manifest.json missing", "model.safetensors: CRC-32 ...
// differs"), or "" when it is whole: every file the manifest lists is there with its size and CRC-32.
std::string checkpoint_problem(const std::string& path);

// The newest whole checkpoint in `dir` (or `dir` itself when it is one); each newer one that is not
// whole is passed to `skipped` (path, problem) first. troupe::Error(kConfig) when there is none.
std::string newest_valid_checkpoint(const std::string& dir,
                                    const std::function<void(const std::string&, const std::string&)>& skipped);

struct LoadedCheckpoint {
  TrainingState state;
  Manifest manifest;
  std::string config_toml;  // the writing run's configuration
  std::string path;
};
// Reads a checkpoint (checked first: troupe::Error(kInput) when it is not whole).
LoadedCheckpoint read_checkpoint(const std::string& path);

}  // namespace troupe
