// Owns the shared-memory transport's data path: send() into the rings, the flusher thread for what did not fit, recv() out of them (with the inbox for other tags), setup over TCP and the close order.
#include "net/shm/shm_transport.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "net/shm/segment.h"
#include "net/shm/shm_window.h"
#include "net/shm/slot_ring.h"
#include "runtime/error.h"

namespace troupe::net {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

// A sanity bound on the size a slot header may announce (1 TiB), as the TCP transport's.
constexpr std::uint64_t kMaxMessageBytes = std::uint64_t{1} << 40;

// Tags of the setup messages on the TCP links (which carry nothing else).
constexpr std::uint32_t kInviteTag = 1;
constexpr std::uint32_t kMappedTag = 2;

// Where a rank's segment is, sent to every peer over the authenticated TCP link.
struct Invite {
  std::uint64_t magic = shm::kSegmentMagic;
  std::int32_t pid = 0;
  std::int32_t fd = -1;
  std::uint64_t slots = 0;
  std::uint64_t slot_bytes = 0;
  std::uint64_t pieces = 0;
  std::uint64_t piece_bytes = 0;
  char host[120] = {};  // shm::host_identity(), NUL-terminated
};

}  // namespace

struct ShmTransport::Impl {
  int rank = 0;
  int size = 1;
  std::chrono::milliseconds timeout{0};
  shm::SegmentLayout layout;
  shm::Segment own;                 // the rings this rank receives on
  std::vector<shm::Segment> peers;  // by rank: the segment holding this rank's ring to it
  std::vector<bool> shares;         // by rank: whether `peers` holds its segment (ShmPeers::same_host: not all do)
  std::unique_ptr<TcpTransport> tcp;
  std::atomic<bool> aborted{false};
  std::unique_ptr<shm::ShmWindow> window;  // when every rank shares memory and ShmOptions::pieces > 0

  // --- receive side (the rank's thread) ---
  struct Message {
    std::vector<std::byte> bytes;
    bool complete = false;
  };
  std::map<std::pair<int, std::uint32_t>, std::deque<Message>> inbox;
  struct Incoming {  // the message being copied out of a peer's ring
    bool active = false;
    std::uint32_t tag = 0;
    std::uint64_t total = 0;
    std::uint64_t received = 0;
    std::byte* dest = nullptr;  // the recv's buffer, an inbox message's, or null (dropped)
    Message* message = nullptr; // the inbox message, if it goes there
    bool to_out = false;        // into the buffer of the recv in progress
    bool mismatch = false;      // the recv's message, of the wrong size: dropped, then reported
  };
  std::vector<Incoming> incoming;  // by sender

  // --- send side (out_mu: the rank's thread and the flusher) ---
  std::mutex out_mu;
  struct Pending {  // what the ring had no room for: slots next_slot.. of a message
    std::uint32_t tag = 0;
    std::uint64_t total = 0;
    std::uint64_t next_slot = 0;
    std::uint64_t copied_from = 0;  // the byte of the message `copy` (or `lent`) starts at
    std::vector<std::byte> copy;
    const std::byte* lent = nullptr;  // send_lent: the caller's memory from copied_from on, instead of `copy`
    const std::byte* source() const { return lent ? lent : copy.data(); }
  };
  std::vector<std::deque<Pending>> pending;  // by receiver
  std::thread flusher;
  std::atomic<bool> stop_flusher{false};

  shm::RingControl& out_ring(int to) const { return peers[static_cast<std::size_t>(to)].control(rank); }

