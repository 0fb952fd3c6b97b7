// Owns the TCP transport's API: send() and recv() on the rank's thread (chunking, the posted recv, timeouts and error messages), abort, shutdown order, and connect_tcp's start of the link threads.
#include "net/tcp/tcp_transport.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "net/tcp/chunking.h"
#include "net/tcp/rendezvous.h"
#include "net/tcp/transport_state.h"

namespace troupe::net {

namespace asio = boost::asio;
using tcp::Clock;
using Link = tcp::Link;
using Message = tcp::Message;
using Posted = tcp::Posted;

// ---------------------------------------------------------------------------------------------

TcpTransport::TcpTransport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

TcpTransport::~TcpTransport() {
  bool orderly;
  {
    std::lock_guard lock(impl_->mu);
    orderly = !impl_->aborted && (std::uncaught_exceptions() == 0 || impl_->first_failed >= 0);
  }
  impl_->close(orderly);
}

int TcpTransport::rank() const { return impl_->rank; }
int TcpTransport::size() const { return impl_->size; }
const std::vector<std::string>& TcpTransport::hostnames() const { return impl_->hostnames; }

void TcpTransport::abort() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->aborted = true;
  }
  impl_->cv.notify_all();
  impl_->wake_readers();
  impl_->abort_links();
}

void TcpTransport::throw_if_broken(int peer, const char* op) {
  std::lock_guard lock(impl_->mu);
  impl_->throw_if_broken(peer, op);
}

bool TcpTransport::peer_closed(int peer) {
  std::lock_guard lock(impl_->mu);
  return peer != impl_->rank && impl_->link(peer).state == Link::State::kClosed;
}

tcp::Protection TcpTransport::protection(int peer) const {
  TROUPE_CHECK(peer >= 0 && peer < impl_->size, "link to rank ", peer, " of ", impl_->size);
  return peer == impl_->rank ? tcp::Protection::off : impl_->links[static_cast<std::size_t>(peer)]->protection;
}

void TcpTransport::send(int to, std::uint32_t tag, std::span<const std::byte> data) { impl_->send(to, tag, data, false); }

void TcpTransport::send_lent(int to, std::uint32_t tag, std::span<const std::byte> data) {
  TROUPE_CHECK(to >= 0 && to < impl_->size, "send to rank ", to, " of ", impl_->size);
  // A protected link seals (or encrypts) what it queues in one pass with the copy: it copies anyway.
  const bool lend = to != impl_->rank && impl_->link(to).protection == tcp::Protection::off;
  impl_->send(to, tag, data, lend);
}

void TcpTransport::release_lent() noexcept { impl_->release_lent(); }

