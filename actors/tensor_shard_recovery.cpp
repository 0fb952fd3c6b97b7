// The tensor-shard processes' re-form on the wire: standings, verdicts, state bytes and copies, each a header of int64 words and then bytes.
#include "actors/tensor_shard_recovery.h"

#include <array>

#include <fmt/format.h>

#include "runtime/error.h"

namespace troupe {

namespace {
constexpr std::uint32_t kStandingTag = 0x7470'2001;  // r -> 0: {standing, kept}
constexpr std::uint32_t kVerdictTag = 0x7470'2002;   // 0 -> r: {step, from, sends}, then the ranks sent to
constexpr std::uint32_t kStateTag = 0x7470'2003;     // sender -> taker: {bytes}, then the state
constexpr std::uint32_t kCopyTag = 0x7470'2004;      // r -> 0: {step, bytes}, then the state
constexpr std::int64_t kMaxStateBytes = std::int64_t{1} << 40;

template <std::size_t N>
void send_words(comm::Transport& world, int to, std::uint32_t tag, const std::array<std::int64_t, N>& words) {
  world.send(to, tag, std::as_bytes(std::span(words)));
}
template <std::size_t N>
std::array<std::int64_t, N> recv_words(comm::Transport& world, int from, std::uint32_t tag) {
  std::array<std::int64_t, N> words{};
  world.recv(from, tag, std::as_writable_bytes(std::span(words)));
  return words;
}
std::vector<std::byte> recv_bytes(comm::Transport& world, int from, std::uint32_t tag, std::int64_t n, const char* what) {
  if (n < 0 || n > kMaxStateBytes)
    throw Error(ErrorKind::kIo, fmt::format("rank {} announced {} of {} bytes: is it the same troupe program?", from, what, n));
  std::vector<std::byte> bytes(static_cast<std::size_t>(n));
  if (n > 0) world.recv(from, tag, bytes);
  return bytes;
}
}  // namespace

void send_standing(comm::Transport& world, const supervision::ShardStanding& s) {
  send_words<2>(world, 0, kStandingTag, {s.standing, s.kept});
}

std::vector<supervision::ShardStanding> recv_standings(comm::Transport& world, const supervision::ShardStanding& mine) {
  std::vector<supervision::ShardStanding> all(static_cast<std::size_t>(world.size()));
  all[0] = mine;
  for (int r = 1; r < world.size(); ++r) {
    const auto w = recv_words<2>(world, r, kStandingTag);
    all[static_cast<std::size_t>(r)] = {w[0], w[1]};
  }
  return all;
}

ShardVerdict send_verdicts(comm::Transport& world, std::int64_t step, const std::vector<supervision::StateMove>& moves) {
  std::vector<ShardVerdict> verdicts(static_cast<std::size_t>(world.size()), ShardVerdict{step, -1, {}});
  for (const supervision::StateMove& m : moves) {
    verdicts.at(static_cast<std::size_t>(m.to)).from = m.from;
    verdicts.at(static_cast<std::size_t>(m.from)).send_to.push_back(m.to);
  }
  for (int r = 1; r < world.size(); ++r) {
    const ShardVerdict& v = verdicts[static_cast<std::size_t>(r)];
    send_words<3>(world, r, kVerdictTag, {step, v.from, static_cast<std::int64_t>(v.send_to.size())});
    if (!v.send_to.empty()) {
      const std::vector<std::int64_t> to(v.send_to.begin(), v.send_to.end());
      world.send(r, kVerdictTag, std::as_bytes(std::span(to)));
    }
  }
  return verdicts[0];
}

ShardVerdict recv_verdict(comm::Transport& world) {
  const auto w = recv_words<3>(world, 0, kVerdictTag);
  if (w[0] < 0 || w[1] < -1 || w[1] >= world.size() || w[2] < 0 || w[2] >= world.size())
    throw Error(ErrorKind::kIo, fmt::format("rank 0 sent no re-form verdict (step {}, from {}, {} sends): is it the same "
                                            "troupe program?",
                                            w[0], w[1], w[2]));
  ShardVerdict v{w[0], static_cast<int>(w[1]), {}};
  if (w[2] > 0) {
    std::vector<std::int64_t> to(static_cast<std::size_t>(w[2]));
    world.recv(0, kVerdictTag, std::as_writable_bytes(std::span(to)));
    for (std::int64_t r : to) {
      if (r <= 0 || r >= world.size()) throw Error(ErrorKind::kIo, fmt::format("rank 0 named rank {} in a verdict", r));
      v.send_to.push_back(static_cast<int>(r));
    }
  }
  return v;
}

void send_state_bytes(comm::Transport& world, int to, std::span<const std::byte> bytes) {
  send_words<1>(world, to, kStateTag, {static_cast<std::int64_t>(bytes.size())});
  if (!bytes.empty()) world.send(to, kStateTag, bytes);
}

std::vector<std::byte> recv_state_bytes(comm::Transport& world, int from) {
  return recv_bytes(world, from, kStateTag, recv_words<1>(world, from, kStateTag)[0], "a shard state");
}

void send_copy(comm::Transport& world, std::int64_t step, std::span<const std::byte> bytes) {
  send_words<2>(world, 0, kCopyTag, {step, static_cast<std::int64_t>(bytes.size())});
  if (!bytes.empty()) world.send(0, kCopyTag, bytes);
}

std::vector<std::byte> recv_copy(comm::Transport& world, int from, std::int64_t step) {
  const auto w = recv_words<2>(world, from, kCopyTag);
  std::vector<std::byte> bytes = recv_bytes(world, from, kCopyTag, w[1], "a shard copy");
  if (w[0] != step)
    throw Error(ErrorKind::kIo, fmt::format("rank {} sent a copy of its shard at step {}'s boundary, rank 0 expected "
                                            "step {}'s",
                                            from, w[0], step));
  return bytes;
}

}  // namespace troupe