  // Writes slots first_slot.. of a message into the ring to `to` while it has room; `source` holds
  // the message's bytes from `source_from` on. Returns the next slot not written. out_mu held.
  std::uint64_t write_slots(int to, std::uint32_t tag, std::uint64_t total, std::uint64_t first_slot,
                            const std::byte* source, std::uint64_t source_from) {
    const shm::Segment& seg = peers[static_cast<std::size_t>(to)];
    shm::RingControl& c = seg.control(rank);
    const std::uint64_t n = shm::slots_for(total, layout.slot_bytes);
    std::uint64_t head = c.head.load(std::memory_order_relaxed);
    std::uint64_t tail = c.tail.load(std::memory_order_acquire);
    std::uint64_t k = first_slot;
    while (k < n) {
      if (shm::free_slots(head, tail, layout.slots) == 0) {
        tail = c.tail.load(std::memory_order_acquire);
        if (shm::free_slots(head, tail, layout.slots) == 0) break;
      }
      const std::size_t slot = shm::slot_of(head, layout.slots);
      const std::uint64_t offset = k * layout.slot_bytes;
      shm::SlotHeader& h = seg.slot_header(rank, slot);
      h.tag = tag;
      h.total = total;
      h.offset = offset;
      const std::size_t bytes = shm::slot_payload(total, offset, layout.slot_bytes);
      if (bytes) std::memcpy(seg.slot_payload(rank, slot), source + (offset - source_from), bytes);
      c.head.store(++head, std::memory_order_seq_cst);
      seg.header().data_bell.ring();
      ++k;
    }
    return k;
  }

  // Writes what waits for `to` while its ring has room; marks the ring as waiting for room when
  // something is left. Returns whether something is left. out_mu held.
  bool pump(int to) {
    auto& q = pending[static_cast<std::size_t>(to)];
    shm::RingControl& c = out_ring(to);
    while (true) {
      while (!q.empty()) {
        Pending& p = q.front();
        p.next_slot = write_slots(to, p.tag, p.total, p.next_slot, p.source(), p.copied_from);
        if (p.next_slot < shm::slots_for(p.total, layout.slot_bytes)) break;
        q.pop_front();
      }
      if (q.empty()) {
        c.producer_waiting.store(0);
        return false;
      }
      // Ask the consumer for a doorbell, then look again: a slot it freed before seeing the flag
      // would otherwise ring nobody.
      c.producer_waiting.store(1);
      if (shm::free_slots(c.head.load(std::memory_order_relaxed), c.tail.load(), layout.slots) == 0) return true;
    }
  }

  void flusher_loop() {
    shm::Doorbell& bell = own.header().space_bell;
    while (!stop_flusher.load()) {
      const std::uint32_t seen = bell.snapshot();
      bool left = false;
      if (!aborted.load()) {
        std::lock_guard lock(out_mu);
        for (int to = 0; to < size; ++to) {
          if (to != rank && !pending[static_cast<std::size_t>(to)].empty()) left = pump(to) || left;
        }
      }
      bell.wait(seen, left ? 100ms : 1000ms);
    }
  }

  // Whether every message sent is in the rings, but for peers that closed already (nobody will read it).
  bool nothing_pending() {
    std::lock_guard lock(out_mu);
    for (int p = 0; p < size; ++p) {
      if (!pending[static_cast<std::size_t>(p)].empty() && !peer_state_is(p, shm::SegmentHeader::kClosed)) return false;
    }
    return true;
  }

  // send() and send_lent() (`lend`: what does not fit is written from the caller's memory).
  void send(int to, std::uint32_t tag, std::span<const std::byte> data, bool lend);

  // --- receive ---

  [[noreturn]] void corrupt(int from, const std::string& what) {
    throw Error(ErrorKind::kIo, detail::concat("rank ", rank, ": the ring from rank ", from, " is corrupt: ", what,
                                               "; restart the group"));
  }