void TcpTransport::Impl::send(int to, std::uint32_t tag, std::span<const std::byte> data, bool lent) {
  Impl& s = *this;
  TROUPE_CHECK(to >= 0 && to < s.size, "send to rank ", to, " of ", s.size);
  {
    std::lock_guard lock(s.mu);
    s.throw_if_broken(to, "send");
    if (to == s.rank) {  // to itself: straight into the inbox
      Message m;
      m.size = data.size();
      m.words.reset(new std::uint64_t[(m.size + 7) / 8]);
      if (!data.empty()) std::memcpy(m.bytes(), data.data(), data.size());
      m.complete = true;
      s.inbox[{to, tag}].push_back(std::move(m));
      return;
    }
    if (s.link(to).state == Link::State::kClosed) {
      throw Error(ErrorKind::kIo, detail::concat("rank ", s.rank, ": send to rank ", to, " failed: rank ", to,
                                                 " closed its transport"));
    }
  }
  Link& l = s.link(to);
  const auto chunks = tcp::chunk_ranges(data.size(), s.chunk_bytes);
  std::size_t i = 0;
  // Fast path: while the link is idle, write the frames straight from the caller's buffer, as far as
  // the socket takes them without blocking (the kernel's copy is then the copy send() promises).
  // The unsent end of a frame is copied and queued; later chunks take the queued path below.
  // An encrypted link sends ciphertext, which needs a copy anyway: it always takes the queued path.
  static constexpr std::byte kZeros[8] = {};
  if (l.protection != tcp::Protection::encrypt) {
    std::unique_lock write_lock(l.write_mu, std::try_to_lock);
    if (write_lock.owns_lock() && Impl::idle(l)) {
      for (; i < chunks.size(); ++i) {
        const tcp::ChunkRange& c = chunks[i];
        const wire::ChunkHeader header{tag, static_cast<std::uint32_t>(i), data.size(), c.offset};
        const wire::OutFrame frame =
            c.length ? wire::encode_chunk_header(header, c.length) : wire::encode_chunk(header, nullptr, 0);
        std::vector<std::span<const std::byte>> parts = frame.pieces();
        parts.push_back(data.subspan(c.offset, c.length));
        parts.emplace_back(kZeros, c.length ? wire::payload_padding(c.length) : 0);
        tcp::FrameSeals seals;
        if (l.sealer) {  // integrity: the seal over the frame as it goes out, then after it; the header's tag after the header
          seals = Impl::seal_whole(l, parts);
          parts.insert(parts.begin() + 1, std::span<const std::byte>(seals.header_tag));
          parts.emplace_back(seals.seal.data(), seals.seal.size());
        }
        std::size_t total = 0;
        for (const auto& p : parts) total += p.size();
        const std::size_t written = Impl::write_now(l, parts);
        if (written == total) continue;
        // A sealed frame has taken its sequence number: it goes out whole, even if none of it did yet.
        if (written > 0 || l.sealer) {
          s.enqueue_rest(l, parts, written, lent ? parts[parts.size() - 2] : std::span<const std::byte>{});
          ++i;
        }
        break;
      }
    }
  }
  for (; i < chunks.size(); ++i) {
    const tcp::ChunkRange& c = chunks[i];
    const auto index = static_cast<std::uint32_t>(i);
    if (lent && c.length) {  // the writer writes the payload from the caller's memory
      const wire::ChunkHeader header{tag, index, data.size(), c.offset};
      s.enqueue_lent(l, wire::encode_chunk_header(header, c.length), data.subspan(c.offset, c.length));
      continue;
    }
    // The copy send() promises, into storage the frame owns and writes by reference; the padding
    // to a whole word goes on the wire, so it is zeroed.
    std::unique_ptr<std::uint64_t[]> storage;
    const std::size_t padding = c.length ? wire::payload_padding(c.length) : 0;
    if (c.length) {
      const std::size_t words = (c.length + 7) / 8;
      storage = s.take_buffer(c.length);
      storage[words - 1] = 0;
      if (l.protection != tcp::Protection::encrypt) std::memcpy(storage.get(), data.data() + c.offset, c.length);
    }
    std::byte* payload = reinterpret_cast<std::byte*>(storage.get());
    wire::OutFrame frame = wire::encode_chunk(wire::ChunkHeader{tag, index, data.size(), c.offset}, std::move(storage), c.length);
    if (!l.sealer) {
      s.enqueue(l, std::move(frame), c.length);
      continue;
    }
    tcp::FrameSeals seals;
    if (l.protection == tcp::Protection::encrypt && c.length) {
      // The header in the clear (authenticated), the payload and its padding encrypted into the
      // frame's storage: the copy send() makes anyway is the encryption's one pass.
      const auto& pieces = frame.pieces();
      TROUPE_CHECK(pieces.back().data() == payload && pieces.back().size() == c.length + padding,
                   "a chunk's payload is its frame's last piece");
      l.sealer->begin();
      seals.header_tag = l.sealer->header_tag(pieces.front());
      for (std::size_t p = 0; p + 1 < pieces.size(); ++p) l.sealer->authenticate(pieces[p]);
      l.sealer->encrypt(data.subspan(c.offset, c.length), std::span(payload, c.length));
      l.sealer->encrypt(std::span(kZeros, padding), std::span(payload + c.length, padding));
      seals.seal = l.sealer->finish();
    } else {
      seals = Impl::seal_whole(l, frame.pieces());
    }
    s.enqueue(l, std::move(frame), c.length, false, &seals);
  }
}

