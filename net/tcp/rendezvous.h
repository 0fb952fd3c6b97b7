// Owns the TCP transport's setup: listeners, the authenticated handshake on each connection, and the rendezvous through rank 0 that forms the full mesh.
//
// Handshake on a fresh connection (acceptor A, connector C; frames of net/wire/frame.capnp):
//   A -> C  challenge {A's rank, nonce Na}
//   C -> A  hello     {C's rank, size, C's listening port, nonce Nc, hello_mac, C's protection wish}
//   A -> C  welcome   {A's rank, welcome_mac, A's protection wish}   or   reject {reason}, and A closes
// Both then protect the link's frames at the stronger wish, with keys derived from the secret, Na
// and Nc (net/tcp/link_security.h).
// A refuses a wrong MAC, a wrong size, a rank it does not expect or already has; C refuses a
// welcome with a wrong MAC or from an unexpected rank. Either side's refusal is an Error(kIo)
// that says which address, which rank and why.
//
// Rendezvous (TcpTransport's header gives the picture): rank 0 accepts until n - 1 ranks have
// joined, then sends every rank the roster: each rank's listening address and host name. Connections that fail the handshake
// are refused and reported (on_reject); they do not count. Acceptors handshake with every
// connection concurrently, each within min(deadline, 2 s), at most 32 unauthenticated ones at once
// (the oldest is closed beyond that; net/tcp/pending_handshakes.h), so silent or slow strays do not
// delay the ranks that connect beside them.
#pragma once

#include <boost/asio/io_context.hpp>
#include <memory>
#include <string>
#include <vector>

#include "net/tcp/address.h"
#include "net/tcp/link_security.h"
#include "net/tcp/socket_io.h"
#include "net/tcp/tcp_transport.h"

namespace troupe::net {

struct TcpListener::Impl {
  std::shared_ptr<boost::asio::io_context> io;
  tcp::Endpoint address;  // with the bound port
  std::unique_ptr<tcp::Acceptor> acceptor;
};

}  // namespace troupe::net

namespace troupe::net::tcp {

// A listening socket at `address` (port 0: a free one) on `io`; Error(kIo) if it cannot bind.
std::unique_ptr<TcpListener::Impl> listen_at(const Endpoint& address, std::shared_ptr<boost::asio::io_context> io);

// The connections of one rank to every other, by rank (null at its own rank), authenticated.
struct Mesh {
  std::shared_ptr<boost::asio::io_context> io;
  std::vector<std::unique_ptr<Socket>> links;
  std::vector<std::string> hostnames;  // by rank, as each reported it
  std::vector<LinkSecurity> security;  // by rank: how each link's frames are protected
};

// Runs the rendezvous for options.rank. Rank 0 passes the listener it accepts on (bound at
// options.address by the caller); other ranks pass null.
Mesh form_mesh(const TcpOptions& options, TcpListener::Impl* rank0_listener);

// The connector's side of the handshake on a connected `socket` to the rank `expected_peer` at
// `where`; returns once welcomed, throws Error(kIo) when refused or when the peer fails to prove it
// knows the secret. Also used by tests that play a rank by hand.
// `listen_host` and `hostname` go into the hello (net/wire/frame.capnp).
// Returns what the handshake settled for the link's frames (net/tcp/link_security.h), given this
// rank's comm.integrity and comm.encrypt.
LinkSecurity handshake_as_connector(Socket& socket, const std::string& secret, int rank, int size, std::uint16_t listen_port,
                                    int expected_peer, const std::string& where, Clock::time_point deadline,
                                    std::uint32_t listen_host = 0, const std::string& hostname = {},
                                    IntegrityPolicy integrity = IntegrityPolicy::automatic, bool encrypt = false);

}  // namespace troupe::net::tcp