  // Copies what rank `from` has written into its ring: into `out` if it is the message the recv in
  // progress waits for (tag `tag`, nothing earlier of that tag in the inbox), else into the inbox.
  // Returns as soon as a message of tag `tag` is complete (kIntoOut: in `out`; kIntoInbox: at the end
  // of the inbox), or when the ring is empty (kNothing); throws after consuming the recv's message if
  // its size is wrong.
  enum class Drained { kNothing, kIntoOut, kIntoInbox };
  Drained drain(int from, std::uint32_t tag, std::span<std::byte> out) {
    shm::RingControl& c = own.control(from);
    std::uint64_t tail = c.tail.load(std::memory_order_relaxed);
    std::uint64_t head = c.head.load(std::memory_order_acquire);
    Incoming& in = incoming[static_cast<std::size_t>(from)];
    while (true) {
      if (!shm::valid_counters(head, tail, layout.slots)) corrupt(from, detail::concat("head ", head, ", tail ", tail));
      if (tail == head) {
        head = c.head.load(std::memory_order_acquire);
        if (tail == head) return Drained::kNothing;
      }
      const std::size_t slot = shm::slot_of(tail, layout.slots);
      const shm::SlotHeader h = own.slot_header(from, slot);
      if (!in.active) {
        if (h.offset != 0 || h.total > kMaxMessageBytes) {
          corrupt(from, detail::concat("a message starts at byte ", h.offset, " of ", h.total));
        }
        in = Incoming{.active = true, .tag = h.tag, .total = h.total};
        auto& box = inbox[{from, h.tag}];
        if (h.tag == tag && box.empty()) {
          in.to_out = true;
          if (h.total == out.size()) {
            in.dest = out.data();
          } else {
            in.mismatch = true;
          }
        } else {
          box.push_back(Message{std::vector<std::byte>(h.total), false});
          in.message = &box.back();
          in.dest = in.message->bytes.data();
        }
      } else if (h.tag != in.tag || h.total != in.total || h.offset != in.received) {
        corrupt(from, detail::concat("slot for tag ", h.tag, " bytes ", h.offset, "..", h.total, " where byte ",
                                     in.received, " of tag ", in.tag, " was due"));
      }
      const std::size_t bytes = shm::slot_payload(in.total, in.received, layout.slot_bytes);
      if (in.dest && bytes) std::memcpy(in.dest + in.received, own.slot_payload(from, slot), bytes);
      in.received += bytes;
      c.tail.store(++tail, std::memory_order_seq_cst);
      if (c.producer_waiting.load()) peers[static_cast<std::size_t>(from)].header().space_bell.ring();
      if (in.received < in.total) continue;
      const Incoming done = in;
      in = Incoming{};
      if (done.message) done.message->complete = true;
      if (done.mismatch) {
        throw Error(ErrorKind::kIo, detail::concat("rank ", rank, ": message from rank ", from, " with tag ", tag, " has ",
                                                   done.total, " bytes, expected ", out.size(),
                                                   " bytes; the ranks disagree on the buffer size"));
      }
      if (done.to_out) return Drained::kIntoOut;
      if (done.tag == tag) return Drained::kIntoInbox;
    }
  }

  // A recv gives up: the rest of a message it was receiving in place is dropped as it arrives.
  void forget_posted(int from) {
    Incoming& in = incoming[static_cast<std::size_t>(from)];
    if (in.active && in.to_out) {
      in.dest = nullptr;
      in.to_out = false;
      in.mismatch = false;
    }
  }

  bool peer_state_is(int peer, std::uint32_t state) const {
    return peers[static_cast<std::size_t>(peer)].header().state.load(std::memory_order_acquire) == state;
  }

  void throw_if_broken(int peer, const char* op) {
    tcp->throw_if_broken(peer, op);
    if (aborted.load()) {
      throw Error(ErrorKind::kIo, detail::concat("rank ", rank, ": ", op, " with rank ", peer,
                                                 " failed: this rank's transport was aborted"));
    }
  }

  // For the window's waits: a broken group, an aborted transport, or a peer that closed its own.
  void throw_if_gone(int peer, const char* what) {
    throw_if_broken(peer, what);
    if (peer != rank && peer_state_is(peer, shm::SegmentHeader::kClosed)) {
      throw Error(ErrorKind::kIo, detail::concat("rank ", rank, ": ", what, " with rank ", peer, " failed: rank ", peer,
                                                 " closed its transport; it has left the collective"));
    }
  }

