// Tests of TraceRecorder: Chrome JSON contents, lossless multi-threaded recording, disabled recording, busy/bubble accounting, atomic writes.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/error.h"
#include "runtime/trace/trace.h"
#include "temp_dir.h"

using namespace troupe;
using Catch::Matchers::Contains;

namespace {

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in);
  return nlohmann::json::parse(in);
}

std::vector<nlohmann::json> events_with_phase(const nlohmann::json& trace, const std::string& ph) {
  std::vector<nlohmann::json> out;
  for (const auto& e : trace.at("traceEvents"))
    if (e.at("ph") == ph) out.push_back(e);
  return out;
}

}  // namespace

TEST_CASE("track() registers a name once and hands out dense ids", "[trace]") {
  TraceRecorder t;
  CHECK(t.track("stage 0") == 0);
  CHECK(t.track("stage 1") == 1);
  CHECK(t.track("stage 0") == 0);
  CHECK(t.track_stats(0, 1).size() == 2);
}

TEST_CASE("the Chrome trace names each track and holds complete events", "[trace]") {
  TempDir dir("troupe_trace");
  TraceRecorder t;
  const int s0 = t.track("stage 0"), s1 = t.track("stage 1");
  t.span(s0, "F0", "forward", 10, 25.5, 0);
  t.span(s1, "F0", "forward", 30, 40, 0);
  t.span(s0, "send", "send", 25.5, 26);  // no micro-batch: no args
  t.span(s0, "optimizer step", "optimizer", 100, 120);
  const std::string path = dir.file("run.json");
  t.write_chrome_trace(path);

  const nlohmann::json j = read_json(path);
  REQUIRE(j.at("traceEvents").is_array());

  const auto meta = events_with_phase(j, "M");
  REQUIRE(meta.size() == 2);
  std::map<int, std::string> names;
  std::set<int> pids;
  for (const auto& m : meta) {
    CHECK(m.at("name") == "thread_name");
    names[m.at("tid").get<int>()] = m.at("args").at("name").get<std::string>();
    pids.insert(m.at("pid").get<int>());
  }
  CHECK(names == std::map<int, std::string>{{s0, "stage 0"}, {s1, "stage 1"}});

  const auto spans = events_with_phase(j, "X");
  REQUIRE(spans.size() == 4);
  for (const auto& x : spans) pids.insert(x.at("pid").get<int>());
  CHECK(pids.size() == 1);  // one process, one thread per track

  // Events of a track come ordered by start; find them by (tid, ts).
  auto find = [&](int tid, double ts) {
    for (const auto& x : spans)
      if (x.at("tid").get<int>() == tid && x.at("ts").get<double>() == ts) return x;
    FAIL("no span on track " << tid << " at " << ts);
    return nlohmann::json();
  };
  const auto f0 = find(s0, 10);
  CHECK(f0.at("name") == "F0");
  CHECK(f0.at("cat") == "forward");
  CHECK(f0.at("dur").get<double>() == Approx(15.5));
  CHECK(f0.at("args").at("microbatch") == 0);
  const auto send = find(s0, 25.5);
  CHECK(send.at("cat") == "send");
  CHECK(send.at("dur").get<double>() == Approx(0.5));
  CHECK_FALSE(send.contains("args"));
  CHECK(find(s1, 30).at("dur").get<double>() == Approx(10));
  CHECK(find(s0, 100).at("cat") == "optimizer");

  CHECK(dir.entries() == std::vector<std::string>{"run.json"});  // the temporary was renamed away
}

