// The plain parts of restarting tensor-shard processes, without processes: who hands a restarted shard its
// state (plan_state_moves), rank 0's copies of the shards' step-boundary states (ShardCopies), which
// fault.inject clause fires in which rank process (ProcessFaults), a shard's own state out and back
// (Trainer::shard_state), the re-form's messages over a transport, and the config's word on faults aimed
// at shard processes.
#include <catch2/catch.hpp>

#include <thread>

#include "actors/tensor_shard_recovery.h"
#include "models/trainer.h"
#include "net/inproc/inproc_transport.h"
#include "runtime/config/config_loader.h"
#include "runtime/error.h"
#include "runtime/supervision/process_faults.h"
#include "runtime/supervision/shard_copies.h"
#include "runtime/supervision/shard_state_moves.h"

using namespace troupe;
using namespace troupe::supervision;
using Catch::Contains;

TEST_CASE("a restarted shard takes its state from another replica's shard, else rank 0's copy", "[supervision][tensor_restart]") {
  const ShardStanding at5{5, 5}, done5{6, 5}, fresh{-1, -1}, behind{5, 4};
  CHECK(reaches(at5, 5));
  CHECK(reaches(done5, 5));   // rewinds to its kept copy
  CHECK(reaches(behind, 5));  // had not begun step 5
  CHECK_FALSE(reaches(fresh, 5));
  CHECK_FALSE(reaches(ShardStanding{7, 6}, 5));
  // One replica of two shards: rank 1 restarted, rank 0's copy of step 5.
  CHECK(plan_state_moves(1, 2, {at5, fresh}, 5, 5) == std::vector<StateMove>{{1, 0, true}});
  // A copy of another step is no help: the shard's state is nowhere.
  CHECK_THROWS_WITH(plan_state_moves(1, 2, {at5, fresh}, 5, 4),
                    Contains("tensor-parallel rank 1 (replica 0, tensor shard 1) was restarted") &&
                        Contains("rank 0 keeps no copy"));
  // Nobody restarted: no move.
  CHECK(plan_state_moves(1, 4, {at5, done5, behind, at5}, 5, -1).empty());
  // 2 replicas x 2 shards: rank 3 (replica 1, shard 1) takes rank 1's live state, rank 2 takes rank 0's.
  CHECK(plan_state_moves(2, 2, {at5, done5, fresh, fresh}, 5, -1) == std::vector<StateMove>{{2, 0, false}, {3, 1, false}});
  // Rank 1 restarted: the lowest live rank of its tensor index, 3.
  CHECK(plan_state_moves(2, 2, {at5, fresh, at5, done5}, 5, -1) == std::vector<StateMove>{{1, 3, false}});
  // Every replica's shard 1 died at once.
  CHECK_THROWS_WITH(plan_state_moves(2, 2, {at5, fresh, at5, fresh}, 5, -1), Contains("every replica's shard 1 died at once"));
}

TEST_CASE("rank 0's copies: a boundary is kept only when every shard's copy of it arrived", "[supervision][tensor_restart]") {
  ShardCopies c;
  CHECK(c.step() == -1);
  c.offer(1, 0, std::vector<std::byte>(3, std::byte{1}));
  c.offer(2, 0, std::vector<std::byte>(4, std::byte{2}));
  c.commit(0);
  CHECK(c.step() == 0);
  CHECK(c.of(2).size() == 4);
  // Step 0's copies of step 1 half arrived when it failed: step 0's stay.
  c.offer(1, 1, std::vector<std::byte>(5, std::byte{3}));
  CHECK(c.bytes() == 12);
  c.discard_pending();
  CHECK(c.step() == 0);
  CHECK(c.of(1) == std::vector<std::byte>(3, std::byte{1}));
  c.offer(1, 1, std::vector<std::byte>(5, std::byte{3}));
  c.offer(2, 1, std::vector<std::byte>(6, std::byte{4}));
  c.commit(1);
  CHECK(c.of(1).size() == 5);
  CHECK(c.bytes() == 11);
  c.forget();
  CHECK(c.step() == -1);
  CHECK_THROWS_AS(c.of(1), InvariantError);
}

TEST_CASE("fault.inject clauses reach the rank process they name, once each, not before a restarted one joined",
          "[supervision][tensor_restart]") {
  const FaultPlan plan = parse_fault_plan(
      "kill shard 1 at step 3 on replica 1; throw shard 1 at step 5; stall rank 2 at step 4; kill shard 1 at step 5; "
      "throw shard 0 at step 2");
  // Rank 1 = replica 0, shard 1 (of 2): the two shard-1 clauses of replica 0, one per attempt of step 5.
  ProcessFaults r1(plan, 1, 0, 1, true);
  CHECK_FALSE(r1.take(3));
  const auto first = r1.take(5), second = r1.take(5);
  REQUIRE(first);
  REQUIRE(second);
  CHECK(first->action == FaultAction::raise);
  CHECK(second->action == FaultAction::kill);
  CHECK_FALSE(r1.take(5));
  CHECK(r1.empty());
  // Rank 3 = replica 1, shard 1: its kill at step 3; a process restarted at step 3 skips it.
  ProcessFaults r3(plan, 3, 1, 1, true);
  CHECK(r3.take(3)->target == FaultTarget::shard);
  CHECK(ProcessFaults(plan, 3, 1, 1, true, 3).empty());
  // Rank 2: "stall rank 2"; shard clauses do not hit data-parallel rank processes (shards = false).
  ProcessFaults r2(plan, 2, 1, 0, false);
  CHECK(r2.take(4)->action == FaultAction::stall);
  CHECK(r2.empty());
  // Rank 0's shard 0.
  CHECK(ProcessFaults(plan, 0, 0, 0, true).take(2)->action == FaultAction::raise);
}

