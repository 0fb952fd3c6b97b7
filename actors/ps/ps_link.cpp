// RemotePsClient's calls and the server's per-worker answering loop.
#include "actors/ps/ps_link.h"

#include <fmt/format.h>

#include "runtime/error.h"

namespace troupe::ps {

namespace {

constexpr int kServer = 0;
constexpr int kWorker = 1;

void send_message(comm::Transport& link, int to, wire::Kind kind, std::int64_t step, double scalar,
                  const std::vector<std::byte>& payload) {
  wire::Header h;
  h.kind = kind;
  h.step = step;
  h.scalar = scalar;
  h.payload_bytes = payload.size();
  link.send(to, wire::kPsHeaderTag, std::as_bytes(std::span(&h, 1)));
  if (!payload.empty()) link.send(to, wire::kPsPayloadTag, payload);
}

// The next message from `from`: its header and its payload.
wire::Header recv_message(comm::Transport& link, int from, const std::string& peer, std::vector<std::byte>& payload) {
  wire::Header h;
  link.recv(from, wire::kPsHeaderTag, std::as_writable_bytes(std::span(&h, 1)));
  wire::check_header(h, peer);
  constexpr std::uint64_t kLimit = std::uint64_t{1} << 36;  // 64 GiB: far above any model's gradients
  if (h.payload_bytes > kLimit)
    throw Error(ErrorKind::kIo, fmt::format("malformed ps {} from {}: a payload of {} bytes", wire::kind_name(h.kind), peer,
                                            h.payload_bytes));
  payload.resize(h.payload_bytes);
  if (h.payload_bytes) link.recv(from, wire::kPsPayloadTag, payload);
  return h;
}

}  // namespace

RemotePsClient::RemotePsClient(comm::Transport& link, std::shared_ptr<const PsLayout> layout, int worker)
    : link_(link), layout_(std::move(layout)), worker_(worker) {
  TROUPE_CHECK(link.size() == 2 && link.rank() == kWorker, "a worker's ps link is rank 1 of 2, got rank ", link.rank(),
               " of ", link.size());
}

std::vector<std::byte> RemotePsClient::call(wire::Kind kind, std::int64_t step, double scalar,
                                            std::vector<std::byte> payload) {
  send_message(link_, kServer, kind, step, scalar, payload);
  std::vector<std::byte> answer;
  const wire::Header h = recv_message(link_, kServer, "the parameter-server process", answer);
  if (h.kind == wire::Kind::error)
    throw Error(ErrorKind::kInput, std::string(reinterpret_cast<const char*>(answer.data()), answer.size()));
  if (h.kind != wire::Kind::ok || h.step != step)
    throw Error(ErrorKind::kIo, fmt::format("worker {}: the parameter-server process answered the {} of step {} with a {} "
                                            "for step {}",
                                            worker_, wire::kind_name(kind), step, wire::kind_name(h.kind), h.step));
  return answer;
}

PsPulled RemotePsClient::pull(std::int64_t step, const std::vector<std::vector<std::int64_t>>& ids, bool dense) {
  const std::vector<std::byte> answer = call(wire::Kind::pull, step, dense ? 1.0 : 0.0, wire::encode_pull(ids));
  return wire::decode_pulled(answer, *layout_, dense, ids, "the parameter-server process");
}

void RemotePsClient::push(std::int64_t step, const std::vector<Tensor>& dense, const std::vector<SparseRows>& tables,
                          double lr) {
  call(wire::Kind::push, step, lr, wire::encode_push(dense, tables));
}

void RemotePsClient::push_exact(std::int64_t step, std::vector<ExactGrad> exact, const std::vector<SparseRows>& tables,
                                double lr) {
  if (!tables.empty())
    throw Error(ErrorKind::kInput, fmt::format("worker {} step {}: exact pushes carry dense gradients only", worker_, step));
  call(wire::Kind::push_exact, step, lr, wire::encode_push_exact(exact));
}

double RemotePsClient::clip(std::int64_t step, double max_norm) {
  return wire::decode_f64(call(wire::Kind::clip, step, max_norm, {}), "clip answer", "the parameter-server process");
}

void RemotePsClient::report(std::int64_t step, const std::vector<double>& losses) {
  call(wire::Kind::report, step, 0.0, wire::encode_losses(losses));
}

std::int64_t RemotePsClient::hello() {
  return wire::decode_i64(call(wire::Kind::hello, 0, 0.0, {}), "hello answer", "the parameter-server process");
}

void RemotePsClient::bye() { call(wire::Kind::bye, 0, 0.0, {}); }

void serve_remote_worker(comm::Transport& link, int worker, const PsLayout& layout, PsEndpoint& client,
                         const PsServeHooks& hooks) {
  TROUPE_CHECK(link.size() == 2 && link.rank() == kServer, "the server's ps link is rank 0 of 2, got rank ", link.rank(),
               " of ", link.size());
  const std::string peer = fmt::format("ps worker {}", worker);
  std::vector<std::byte> payload;
  while (true) {
    const wire::Header h = recv_message(link, kWorker, peer, payload);
    std::vector<std::byte> answer;
    try {
      switch (h.kind) {
        case wire::Kind::pull: {
          const auto ids = wire::decode_pull(payload, layout, peer);
          answer = wire::encode_pulled(client.pull(h.step, ids, h.scalar != 0.0));
          break;
        }
        case wire::Kind::push: {
          wire::PushPayload p = wire::decode_push(payload, layout, peer);
          client.push(h.step, p.dense, p.tables, h.scalar);
          if (hooks.on_pushed) hooks.on_pushed(h.step);
          break;
        }
        case wire::Kind::push_exact:
          client.push_exact(h.step, wire::decode_push_exact(payload, layout, peer), {}, h.scalar);
          if (hooks.on_pushed) hooks.on_pushed(h.step);
          break;
        case wire::Kind::clip:
          answer = wire::encode_f64(client.clip(h.step, h.scalar));
          break;
        case wire::Kind::report:
          if (hooks.on_report) hooks.on_report(h.step, wire::decode_losses(payload, peer));
          break;
        case wire::Kind::hello:
          answer = wire::encode_i64(hooks.resume_step ? hooks.resume_step() : 0);
          break;
        case wire::Kind::bye:
          send_message(link, kWorker, wire::Kind::ok, h.step, 0.0, {});
          return;
        case wire::Kind::ok:
        case wire::Kind::error:
          throw Error(ErrorKind::kIo, fmt::format("malformed ps message from {}: an {} where a request belongs", peer,
                                                  wire::kind_name(h.kind)));
      }
    } catch (const Error& e) {
      // The shards refused it (bad input): the worker gets the text and the link stays up. Anything
      // else (a malformed message, a dead shard) ends serving.
      if (e.kind() != ErrorKind::kInput) throw;
      const std::string text = e.what();
      send_message(link, kWorker, wire::Kind::error, h.step, 0.0,
                   std::vector<std::byte>(reinterpret_cast<const std::byte*>(text.data()),
                                          reinterpret_cast<const std::byte*>(text.data()) + text.size()));
      continue;
    }
    send_message(link, kWorker, wire::Kind::ok, h.step, 0.0, answer);
  }
}

}  // namespace troupe::ps
