// Owns the TCP transport's send side: a link's writer thread, send()'s direct writes from the caller's buffer, the send queue, and closing links.
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <climits>

#include <cerrno>

#include "net/tcp/transport_state.h"

namespace troupe::net {

namespace asio = boost::asio;
using tcp::Clock;

namespace {

constexpr std::byte kZeros[8] = {};  // a lent payload's padding to a whole word

void add(std::vector<iovec>& iov, std::span<const std::byte> bytes) {
  if (!bytes.empty()) iov.push_back(iovec{const_cast<std::byte*>(bytes.data()), bytes.size()});
}

// Drops the first `n` bytes of iov[at..]; returns the new `at`.
std::size_t consume(std::vector<iovec>& iov, std::size_t at, std::size_t n) {
  while (n > 0) {
    const std::size_t take = std::min(n, iov[at].iov_len);
    iov[at].iov_base = static_cast<char*>(iov[at].iov_base) + take;
    iov[at].iov_len -= take;
    n -= take;
    if (iov[at].iov_len == 0) ++at;
  }
  return at;
}

// The writer's write of a whole batch (`iov`, consumed): as many pieces per sendmsg as the kernel
// takes (Asio's write() stops every 64 KiB, which cost 16 system calls per 1 MiB segment), each call
// blocking until it has all been queued or the connection fails.
boost::system::error_code write_all(tcp::Link& l, std::vector<iovec>& iov) {
  std::size_t at = 0;
  while (at < iov.size()) {
    msghdr m{};
    m.msg_iov = iov.data() + at;
    m.msg_iovlen = std::min<std::size_t>(iov.size() - at, IOV_MAX);
    const ssize_t n = ::sendmsg(l.socket->native_handle(), &m, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {  // not expected of the blocking socket; wait anyway
        pollfd p{l.socket->native_handle(), POLLOUT, 0};
        ::poll(&p, 1, 1000);
        continue;
      }
      return boost::system::error_code(errno, boost::system::system_category());
    }
    at = consume(iov, at, static_cast<std::size_t>(n));
  }
  return {};
}

}  // namespace

void TcpTransport::Impl::writer_loop(Link& l) {
  std::vector<Link::Outgoing> batch;
  std::vector<iovec> buffers;
  bool said_goodbye = false;
  while (!said_goodbye) {
    {
      std::unique_lock lock(l.out_mu);
      l.out_cv.wait(lock, [&] { return !l.out.empty() || l.stop_writing; });
      if (l.stop_writing) break;
      // Everything queued goes out in one scatter-gather write: small messages share a call.
      while (!l.out.empty()) {
        batch.push_back(std::move(l.out.front()));
        l.out.pop_front();
      }
      l.in_flight = true;
    }
    buffers.clear();
    for (const auto& o : batch) {
      if (o.is_rest) {
        add(buffers, o.rest);
      } else {
        const auto& pieces = o.frame.pieces();
        for (std::size_t p = 0; p < pieces.size(); ++p) {
          add(buffers, pieces[p]);
          if (p == 0 && o.sealed) add(buffers, o.seals.header_tag);
        }
        if (o.sealed) add(buffers, o.seals.seal);
      }
      if (!o.lent.empty()) {
        add(buffers, o.lent);
        add(buffers, std::span(kZeros, o.lent_padding));
      }
      said_goodbye = said_goodbye || o.goodbye;
    }
    boost::system::error_code ec;
    {
      std::lock_guard write_lock(l.write_mu);
      ec = write_all(l, buffers);
    }
    std::size_t lent_written = 0;
    for (auto& o : batch) {
      give_buffer(o.frame.take_storage(), o.payload_bytes);
      lent_written += o.lent.empty() ? 0 : 1;
    }
    batch.clear();
    {
      std::lock_guard lock(l.out_mu);
      l.in_flight = false;
      l.lent_pending -= lent_written;
    }
    if (lent_written) l.lent_cv.notify_all();
    if (ec) {
      {
        std::lock_guard lock(mu);
        if (l.state == Link::State::kOpen && l.local_reason.headline.empty()) {
          l.local_reason = {detail::concat("rank ", l.peer, on_host(l.peer), " is dead"), "sending to it failed: " + ec.message()};
        }
      }
      l.shutdown();  // the reader ends too, and reports
      break;
    }
  }
  {
    std::lock_guard lock(l.out_mu);
    l.writer_exited = true;  // what is left in the queue is never written: lent memory is free
  }
  l.lent_cv.notify_all();
  if (said_goodbye) {
    boost::system::error_code ignored;
    l.socket->shutdown(asio::socket_base::shutdown_send, ignored);
  }
  {
    std::lock_guard lock(mu);
    l.writer_done = true;
  }
  cv.notify_all();
}

// send()'s fast path, with l.write_mu held and nothing queued or in flight: writes `parts` (a
// frame's pieces, then its payload and padding, from the caller's memory) for as long as the
// socket takes them without blocking. Returns the bytes written.
std::size_t TcpTransport::Impl::write_now(Link& l, const std::vector<std::span<const std::byte>>& parts) {
  std::vector<iovec> iov;
  for (const auto& p : parts) add(iov, p);
  std::size_t done = 0, at = 0;
  while (at < iov.size()) {
    msghdr m{};
    m.msg_iov = iov.data() + at;
    m.msg_iovlen = std::min<std::size_t>(iov.size() - at, IOV_MAX);
    const ssize_t n = ::sendmsg(l.socket->native_handle(), &m, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;  // full (the rest goes through the writer) or failed (the writer reports it)
    }
    done += static_cast<std::size_t>(n);
    at = consume(iov, at, static_cast<std::size_t>(n));
  }
  return done;
}

// Whether send() may write to `to` itself: nothing queued or being written.
bool TcpTransport::Impl::idle(Link& l) {
  std::lock_guard lock(l.out_mu);
  return l.out.empty() && !l.in_flight && !l.stop_writing;
}

void TcpTransport::Impl::enqueue_rest(Link& l, const std::vector<std::span<const std::byte>>& parts, std::size_t skip,
                                      std::span<const std::byte> lent) {
  Link::Outgoing o;
  o.is_rest = true;
  bool after_lent = false;  // the parts after a lent payload are its padding
  for (const auto& p : parts) {
    const std::size_t drop = std::min(skip, p.size());
    skip -= drop;
    const auto left = p.subspan(drop);
    if (!lent.empty() && p.data() == lent.data() && p.size() == lent.size()) {
      o.lent = left;
      after_lent = true;
    } else if (after_lent) {
      o.lent_padding += left.size();  // zeros
    } else {
      o.rest.insert(o.rest.end(), left.begin(), left.end());
    }
  }
  if (o.lent.empty() && o.lent_padding) {  // the payload went out whole: its padding is copied
    o.rest.insert(o.rest.end(), o.lent_padding, std::byte{0});
    o.lent_padding = 0;
  }
  {
    std::lock_guard lock(l.out_mu);
    if (!o.lent.empty()) ++l.lent_pending;
    l.out.push_back(std::move(o));
  }
  l.out_cv.notify_one();
}

void TcpTransport::Impl::enqueue_lent(Link& l, wire::OutFrame header, std::span<const std::byte> payload) {
  Link::Outgoing o;
  o.frame = std::move(header);
  o.lent = payload;
  o.lent_padding = wire::payload_padding(payload.size());
  {
    std::lock_guard lock(l.out_mu);
    ++l.lent_pending;
    l.out.push_back(std::move(o));
  }
  l.out_cv.notify_one();
}

void TcpTransport::Impl::release_lent() noexcept {
  for (auto& lp : links) {
    if (!lp) continue;
    Link& l = *lp;
    std::unique_lock lock(l.out_mu);
    const auto settled = [&] { return l.lent_pending == 0 || l.writer_exited; };
    // The timeout runs from the last progress: a slow peer that keeps reading is waited for.
    bool stalled = false;
    while (!settled() && !stalled) {
      const std::size_t before = l.lent_pending;
      stalled = !l.lent_cv.wait_until(lock, Clock::now() + timeout, [&] { return settled() || l.lent_pending != before; });
    }
    if (!stalled) continue;
    // The peer has taken none of it for the whole timeout: cut the link (its writer's write fails
    // and it exits), so that no thread reads the caller's memory once this returns.
    lock.unlock();
    {
      std::lock_guard state(mu);
      if (l.state == Link::State::kOpen && l.local_reason.headline.empty()) {
        l.local_reason = {detail::concat("rank ", l.peer, on_host(l.peer), " stopped reading"),
                          detail::concat("it took none of the messages sent to it within the timeout (",
                                         std::chrono::duration_cast<std::chrono::seconds>(timeout).count(), " s)")};
      }
    }
    {
      std::lock_guard out(l.out_mu);
      l.stop_writing = true;
    }
    l.out_cv.notify_one();
    l.shutdown();
    lock.lock();
    l.lent_cv.wait(lock, [&] { return l.writer_exited; });
  }
}

void TcpTransport::Impl::enqueue(Link& l, wire::OutFrame frame, std::size_t payload_bytes, bool goodbye,
                                 const tcp::FrameSeals* seals) {
  {
    std::lock_guard lock(l.out_mu);
    l.out.push_back(Link::Outgoing{std::move(frame), {}, payload_bytes, goodbye, seals != nullptr, seals ? *seals : tcp::FrameSeals{}});
  }
  l.out_cv.notify_one();
}

tcp::FrameSeals TcpTransport::Impl::seal_whole(Link& l, const std::vector<std::span<const std::byte>>& pieces) {
  tcp::FrameSeals seals;
  l.sealer->begin();
  seals.header_tag = l.sealer->header_tag(pieces.front());
  for (const auto& p : pieces) l.sealer->authenticate(p);
  seals.seal = l.sealer->finish();
  return seals;
}

void TcpTransport::Impl::abort_links() {
  {
    std::lock_guard lock(mu);
    stopping = true;
  }
  wake_readers();
  for (auto& l : links) {
    if (!l) continue;
    {
      std::lock_guard lock(l->out_mu);
      l->stop_writing = true;
    }
    l->out_cv.notify_one();
    l->shutdown();
  }
}

void TcpTransport::Impl::close(bool orderly) {
  if (orderly) {
    // A rank leaving because its group broke tells its peers why: one still waiting on this rank
    // (its own link to the dead rank not yet timed out) can then name the root failure.
    wire::Goodbye bye;
    {
      std::lock_guard lock(mu);
      if (first_failed >= 0) {
        const Link::Failure& f = link(first_failed).failure;
        bye.why = f.detail.empty() ? f.headline : detail::concat(f.headline, " (", f.detail, ")");
      }
    }
    for (auto& l : links) {
      if (!l) continue;
      wire::OutFrame goodbye = wire::encode(bye);
      if (l->sealer) {
        const tcp::FrameSeals seals = seal_whole(*l, goodbye.pieces());
        enqueue(*l, std::move(goodbye), 0, true, &seals);
      } else {
        enqueue(*l, std::move(goodbye), 0, true);
      }
    }
    // Queued frames and the goodbye go out before the connections close; a peer that stopped
    // reading holds this up for the timeout at most.
    std::unique_lock lock(mu);
    cv.wait_until(lock, Clock::now() + timeout, [&] {
      for (auto& l : links) {
        if (l && !l->writer_done) return false;
      }
      return true;
    });
  }
  abort_links();
  for (auto& l : links) {
    if (!l) continue;
    if (l->writer.joinable()) l->writer.join();
    if (l->reader.joinable()) l->reader.join();
    boost::system::error_code ignored;
    l->socket->close(ignored);
  }
}

}  // namespace troupe::net