  void close(bool orderly) {
    if (orderly) {
      // What was sent reaches the rings before the goodbye; a peer that stopped reading holds this up
      // for the timeout at most.
      const auto deadline = Clock::now() + timeout;
      while (!nothing_pending() && Clock::now() < deadline) {
        try {
          tcp->throw_if_broken(rank, "close");
        } catch (const Error&) {
          break;
        }
        std::this_thread::sleep_for(1ms);
      }
      own.header().state.store(shm::SegmentHeader::kClosed);
    } else {
      own.header().state.store(shm::SegmentHeader::kAborted);
      tcp->abort();
    }
    for (int p = 0; p < size; ++p) {
      if (shares[static_cast<std::size_t>(p)]) peers[static_cast<std::size_t>(p)].header().data_bell.ring();
    }
    stop_flusher.store(true);
    own.header().space_bell.ring();
    if (flusher.joinable()) flusher.join();
    tcp.reset();  // its reader threads ring this segment's doorbells until they are joined here
  }
};

// ---------------------------------------------------------------------------------------------

ShmTransport::ShmTransport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ShmTransport::~ShmTransport() {
  bool group_broken = false;
  try {
    impl_->tcp->throw_if_broken(impl_->rank, "close");
  } catch (const Error&) {
    group_broken = true;
  }
  const bool orderly = !impl_->aborted.load() && (std::uncaught_exceptions() == 0 || group_broken);
  impl_->close(orderly);
}

int ShmTransport::rank() const { return impl_->rank; }
int ShmTransport::size() const { return impl_->size; }
const std::vector<std::string>& ShmTransport::hostnames() const { return impl_->tcp->hostnames(); }
bool ShmTransport::shares_memory_with(int peer) const {
  TROUPE_CHECK(peer >= 0 && peer < impl_->size, "rank ", peer, " of ", impl_->size);
  return impl_->shares[static_cast<std::size_t>(peer)];
}
TcpTransport& ShmTransport::links() { return *impl_->tcp; }
comm::SharedWindow* ShmTransport::shared_window() { return impl_->window.get(); }

void ShmTransport::abort() {
  impl_->aborted.store(true);
  impl_->own.header().state.store(shm::SegmentHeader::kAborted);
  impl_->tcp->abort();
  impl_->own.header().data_bell.ring();
}

void ShmTransport::send(int to, std::uint32_t tag, std::span<const std::byte> data) { impl_->send(to, tag, data, false); }

void ShmTransport::send_lent(int to, std::uint32_t tag, std::span<const std::byte> data) { impl_->send(to, tag, data, true); }

void ShmTransport::release_lent() noexcept {
  Impl& s = *impl_;
  std::lock_guard lock(s.out_mu);
  for (auto& q : s.pending) {
    for (Impl::Pending& p : q) {
      if (!p.lent) continue;
      // What the receiver has not freed room for yet: copied now (the copy send() would have made),
      // so the caller's memory is free the moment this returns, without waiting on a slow reader.
      const std::size_t from = p.next_slot * s.layout.slot_bytes;
      p.copy.assign(p.lent + (from - p.copied_from), p.lent + (p.total - p.copied_from));
      p.copied_from = from;
      p.lent = nullptr;
    }
  }
}

