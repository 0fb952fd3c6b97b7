// The tensor-shard processes' commands on the wire: a header of three int64 values, then the path.
#include "actors/tensor_shard_commands.h"

#include <array>
#include <cstring>

#include <fmt/format.h>

#include "runtime/error.h"

namespace troupe {

namespace {
constexpr std::int64_t kLastOp = static_cast<std::int64_t>(ShardOp::end);
constexpr std::int64_t kMaxPath = 1 << 16;  // a path longer than this is no command
}  // namespace

void send_command(comm::Transport& world, int to, const ShardCommand& command) {
  const std::array<std::int64_t, 3> header = {static_cast<std::int64_t>(command.op), command.arg,
                                              static_cast<std::int64_t>(command.path.size())};
  TROUPE_CHECK(header[2] <= kMaxPath, "a command path of ", header[2], " bytes");
  world.send(to, kShardCommandTag, std::as_bytes(std::span(header)));
  if (!command.path.empty()) world.send(to, kShardCommandTag, std::as_bytes(std::span(command.path)));
}

ShardCommand recv_command(comm::Transport& world, int from) {
  std::array<std::int64_t, 3> header{};
  world.recv(from, kShardCommandTag, std::as_writable_bytes(std::span(header)));
  if (header[0] < 0 || header[0] > kLastOp || header[2] < 0 || header[2] > kMaxPath)
    throw Error(ErrorKind::kIo, fmt::format("rank {} sent no tensor-shard command (op {}, path of {} bytes): is it "
                                            "the same troupe program?",
                                            from, header[0], header[2]));
  ShardCommand command{static_cast<ShardOp>(header[0]), header[1], std::string(static_cast<std::size_t>(header[2]), '\0')};
  if (!command.path.empty()) world.recv(from, kShardCommandTag, std::as_writable_bytes(std::span(command.path)));
  return command;
}

ShardCommand wait_command(comm::Transport& world, int from, std::chrono::milliseconds timeout) {
  for (;;) {
    const auto start = std::chrono::steady_clock::now();
    try {
      return recv_command(world, from);
    } catch (const Error&) {
      // A timeout waited the transport's whole timeout; a dead or departed rank 0 fails at once.
      if (std::chrono::steady_clock::now() - start < timeout * 9 / 10) throw;
    }
  }
}

}  // namespace troupe