TEST_CASE("recording from four threads at once loses nothing", "[trace]") {
  TempDir dir("troupe_trace");
  TraceRecorder t;
  constexpr int kThreads = 4, kSpans = 2000;
  std::vector<int> ids(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i)
    threads.emplace_back([&, i] {
      ids[i] = t.track("stage " + std::to_string(i));
      for (int k = 0; k < kSpans; ++k) {
        if (k % 2 == 0) {
          t.span(ids[i], "F", "forward", k, k + 1.0, k);
        } else {
          ScopedSpan scoped(&t, ids[i], "B", "backward", k);
        }
      }
    });
  for (auto& th : threads) th.join();

  t.write_chrome_trace(dir.file("t.json"));
  const nlohmann::json j = read_json(dir.file("t.json"));
  CHECK(events_with_phase(j, "M").size() == kThreads);
  std::map<int, std::set<int>> microbatches;  // track -> micro-batches seen
  for (const auto& x : events_with_phase(j, "X"))
    microbatches[x.at("tid").get<int>()].insert(x.at("args").at("microbatch").get<int>());
  REQUIRE(microbatches.size() == kThreads);
  for (const auto& [tid, seen] : microbatches) CHECK(seen.size() == kSpans);
}

TEST_CASE("a disabled recorder records nothing", "[trace]") {
  TempDir dir("troupe_trace");
  TraceRecorder off(false);
  CHECK_FALSE(off.enabled());
  const int a = off.track("stage 0");
  off.span(a, "F", "forward", 0, 10, 0);
  off.window(0, 10);
  { ScopedSpan s(&off, a, "B", "backward"); }
  { ScopedSpan s(nullptr, a, "B", "backward"); }  // a null recorder is fine too

  const auto stats = off.track_stats(0, 10);
  REQUIRE(stats.size() == 1);
  CHECK(stats[0].busy_us == 0.0);
  CHECK(off.track_stats().at(0).span_us == 0.0);  // the window was not kept either

  off.write_chrome_trace(dir.file("off.json"));
  const nlohmann::json j = read_json(dir.file("off.json"));
  CHECK(events_with_phase(j, "X").empty());
}

TEST_CASE("busy time is the union of compute spans clipped to the window", "[trace]") {
  TraceRecorder t;
  const int a = t.track("stage 0"), b = t.track("stage 1"), c = t.track("stage 2");
  // Track a, window [0, 100]:
  t.span(a, "F0", "forward", -20, 10, 0);   // starts before the window: counts 0..10
  t.span(a, "F1", "forward", 20, 50, 1);
  t.span(a, "B0", "backward", 40, 60, 0);   // overlaps F1: 20..60 counts once (40)
  t.span(a, "B1", "backward", 45, 55, 1);   // wholly inside 20..60: adds nothing
  t.span(a, "wait", "idle", 60, 90);        // idle, send and recv are not busy
  t.span(a, "send", "send", 60, 70);
  t.span(a, "recv", "recv", 70, 80);
  t.span(a, "step", "optimizer", 90, 130);  // ends after the window: counts 90..100
  t.span(a, "F9", "forward", 150, 200, 9);  // outside the window entirely
  // Track b: only spans touching the window's edges from outside.
  t.span(b, "F0", "forward", -10, 0, 0);
  t.span(b, "F1", "forward", 100, 110, 1);
  // Track c: nothing at all.
  CHECK(c == 2);

  const auto stats = t.track_stats(0, 100);
  REQUIRE(stats.size() == 3);
  CHECK(stats[0].name == "stage 0");
  CHECK(stats[0].busy_us == Approx(10 + 40 + 10));
  CHECK(stats[0].span_us == Approx(100));
  CHECK(stats[0].bubble == Approx(0.4));
  CHECK(stats[1].busy_us == 0.0);
  CHECK(stats[1].bubble == Approx(1.0));
  CHECK(stats[2].name == "stage 2");
  CHECK(stats[2].bubble == Approx(1.0));

  // A later window sees only what falls inside it.
  const auto late = t.track_stats(120, 170);
  CHECK(late[0].busy_us == Approx(10 + 20));  // optimizer 120..130, F9 150..170
  CHECK(late[0].span_us == Approx(50));
  CHECK(late[0].bubble == Approx(0.4));

  // An empty window has nothing to idle in.
  CHECK(t.track_stats(5, 5)[0].bubble == 0.0);
}

