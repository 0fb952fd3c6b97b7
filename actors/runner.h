// Owns the runner: the one place that turns a configuration into a running job. `troupe train` and
// Session both start every run here, so an embedding application gets every strategy the command line
// has, with the same results.
//
//   plan_run(config)       the Topology (runtime/plan/topology.h): what runs where
//   launch(config, opts)   a Job laid out as the Topology says, ready to train step by step
//   run_started_rank(...)  the whole life of a rank process that `troupe train` started (tcp)
//
// What a Topology becomes:
//   model.kind = deepfm                the recommender on parameter servers (actors/recommender_job.h)
//   parameter servers (servers)        ps::PsTrainer: worker threads, or worker processes over tcp
//   data > 1                           DataParallelTrainer: replicas as threads, or processes over tcp
//   pipe > 1 or micro-batches > 1      ActorPipeline: one CAF actor per stage
//   one rank on a CUDA device          DeviceTrainer
//   one rank on the CPU                Trainer, the single-device reference
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/trainer.h"
#include "runtime/checkpoint/training_state.h"
#include "runtime/config/run_config.h"
#include "runtime/plan/topology.h"
#include "runtime/supervision/restart_intensity.h"

namespace troupe {

class TraceRecorder;

// A run in progress, whatever its layout. Steps are numbered from 0.
class Job {
 public:
  virtual ~Job() = default;
  virtual StepStats train_step(std::int64_t step) = 0;
  virtual EvalStats evaluate() = 0;
  virtual void load_weights(const std::string& path) = 0;
  virtual void save_weights(const std::string& path) = 0;
  // Records every actor's spans into `trace` from the next step on.
  virtual void set_trace(TraceRecorder* trace) = 0;
  // What it trains on, one line ("Fashion-MNIST ...", "click log ...").
  virtual std::string data_description() = 0;
  virtual int threads() = 0;  // compute threads of the first stage's backend
  virtual std::int64_t parameter_count() = 0;
  // How the run is laid out, one or more lines ending in '\n' ("data parallel, 2 replicas ...").
  virtual std::string summary() = 0;
  // What the last step cost besides time (bytes on the wire, optimizer state), lines ending in '\n';
  // empty when there is nothing to add.
  virtual std::string report() { return {}; }
  // Waits for the processes the job started; throws troupe::Error naming one that failed.
  virtual void finish() {}
  // The actors its supervisors restarted so far (fault.max_restarts), each with its step, cause and
  // recovery time; between steps.
  virtual std::vector<supervision::Restart> restarts() { return {}; }

  // Checkpoints (runtime/checkpoint/), between steps: the whole training state by parameter name —
  // parameters, buffers, optimizer state, gathered from wherever this layout keeps them — and back,
  // scattered to wherever this layout keeps them (checked first: troupe::Error(kInput) naming `source`).
  // A layout that cannot do this yet says why in checkpoint_refusal() ("" when it can), which the caller
  // turns into a config error before training starts.
  virtual std::string checkpoint_refusal() { return "this layout"; }
  virtual TrainingState training_state(std::int64_t steps_done);
  virtual void restore_training_state(const TrainingState& state, const std::string& source);
};

struct LaunchOptions {
  // The command line after the program name: ranks that are processes (comm.transport = tcp) are
  // started as copies of this program with these arguments. Empty: the caller cannot be copied (an
  // embedding application), so a layout that needs processes is refused with a config error.
  std::vector<std::string> args;
};

// The Topology of `config` on this machine: devices resolved (a device this machine lacks, or a
// placement the trainers cannot run, is troupe::Error(kConfig)), layers partitioned, programs made.
plan::Topology plan_run(const RunConfig& config);
// plan_run, as `troupe train --print-plan` prints it.
std::string describe_plan(const RunConfig& config);

// Starts the job `config` describes (validated again here, so a RunConfig built in code is held to the
// same rules). Throws troupe::Error for what cannot run.
std::unique_ptr<Job> launch(const RunConfig& config, const LaunchOptions& options = {});

// In a rank process that `troupe train` started (hidden option --rank r, r >= 1): joins the job at
// the addresses rank 0 put in the environment, trains every step (from where a restarted parameter-
// server worker's pushes stopped, or from `resume_from`'s step when rank 0 resumed from that
// checkpoint), and returns when done. Errors name the rank.
void run_started_rank(const RunConfig& config, int rank, const std::string& init_from,
                      const std::string& resume_from = "");

// A job's restarts as its report lists them, one a line ("  replica 0/stage 1 in step 3: CAUSE; re-run 0.001 s
// after, recovered (the step done) 0.010 s after"), under a heading naming the limit (`limits`, or
// fault.max_restarts = max_restarts); empty when there were none.
std::string restarts_report(const std::vector<supervision::Restart>& restarts, int max_restarts,
                            const std::string& limits = std::string());

}  // namespace troupe
