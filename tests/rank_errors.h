// Owns how multi-rank tests read what their ranks threw: every rank clean, or the troupe::Error one rank raised.
#pragma once

#include <catch2/catch.hpp>

#include <exception>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "net/inproc/inproc_transport.h"
#include "runtime/comm/transport.h"
#include "runtime/error.h"

namespace troupe::testing {

// Runs fn on one thread per rank of a world the test built itself (its own timeout, ranks it kills);
// returns what each rank threw (null when it returned). Unlike RankGroup::run, a throwing rank is
// not killed: the test decides what its peers see.
inline std::vector<std::exception_ptr> spawn_world(net::InprocWorld& world,
                                                   const std::function<void(comm::Transport&)>& fn) {
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(world.size()));
  std::vector<std::thread> threads;
  for (int r = 0; r < world.size(); ++r) {
    threads.emplace_back([&, r, t = world.transport(r)]() mutable {
      try {
        fn(*t);
      } catch (...) {
        errors[static_cast<std::size_t>(r)] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

// The message of the troupe::Error (of kind kIo) in `e`; fails the test for anything else, or for none.
inline std::string io_error(const std::exception_ptr& e) {
  REQUIRE(e);
  try {
    std::rethrow_exception(e);
  } catch (const Error& err) {
    CHECK(err.kind() == ErrorKind::kIo);
    return err.what();
  } catch (const std::exception& other) {
    FAIL("not a troupe::Error: " << other.what());
  }
  return {};
}

// Runs fn, keeping what it throws in `error`: a test thread's body, which must not end the process
// with std::terminate when a peer's failure makes it throw.
template <class Fn>
void keep_error(std::exception_ptr& error, Fn&& fn) {
  try {
    fn();
  } catch (...) {
    error = std::current_exception();
  }
}

// Fails the test naming the first rank that threw, with its message.
inline void require_no_errors(const std::vector<std::exception_ptr>& errors) {
  for (std::size_t r = 0; r < errors.size(); ++r) {
    if (!errors[r]) continue;
    try {
      std::rethrow_exception(errors[r]);
    } catch (const std::exception& e) {
      FAIL("rank " << r << " threw: " << e.what());
    }
  }
}

}  // namespace troupe::testing
