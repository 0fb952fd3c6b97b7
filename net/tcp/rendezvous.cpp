// Owns the handshake's two sides, the acceptors' loops, and the rendezvous that connects every pair of ranks once.
#include "net/tcp/rendezvous.h"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>

#include "net/tcp/auth.h"
#include "net/tcp/pending_handshakes.h"
#include "runtime/error.h"

namespace troupe::net {

namespace asio = boost::asio;

TcpListener::TcpListener(const std::string& address, Reach reach)
    : impl_(tcp::listen_at(tcp::parse_endpoint(address, reach), std::make_shared<asio::io_context>())) {}
TcpListener::TcpListener(TcpListener&&) noexcept = default;
TcpListener& TcpListener::operator=(TcpListener&&) noexcept = default;
TcpListener::~TcpListener() = default;
int TcpListener::port() const { return impl_->address.port; }
std::string TcpListener::address() const { return impl_->address.text(); }

}  // namespace troupe::net

namespace troupe::net::tcp {

namespace {

// Each connection's handshake ends within this (or the rendezvous deadline, if sooner).
constexpr auto kHandshakeLimit = std::chrono::seconds(2);
// Unauthenticated connections handshaking at once at one listener; beyond it the oldest is closed.
constexpr std::size_t kMaxPendingHandshakes = 32;

std::chrono::milliseconds rendezvous_timeout(const TcpOptions& o) {
  return o.rendezvous_timeout.count() > 0 ? o.rendezvous_timeout : o.timeout;
}

using Check = std::function<std::string(const wire::Hello&)>;

std::string join(const std::vector<std::string>& parts, const char* sep) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : sep) + p;
  return out;
}

void report(const TcpOptions& options, const std::string& message) {
  if (options.on_reject) {
    options.on_reject(message);
  } else {
    std::cerr << "troupe tcp: " << message << "\n";
  }
}

// Whether the socket's peer is on this host's loopback (comm.integrity = auto leaves those links as they are).
bool peer_on_loopback(const Socket& socket) {
  boost::system::error_code ec;
  const auto peer = socket.remote_endpoint(ec);
  return !ec && peer.address().is_loopback();
}

// The level a peer asked for in its handshake, or why it cannot be read.
std::optional<Protection> peer_protection(std::uint8_t wire_value) { return protection_from_wire(wire_value); }

// The acceptor's side. Returns the connector's hello and sets `security` for the link; throws
// Error(kIo) with the refusal reason (which the connector has been sent too).
wire::Hello handshake_as_acceptor(Socket& socket, const TcpOptions& options, Clock::time_point deadline,
                                  const Check& check, LinkSecurity& security) {
  const std::string& secret = options.secret;
  const int rank = options.rank;
  const wire::Challenge challenge{rank, fresh_nonce()};
  write_frame(socket, wire::encode(challenge), deadline);
  const wire::Control reply = read_control(socket, deadline);
  auto refuse = [&](const std::string& reason) {
    try {
      write_frame(socket, wire::encode(wire::Reject{reason}), deadline);
    } catch (...) {
      // The refusal stands whether or not the peer hears it.
    }
    throw HandshakeRefused(ErrorKind::kIo, reason);
  };
  const auto* hello = std::get_if<wire::Hello>(&reply);
  if (!hello) refuse(detail::concat("expected a hello frame, got a ", wire::control_name(reply), " frame"));
  if (!macs_equal(hello->mac, hello_mac(secret, challenge.nonce, hello->nonce, hello->rank, hello->size))) {
    refuse(detail::concat("authentication failed: the connection claiming rank ", hello->rank,
                          " does not know the job's secret (hello MAC mismatch); every rank needs the same secret "
                          "(TROUPE_SECRET)"));
  }
  const auto asked = peer_protection(hello->protection);
  if (!asked) {
    refuse(detail::concat("rank ", hello->rank, " asks for frame protection level ", int{hello->protection},
                          ", which this troupe does not know; every rank must run the same troupe build"));
  }
  if (const std::string reason = check(*hello); !reason.empty()) refuse(reason);
  const Protection wish = wanted_protection(options.integrity, options.encrypt, peer_on_loopback(socket));
  security.level = agreed_protection(wish, *asked);
  if (security.level != Protection::off) {
    security.keys = derive_link_keys(secret, challenge.nonce, hello->nonce, rank, hello->rank, security.level, true);
  }
  write_frame(socket,
              wire::encode(wire::Welcome{rank, welcome_mac(secret, hello->nonce, challenge.nonce, rank),
                                         static_cast<std::uint8_t>(wish)}),
              deadline);
  return *hello;
}

