// The restart intensity (Erlang/OTP one-for-one, time passed in) and the fault.inject grammar, without
// actors: what is allowed, when the supervisor escalates and what it says; what parses and each error;
// a group round of abandon and re-run orders.
#include <catch2/catch.hpp>

#include "runtime/config/config_loader.h"
#include "runtime/error.h"
#include "runtime/supervision/fault_plan.h"
#include "runtime/supervision/group_round.h"
#include "runtime/supervision/restart_intensity.h"
#include "tests/error_of.h"

using namespace troupe;
using namespace troupe::supervision;
using Catch::Contains;

namespace {

// The configuration error parse_fault_plan(text) throws; fails the test when it throws none.
std::string plan_error(const char* text) {
  return config_error([&] { parse_fault_plan(text); });
}

// parse_fault_plan(text) holds `clauses`, in order, and prints back as `printed`.
void check_parses(const std::string& text, const std::vector<FaultClause>& clauses, const std::string& printed) {
  INFO(text);
  const FaultPlan p = parse_fault_plan(text);
  REQUIRE(p.clauses.size() == clauses.size());
  for (std::size_t i = 0; i < clauses.size(); ++i) {
    INFO("clause " << i);
    CHECK(p.clauses[i] == clauses[i]);
  }
  CHECK(to_string(p) == printed);
}

// The whole message of a bad clause: "fault.inject: clause '<clause>': <why>".
std::string clause_error(const std::string& clause, const std::string& why) {
  return "fault.inject: clause '" + clause + "': " + why;
}

// The configuration error load_config throws for these --set values; fails the test when it throws none.
std::string settings_error(const std::vector<std::string>& sets) {
  return config_error([&] { load_config(std::nullopt, sets); });
}

}  // namespace

TEST_CASE("restart intensity: at most max_restarts within the window, then escalate", "[supervision][restart]") {
  RestartIntensity r(2, 10.0);
  CHECK(r.allow("replica 0/stage 1", 3, "boom", 0.0));
  CHECK(r.allow("replica 0/stage 0", 4, "bang", 5.0));
  CHECK_FALSE(r.allow("replica 0/stage 1", 5, "again", 9.9));  // a 3rd within 10 s
  CHECK(r.restarts().size() == 2);                             // the refused one is not recorded
  CHECK(r.recent(9.9) == 2);
  // The window slides: the restart at 0 s has left it at 10 s.
  CHECK(r.recent(10.0) == 1);
  CHECK(r.allow("replica 0/stage 1", 6, "later", 10.0));
  CHECK_FALSE(r.allow("replica 0/stage 1", 7, "too soon", 14.0));
  CHECK(r.allow("replica 0/stage 1", 8, "much later", 100.0));
  CHECK(r.restarts().size() == 4);
}

TEST_CASE("restart intensity 0 never restarts", "[supervision][restart]") {
  RestartIntensity r(0, 60.0);
  CHECK_FALSE(r.allow("replica 0/stage 0", 0, "x", 0.0));
  CHECK_THAT(r.escalation("stage actor replica 0/stage 0 (rank 0)", 0, "x", ""),
             Contains("no restart: fault.max_restarts = 0"));
}

TEST_CASE("the escalation names the actor, its place, each restart, and how --resume continues", "[supervision][restart]") {
  RestartIntensity r(1, 60.0);
  CHECK(r.allow("replica 0/stage 1", 3, "stage 1: injected fault at B0", 1.0));
  r.rerun(1.125);
  r.recovered(1.25);
  CHECK(r.restarts().back().restarted_s == 0.125);
  CHECK(r.restarts().back().recovery_s == 0.25);
  r.recovered(7.0);  // a later re-run does not change a recovery already known
  CHECK(r.restarts().back().recovery_s == 0.25);
  CHECK_FALSE(r.allow("replica 0/stage 1", 4, "stage 1: injected fault at B1", 2.0));
  const std::string with_ckpt = r.escalation("stage actor replica 0/stage 1 (rank 1: data 0, pipe 1, tensor 0)", 4,
                                             "stage 1: injected fault at B1", "runs/ck");
  CHECK(with_ckpt ==
        "stage actor replica 0/stage 1 (rank 1: data 0, pipe 1, tensor 0) died in step 4: stage 1: injected fault at B1\n"
        "the supervisor gives up: that is more than fault.max_restarts = 1 restarts within fault.restart_window_s = 60 s; "
        "the 1 restart before:\n"
        "  replica 0/stage 1 in step 3: stage 1: injected fault at B0\n"
        "the job stops; `troupe train --resume runs/ck` continues it from the newest checkpoint");
  CHECK_THAT(r.escalation("x", -1, "y", ""), Contains("died between steps: y") && Contains("with train.checkpoint_dir set"));
}