TEST_CASE("a shard's own state goes out and comes back bitwise, as a restarted shard takes it", "[tensor_restart]") {
  const RunConfig config = load_config(std::nullopt, {"model.n_layer=1", "model.n_embd=16", "model.n_head=2",
                                                      "model.block_size=8", "train.batch_size=2", "train.threads=1",
                                                      "train.deterministic=true"});
  Trainer a(config), b(config);
  a.train_step(0);
  const TrainingState view = a.shard_state_view(1);
  CHECK(view.params.front().second.raw() == a.model().params().state().front()->value.raw());  // shared, not copied
  const TrainingState s = a.shard_state(1);
  CHECK(s.params.front().second.raw() != view.params.front().second.raw());
  b.restore_shard_state(s, "a's state");
  CHECK(b.boundary_step() == 1);
  CHECK(a.train_step(1).loss == b.train_step(1).loss);
  CHECK(a.train_step(2).loss == b.train_step(2).loss);
  // Another model's state is refused, naming the source.
  const RunConfig wider = load_config(std::nullopt, {"model.n_layer=1", "model.n_embd=32", "model.n_head=2",
                                                     "model.block_size=8", "train.batch_size=2", "train.threads=1"});
  Trainer c(wider);
  CHECK_THROWS_WITH(c.restore_shard_state(s, "a's state"), Contains("a's state"));
}

TEST_CASE("the re-form's messages: standings, verdicts, state bytes and copies", "[tensor_restart]") {
  net::InprocWorld world(3, std::chrono::milliseconds(5000));
  auto t0 = world.transport(0), t1 = world.transport(1), t2 = world.transport(2);
  const std::vector<std::byte> state(1000, std::byte{7});
  std::thread r1([&] {
    send_standing(*t1, {6, 5});
    const ShardVerdict v = recv_verdict(*t1);
    CHECK(v.step == 5);
    CHECK(v.from == -1);
    CHECK(v.send_to == std::vector<int>{2});
    send_state_bytes(*t1, 2, state);
    send_copy(*t1, 6, state);
  });
  std::thread r2([&] {
    send_standing(*t2, {-1, -1});
    const ShardVerdict v = recv_verdict(*t2);
    CHECK(v.from == 1);
    CHECK(v.send_to.empty());
    CHECK(recv_state_bytes(*t2, 1) == state);
  });
  const auto standings = recv_standings(*t0, {5, 5});
  CHECK(standings == std::vector<ShardStanding>{{5, 5}, {6, 5}, {-1, -1}});
  const ShardVerdict mine = send_verdicts(*t0, 5, {{2, 1, false}});
  CHECK(mine.send_to.empty());
  CHECK_THROWS_WITH(recv_copy(*t0, 1, 7), Contains("rank 1 sent a copy of its shard at step 6's boundary"));
  r1.join();
  r2.join();
}

TEST_CASE("fault.inject aimed at tensor-shard processes: accepted over tcp, refused where it cannot land",
          "[config][tensor_restart]") {
  auto load = [](const std::string& transport, const std::string& faults, const std::string& data = "1") {
    return load_config(std::nullopt, {"parallel.tensor=2", "parallel.data=" + data, "comm.transport=" + transport,
                                      "train.steps=10", "fault.inject=" + faults});
  };
  CHECK_NOTHROW(load("tcp", "kill shard 1 at step 3; throw shard 0 at step 4; stall rank 1 at step 5; kill rank 1 at step 6"));
  CHECK_NOTHROW(load("tcp", "kill shard 1 at step 3 on replica 1; stall rank 3 at step 2", "2"));
  CHECK_THROWS_WITH(load("shm", "kill shard 1 at step 3"), Contains("over shared memory (comm.transport = shm) are not restarted yet"));
  CHECK_THROWS_WITH(load("tcp", "kill rank 2 at step 3"), Contains("rank 2 does not exist, parallel.data x parallel.tensor = 2"));
  CHECK_THROWS_WITH(load("tcp", "stall rank 0 at step 3"), Contains("no one watches rank 0's heartbeats"));
  CHECK_THROWS_WITH(load("tcp", "kill shard 2 at step 3"), Contains("shard 2 does not exist"));
  CHECK_THROWS_WITH(load("tcp", "kill stage 0 at step 3"), Contains("no stage or optimizer-state actors"));
}
