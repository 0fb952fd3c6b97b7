// The restarts a rank process reports to rank 0, without processes: the report's text form, rank 0's log of
// them (updates, restarted processes, the re-forms they explain), the framing beside the heartbeats however
// the reads split it, a real pipe from report_to_rank_zero to the heartbeat monitor, and the restart
// intensity's observer that feeds it all.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "runtime/process/heartbeat.h"
#include "runtime/process/rank_reports.h"
#include "runtime/supervision/forwarded_restarts.h"
#include "runtime/supervision/restart_intensity.h"

using namespace troupe;
using namespace troupe::supervision;

namespace {

ForwardedRestart stage_restart(int rank, std::size_t index, std::int64_t step) {
  Restart r{"replica 1/stage 0", step, "stage 0: injected fault\nat B0 (during the forward/backward pass)", 0.125};
  return {rank, index, r};
}

// A report framed as report_to_rank_zero writes it.
std::string framed(const std::string& text) {
  std::string f(1, kReportByte);
  for (int i = 0; i < 4; ++i) f.push_back(static_cast<char>((text.size() >> (8 * i)) & 0xff));
  return f + text;
}

}  // namespace

TEST_CASE("forwarded restarts: the report's text reads back exactly, and anything else is refused", "[supervision][forwarded]") {
  ForwardedRestart f = stage_restart(2, 3, 7);
  f.restart.at_s = 0.1 + 0.2;  // not a short decimal
  f.restart.restarted_s = 1.0 / 3.0;
  const std::string text = encode_forwarded_restart(f);
  const auto back = decode_forwarded_restart(text);
  REQUIRE(back.has_value());
  CHECK(back->rank == 2);
  CHECK(back->index == 3);
  CHECK(back->restart.child == f.restart.child);
  CHECK(back->restart.step == 7);
  CHECK(back->restart.cause == f.restart.cause);  // its newline too
  CHECK(back->restart.at_s == f.restart.at_s);
  CHECK(back->restart.restarted_s == f.restart.restarted_s);
  CHECK(back->restart.recovery_s == -1.0);

  CHECK_FALSE(decode_forwarded_restart("").has_value());
  CHECK_FALSE(decode_forwarded_restart("hello\nworld").has_value());
  CHECK_FALSE(decode_forwarded_restart(text.substr(0, text.size() - 1)).has_value());  // a byte short
  CHECK_FALSE(decode_forwarded_restart(text + "x").has_value());                       // a byte over
  std::string bad_number = text;
  bad_number.replace(bad_number.find(" 2 3 "), 5, " x 3 ");
  CHECK_FALSE(decode_forwarded_restart(bad_number).has_value());
}

TEST_CASE("forwarded restarts: rank 0's log updates a restart's times, keeps a restarted process's apart, and names "
          "the rank", "[supervision][forwarded]") {
  ForwardedRestarts log;
  log.add(4242, stage_restart(1, 0, 2));
  ForwardedRestart timed = stage_restart(1, 0, 2);
  timed.restart.restarted_s = 0.01;
  timed.restart.recovery_s = 0.5;
  log.add(4242, timed);                      // the same restart, its times known now
  log.add(4300, stage_restart(1, 0, 4));     // rank 1's next process: its log starts at 0 again
  log.add(4242, stage_restart(1, 1, 3));     // the first process's second restart
  log.add(5000, stage_restart(2, 0, 4));
  REQUIRE(log.size() == 4);
  const std::vector<Restart> all = log.restarts();
  CHECK(all[0].child == "rank 1/replica 1/stage 0");
  CHECK(all[0].step == 2);
  CHECK(all[0].restarted_s == 0.01);
  CHECK(all[0].recovery_s == 0.5);
  CHECK(all[1].step == 4);
  CHECK(all[2].step == 3);
  CHECK(all[3].child == "rank 2/replica 1/stage 0");
}

TEST_CASE("forwarded restarts: each explains one re-form of the group, in its own step or the next, or between steps "
          "any", "[supervision][forwarded]") {
  ForwardedRestarts log;
  CHECK_FALSE(log.explains_reform(2));
  log.add(1, stage_restart(1, 0, 2));
  log.add(1, stage_restart(1, 1, 2));
  log.add(2, stage_restart(2, 0, -1));  // killed between steps
  log.add(2, stage_restart(2, 1, 7));   // died in step 7's update: rank 0 is in step 8 already
  CHECK(log.explains_reform(5));  // the one between steps, re-run with step 5
  CHECK(log.explains_reform(2));
  CHECK(log.explains_reform(3));
  CHECK_FALSE(log.explains_reform(2));  // each once
  CHECK_FALSE(log.explains_reform(6));
  CHECK(log.explains_reform(8));
  CHECK_FALSE(log.explains_reform(8));
}

TEST_CASE("rank reports: beats are dropped and reports come whole, however the reads split them", "[process][forwarded]") {
  const std::string a = "first report", b(3000, 'x'), empty;
  const std::string stream = std::string(3, kBeatByte) + framed(a) + std::string(1, kBeatByte) + framed(empty) +
                             framed(b) + std::string(2, kBeatByte);
  for (std::size_t chunk : {std::size_t(1), std::size_t(2), std::size_t(7), std::size_t(4096)}) {
    INFO("chunk " << chunk);
    RankReportReader reader;
    std::vector<std::string> got;
    for (std::size_t at = 0; at < stream.size(); at += chunk)
      for (std::string& r : reader.feed({stream.data() + at, std::min(chunk, stream.size() - at)})) got.push_back(r);
    REQUIRE(got.size() == 3);
    CHECK(got[0] == a);
    CHECK(got[1].empty());
    CHECK(got[2] == b);
    CHECK(reader.pending() == 0);
  }
  RankReportReader reader;
  CHECK(reader.feed({"\x02\xff\xff\xff\x7f", 5}).empty());  // a length no writer sends: dropped
  CHECK(reader.pending() == 0);
  const std::string after = framed("ok");
  CHECK(reader.feed({after.data(), after.size()}) == std::vector<std::string>{"ok"});
}

