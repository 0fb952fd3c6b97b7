// TraceRecorder: Chrome JSON, busy/bubble accounting, disabled recording, atomic writes.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "runtime/error.h"
#include "runtime/trace/trace.h"
#include "temp_dir.h"

using namespace troupe;

TEST_CASE("busy time is the union of compute spans inside step windows", "[trace]") {
  TraceRecorder t;
  const int a = t.track("stage 0"), b = t.track("stage 1");
  CHECK(t.track("stage 0") == a);
  t.window(0, 100);
  t.window(200, 300);
  t.span(a, "F0", "forward", 0, 40, 0);
  t.span(a, "B0", "backward", 30, 60, 0);     // overlaps F0: counted once -> busy 0..60
  t.span(a, "wait", "idle", 60, 100);          // idle is not busy
  t.span(a, "F1", "forward", 90, 210, 1);      // clipped to the windows: 90..100 and 200..210
  t.span(b, "step", "optimizer", 250, 400);    // clipped: 250..300
  const auto stats = t.track_stats();
  REQUIRE(stats.size() == 2);
  CHECK(stats[0].busy_us == Approx(80.0));
  CHECK(stats[0].window_us == Approx(200.0));
  CHECK(stats[0].bubble == Approx(0.6));
  CHECK(stats[1].busy_us == Approx(50.0));
  CHECK(stats[1].bubble == Approx(0.75));
}

TEST_CASE("the Chrome trace has a named track per actor and complete events", "[trace]") {
  TempDir dir("troupe_trace");
  TraceRecorder t;
  const int a = t.track("stage 0");
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&, i] {
      for (int k = 0; k < 100; ++k) t.span(a, "F", "forward", i * 1000 + k, i * 1000 + k + 0.5, k);
    });
  for (auto& th : threads) th.join();
  t.write_chrome_trace(dir.file("t.json"));
  auto j = nlohmann::json::parse(std::ifstream(dir.file("t.json")));
  const auto& ev = j.at("traceEvents");
  REQUIRE(ev.size() == 401);
  CHECK(ev[0]["ph"] == "M");
  CHECK(ev[0]["args"]["name"] == "stage 0");
  CHECK(ev[1]["ph"] == "X");
  CHECK(ev[1]["dur"].get<double>() == Approx(0.5));
  CHECK(ev[1].contains("args"));
  CHECK(dir.entries() == std::vector<std::string>{"t.json"});

  CHECK_THROWS_AS(t.write_chrome_trace("/nonexistent-dir/t.json"), Error);
  CHECK_FALSE(std::filesystem::exists("/nonexistent-dir/t.json.partial"));
}

TEST_CASE("a disabled recorder records nothing; ideal bubbles", "[trace]") {
  TraceRecorder off(false);
  const int a = off.track("x");
  off.span(a, "F", "forward", 0, 1);
  off.window(0, 1);
  CHECK(off.track_stats().at(0).busy_us == 0.0);
  CHECK(theoretical_bubble("1f1b", 4, 16, 1) == Approx(3.0 / 19.0));
  CHECK(theoretical_bubble("gpipe", 2, 8, 1) == Approx(1.0 / 9.0));
  CHECK(theoretical_bubble("interleaved", 4, 8, 2) == Approx(3.0 / 19.0));
}