void TcpTransport::recv(int from, std::uint32_t tag, std::span<std::byte> out) {
  Impl& s = *impl_;
  TROUPE_CHECK(from >= 0 && from < s.size, "recv from rank ", from, " of ", s.size);
  std::unique_lock lock(s.mu);
  auto& box = s.inbox[{from, tag}];
  s.posted = Posted{true, from, tag, out, Posted::State::kPending};
  const auto deadline = Clock::now() + s.timeout;
  if (from != s.rank) {
    Link& l = s.link(from);
    // The reader holds this message's header, its payload still in the socket: read it here, into
    // `out` (Impl::take_payload), rather than wake the reader and wait for it.
    if (l.offer.active && l.offer.tag == tag && l.offer.bytes == out.size() && box.empty() && !s.aborted &&
        s.first_failed < 0 && reinterpret_cast<std::uintptr_t>(out.data()) % 8 == 0) {
      l.offer.active = false;
      l.offer.into = out.data();
      l.handover = Link::Handover::kTaking;
      s.posted.state = Posted::State::kClaimed;  // should it fail, the reader ends the link and fails the recv
      lock.unlock();
      const Impl::Taken taken = Impl::take_payload(l, out, deadline);
      lock.lock();
      if (taken.outcome == Impl::Taken::Outcome::kDone) {
        l.handover = Link::Handover::kTaken;
        s.posted.active = false;
        lock.unlock();
        l.parked.notify_all();
        return;
      }
      // The stream ended or stalled in the payload: the reader ends the link as if it had read it.
      l.handover = Link::Handover::kFailed;
      l.taken_failure = taken.why;
      if (taken.outcome == Impl::Taken::Outcome::kTimeout && l.local_reason.headline.empty()) {
        l.local_reason = {detail::concat("rank ", from, " stalled in the middle of a message"),
                          "this rank closed the link when its recv timed out"};
        l.shutdown();
      }
    }
    l.parked.notify_all();  // only this peer's reader can be affected
  }
  enum class Outcome { kBroken, kClosed, kTimeout } outcome;
  while (true) {
    if (s.posted.state == Posted::State::kDone) {
      s.posted.active = false;
      return;
    }
    if (!box.empty() && box.front().complete) {
      Message m = std::move(box.front());
      box.pop_front();
      s.posted.active = false;
      lock.unlock();
      if (m.size != out.size()) {
        throw Error(ErrorKind::kIo, detail::concat("rank ", s.rank, ": message from rank ", from, " with tag ", tag, " has ",
                                                   m.size, " bytes, expected ", out.size(),
                                                   " bytes; the ranks disagree on the buffer size"));
      }
      if (m.size) std::memcpy(out.data(), m.bytes(), m.size);
      s.give_buffer(std::move(m.words), m.size);
      return;
    }
    if (s.aborted || s.first_failed >= 0 || s.posted.state == Posted::State::kFailed) {
      outcome = Outcome::kBroken;
      break;
    }
    if (from != s.rank && s.link(from).state == Link::State::kClosed && box.empty()) {
      outcome = Outcome::kClosed;  // its goodbye came after everything it sent
      break;
    }
    if (Clock::now() >= deadline) {
      outcome = Outcome::kTimeout;
      break;
    }
    s.cv.wait_until(lock, deadline);
  }

  // Failing: if a reader is writing into `out`, stop it before `out` goes back to the caller.
  bool partial = false;
  if (s.posted.state == Posted::State::kClaimed) {
    Link& l = s.link(from);
    partial = true;
    if (l.local_reason.headline.empty()) {
      l.local_reason = {detail::concat("rank ", from, " stalled in the middle of a message"),
                        "this rank closed the link when its recv timed out"};
    }
    lock.unlock();
    l.shutdown();
    lock.lock();
    s.cv.wait(lock, [&] { return s.posted.state != Posted::State::kClaimed; });
  }
  s.posted.active = false;
  switch (outcome) {
    case Outcome::kBroken:
      s.throw_if_broken(from, "recv");
      throw Error(ErrorKind::kIo, detail::concat("rank ", s.rank, ": recv from rank ", from, " failed"));
    case Outcome::kClosed: {
      const std::string& why = s.link(from).goodbye_why;
      throw Error(ErrorKind::kIo, detail::concat("rank ", s.rank, ": recv from rank ", from, " (tag ", tag, ", ", out.size(),
                                                 " bytes) failed: rank ", from,
                                                 " closed its transport without sending it; it has left the collective",
                                                 why.empty() ? "" : " because its group broke: " + why));
    }
    case Outcome::kTimeout:
      throw Error(ErrorKind::kIo,
                  detail::concat("rank ", s.rank, ": no message from rank ", from, " (tag ", tag, ", ", out.size(),
                                 " bytes expected) within ", s.timeout.count(), " ms",
                                 partial ? " (it stopped in the middle of the message; the link is now closed)" : "",
                                 "; rank ", from, s.on_host(from), " has failed, stalled",
                                 s.name_hosts ? ", cannot be reached" : "", " or is running a different collective"));
  }
  TROUPE_CHECK(false, "unreachable");
}

// ---------------------------------------------------------------------------------------------