TEST_CASE("rank reports: a report sent on the heartbeat pipe reaches the monitor with its rank and process, also "
          "from a process replaced since", "[process][forwarded]") {
  int pipe_a[2], pipe_b[2];
  REQUIRE(pipe(pipe_a) == 0);
  REQUIRE(pipe(pipe_b) == 0);
  HeartbeatMonitor monitor(std::chrono::milliseconds(60000), [](int, pid_t, double) {});
  monitor.watch(1, 4242, pipe_a[0]);
  // This process plays rank 1: its heartbeat descriptor is pipe_a's write end.
  const int saved = ::fcntl(kHeartbeatFd, F_GETFD) >= 0 ? ::dup(kHeartbeatFd) : -1;
  REQUIRE(::dup2(pipe_a[1], kHeartbeatFd) == kHeartbeatFd);
  CHECK_FALSE(has_rank_zero());
  CHECK_FALSE(report_to_rank_zero("unsent"));  // no rank 0 to tell without the heartbeat's environment
  ::setenv(kHeartbeatEnv, "1000", 1);
  CHECK(has_rank_zero());
  const char beat = kBeatByte;
  CHECK(::write(kHeartbeatFd, &beat, 1) == 1);
  CHECK(report_to_rank_zero("restart one"));
  CHECK(report_to_rank_zero(std::string(kMaxRankReport + 100, 'y')));  // cut, still one report
  std::vector<HeartbeatMonitor::Report> got = monitor.take_reports();
  REQUIRE(got.size() == 2);
  CHECK(got[0].rank == 1);
  CHECK(got[0].pid == 4242);
  CHECK(got[0].text == "restart one");
  CHECK(got[1].text == std::string(kMaxRankReport, 'y'));
  CHECK(monitor.take_reports().empty());  // taken once
  // Its last report, then rank 1 is restarted (watched on a new pipe) before the monitor read it: kept.
  CHECK(report_to_rank_zero("last words"));
  monitor.watch(1, 4300, pipe_b[0]);
  got = monitor.take_reports();
  REQUIRE(got.size() == 1);
  CHECK(got[0].pid == 4242);
  CHECK(got[0].text == "last words");
  ::unsetenv(kHeartbeatEnv);
  if (saved >= 0) {
    ::dup2(saved, kHeartbeatFd);
    ::close(saved);
  } else {
    ::close(kHeartbeatFd);
  }
  ::close(pipe_a[1]);
  ::close(pipe_b[1]);
}

TEST_CASE("restart intensity: its observer hears of each restart as it is recorded and as its times are set",
          "[supervision][forwarded]") {
  RestartIntensity intensity(2, 60.0);
  std::vector<std::pair<std::size_t, Restart>> heard;
  intensity.observe([&](std::size_t i, const Restart& r) { heard.emplace_back(i, r); });
  REQUIRE(intensity.allow("replica 1/stage 0", 3, "boom", 1.0));
  REQUIRE(heard.size() == 1);
  CHECK(heard[0].first == 0);
  CHECK(heard[0].second.restarted_s == -1.0);
  intensity.rerun(1.25);
  REQUIRE(heard.size() == 2);
  CHECK(heard[1].second.restarted_s == 0.25);
  intensity.recovered(2.0);
  REQUIRE(heard.size() == 3);
  CHECK(heard[2].second.recovery_s == 1.0);
  intensity.recovered(3.0);  // nothing changed: nothing heard
  CHECK(heard.size() == 3);
  REQUIRE(intensity.allow("replica 1/optimizer 1", 4, "bang", 4.0));
  CHECK(heard.back().first == 1);
  CHECK_FALSE(intensity.allow("replica 1/stage 0", 4, "again", 4.5));  // escalates: nothing recorded, nothing heard
  CHECK(heard.size() == 4);
}

TEST_CASE("forwarded escalations: the text reads back, and rank 0 finds it by the process that sent it",
          "[supervision][forwarded]") {
  RestartIntensity intensity(0, 60.0);
  std::string heard;
  intensity.observe_escalation([&](const std::string& e) { heard = e; });
  REQUIRE_FALSE(intensity.allow("replica 1/stage 0", 2, "boom", 1.0));
  const std::string words = intensity.escalation("stage actor replica 1/stage 0", 2, "boom", "");
  CHECK(heard == words);  // what the supervisor says is what rank 0 hears
  const auto back = decode_forwarded_escalation(encode_forwarded_escalation({1, words}));
  REQUIRE(back.has_value());
  CHECK(back->rank == 1);
  CHECK(back->escalation == words);
  CHECK_FALSE(decode_forwarded_escalation(encode_forwarded_restart(stage_restart(1, 0, 2))).has_value());
  CHECK_FALSE(decode_forwarded_restart(encode_forwarded_escalation({1, words})).has_value());
  CHECK_FALSE(decode_forwarded_escalation("troupe-escalation x\nwords").has_value());

  ForwardedRestarts log;
  log.add_escalation(4242, *back);
  CHECK_FALSE(log.escalation_of(4300).has_value());  // rank 1's next process did not escalate
  REQUIRE(log.escalation_of(4242).has_value());
  CHECK(log.escalation_of(4242)->escalation == words);
  CHECK(log.restarts().empty());
}