TEST_CASE("fault.inject parses clauses into typed faults", "[supervision][faults]") {
  check_parses(" kill stage 1 at step 7; throw stage 0 at step 3;nan stage 0 at step 5 ; kill optimizer 1 at step 2; "
               "throw optimizer 0 at step 0; ",
               {{FaultAction::kill, FaultTarget::stage, 1, 7},
                {FaultAction::raise, FaultTarget::stage, 0, 3},
                {FaultAction::nan, FaultTarget::stage, 0, 5},
                {FaultAction::kill, FaultTarget::optimizer, 1, 2},
                {FaultAction::raise, FaultTarget::optimizer, 0, 0}},
               "kill stage 1 at step 7; throw stage 0 at step 3; nan stage 0 at step 5; kill optimizer 1 at step 2; "
               "throw optimizer 0 at step 0");
  CHECK(parse_fault_plan("").empty());
  CHECK(parse_fault_plan(" ; ").empty());
  // A replica of parallel.data: replica 0 unless named.
  check_parses("kill stage 1 at step 2 on replica 1; throw optimizer 0 at step 3 on replica 0",
               {{FaultAction::kill, FaultTarget::stage, 1, 2, 1},  //
                {FaultAction::raise, FaultTarget::optimizer, 0, 3, 0}},
               "kill stage 1 at step 2 on replica 1; throw optimizer 0 at step 3");
}

TEST_CASE("fault.inject errors quote the bad clause and say what was expected", "[supervision][faults]") {
  const std::string forms =
      "'<kill|throw|nan> <stage|optimizer> N at step S [micro-batch K [forward|backward]] [on replica R]', '<kill|throw> "
      "shard T [of stage P] at step S [micro-batch K [forward|backward]] [on replica R]', '<kill|stall> rank R at step S' "
      "or 'throw worker W at step S'";
  // Each plan and the whole message: the clause it quotes (the bad one of several) and what it says.
  const std::pair<std::string, std::string> cases[] = {
      {"kill stage 1 at step 7; explode stage 0 at step 1",
       clause_error(" explode stage 0 at step 1",  // the clause at fault, as written
                    "unknown fault 'explode'; the faults are kill, throw, nan and stall")},
      {"kill sharrd 0 at step 1",
       clause_error("kill sharrd 0 at step 1",
                    "unknown target 'sharrd'; the targets are stage, optimizer, shard, rank and worker")},
      {"kill stage one at step 1", clause_error("kill stage one at step 1", "'one' is not a stage number (0 to 1023)")},
      {"kill stage 1 at step -3", clause_error("kill stage 1 at step -3", "'-3' is not a step number (0 to 10^12)")},
      {"kill stage 1 in step 3", clause_error("kill stage 1 in step 3", "expected " + forms)},
      {"kill stage 1", clause_error("kill stage 1", "3 words, expected " + forms)},
      {"kill stage 1 at step 3 on rank 1", clause_error("kill stage 1 at step 3 on rank 1", "expected " + forms)},
      {"kill stage 1 at step 3 on replica x",
       clause_error("kill stage 1 at step 3 on replica x", "'x' is not a replica number (0 to 1023)")},
      {"nan optimizer 0 at step 1",
       clause_error("nan optimizer 0 at step 1",
                    "nan applies to a stage (its gradient), not to an optimizer, a shard, a rank or a worker")},
      // Rank processes: killed or stalled whole.
      {"throw rank 1 at step 2",
       clause_error("throw rank 1 at step 2",
                    "a rank process can be killed or stalled ('kill rank R at step S', 'stall rank R at step S')")},
      {"stall stage 1 at step 2",
       clause_error("stall stage 1 at step 2",
                    "stall applies to a rank process ('stall rank R at step S'), not to an actor")},
      {"kill rank 1 at step 2 on replica 1",
       clause_error("kill rank 1 at step 2 on replica 1", "a rank is a whole replica: no 'on replica' after 'rank R'")},
  };
  for (const auto& [plan, message] : cases) {
    INFO(plan);
    CHECK(plan_error(plan.c_str()) == message);
  }
}

TEST_CASE("fault.inject names a tensor shard of a stage of a replica", "[supervision][faults]") {
  check_parses("throw shard 0 at step 3; kill shard 1 of stage 1 at step 7 on replica 1; kill shard 1 of stage 0 at step 2",
               {{FaultAction::raise, FaultTarget::shard, 0, 3, 0, 0},
                {FaultAction::kill, FaultTarget::shard, 1, 7, 1, 1},
                {FaultAction::kill, FaultTarget::shard, 0, 2, 0, 1}},
               "throw shard 0 at step 3; kill shard 1 of stage 1 at step 7 on replica 1; kill shard 1 at step 2");
  CHECK(plan_error("nan shard 1 at step 2") ==
        clause_error("nan shard 1 at step 2",
                     "nan applies to a stage (its gradient), not to an optimizer, a shard, a rank or a worker"));
  CHECK(plan_error("kill shard 1 of stage x at step 2") ==
        clause_error("kill shard 1 of stage x at step 2", "'x' is not a stage number (0 to 1023)"));
  CHECK(plan_error("kill stage 1 of stage 1 at step 2").find("expected '<kill|throw|nan>") != std::string::npos);
}