// Accepts on `acceptor` until every rank in `expected` has joined; records their sockets in
// `mesh` and, if `roster` is given, where they listen and their host names. Handshakes run
// concurrently (net/tcp/pending_handshakes.h), so silent or slow connections cannot hold the
// ranks back.
void accept_ranks(const TcpOptions& options, TcpListener::Impl& listener, const std::vector<int>& expected,
                  Clock::time_point deadline, Mesh& mesh, wire::Roster* roster) {
  std::vector<std::string> refused;
  std::size_t joined = 0;
  std::mutex claims_mu;  // handshakes check and claim ranks from their own threads
  std::vector<bool> claimed(mesh.links.size(), false);
  const Check check = [&](const wire::Hello& hello) -> std::string {
    if (hello.size != options.size) {
      return detail::concat("rank ", hello.rank, " was started for a group of ", hello.size,
                            " ranks, this group has ", options.size);
    }
    if (std::find(expected.begin(), expected.end(), hello.rank) == expected.end()) {
      return detail::concat("rank ", hello.rank, " is not expected at rank ", options.rank, "'s listener");
    }
    std::lock_guard lock(claims_mu);
    if (claimed[static_cast<std::size_t>(hello.rank)]) {
      return detail::concat("rank ", hello.rank, " has already joined; two processes were started with the same rank");
    }
    claimed[static_cast<std::size_t>(hello.rank)] = true;
    return {};
  };
  // What each accepted connection's handshake settled, by socket (handshakes run on their own threads).
  std::mutex secured_mu;
  std::map<const Socket*, LinkSecurity> secured;
  PendingHandshakes pending(kMaxPendingHandshakes, kHandshakeLimit, [&](Socket& socket, Clock::time_point until) {
    LinkSecurity security;
    wire::Hello hello = handshake_as_acceptor(socket, options, until, check, security);
    std::lock_guard lock(secured_mu);
    secured[&socket] = security;
    return hello;
  });
  auto settle = [&](PendingHandshakes::Outcome& outcome) {
    if (outcome.hello) {
      const wire::Hello& hello = *outcome.hello;
      if (roster) {
        const auto r = static_cast<std::size_t>(hello.rank);
        roster->ports[r] = hello.listen_port;
        boost::system::error_code ec;
        const auto from_endpoint = outcome.socket->remote_endpoint(ec);
        roster->hosts[r] = hello.listen_host ? hello.listen_host : ec ? 0 : from_endpoint.address().to_v4().to_uint();
        roster->hostnames[r] = hello.hostname;
      }
      {
        std::lock_guard lock(secured_mu);
        mesh.security[static_cast<std::size_t>(hello.rank)] = secured[outcome.socket.get()];
      }
      mesh.links[static_cast<std::size_t>(hello.rank)] = std::move(outcome.socket);
      ++joined;
      return;
    }
    refused.push_back(detail::concat(outcome.from, ": ", outcome.problem));
    report(options, detail::concat("rank ", options.rank, " refused a connection from ", outcome.from, ": ", outcome.problem));
  };
  while (joined < expected.size()) {
    for (auto& outcome : pending.take_finished()) settle(outcome);
    if (joined == expected.size()) break;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      for (auto& outcome : pending.stop()) settle(outcome);
      if (joined == expected.size()) break;
      std::vector<std::string> missing;
      for (int r : expected) {
        if (!mesh.links[static_cast<std::size_t>(r)]) missing.push_back(std::to_string(r));
      }
      throw Error(ErrorKind::kIo,
                  detail::concat("rank ", options.rank, ": rendezvous at ", listener.address.text(), " timed out after ",
                                 rendezvous_timeout(options).count(), " ms: rank(s) ", join(missing, ", "), " of ", options.size,
                                 " did not join", refused.empty() ? "" : "; refused: " + join(refused, "; "),
                                 "; check that every rank runs with the same address, size and secret"));
    }
    if (options.while_waiting) options.while_waiting();
    // Wait for a new connection or a finished handshake, whichever comes first.
    pollfd fds[2] = {{listener.acceptor->native_handle(), POLLIN, 0}, {pending.wake_fd(), POLLIN, 0}};
    const int n = ::poll(fds, 2, static_cast<int>(std::min<long long>(left, options.while_waiting ? 50 : 1000)));
    if (n < 0 && errno != EINTR) throw Error(ErrorKind::kIo, detail::concat("poll failed: ", std::strerror(errno)));
    if (n > 0 && fds[0].revents) {
      // Take every connection waiting in the backlog (the deadline "now" makes accept_until not wait).
      while (auto socket = accept_until(*listener.acceptor, *mesh.io, Clock::now())) pending.start(std::move(socket), deadline);
    }
  }
  // Connections still handshaking are strays (every expected rank is in): closed, and the refusals
  // that completed meanwhile are still reported.
  for (auto& outcome : pending.stop()) settle(outcome);
}