TEST_CASE("step windows: busy time is measured inside all marked windows together", "[trace]") {
  TraceRecorder t;
  const int a = t.track("stage 0");
  t.window(0, 100);
  t.window(200, 300);
  t.window(250, 300);                      // overlaps the previous window: counted once
  t.span(a, "F0", "forward", 0, 60, 0);
  t.span(a, "F1", "forward", 90, 210, 1);  // 90..100 and 200..210; the gap between steps is not counted
  const auto stats = t.track_stats();
  REQUIRE(stats.size() == 1);
  CHECK(stats[0].span_us == Approx(200));
  CHECK(stats[0].busy_us == Approx(80));
  CHECK(stats[0].bubble == Approx(0.6));
}

TEST_CASE("ScopedSpan records its lifetime on the recorder's clock", "[trace]") {
  TraceRecorder t;
  const int a = t.track("stage 0");
  const double before = TraceRecorder::now_us();
  {
    ScopedSpan s(&t, a, "F0", "forward", 3);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  const double after = TraceRecorder::now_us();
  CHECK(before >= 0.0);
  const auto stats = t.track_stats(before, after);
  CHECK(stats[0].busy_us >= 2000.0);
  CHECK(stats[0].busy_us <= after - before);
}

TEST_CASE("theoretical bubble of each schedule", "[trace]") {
  CHECK(theoretical_bubble(ScheduleKind::one_f_one_b, 4, 16, 1) == Approx(3.0 / 19.0));
  CHECK(theoretical_bubble(ScheduleKind::gpipe, 2, 8, 1) == Approx(1.0 / 9.0));
  CHECK(theoretical_bubble(ScheduleKind::layer, 4, 4, 1) == Approx(3.0 / 7.0));
  CHECK(theoretical_bubble(ScheduleKind::interleaved, 4, 8, 2) == Approx(3.0 / 19.0));
  CHECK(theoretical_bubble(ScheduleKind::interleaved, 4, 8, 1) == Approx(theoretical_bubble(ScheduleKind::one_f_one_b, 4, 8, 1)));
  CHECK(theoretical_bubble(ScheduleKind::one_f_one_b, 1, 8, 1) == 0.0);  // one stage never waits
  CHECK_THROWS_AS(theoretical_bubble(ScheduleKind::one_f_one_b, 0, 8, 1), Error);
}

TEST_CASE("writing a trace where it cannot go throws kIo and leaves nothing", "[trace]") {
  TempDir dir("troupe_trace");
  TraceRecorder t;
  t.span(t.track("stage 0"), "F0", "forward", 0, 1, 0);

  const std::string missing = dir.file("no-such-dir") + "/t.json";
  try {
    t.write_chrome_trace(missing);
    FAIL("expected troupe::Error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kIo);
    CHECK_THAT(e.what(), Contains(missing));
  }
  CHECK(dir.entries().empty());

  // The target is a directory: the temporary is written, the rename fails, the temporary is removed.
  std::filesystem::create_directory(dir.path / "taken");
  CHECK_THROWS_AS(t.write_chrome_trace(dir.file("taken")), Error);
  CHECK(dir.entries() == std::vector<std::string>{"taken"});
  CHECK(std::filesystem::is_empty(dir.path / "taken"));
}

TEST_CASE("a track of comm spans only is a communication track: its transfers are its busy time", "[trace]") {
  TraceRecorder t;
  const int stage = t.track("stage 0");
  const int comm = t.track("stage 0 comm");
  t.span(stage, "B0", "backward", 0, 50, 0);
  t.span(stage, "wait", "comm", 50, 70);        // a comm span on a compute track stays idle time
  t.span(comm, "allreduce bucket 0", "comm", 30, 60);
  t.span(comm, "allreduce bucket 1", "comm", 55, 80);  // overlaps the previous one: counted once
  const auto stats = t.track_stats(0, 100);
  REQUIRE(stats.size() == 2);
  CHECK_FALSE(stats[0].communication);
  CHECK(stats[0].busy_us == Approx(50));
  CHECK(stats[1].communication);
  CHECK(stats[1].busy_us == Approx(50));
  CHECK(stats[1].bubble == Approx(0.5));
}