TEST_CASE("fault.inject throws in a parameter-server worker", "[supervision][faults]") {
  check_parses("throw worker 1 at step 2; throw worker 0 at step 0",
               {{FaultAction::raise, FaultTarget::worker, 1, 2, 1}, {FaultAction::raise, FaultTarget::worker, 0, 0, 0}},
               "throw worker 1 at step 2; throw worker 0 at step 0");
  CHECK(plan_error("kill worker 1 at step 2") ==
        clause_error("kill worker 1 at step 2", "a parameter-server worker can be made to throw ('throw worker W at "
                                                "step S'); 'kill rank W' and 'stall rank W' hit a worker process"));
}

TEST_CASE("fault.inject kills or stalls a rank process", "[supervision][faults]") {
  check_parses("kill rank 2 at step 3; stall rank 1 at step 0",
               {{FaultAction::kill, FaultTarget::rank, 2, 3, 2}, {FaultAction::stall, FaultTarget::rank, 1, 0, 1}},
               "kill rank 2 at step 3; stall rank 1 at step 0");
}

TEST_CASE("fault.inject is checked against the layout and the run's steps", "[supervision][faults][config]") {
  CHECK_NOTHROW(load_config(std::nullopt, {"parallel.pipeline=2", "train.steps=10", "fault.inject=kill stage 1 at step 9"}));
  CHECK_THAT(settings_error({"parallel.pipeline=2", "train.steps=10", "fault.inject=kill stage 2 at step 3"}),
             Contains("clause 'kill stage 2 at step 3': stage 2 does not exist, parallel.pipeline = 2 (stages 0 to 1)"));
  CHECK_THAT(settings_error({"parallel.pipeline=2", "train.steps=10", "fault.inject=kill stage 1 at step 10"}),
             Contains("step 10 is never reached, the run ends after train.steps = 10"));
  CHECK_THAT(settings_error({"train.steps=10", "fault.inject=kill stage 0 at step 1"}),
             Contains("fault.inject needs a run by stage or shard actors"));
  CHECK_THAT(settings_error({"parallel.pipeline=2", "fault.inject=kill stage 0 at 1"}), Contains("fault.inject: clause"));
  CHECK_THAT(settings_error({"parallel.pipeline=2", "parallel.data=2", "train.batch_size=8",
                       "fault.inject=kill stage 0 at step 1 on replica 2"}),
             Contains("clause 'kill stage 0 at step 1 on replica 2': replica 2 does not exist, parallel.data = 2 "
                      "(replicas 0 to 1)"));
  // Rank faults need rank processes, a rank that exists, and someone to watch a stalled one.
  CHECK_THAT(settings_error({"parallel.data=2", "train.batch_size=8", "fault.inject=kill rank 1 at step 1"}),
             Contains("rank faults hit data-parallel rank processes; set comm.transport = tcp"));
  CHECK_THAT(settings_error({"parallel.data=2", "train.batch_size=8", "comm.transport=tcp", "fault.inject=kill rank 2 at step 1"}),
             Contains("clause 'kill rank 2 at step 1': rank 2 does not exist, parallel.data = 2 (ranks 0 to 1)"));
  CHECK_THAT(settings_error({"parallel.data=2", "train.batch_size=8", "comm.transport=tcp", "fault.inject=stall rank 0 at step 1"}),
             Contains("no one watches rank 0's heartbeats"));
  CHECK_NOTHROW(load_config(std::nullopt, {"parallel.data=2", "train.batch_size=8", "comm.transport=tcp",
                                           "fault.inject=kill rank 1 at step 1; stall rank 1 at step 2; kill rank 0 at step 3"}));
  // A mid-step point names a micro-batch the layout has, in a run whose stages have micro-batches.
  CHECK_NOTHROW(load_config(std::nullopt, {"parallel.pipeline=2", "parallel.microbatches=2",
                                           "fault.inject=kill stage 1 at step 1 micro-batch 1 backward"}));
  CHECK_THAT(settings_error({"parallel.pipeline=2", "parallel.microbatches=2", "fault.inject=kill stage 1 at step 1 micro-batch 2"}),
             Contains("clause 'kill stage 1 at step 1 micro-batch 2 forward': micro-batch 2 does not exist, "
                      "parallel.microbatches = 2 (micro-batches 0 to 1)"));
  CHECK_THAT(settings_error({"parallel.tensor=2", "model.n_embd=64", "fault.inject=kill shard 1 at step 1 micro-batch 0"}),
             Contains("shard actors run whole steps, without micro-batches"));
}

