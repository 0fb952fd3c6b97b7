// Tests poll_for_message: an idle actor waits awake for its next message, and no longer than its budget.
#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <tuple>

#include <caf/all.hpp>

#include "actors/message_poll.h"

using namespace troupe;
using Clock = std::chrono::steady_clock;

namespace {
// A detached actor that, on "poll", polls for `budget` and answers how long it polled and whether a
// message was then waiting.
caf::behavior poller(caf::event_based_actor* self, std::chrono::microseconds budget) {
  return {
      [=](int) -> std::tuple<double, bool> {
        const auto t0 = Clock::now();
        poll_for_message(self, budget);
        return std::make_tuple(std::chrono::duration<double>(Clock::now() - t0).count(), !self->mailbox().empty());
      },
      [](const std::string&) {},
  };
}
}  // namespace

TEST_CASE("poll_for_message returns when a message arrives, and after its budget when none does", "[actors]") {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  SECTION("a message arrives: it returns long before its 20 s budget") {
    auto a = sys.spawn<caf::detached>(poller, std::chrono::seconds(20));
    auto reply = self->request(a, caf::infinite, 1);
    self->send(a, std::string("next"));  // queued behind the poll request
    reply.receive([](double seconds, bool waiting) {
      CHECK(waiting);
      CHECK(seconds < 10.0);
    }, [](caf::error&) { FAIL("no answer"); });
    self->send_exit(a, caf::exit_reason::user_shutdown);
  }
  SECTION("nothing arrives: it returns after its budget") {
    auto a = sys.spawn<caf::detached>(poller, std::chrono::milliseconds(30));
    self->request(a, caf::infinite, 1).receive([](double seconds, bool waiting) {
      CHECK_FALSE(waiting);
      CHECK(seconds >= 0.030);
    }, [](caf::error&) { FAIL("no answer"); });
    self->send_exit(a, caf::exit_reason::user_shutdown);
  }
  SECTION("a zero budget does not poll") {
    auto a = sys.spawn<caf::detached>(poller, std::chrono::microseconds(0));
    self->request(a, caf::infinite, 1).receive([](double seconds, bool) { CHECK(seconds < 0.030); },
                                               [](caf::error&) { FAIL("no answer"); });
    self->send_exit(a, caf::exit_reason::user_shutdown);
  }
}
