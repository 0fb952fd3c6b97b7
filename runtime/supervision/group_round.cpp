// GroupRound: answers, abandon rounds and the stop of one group step.
#include "runtime/supervision/group_round.h"

#include <algorithm>

#include "runtime/error.h"

namespace troupe::supervision {

GroupRound::GroupRound(int members, std::uint64_t round)
    : answered_(static_cast<std::size_t>(members), 0), waiting_quiet_(static_cast<std::size_t>(members), 0), round_(round) {
  TROUPE_CHECK(members >= 1, "a group step of ", members, " members");
}

void GroupRound::answer(int m) {
  TROUPE_CHECK(m >= 0 && m < static_cast<int>(answered_.size()), "member ", m, " of ", answered_.size());
  const auto i = static_cast<std::size_t>(m);
  if (!answered_[i]) ++answers_;
  answered_[i] = 1;
  waiting_quiet_[i] = 0;
}

bool GroupRound::done(int m) {
  TROUPE_CHECK(m >= 0 && m < static_cast<int>(answered_.size()), "member ", m, " of ", answered_.size());
  const auto i = static_cast<std::size_t>(m);
  if (waiting_quiet_[i] || answered_[i]) return false;
  answer(m);
  return true;
}

bool GroupRound::failed(int m) {
  answer(m);
  if (stopped_) return false;
  stopped_ = true;
  return true;
}

bool GroupRound::interrupted(std::uint64_t round) {
  if (stopped_ || round < round_ || aborting_) return false;
  ++round_;
  aborting_ = true;
  std::fill(answered_.begin(), answered_.end(), 0);
  std::fill(waiting_quiet_.begin(), waiting_quiet_.end(), 1);
  answers_ = 0;
  return true;
}

bool GroupRound::quiet(int m, std::uint64_t round) {
  TROUPE_CHECK(m >= 0 && m < static_cast<int>(answered_.size()), "member ", m, " of ", answered_.size());
  const auto i = static_cast<std::size_t>(m);
  if (stopped_ || round != round_ || !waiting_quiet_[i]) return false;
  waiting_quiet_[i] = 0;
  if (std::find(waiting_quiet_.begin(), waiting_quiet_.end(), 1) != waiting_quiet_.end()) return false;
  aborting_ = false;
  return true;
}

int GroupRound::stuck() const {
  if (!aborting_ || stopped_) return -1;
  const auto it = std::find(waiting_quiet_.begin(), waiting_quiet_.end(), 1);
  return it == waiting_quiet_.end() ? -1 : static_cast<int>(it - waiting_quiet_.begin());
}

void GroupRound::give_up(int m) {
  stopped_ = true;
  answer(m);
}

}  // namespace troupe::supervision