void ShmTransport::Impl::send(int to, std::uint32_t tag, std::span<const std::byte> data, bool lend) {
  Impl& s = *this;
  TROUPE_CHECK(to >= 0 && to < s.size, "send to rank ", to, " of ", s.size);
  TROUPE_CHECK(to == s.rank || s.shares[static_cast<std::size_t>(to)], "send to rank ", to,
               ", which shares no memory with rank ", s.rank, " (reach it over links())");
  s.throw_if_broken(to, "send");
  if (to == s.rank) {  // to itself: straight into the inbox
    s.inbox[{to, tag}].push_back(Impl::Message{std::vector<std::byte>(data.begin(), data.end()), true});
    return;
  }
  if (s.peer_state_is(to, shm::SegmentHeader::kClosed)) {
    throw Error(ErrorKind::kIo, detail::concat("rank ", s.rank, ": send to rank ", to, " failed: rank ", to,
                                               " closed its transport"));
  }
  std::lock_guard lock(s.out_mu);
  auto& q = s.pending[static_cast<std::size_t>(to)];
  std::uint64_t next = 0;
  if (q.empty()) next = s.write_slots(to, tag, data.size(), 0, data.data(), 0);
  if (next == shm::slots_for(data.size(), s.layout.slot_bytes)) return;
  // What the ring has no room for: the copy send() promises, or (lent) the caller's memory, which
  // the flusher writes from as the receiver frees slots.
  const std::size_t from = next * s.layout.slot_bytes;
  if (lend) {
    q.push_back(Impl::Pending{tag, data.size(), next, from, {}, data.data() + from});
  } else {
    q.push_back(Impl::Pending{tag, data.size(), next, from, std::vector<std::byte>(data.begin() + static_cast<std::ptrdiff_t>(from), data.end()), nullptr});
  }
  s.pump(to);
  s.own.header().space_bell.ring();
}

void ShmTransport::recv(int from, std::uint32_t tag, std::span<std::byte> out) {
  Impl& s = *impl_;
  TROUPE_CHECK(from >= 0 && from < s.size, "recv from rank ", from, " of ", s.size);
  TROUPE_CHECK(from == s.rank || s.shares[static_cast<std::size_t>(from)], "recv from rank ", from,
               ", which shares no memory with rank ", s.rank, " (reach it over links())");
  auto& box = s.inbox[{from, tag}];
  shm::Doorbell& bell = s.own.header().data_bell;
  const auto deadline = Clock::now() + s.timeout;
  while (true) {
    const std::uint32_t seen = bell.snapshot();
    if (!box.empty() && box.front().complete) {
      Impl::Message m = std::move(box.front());
      box.pop_front();
      if (m.bytes.size() != out.size()) {
        throw Error(ErrorKind::kIo, detail::concat("rank ", s.rank, ": message from rank ", from, " with tag ", tag, " has ",
                                                   m.bytes.size(), " bytes, expected ", out.size(),
                                                   " bytes; the ranks disagree on the buffer size"));
      }
      if (!out.empty()) std::memcpy(out.data(), m.bytes.data(), out.size());
      return;
    }
    if (from != s.rank) {
      // A peer that closed in order wrote everything before it said so: read its state first.
      const bool closed = s.peer_state_is(from, shm::SegmentHeader::kClosed);
      const Impl::Drained drained = s.drain(from, tag, out);
      if (drained == Impl::Drained::kIntoOut) return;
      if (drained == Impl::Drained::kIntoInbox) continue;
      if (closed && !s.incoming[static_cast<std::size_t>(from)].active) {
        throw Error(ErrorKind::kIo, detail::concat("rank ", s.rank, ": recv from rank ", from, " (tag ", tag, ", ", out.size(),
                                                   " bytes) failed: rank ", from,
                                                   " closed its transport without sending it; it has left the collective"));
      }
    }
    try {
      s.throw_if_broken(from, "recv");
    } catch (...) {
      s.forget_posted(from);
      throw;
    }
    const auto now = Clock::now();
    if (now >= deadline) {
      const bool partial = from != s.rank && s.incoming[static_cast<std::size_t>(from)].to_out;
      s.forget_posted(from);
      throw Error(ErrorKind::kIo,
                  detail::concat("rank ", s.rank, ": no message from rank ", from, " (tag ", tag, ", ", out.size(),
                                 " bytes expected) within ", s.timeout.count(), " ms",
                                 partial ? " (it stopped in the middle of the message; the rest will be dropped)" : "",
                                 "; rank ", from, " has failed, stalled or is running a different collective"));
    }
    bell.wait(seen, std::chrono::duration_cast<std::chrono::microseconds>(std::min<Clock::duration>(deadline - now, 1s)));
  }
}

