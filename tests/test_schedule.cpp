// Owns the pipeline schedule tests: generators, communication pass, simulator and grid, as properties over stages 1..8 x micro-batches 1..16 plus literal cases.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "runtime/error.h"
#include "runtime/schedule/comm_pass.h"
#include "runtime/schedule/generators.h"
#include "runtime/schedule/grid.h"
#include "runtime/schedule/instr.h"
#include "runtime/schedule/simulator.h"
#include "tests/error_of.h"

using namespace troupe;
using namespace troupe::pipeline;
using Catch::Matchers::Contains;

namespace {

struct Case {
  std::string kind;
  int p, m, v;
  Schedule schedule;
};

// Every generated schedule of the property sweep: stages 1..8 x micro-batches 1..16, GPipe, 1F1B and
// interleaved with v = 1, 2, 3, plus layer-parallel (m = 1).
std::vector<Case> sweep() {
  std::vector<Case> cases;
  for (int p = 1; p <= 8; ++p) {
    cases.push_back({"layer", p, 1, 1, make_layer_parallel(p)});
    for (int m = 1; m <= 16; ++m) {
      cases.push_back({"gpipe", p, m, 1, make_gpipe(p, m)});
      cases.push_back({"1f1b", p, m, 1, make_1f1b(p, m)});
      for (int v : {1, 2, 3}) cases.push_back({"interleaved", p, m, v, make_interleaved_1f1b(p, m, v)});
    }
  }
  return cases;
}

std::string label(const Case& c) {
  return c.kind + " p=" + std::to_string(c.p) + " m=" + std::to_string(c.m) + " v=" + std::to_string(c.v);
}

// When each compute instruction of a simulated schedule ran, keyed by (backward?, virtual stage, mb).
std::map<std::tuple<bool, int, int>, Slot> compute_times(const SimResult& r) {
  std::map<std::tuple<bool, int, int>, Slot> times;
  for (int s = 0; s < r.layout.stages; ++s) {
    const Program& program = r.schedule[static_cast<std::size_t>(s)];
    for (std::size_t i = 0; i < r.slots[static_cast<std::size_t>(s)].size(); ++i) {
      if (!is_compute(program[i])) continue;
      const bool backward = std::holds_alternative<Backward>(program[i]);
      times[{backward, r.layout.virtual_stage(s, chunk_of(program[i])), microbatch_of(program[i])}] =
          r.slots[static_cast<std::size_t>(s)][i];
    }
  }
  return times;
}

double theory_bubble(int p, int m, int v) { return double(p - 1) / double(v * m + p - 1); }

Schedule lowered(const Schedule& s, int p, int v = 1) { return add_communication(s, p, v); }

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Instructions and text form
// ---------------------------------------------------------------------------------------------------

TEST_CASE("Instruction text: every kind prints and parses, with and without chunk", "[schedule]") {
  const std::vector<std::pair<Instr, std::string>> cases = {
      {Forward{3, 0}, "F3"},         {Backward{3, 0}, "B3"},          {SendActivation{3, 0}, "SEND_F3"},
      {RecvActivation{3, 0}, "RECV_F3"}, {SendGrad{3, 0}, "SEND_B3"},  {RecvGrad{3, 0}, "RECV_B3"},
      {OptimizerStep{}, "STEP"},     {Forward{3, 1}, "1F3"},          {Backward{12, 2}, "2B12"},
      {SendActivation{0, 1}, "1SEND_F0"}, {RecvGrad{7, 10}, "10RECV_B7"}};
  for (const auto& [instr, text] : cases) {
    INFO(text);
    CHECK(to_string(instr) == text);
    CHECK(parse_instr(text) == instr);
  }
  CHECK(to_string(Instr{Forward{3, 0}}, true) == "0F3");
  CHECK(parse_instr("0F3") == Instr{Forward{3, 0}});
  CHECK(to_string(Instr{OptimizerStep{}}, true) == "STEP");
}

TEST_CASE("Instruction text: parse errors name the token and its position", "[schedule]") {
  for (const std::string bad : {"F", "X3", "F-1", "SEND_3", "1STEP", "F3x", "f3", "B99999999999", "RECV_F"}) {
    INFO(bad);
    const std::string msg = error_of(ErrorKind::kInput, [&] { parse_instr(bad); });
    CHECK_THAT(msg, Contains("\"" + bad + "\"") && Contains("column 1") && Contains("expected"));
  }
  std::string msg = error_of(ErrorKind::kInput, [] { parse_program("F0 F1  BX B0"); });
  CHECK_THAT(msg, Contains("\"BX\"") && Contains("column 8") && Contains("instruction 3"));
  msg = error_of(ErrorKind::kInput, [] { parse_schedule("F0 B0 STEP\nF0 Q0 STEP\n"); });
  CHECK_THAT(msg, Contains("\"Q0\"") && Contains("line 2") && Contains("column 4"));
}

TEST_CASE("Schedule text: lines are stages, empty programs survive the round trip", "[schedule]") {
  const Schedule s = {{Forward{0, 0}, SendActivation{0, 0}}, {}, {RecvGrad{1, 1}, OptimizerStep{}}};
  CHECK(to_string(s) == "F0 SEND_F0\n\n1RECV_B1 STEP\n");
  CHECK(parse_schedule(to_string(s)) == s);
  CHECK(parse_schedule("F0\nB0") == Schedule{{Forward{0, 0}}, {Backward{0, 0}}});
  CHECK(parse_schedule("").empty());
  CHECK(parse_program("  F0\tB0  ") == Program{Forward{0, 0}, Backward{0, 0}});
}

// ---------------------------------------------------------------------------------------------------
// Generators: literal programs
// ---------------------------------------------------------------------------------------------------

TEST_CASE("1F1B literal programs match PipeDream-Flush", "[schedule]") {
  CHECK(to_string(make_1f1b(2, 3)) == "F0 F1 B0 F2 B1 B2 STEP\n"
                                      "F0 B0 F1 B1 F2 B2 STEP\n");
  // p = 4, m = 8: warm-ups of 3, 2, 1, 0 forwards.
  const Schedule s = make_1f1b(4, 8);
  CHECK(to_string(s[0]) == "F0 F1 F2 F3 B0 F4 B1 F5 B2 F6 B3 F7 B4 B5 B6 B7 STEP");
  CHECK(to_string(s[1]) == "F0 F1 F2 B0 F3 B1 F4 B2 F5 B3 F6 B4 F7 B5 B6 B7 STEP");
  CHECK(to_string(s[3]) == "F0 B0 F1 B1 F2 B2 F3 B3 F4 B4 F5 B5 F6 B6 F7 B7 STEP");
  // Fewer micro-batches than stages: the warm-up is capped at m.
  CHECK(to_string(make_1f1b(4, 2)[0]) == "F0 F1 B0 B1 STEP");
  CHECK(to_string(make_1f1b(4, 2)[2]) == "F0 F1 B0 B1 STEP");
  CHECK(to_string(make_1f1b(4, 2)[3]) == "F0 B0 F1 B1 STEP");
  for (int s = 0; s < 4; ++s) CHECK(make_1f1b_stage(4, 8, s) == make_1f1b(4, 8)[static_cast<std::size_t>(s)]);
}

TEST_CASE("GPipe and layer-parallel literal programs", "[schedule]") {
  CHECK(to_string(make_gpipe(2, 3)) == "F0 F1 F2 B0 B1 B2 STEP\nF0 F1 F2 B0 B1 B2 STEP\n");
  CHECK(to_string(make_layer_parallel(3)) == "F0 B0 STEP\nF0 B0 STEP\nF0 B0 STEP\n");
  CHECK(make_gpipe_stage(3, 4, 1) == make_gpipe(3, 4)[1]);
}

TEST_CASE("Interleaved literal programs follow Megatron's schedule table", "[schedule]") {
  // p = 4, m = 8, v = 2 (Megatron's figure): stage 0 warms up with 2*3 + 1*4 = 10 forwards.
  const Schedule s = make_interleaved_1f1b(4, 8, 2);
  CHECK(to_string(s[0], true) ==
        "0F0 0F1 0F2 0F3 1F0 1F1 1F2 1F3 0F4 0F5 "
        "0F6 1B0 0F7 1B1 1F4 1B2 1F5 1B3 1F6 0B0 1F7 0B1 "
        "0B2 0B3 1B4 1B5 1B6 1B7 0B4 0B5 0B6 0B7 STEP");
  // The last stage warms up with (v-1)*p = 4 forwards.
  CHECK(to_string(s[3], true) ==
        "0F0 0F1 0F2 0F3 1F0 1B0 1F1 1B1 1F2 1B2 1F3 1B3 0F4 0B0 0F5 0B1 0F6 0B2 0F7 0B3 "
        "1F4 1B4 1F5 1B5 1F6 1B6 1F7 1B7 0B4 0B5 0B6 0B7 STEP");
  CHECK(to_string(make_interleaved_1f1b(2, 4, 2)[0], true) ==
        "0F0 0F1 1F0 1F1 0F2 1B0 0F3 1B1 1F2 0B0 1F3 0B1 1B2 1B3 0B2 0B3 STEP");
  // Uneven m: 5 micro-batches on 2 stages form groups {0,1,2} and {3,4}.
  CHECK(to_string(make_interleaved_1f1b(2, 5, 2)[1], true) ==
        "0F0 0F1 0F2 1F0 1B0 1F1 1B1 1F2 1B2 0F3 0B0 0F4 0B1 1F3 0B2 1F4 1B3 1B4 0B3 0B4 STEP");
  // v = 1 is plain 1F1B.
  CHECK(make_interleaved_1f1b(4, 6, 1) == make_1f1b(4, 6));
  CHECK(make_interleaved_1f1b_stage(4, 8, 2, 2) == s[2]);
}

TEST_CASE("make_schedule dispatches by name and rejects what it cannot run", "[schedule]") {
  CHECK(make_schedule("gpipe", 3, 4) == make_gpipe(3, 4));
  CHECK(make_schedule("1f1b", 3, 4) == make_1f1b(3, 4));
  CHECK(make_schedule("interleaved", 3, 4, 2) == make_interleaved_1f1b(3, 4, 2));
  CHECK(make_schedule("layer", 3, 1) == make_layer_parallel(3));
  CHECK_THAT(error_of(ErrorKind::kConfig, [] { make_schedule("zigzag", 2, 2); }),
             Contains("\"zigzag\"") && Contains("\"gpipe\"") && Contains("\"interleaved\""));
  CHECK_THAT(error_of(ErrorKind::kConfig, [] { make_schedule("1f1b", 2, 4, 2); }),
             Contains("\"1f1b\"") && Contains("2 virtual stages") && Contains("\"interleaved\""));
  CHECK_THAT(error_of(ErrorKind::kConfig, [] { make_schedule("layer", 2, 4); }),
             Contains("single micro-batch") && Contains("4"));
  CHECK_THAT(error_of(ErrorKind::kConfig, [] { make_gpipe(0, 4); }), Contains("stages must be >= 1, got 0"));
  CHECK_THAT(error_of(ErrorKind::kConfig, [] { make_1f1b(2, 0); }), Contains("micro-batches must be >= 1, got 0"));
  CHECK_THAT(error_of(ErrorKind::kConfig, [] { make_interleaved_1f1b(2, 4, 0); }),
             Contains("virtual stages (chunks per stage) must be >= 1, got 0"));
  CHECK_THAT(error_of(ErrorKind::kConfig, [] { make_1f1b_stage(2, 4, 2); }), Contains("stage 2 out of range"));
}

// ---------------------------------------------------------------------------------------------------
// Generators: properties over the sweep
// ---------------------------------------------------------------------------------------------------

TEST_CASE("Every generated schedule runs each forward and backward once per virtual stage, in order", "[schedule]") {
  for (const Case& c : sweep()) {
    INFO(label(c));
    REQUIRE(c.schedule.size() == static_cast<std::size_t>(c.p));
    for (int s = 0; s < c.p; ++s) {
      const Program& program = c.schedule[static_cast<std::size_t>(s)];
      REQUIRE(!program.empty());
      CHECK(std::holds_alternative<OptimizerStep>(program.back()));
      std::map<std::pair<int, int>, int> forwards, backwards;  // (mb, chunk) -> position
      int steps = 0;
      for (std::size_t i = 0; i < program.size(); ++i) {
        const Instr& instr = program[i];
        CHECK_FALSE(is_communication(instr));
        if (std::holds_alternative<OptimizerStep>(instr)) ++steps;
        if (!is_compute(instr)) continue;
        auto& seen = std::holds_alternative<Forward>(instr) ? forwards : backwards;
        CHECK(seen.emplace(std::pair{microbatch_of(instr), chunk_of(instr)}, int(i)).second);
      }
      CHECK(steps == 1);
      CHECK(forwards.size() == static_cast<std::size_t>(c.m * c.v));
      CHECK(backwards.size() == static_cast<std::size_t>(c.m * c.v));
      for (int mb = 0; mb < c.m; ++mb)
        for (int ch = 0; ch < c.v; ++ch) {
          REQUIRE(forwards.count({mb, ch}));
          REQUIRE(backwards.count({mb, ch}));
          CHECK(forwards[{mb, ch}] < backwards[{mb, ch}]);
        }
    }
  }
}

TEST_CASE("Every generated schedule simulates without deadlock, all sends matched, dependencies in time order",
          "[schedule]") {
  for (const Case& c : sweep()) {
    INFO(label(c));
    const SimResult r = simulate(lowered(c.schedule, c.p, c.v), c.p, c.v);
    INFO(r.report());
    REQUIRE(r.ok());
    CHECK_FALSE(r.deadlock);
    CHECK(r.unmatched.empty());
    CHECK(r.violations.empty());
    const auto times = compute_times(r);
    const int last = c.p * c.v - 1;
    for (int mb = 0; mb < c.m; ++mb)
      for (int k = 0; k <= last; ++k) {
        const Slot f = times.at({false, k, mb}), b = times.at({true, k, mb});
        CHECK(f.end <= b.start);                                        // own forward first
        if (k > 0) CHECK(times.at({false, k - 1, mb}).end <= f.start);  // forward of k-1 first
        if (k < last) CHECK(times.at({true, k + 1, mb}).end <= b.start);  // backward of k+1 first
      }
  }
}

TEST_CASE("Interleaved stays deadlock-free and at the theoretical bubble beyond the main sweep", "[schedule]") {
  for (int p = 2; p <= 12; ++p)
    for (int m : {p - 1, p + 1, 2 * p - 1, 2 * p + 1, 3 * p + 2, 40})
      for (int v : {2, 3, 4}) {
        INFO("p=" << p << " m=" << m << " v=" << v);
        const SimResult r = simulate(lowered(make_interleaved_1f1b(p, m, v), p, v), p, v);
        INFO(r.report());
        REQUIRE(r.ok());
        if (m >= p) CHECK(r.bubble == Approx(theory_bubble(p, m, v)).margin(1e-12));
      }
}

TEST_CASE("Activation memory: 1F1B holds at most p micro-batches on stage 0, GPipe all m, interleaved its warm-up", "[schedule]") {
  for (int p = 1; p <= 8; ++p)
    for (int m = 1; m <= 16; ++m) {
      INFO("p=" << p << " m=" << m);
      const SimResult g = simulate(lowered(make_gpipe(p, m), p), p);
      const SimResult o = simulate(lowered(make_1f1b(p, m), p), p);
      CHECK(g.stages[0].peak_in_flight == m);
      CHECK(o.stages[0].peak_in_flight <= p);
      CHECK(o.stages[0].peak_in_flight == std::min(p, m));
      for (int s = 0; s < p; ++s) CHECK(o.stages[static_cast<std::size_t>(s)].peak_in_flight == std::min(p - s, m));
      // Interleaved with groups of p: stage 0 holds its warm-up 2 (p - 1) + (v - 1) p plus one.
      if (m % p == 0)
        for (int v : {2, 3}) {
          const SimResult i = simulate(lowered(make_interleaved_1f1b(p, m, v), p, v), p, v);
          CHECK(i.stages[0].peak_in_flight == std::min(v * m, 2 * (p - 1) + (v - 1) * p + 1));
        }
    }
}

TEST_CASE("Bubble: GPipe and 1F1B reach (p-1)/(m+p-1), interleaved beats 1F1B and, for m >= p, reaches "
          "(p-1)/(v*m+p-1)",
          "[schedule]") {
  for (int p = 1; p <= 8; ++p)
    for (int m = 1; m <= 16; ++m) {
      INFO("p=" << p << " m=" << m);
      const SimResult g = simulate(lowered(make_gpipe(p, m), p), p);
      const SimResult o = simulate(lowered(make_1f1b(p, m), p), p);
      CHECK(g.bubble == Approx(theory_bubble(p, m, 1)).margin(1e-12));
      CHECK(o.bubble == Approx(theory_bubble(p, m, 1)).margin(1e-12));
      CHECK(o.makespan == 3 * (m + p - 1));
      for (int v : {2, 3}) {
        INFO("v=" << v);
        const SimResult i = simulate(lowered(make_interleaved_1f1b(p, m, v), p, v), p, v);
        CHECK(i.bubble <= o.bubble + 1e-12);
        if (p > 1 && m >= p) CHECK(i.bubble < o.bubble);
        if (m >= p) CHECK(i.bubble == Approx(theory_bubble(p, m, v)).margin(1e-12));
      }
    }
  // Layer parallelism: one micro-batch, every stage but one idle at any time.
  CHECK(simulate(lowered(make_layer_parallel(4), 4), 4).bubble == Approx(0.75));
}

TEST_CASE("Every generated schedule, with and without communication, survives the text round trip", "[schedule]") {
  for (const Case& c : sweep()) {
    INFO(label(c));
    const bool with_chunk = c.v > 1;
    CHECK(parse_schedule(to_string(c.schedule, with_chunk)) == c.schedule);
    CHECK(parse_schedule(to_string(c.schedule)) == c.schedule);
    const Schedule comm = lowered(c.schedule, c.p, c.v);
    CHECK(parse_schedule(to_string(comm, with_chunk)) == comm);
  }
}

// ---------------------------------------------------------------------------------------------------
// Communication pass
// ---------------------------------------------------------------------------------------------------

TEST_CASE("add_communication places receives right before and sends right after the compute", "[schedule]") {
  CHECK(to_string(lowered(make_1f1b(2, 2), 2)) ==
        "F0 SEND_F0 F1 SEND_F1 RECV_B0 B0 RECV_B1 B1 STEP\n"
        "RECV_F0 F0 B0 SEND_B0 RECV_F1 F1 B1 SEND_B1 STEP\n");
  // Middle stage of three: receives and sends both ways.
  CHECK(to_string(lowered(make_gpipe(3, 1), 3)[1]) == "RECV_F0 F0 SEND_F0 RECV_B0 B0 SEND_B0 STEP");
  // Interleaved: chunk 1 of stage 0 receives from stage 1 (virtual stage 1 -> 2); chunk 1 of the last stage
  // is the model's end and sends no activation.
  const Schedule s = lowered(make_interleaved_1f1b(2, 2, 2), 2, 2);
  CHECK(to_string(s[0], true) ==
        "0F0 0SEND_F0 0F1 0SEND_F1 1RECV_F0 1F0 1SEND_F0 1RECV_F1 1F1 1SEND_F1 "
        "1RECV_B0 1B0 1SEND_B0 1RECV_B1 1B1 1SEND_B1 0RECV_B0 0B0 0RECV_B1 0B1 STEP");
  CHECK(to_string(s[1], true) ==
        "0RECV_F0 0F0 0SEND_F0 0RECV_F1 0F1 0SEND_F1 1RECV_F0 1F0 1B0 1SEND_B0 1RECV_F1 1F1 1B1 1SEND_B1 "
        "0RECV_B0 0B0 0SEND_B0 0RECV_B1 0B1 0SEND_B1 STEP");
  // One physical stage: neighbouring chunks are local, nothing to send.
  CHECK(lowered(make_interleaved_1f1b(1, 3, 2), 1, 2) == make_interleaved_1f1b(1, 3, 2));
}

TEST_CASE("add_communication rejects malformed input", "[schedule]") {
  CHECK_THAT(error_of(ErrorKind::kInput, [] { add_communication(make_1f1b(2, 2), 3); }),
             Contains("2 stage programs") && Contains("3 stages"));
  CHECK_THAT(error_of(ErrorKind::kInput, [] { add_communication(lowered(make_1f1b(2, 2), 2), 2); }),
             Contains("already has communication") && Contains("SEND_F0"));
  CHECK_THAT(error_of(ErrorKind::kInput, [] { add_communication(make_interleaved_1f1b(2, 2, 2), 2, 1); }),
             Contains("chunk out of range") && Contains("1F0"));
}

// ---------------------------------------------------------------------------------------------------
// Simulator on broken schedules
// ---------------------------------------------------------------------------------------------------

TEST_CASE("Simulator: two swapped instructions make a cycle, reported as a deadlock with the grid", "[schedule]") {
  // Stage 0 now waits for the gradient of micro-batch 0 before sending its activation.
  Schedule s = lowered(make_1f1b(2, 2), 2);
  REQUIRE(to_string(s[0][1]) == "SEND_F0");
  REQUIRE(to_string(s[0][4]) == "RECV_B0");
  std::swap(s[0][1], s[0][4]);
  const SimResult r = simulate(s, 2);
  CHECK_FALSE(r.ok());
  CHECK(r.deadlock);
  CHECK(r.unmatched.empty());
  CHECK(r.next(0) == 1);
  CHECK(r.next(1) == 0);
  const std::string report = r.report();
  CHECK_THAT(report, Contains("deadlock at time 1") &&
                         Contains("stage 0 instruction 1 (RECV_B0) waits for SEND_B0 on stage 1, its instruction 3, "
                                  "not reached (stage 1 is blocked at instruction 0, RECV_F0)") &&
                         Contains("stage 1 instruction 0 (RECV_F0) waits for SEND_F0 on stage 0, its instruction 4"));
  CHECK_THAT(report, Contains("blocked  >RECV_B0<  >RECV_F0<"));
}

TEST_CASE("Simulator: a compute-order cycle survives lowering and deadlocks", "[schedule]") {
  // Interleaved p=2: stage 0 runs chunk 1 of micro-batch 0 before chunk 0 of it, which chunk 1 needs.
  Schedule s = make_interleaved_1f1b(2, 2, 2);
  REQUIRE(to_string(s[0][0], true) == "0F0");
  REQUIRE(to_string(s[0][2], true) == "1F0");
  std::swap(s[0][0], s[0][2]);
  const SimResult r = simulate(lowered(s, 2, 2), 2, 2);
  CHECK(r.deadlock);
  CHECK(r.unmatched.empty());
  CHECK_THAT(r.report(), Contains("1RECV_F0") && Contains("0RECV_F0") && Contains(">1RECV_F0<"));
}

TEST_CASE("Simulator: a dropped receive leaves an unmatched send and an input-less compute", "[schedule]") {
  Schedule s = lowered(make_1f1b(2, 3), 2);
  // Stage 1: RECV_F0 F0 B0 SEND_B0 RECV_F1 ...; drop RECV_F1.
  REQUIRE(to_string(s[1][4]) == "RECV_F1");
  s[1].erase(s[1].begin() + 4);
  const SimResult r = simulate(s, 2);
  CHECK_FALSE(r.ok());
  CHECK_FALSE(r.deadlock);
  REQUIRE(r.unmatched.size() == 1);
  CHECK(r.unmatched[0] == "stage 0 instruction 3 (SEND_F1) has no matching RECV_F1 on stage 1 (virtual stage 1)");
  REQUIRE(r.violations.size() == 1);
  CHECK(r.violations[0] == "stage 1 instruction 4 (F1) runs without its input: no RECV_F1 before it");
  CHECK_THAT(r.report(), Contains("unmatched communication") && Contains(">SEND_F1<") && Contains(">F1<"));

  // A dropped gradient receive: the sender's SEND_B is unmatched, the backward runs without its gradient.
  Schedule g = lowered(make_gpipe(2, 2), 2);
  auto at = std::find(g[0].begin(), g[0].end(), Instr{RecvGrad{1, 0}});
  REQUIRE(at != g[0].end());
  g[0].erase(at);
  const SimResult rg = simulate(g, 2);
  CHECK_THAT(rg.report(), Contains("(SEND_B1) has no matching RECV_B1 on stage 0") &&
                              Contains("(B1) runs without its gradient: no RECV_B1 before it"));
}

TEST_CASE("Simulator: duplicated, impossible and out-of-order communication is reported", "[schedule]") {
  Schedule s = lowered(make_gpipe(2, 1), 2);  // F0 SEND_F0 RECV_B0 B0 STEP | RECV_F0 F0 B0 SEND_B0 STEP
  s[0].insert(s[0].begin() + 2, SendActivation{0, 0});
  SimResult r = simulate(s, 2);
  REQUIRE(r.unmatched.size() == 1);
  CHECK_THAT(r.unmatched[0], Contains("SEND_F0 on stage 0 (virtual stage 0) runs 2 time(s) but RECV_F0 on stage 1 "
                                      "(virtual stage 1) runs 1 time(s)"));

  Schedule t = lowered(make_gpipe(2, 1), 2);
  t[1].insert(t[1].begin() + 2, SendActivation{0, 0});  // the last stage has nobody to send to
  r = simulate(t, 2);
  REQUIRE(r.unmatched.size() == 1);
  CHECK_THAT(r.unmatched[0], Contains("stage 1 instruction 2 (SEND_F0) sends to a virtual stage that does not exist"));

  Schedule u = lowered(make_gpipe(2, 1), 2);
  std::swap(u[0][0], u[0][1]);  // SEND_F0 before F0
  r = simulate(u, 2);
  REQUIRE(r.violations.size() == 1);
  CHECK(r.violations[0] == "stage 0 instruction 0 (SEND_F0) sends before the forward that produces it");

  Schedule w = make_gpipe(1, 2);  // F0 F1 B0 B1 STEP
  std::swap(w[0][3], w[0][4]);    // STEP before B1
  r = simulate(w, 1);
  REQUIRE(r.violations.size() == 1);
  CHECK_THAT(r.violations[0], Contains("(STEP) runs while 1 micro-batch activation(s)"));

  Schedule twice = make_gpipe(1, 1);
  twice[0].insert(twice[0].begin(), Forward{0, 0});
  r = simulate(twice, 1);
  CHECK_THAT(r.report(), Contains("(F0) runs a second time"));
}

TEST_CASE("Simulator: statistics and costs", "[schedule]") {
  const SimResult r = simulate(lowered(make_1f1b(2, 3), 2), 2);
  CHECK(r.makespan == 12);
  CHECK(r.stages[0].busy == 9);
  CHECK(r.stages[1].busy == 9);
  CHECK(r.bubble == Approx(0.25));
  CHECK(r.stages[0].peak_in_flight == 2);
  CHECK(r.stages[1].peak_in_flight == 1);
  // Stage 1 is busy with B0 when F1's activation arrives: it waits one message in the mailbox.
  CHECK(r.stages[0].peak_mailbox == 0);
  CHECK(r.stages[1].peak_mailbox == 1);
  CHECK_THAT(r.report(), Contains("ok, makespan 12, bubble 25.0%") &&
                             Contains("stage 1: busy 9, peak in-flight activations 1, peak mailbox 1"));

  // GPipe at equal forward and backward cost: 2 (m + p - 1) steps.
  Costs even;
  even.backward = 1;
  CHECK(simulate(lowered(make_gpipe(4, 8), 4), 4, 1, even).makespan == 22);
  // A send that takes time occupies its sender and delays its receiver: F0, SEND_F0, F0, B0, SEND_B0, B0.
  Costs slow;
  slow.send = 1;
  CHECK(simulate(lowered(make_gpipe(2, 1), 2), 2, 1, slow).makespan == 1 + 1 + 1 + 2 + 1 + 2);

  CHECK_THAT(error_of(ErrorKind::kInput, [] { simulate(make_gpipe(2, 1), 3); }), Contains("3 stages"));
  CHECK_THAT(error_of(ErrorKind::kInput, [] { simulate({{Forward{0, 2}}}, 1, 2); }),
             Contains("chunk 2 but chunks are 0..1"));
  Costs negative;
  negative.forward = -1;
  CHECK_THAT(error_of(ErrorKind::kInput, [&] { simulate(make_gpipe(1, 1), 1, 1, negative); }),
             Contains("costs must be >= 0"));
}

// ---------------------------------------------------------------------------------------------------
// Grid
// ---------------------------------------------------------------------------------------------------

TEST_CASE("Grid: steps by stages, backwards span two rows, idle is '.', marks show where a step failed",
          "[schedule]") {
  const std::string expected =
      "step  stage 0  stage 1\n"
      "   0  F0       .\n"
      "   1  F1       F0\n"
      "   2  .        B0\n"
      "   3  .        B0\n"
      "   4  B0       F1\n"
      "   5  B0       B1\n"
      "   6  .        B1\n"
      "   7  B1       STEP\n"
      "   8  B1       .\n"
      "   9  STEP     .\n";
  CHECK(render_grid(make_1f1b(2, 2), 2) == expected);

  // Marks name compute-only positions when given a compute-only schedule: stage 1's B1 is its 4th.
  GridOptions mark;
  mark.marks = {{1, 3}};
  const std::string marked = render_grid(make_1f1b(2, 2), 2, 1, mark);
  CHECK_THAT(marked, Contains("   5  B0       >B1<\n   6  .        B1\n"));

  GridOptions comm;
  comm.show_communication = true;
  CHECK_THAT(render_grid(make_1f1b(2, 2), 2, 1, comm), Contains("   1  SEND_F0 F1  RECV_F0 F0\n"));

  GridOptions outside;
  outside.marks = {{2, 0}};
  CHECK_THAT(error_of(ErrorKind::kInput, [&] { render_grid(make_1f1b(2, 2), 2, 1, outside); }),
             Contains("outside the schedule"));
  // Interleaved grids print chunk prefixes.
  CHECK_THAT(render_grid(make_interleaved_1f1b(2, 2, 2), 2, 2), Contains("   0  0F0      .\n"));
}