TEST_CASE("a group round: an interruption aborts, every member goes quiet, then all re-run", "[supervision][group]") {
  using troupe::supervision::GroupRound;
  GroupRound g(3, 5);
  CHECK(g.done(0));  // member 0 finished the step before the interruption
  CHECK_FALSE(g.done(0));  // once
  CHECK(g.interrupted(5));
  CHECK(g.round() == 6);
  CHECK(g.aborting());
  CHECK_FALSE(g.interrupted(6));  // covered by the round under way
  CHECK_FALSE(g.complete());      // member 0's answer was voided with the round
  CHECK_FALSE(g.done(1));         // sent before the abandon order reached it: void
  CHECK(g.stuck() == 0);
  CHECK_FALSE(g.quiet(0, 5));  // an older round's
  CHECK_FALSE(g.quiet(0, 6));
  CHECK_FALSE(g.quiet(2, 6));
  CHECK(g.quiet(1, 6));  // the last: reform and re-run
  CHECK_FALSE(g.aborting());
  CHECK(g.stuck() == -1);
  CHECK_FALSE(g.interrupted(5));  // stale
  for (int m = 0; m < 3; ++m) CHECK(g.done(m));
  CHECK(g.complete());
  CHECK_FALSE(g.stopped());
}

TEST_CASE("a group round stops at the first failure for good, or at a member that is not quiet", "[supervision][group]") {
  using troupe::supervision::GroupRound;
  GroupRound g(2, 0);
  CHECK(g.failed(1));
  CHECK_FALSE(g.failed(0));  // the first one is the cause
  CHECK(g.stopped());
  CHECK(g.complete());
  CHECK_FALSE(g.interrupted(0));
  GroupRound h(2, 0);
  CHECK(h.interrupted(0));
  CHECK(h.quiet(0, 1) == false);
  CHECK(h.stuck() == 1);
  h.give_up(1);
  CHECK(h.stopped());
  CHECK_FALSE(h.quiet(1, 1));
  CHECK_FALSE(h.complete());  // member 0 was quiet, not answered: its re-run was never ordered
}

TEST_CASE("fault.inject places a stage's fault mid-step, before a micro-batch's forward or backward",
          "[supervision][faults]") {
  const FaultPlan p = parse_fault_plan(
      "kill stage 1 at step 3 micro-batch 2 backward; throw stage 0 at step 1 micro-batch 1 on replica 1; "
      "kill shard 1 of stage 1 at step 2 micro-batch 0 forward; kill stage 0 at step 4");
  REQUIRE(p.clauses.size() == 4);
  CHECK(p.clauses[0] == FaultClause{FaultAction::kill, FaultTarget::stage, 1, 3, 0, 0, 2, FaultPass::backward});
  CHECK(p.clauses[1] == FaultClause{FaultAction::raise, FaultTarget::stage, 0, 1, 1, 0, 1, FaultPass::forward});
  CHECK(p.clauses[2] == FaultClause{FaultAction::kill, FaultTarget::shard, 1, 2, 0, 1, 0, FaultPass::forward});
  CHECK(p.clauses[3].microbatch == -1);
  // The text round trip: the pass is always written out.
  CHECK(to_string(p) ==
        "kill stage 1 at step 3 micro-batch 2 backward; throw stage 0 at step 1 micro-batch 1 forward on replica 1; "
        "kill shard 1 of stage 1 at step 2 micro-batch 0 forward; kill stage 0 at step 4");
  CHECK(parse_fault_plan(to_string(p)).clauses == p.clauses);
  CHECK(plan_error("kill stage 1 at step 2 micro-batch two") ==
        "fault.inject: clause 'kill stage 1 at step 2 micro-batch two': 'two' is not a micro-batch number (0 to 1023)");
  CHECK(plan_error("kill stage 1 at step 2 micro-batch") ==
        "fault.inject: clause 'kill stage 1 at step 2 micro-batch': '' is not a micro-batch number (0 to 1023)");
  CHECK(plan_error("kill optimizer 1 at step 2 micro-batch 1") ==
        "fault.inject: clause 'kill optimizer 1 at step 2 micro-batch 1': a mid-step point ('micro-batch K "
        "[forward|backward]') applies to a stage or shard that is killed or throws ('kill stage 1 at step 3 "
        "micro-batch 2 backward')");
  CHECK(plan_error("nan stage 1 at step 2 micro-batch 1 backward").find("a mid-step point") != std::string::npos);
  CHECK(plan_error("kill stage 1 at step 2 micro-batch 1 sideways").find("expected '<kill|throw|nan>") != std::string::npos);
}