// ---------------------------------------------------------------------------------------------

namespace {

void validate(const ShmOptions& o) {
  if (o.slot_bytes < 64 || o.slot_bytes % 64 != 0 || o.slot_bytes > (std::size_t{256} << 20)) {
    throw Error(ErrorKind::kConfig, detail::concat("shared-memory transport: slot_bytes ", o.slot_bytes,
                                                   " must be a multiple of 64 in [64, 268435456]"));
  }
  if (o.slots < 2 || o.slots > 1024) {
    throw Error(ErrorKind::kConfig, detail::concat("shared-memory transport: slots ", o.slots, " must lie in [2, 1024]"));
  }
  if (o.piece_bytes < 64 || o.piece_bytes % 64 != 0 || o.piece_bytes > (std::size_t{256} << 20)) {
    throw Error(ErrorKind::kConfig, detail::concat("shared-memory transport: piece_bytes ", o.piece_bytes,
                                                   " must be a multiple of 64 in [64, 268435456]"));
  }
  if (o.pieces == 1 || o.pieces > 1024) {
    throw Error(ErrorKind::kConfig, detail::concat("shared-memory transport: pieces ", o.pieces,
                                                   " must be 0 (no shared window) or lie in [2, 1024]"));
  }
}

std::unique_ptr<ShmTransport> start(const ShmOptions& options, TcpListener* listener) {
  validate(options);
  auto impl = std::make_unique<ShmTransport::Impl>();
  ShmTransport::Impl& s = *impl;
  s.rank = options.tcp.rank;
  s.size = options.tcp.size;
  s.timeout = options.tcp.timeout;
  // Only a group that lives wholly on one host gets a window (and a staging region to go with it).
  const std::size_t pieces = options.peers == ShmPeers::all ? options.pieces : 0;
  s.layout = shm::SegmentLayout{options.tcp.size, options.slots, options.slot_bytes, pieces, options.piece_bytes};
  if (s.rank < 0 || s.rank >= s.size) {
    throw Error(ErrorKind::kConfig, detail::concat("shared-memory transport: rank ", s.rank, " of ", s.size,
                                                   " ranks; need 0 <= rank < size"));
  }
  s.own = shm::Segment::create(s.layout, s.rank);
  TcpOptions tcp = options.tcp;
  shm::SegmentHeader* own = &s.own.header();
  tcp.on_link_end = [own] {  // a dead (or departed) peer: wake this rank's recv and flusher
    own->data_bell.ring();
    own->space_bell.ring();
  };
  s.tcp = listener ? connect_tcp(tcp, std::move(*listener)) : connect_tcp(tcp);

  // Who may share rings: everyone, or the ranks that report this rank's host name.
  const std::vector<std::string>& names = s.tcp->hostnames();
  s.shares.assign(static_cast<std::size_t>(s.size), false);
  for (int p = 0; p < s.size; ++p) {
    s.shares[static_cast<std::size_t>(p)] =
        p != s.rank && (options.peers == ShmPeers::all || names[static_cast<std::size_t>(p)] == names[static_cast<std::size_t>(s.rank)]);
  }
  const auto shares = [&](int p) { return static_cast<bool>(s.shares[static_cast<std::size_t>(p)]); };

  // Where each segment is, over the authenticated links; then every rank maps every peer's.
  Invite mine;
  mine.pid = static_cast<std::int32_t>(::getpid());
  mine.fd = s.own.fd();
  mine.slots = options.slots;
  mine.slot_bytes = options.slot_bytes;
  mine.pieces = pieces;
  mine.piece_bytes = options.piece_bytes;
  const std::string host = shm::host_identity();
  std::strncpy(mine.host, host.c_str(), sizeof(mine.host) - 1);
  const auto as_bytes = [](auto& v) { return std::as_writable_bytes(std::span(&v, 1)); };
  for (int p = 0; p < s.size; ++p) {
    if (shares(p)) s.tcp->send(p, kInviteTag, as_bytes(mine));
  }
  s.peers.resize(static_cast<std::size_t>(s.size));
  for (int p = 0; p < s.size; ++p) {
    if (!shares(p)) continue;
    Invite theirs;
    s.tcp->recv(p, kInviteTag, as_bytes(theirs));
    theirs.host[sizeof(theirs.host) - 1] = '\0';
    if (theirs.magic != shm::kSegmentMagic || theirs.slots != options.slots || theirs.slot_bytes != options.slot_bytes) {
      throw Error(ErrorKind::kConfig, detail::concat("shared-memory transport: rank ", p, " uses ", theirs.slots, " slots of ",
                                                     theirs.slot_bytes, " bytes, this rank ", options.slots, " of ",
                                                     options.slot_bytes, "; give every rank the same comm.shm_slots and comm.shm_slot_bytes"));
    }
    if (theirs.pieces != pieces || theirs.piece_bytes != options.piece_bytes) {
      throw Error(ErrorKind::kConfig, detail::concat("shared-memory transport: rank ", p, " stages the allreduce in ", theirs.pieces,
                                                     " pieces of ", theirs.piece_bytes, " bytes, this rank in ", pieces, " of ",
                                                     options.piece_bytes, "; give every rank the same ShmOptions"));
    }
    if (host != theirs.host) {
      // Both ranks compare the same two identities, so both decide alike: under ShmPeers::same_host a
      // peer that only shares the host's name (another container, another pid namespace) stays on TCP.
      if (options.peers == ShmPeers::same_host) {
        s.shares[static_cast<std::size_t>(p)] = false;
        continue;
      }
      throw Error(ErrorKind::kConfig, detail::concat("shared-memory transport: rank ", p, " runs on another host or pid namespace (",
                                                     theirs.host, ", this rank ", host,
                                                     "); comm.transport = shm is for ranks of one host: use comm.transport = tcp"));
    }
    s.peers[static_cast<std::size_t>(p)] = shm::Segment::open_peer(s.layout, p, theirs.pid, theirs.fd);
  }
  std::byte mapped{1};
  for (int p = 0; p < s.size; ++p) {
    if (shares(p)) s.tcp->send(p, kMappedTag, std::span(&mapped, 1));
  }
  for (int p = 0; p < s.size; ++p) {
    if (shares(p)) s.tcp->recv(p, kMappedTag, std::span(&mapped, 1));
  }
  s.own.close_fd();  // every peer has mapped it: the memory now lives exactly as long as the mappings

  if (pieces > 0) {
    std::vector<const shm::Segment*> segments;
    for (int p = 0; p < s.size; ++p) segments.push_back(p == s.rank ? &s.own : &s.peers[static_cast<std::size_t>(p)]);
    s.window = std::make_unique<shm::ShmWindow>(s.rank, s.layout, std::move(segments), s.timeout,
                                                [raw = impl.get()](int peer, const char* what) { raw->throw_if_gone(peer, what); });
  }
  s.incoming.resize(static_cast<std::size_t>(s.size));
  s.pending.resize(static_cast<std::size_t>(s.size));
  s.flusher = std::thread([raw = impl.get()] { raw->flusher_loop(); });
  return std::make_unique<ShmTransport>(std::move(impl));
}

}  // namespace

std::unique_ptr<ShmTransport> connect_shm(const ShmOptions& options) { return start(options, nullptr); }

std::unique_ptr<ShmTransport> connect_shm(const ShmOptions& options, TcpListener listener) {
  TROUPE_CHECK(options.tcp.rank == 0, "only rank 0 listens; rank ", options.tcp.rank, " was given a listener");
  return start(options, &listener);
}

}  // namespace troupe::net
