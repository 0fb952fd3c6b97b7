// One-for-one restarts of parameter-server worker actors (fault.max_restarts) driven by fault.inject's
// "throw worker W at step S": the worker's step fails before its push, a fresh worker actor runs it again,
// and in deterministic sync mode the run is bitwise the clean one; past the intensity it stops naming the worker.
#include <catch2/catch.hpp>

#include "actors/ps/ps_trainer.h"
#include "runtime/config/config_loader.h"
#include "runtime/supervision/fault_plan.h"
#include "ps_gpt_runs.h"
#include "training_runs.h"

using namespace troupe;
using Catch::Contains;

TEST_CASE("a ps worker whose step throws before its push is restarted and the run is bitwise the clean one",
          "[ps][restart]") {
  const PsRun clean = run_ps(ps_gpt({}));
  CHECK(clean.restarts.empty());
  for (const char* plan : {"throw worker 1 at step 2", "throw worker 0 at step 0",
                           // a fault in the re-run, and both workers in one step
                           "throw worker 1 at step 1; throw worker 1 at step 1", "throw worker 0 at step 4; throw worker 1 at step 4"}) {
    INFO(plan);
    const PsRun faulty = run_ps(ps_gpt({std::string("fault.inject=") + plan}));
    require_bitwise(clean.run, faulty.run);
    REQUIRE(faulty.restarts.size() == supervision::parse_fault_plan(plan).clauses.size());
    for (const auto& r : faulty.restarts) {
      CHECK_THAT(r.child, Catch::StartsWith("worker "));
      CHECK_THAT(r.cause, Contains("fault.inject: throw worker"));
      CHECK((r.restarted_s >= 0.0 && r.recovery_s >= r.restarted_s));
    }
  }
}

TEST_CASE("past fault.max_restarts a failing ps worker stops the run with the supervisor's escalation, not a hang",
          "[ps][restart]") {
  // Worker 0 waits in its clipping round for worker 1's push in step 2: the escalation releases it.
  const PsEscalation e = escalate_ps_gpt("throw worker 1 at step 1; throw worker 1 at step 2");
  CHECK_THAT(e.error, Contains("worker 1"));
  check_second_throw_escalated(e.error, "worker 1");
  CHECK(e.restarts_logged == 1);
}

TEST_CASE("fault.inject in parameter-server runs: worker and rank clauses where they exist, stage clauses refused",
          "[ps][restart][config]") {
  CHECK(ps_gpt_config_error({"fault.inject=throw worker 1 at step 1"}) == "no error");
  CHECK(ps_gpt_config_error({"fault.inject=kill rank 1 at step 1", "comm.transport=tcp"}) == "no error");
  CHECK_THAT(ps_gpt_config_error({"fault.inject=kill stage 0 at step 1"}),
             Contains("clause 'kill stage 0 at step 1': parameter-server runs have no stage, optimizer-state or tensor-shard actors"));
  CHECK_THAT(ps_gpt_config_error({"fault.inject=throw worker 2 at step 1"}),
             Contains("worker 2 does not exist, parallel.data = 2 (workers 0 to 1)"));
  CHECK_THAT(ps_gpt_config_error({"fault.inject=kill rank 1 at step 1"}),
             Contains("rank faults hit parameter-server worker processes; set comm.transport = tcp"));
  CHECK_THAT(ps_gpt_config_error({"fault.inject=stall rank 0 at step 1", "comm.transport=tcp"}),
             Contains("no one watches rank 0's heartbeats"));
  CHECK_THAT(ps_gpt_config_error({"fault.inject=throw worker 1 at step 5"}), Contains("step 5 is never reached"));
  // Outside parameter servers a worker clause names nothing.
  CHECK_THROWS_WITH(load_config(std::nullopt, {"parallel.data=2", "train.steps=3", "fault.inject=throw worker 1 at step 1"}),
                    Contains("worker faults hit parameter-server workers; set parallel.gradient_exchange = ps"));
}

TEST_CASE("ps waits span a worker process's restart only where worker processes restart", "[ps][restart]") {
  auto wait_of = [](std::vector<std::string> sets) { return ps::ps_wait_s(load_config(std::nullopt, ps_gpt(std::move(sets)))); };
  // Threads: nothing restarts a worker process, so a silent shard is reported after comm.timeout_s.
  CHECK(wait_of({"comm.timeout_s=4"}) == 4.0);
  // Worker processes: the heartbeats find a hung worker in 2 s, then its newcomer starts and runs its step,
  // which the healthy workers wait for: at least 60 s, 4 x comm.timeout_s beyond that.
  CHECK(wait_of({"comm.transport=tcp", "comm.timeout_s=4"}) == 60.0);
  CHECK(wait_of({"comm.transport=tcp", "comm.timeout_s=30"}) == 120.0);
  CHECK(wait_of({"comm.transport=tcp", "comm.timeout_s=4", "ps.max_restarts=0"}) == 4.0);
}