namespace {

void validate(const TcpOptions& o) {
  if (o.size < 1 || o.rank < 0 || o.rank >= o.size) {
    throw Error(ErrorKind::kConfig, detail::concat("TCP transport: rank ", o.rank, " of ", o.size,
                                                   " ranks; need 0 <= rank < size"));
  }
  if (o.secret.empty()) {
    throw Error(ErrorKind::kConfig, "TCP transport: the job's secret is empty; set TROUPE_SECRET to the same value for every rank");
  }
  if (o.timeout.count() <= 0) {
    throw Error(ErrorKind::kConfig, detail::concat("TCP transport: timeout ", o.timeout.count(), " ms must be positive"));
  }
  if (o.chunk_bytes < 8 || o.chunk_bytes % 8 != 0 || o.chunk_bytes > wire::kMaxChunkBytes) {
    throw Error(ErrorKind::kConfig, detail::concat("TCP transport: chunk_bytes ", o.chunk_bytes,
                                                   " must be a multiple of 8 in [8, ", wire::kMaxChunkBytes, "]"));
  }
}

// Between hosts a peer can vanish without closing its connection (its host or the link to it goes
// down): nothing arrives, and a rank that only sends to it, or waits on a third rank, would learn
// nothing until its own recv times out, naming the wrong peer. So each connection is probed:
// keepalives after 1 s idle, every second, and TCP_USER_TIMEOUT aborts it when sent data or probes
// go unacknowledged for half of `timeout`; its reader then breaks the group naming this peer and
// its host, before any recv waiting on it times out.
void watch_host(tcp::Socket& socket, std::chrono::milliseconds timeout) {
  const int fd = socket.native_handle();
  const int on = 1, idle = 1, interval = 1, count = std::max(1, static_cast<int>(timeout.count() / 2000));
  const unsigned user_timeout = static_cast<unsigned>(std::max<long long>(500, timeout.count() / 2));
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
  ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout);
}

std::unique_ptr<TcpTransport> start(const TcpOptions& options, tcp::Mesh mesh) {
  auto impl = std::make_unique<TcpTransport::Impl>();
  impl->rank = options.rank;
  impl->size = options.size;
  impl->timeout = options.timeout;
  impl->chunk_bytes = options.chunk_bytes;
  impl->on_link_end = options.on_link_end;
  impl->io = mesh.io;
  impl->hostnames = std::move(mesh.hostnames);
  impl->name_hosts = options.reach == Reach::network;
  impl->links.resize(static_cast<std::size_t>(options.size));
  for (int r = 0; r < options.size; ++r) {
    auto& socket = mesh.links[static_cast<std::size_t>(r)];
    if (!socket) continue;
    socket->non_blocking(false);  // the data path blocks in its own threads
    if (options.reach == Reach::network) watch_host(*socket, options.timeout);
    auto l = std::make_unique<Link>();
    l->peer = r;
    l->socket = std::move(socket);
    l->address = tcp::peer_text(*l->socket);
    const tcp::LinkSecurity& security = mesh.security[static_cast<std::size_t>(r)];
    l->protection = security.level;
    if (security.level != tcp::Protection::off) {
      l->sealer = std::make_unique<tcp::FrameSealer>(security.level, security.keys.send);
      l->opener = std::make_unique<tcp::FrameOpener>(security.level, security.keys.receive);
    }
    impl->links[static_cast<std::size_t>(r)] = std::move(l);
  }
  TcpTransport::Impl* raw = impl.get();
  for (auto& l : raw->links) {
    if (!l) continue;
    l->reader = std::thread([raw, link = l.get()] { raw->reader_loop(*link); });
    l->writer = std::thread([raw, link = l.get()] { raw->writer_loop(*link); });
  }
  return std::make_unique<TcpTransport>(std::move(impl));
}

}  // namespace

std::unique_ptr<TcpTransport> connect_tcp(const TcpOptions& options) {
  validate(options);
  if (options.rank == 0) return connect_tcp(options, TcpListener(options.address, options.reach));
  tcp::parse_endpoint(options.address, options.reach);
  return start(options, tcp::form_mesh(options, nullptr));
}

std::unique_ptr<TcpTransport> connect_tcp(const TcpOptions& options, TcpListener listener) {
  validate(options);
  TROUPE_CHECK(options.rank == 0, "only rank 0 listens; rank ", options.rank, " was given a listener");
  return start(options, tcp::form_mesh(options, &listener.impl()));
}

std::unique_ptr<TcpTransport> connect_tcp_on(const TcpOptions& options, TcpListener& listener) {
  validate(options);
  TROUPE_CHECK(options.rank == 0, "only rank 0 listens; rank ", options.rank, " was given a listener");
  return start(options, tcp::form_mesh(options, &listener.impl()));
}

std::string secret_from_environment() {
  const char* secret = std::getenv("TROUPE_SECRET");
  if (!secret || !*secret) {
    throw Error(ErrorKind::kConfig,
                "TROUPE_SECRET is not set: the TCP transport needs a secret shared by every rank of the job "
                "(e.g. export TROUPE_SECRET=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'))");
  }
  return secret;
}

}  // namespace troupe::net