std::unique_ptr<Socket> connect_to(const TcpOptions& options, asio::io_context& io, const Endpoint& to, int peer,
                                   Clock::time_point deadline) {
  std::string last_error;
  try {
    return connect_until(io, to, deadline, last_error);
  } catch (const DeadlineExceeded&) {
    throw Error(ErrorKind::kIo, detail::concat("rank ", options.rank, ": could not reach rank ", peer, " at ", to.text(),
                                               " within ", rendezvous_timeout(options).count(), " ms (", last_error, ")",
                                               peer == 0 ? "; is rank 0 running with this address?" : ""));
  }
}

}  // namespace

std::unique_ptr<TcpListener::Impl> listen_at(const Endpoint& address, std::shared_ptr<asio::io_context> io) {
  auto impl = std::make_unique<TcpListener::Impl>();
  impl->io = std::move(io);
  impl->acceptor = std::make_unique<Acceptor>(*impl->io);
  const asio::ip::tcp::endpoint endpoint(asio::ip::address_v4(address.host), address.port);
  boost::system::error_code ec;
  impl->acceptor->open(endpoint.protocol(), ec);
  if (!ec) close_on_exec(impl->acceptor->native_handle());
  if (!ec) impl->acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor->bind(endpoint, ec);
  if (!ec) impl->acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    throw Error(ErrorKind::kIo, detail::concat("cannot listen at ", address.text(), ": ", ec.message(),
                                               ec == asio::error::address_in_use
                                                   ? "; another job or process holds this port, choose another comm.address"
                                                   : ""));
  }
  impl->address = address;
  impl->address.port = impl->acceptor->local_endpoint().port();
  return impl;
}

LinkSecurity handshake_as_connector(Socket& socket, const std::string& secret, int rank, int size, std::uint16_t listen_port,
                                    int expected_peer, const std::string& where, Clock::time_point deadline,
                                    std::uint32_t listen_host, const std::string& hostname, IntegrityPolicy integrity,
                                    bool encrypt) {
  const std::string prefix = detail::concat("rank ", rank, ": handshake with rank ", expected_peer, " at ", where, " failed: ");
  try {
    const wire::Control first = read_control(socket, deadline);
    const auto* challenge = std::get_if<wire::Challenge>(&first);
    if (!challenge) {
      throw Error(ErrorKind::kIo, detail::concat(prefix, "expected a challenge frame, got a ", wire::control_name(first), " frame"));
    }
    if (challenge->rank != expected_peer) {
      throw Error(ErrorKind::kIo, detail::concat(prefix, "the process there is rank ", challenge->rank));
    }
    const Protection wish = wanted_protection(integrity, encrypt, peer_on_loopback(socket));
    wire::Hello hello{rank, size, listen_port, fresh_nonce(), {}, listen_host, hostname, static_cast<std::uint8_t>(wish)};
    hello.mac = hello_mac(secret, challenge->nonce, hello.nonce, rank, size);
    write_frame(socket, wire::encode(hello), deadline);
    const wire::Control verdict = read_control(socket, deadline);
    if (const auto* reject = std::get_if<wire::Reject>(&verdict)) {
      throw Error(ErrorKind::kIo, detail::concat("rank ", rank, ": rank ", expected_peer, " at ", where,
                                                 " refused this rank: ", reject->reason));
    }
    const auto* welcome = std::get_if<wire::Welcome>(&verdict);
    if (!welcome) {
      throw Error(ErrorKind::kIo, detail::concat(prefix, "expected a welcome frame, got a ", wire::control_name(verdict), " frame"));
    }
    if (welcome->rank != expected_peer ||
        !macs_equal(welcome->mac, welcome_mac(secret, hello.nonce, challenge->nonce, welcome->rank))) {
      throw Error(ErrorKind::kIo, detail::concat(prefix, "the process there does not know the job's secret (welcome MAC "
                                                         "mismatch); is another job using this port?"));
    }
    const auto asked = peer_protection(welcome->protection);
    if (!asked) {
      throw Error(ErrorKind::kIo, detail::concat(prefix, "it asks for frame protection level ", int{welcome->protection},
                                                 ", which this troupe does not know; every rank must run the same troupe build"));
    }
    LinkSecurity security;
    security.level = agreed_protection(wish, *asked);
    if (security.level != Protection::off) {
      security.keys = derive_link_keys(secret, challenge->nonce, hello.nonce, expected_peer, rank, security.level, false);
    }
    return security;
  } catch (const DeadlineExceeded&) {
    throw Error(ErrorKind::kIo, detail::concat(prefix, "no answer before the deadline"));
  } catch (const Error& e) {
    const std::string what = e.what();
    if (what.rfind(detail::concat("rank ", rank, ": "), 0) == 0) throw;
    throw Error(ErrorKind::kIo, prefix + what);
  }
}

Mesh form_mesh(const TcpOptions& options, TcpListener::Impl* rank0_listener) {
  const auto deadline = Clock::now() + rendezvous_timeout(options);
  const int n = options.size;
  Mesh mesh;
  mesh.links.resize(static_cast<std::size_t>(n));
  mesh.security.resize(static_cast<std::size_t>(n));

  const std::string hostname = options.hostname.empty() ? this_hostname() : options.hostname;
  if (options.rank == 0) {
    TROUPE_CHECK(rank0_listener != nullptr, "rank 0 needs its listener");
    mesh.io = rank0_listener->io;
    mesh.hostnames = {hostname};
    if (n == 1) return mesh;
    std::vector<int> others;
    for (int r = 1; r < n; ++r) others.push_back(r);
    wire::Roster joined{std::vector<std::uint16_t>(static_cast<std::size_t>(n), 0),
                        std::vector<std::uint32_t>(static_cast<std::size_t>(n), 0),
                        std::vector<std::string>(static_cast<std::size_t>(n))};
    joined.hostnames[0] = hostname;
    accept_ranks(options, *rank0_listener, others, deadline, mesh, &joined);
    mesh.hostnames = joined.hostnames;
    const wire::OutFrame roster = wire::encode(joined);
    for (int r = 1; r < n; ++r) {
      try {
        write_frame(*mesh.links[static_cast<std::size_t>(r)], roster, deadline);
      } catch (const DeadlineExceeded&) {
        throw Error(ErrorKind::kIo, detail::concat("rank 0: sending the roster to rank ", r, " timed out"));
      }
    }
    return mesh;
  }

  const Endpoint rank0 = parse_endpoint(options.address, options.reach);
  mesh.io = std::make_shared<asio::io_context>();
  auto first = connect_to(options, *mesh.io, rank0, 0, deadline);
  // This rank accepts the ranks above it on: rank 0's loopback address; over a network, the
  // interface named, else the one its connection to rank 0 leaves from (which routes to rank 0).
  const std::uint32_t own_host = options.reach == Reach::loopback ? rank0.host
                                 : !options.interface.empty() ? interface_address(options.interface)
                                                              : first->local_endpoint().address().to_v4().to_uint();
  std::unique_ptr<TcpListener::Impl> own;  // for the ranks above this one
  if (options.rank < n - 1) own = listen_at(Endpoint{own_host, 0}, mesh.io);
  const LinkSecurity first_security =
      handshake_as_connector(*first, options.secret, options.rank, n, own ? own->address.port : 0, 0, rank0.text(),
                             deadline, own_host, hostname, options.integrity, options.encrypt);
  wire::Control roster_frame;
  try {
    roster_frame = read_control(*first, deadline);
  } catch (const DeadlineExceeded&) {
    throw Error(ErrorKind::kIo, detail::concat("rank ", options.rank, ": rank 0 at ", rank0.text(), " did not complete the rendezvous within ",
                                               rendezvous_timeout(options).count(), " ms; some rank did not join"));
  } catch (const Error& e) {
    throw Error(ErrorKind::kIo, detail::concat("rank ", options.rank, ": waiting for the roster from rank 0 at ", rank0.text(),
                                               " failed: ", e.what(), "; some rank did not join"));
  }
  const auto* roster = std::get_if<wire::Roster>(&roster_frame);
  const auto ranks = static_cast<std::size_t>(n);
  if (!roster || roster->ports.size() != ranks || roster->hosts.size() != ranks || roster->hostnames.size() != ranks) {
    throw Error(ErrorKind::kIo, detail::concat("rank ", options.rank, ": rank 0 at ", rank0.text(), " sent a ",
                                               wire::control_name(roster_frame), " frame instead of a roster of ", n,
                                               " ranks (is it the same troupe version?)"));
  }
  mesh.links[0] = std::move(first);
  mesh.security[0] = first_security;
  mesh.hostnames = roster->hostnames;

  for (int j = 1; j < options.rank; ++j) {
    const Endpoint to{roster->hosts[static_cast<std::size_t>(j)], roster->ports[static_cast<std::size_t>(j)]};
    auto socket = connect_to(options, *mesh.io, to, j, deadline);
    mesh.security[static_cast<std::size_t>(j)] =
        handshake_as_connector(*socket, options.secret, options.rank, n, own ? own->address.port : 0, j, to.text(),
                               deadline, own_host, hostname, options.integrity, options.encrypt);
    mesh.links[static_cast<std::size_t>(j)] = std::move(socket);
  }
  if (own) {
    std::vector<int> above;
    for (int r = options.rank + 1; r < n; ++r) above.push_back(r);
    accept_ranks(options, *own, above, deadline, mesh, nullptr);
  }
  return mesh;
}

}  // namespace troupe::net::tcp
