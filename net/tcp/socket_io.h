// Owns deadline-bound socket I/O for the TCP transport's setup phase: connect, accept, and reading/writing whole frames, none of which can wait past its deadline.
//
// During the rendezvous and handshakes sockets are non-blocking and every wait is a poll() bounded
// by a deadline, so a silent or half-open peer costs at most the time left, never a hang. The data
// path (net/tcp/tcp_transport.cpp) switches sockets to blocking mode and uses its own threads.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "net/tcp/address.h"
#include "net/wire/frame_codec.h"

namespace troupe::net::tcp {

using Clock = std::chrono::steady_clock;
using Socket = boost::asio::ip::tcp::socket;
using Acceptor = boost::asio::ip::tcp::acceptor;

// Thrown when a deadline passes; the caller turns it into an Error that says what it waited for.
struct DeadlineExceeded {};

// Connects to `to`, retrying refused connections every few milliseconds (the listener may not be
// up yet) until `deadline`. Throws DeadlineExceeded with the last error in `last_error`.
std::unique_ptr<Socket> connect_until(boost::asio::io_context& io, const Endpoint& to,
                                      Clock::time_point deadline, std::string& last_error);

// The next connection on `acceptor`, or nullopt when `deadline` passes first.
std::unique_ptr<Socket> accept_until(Acceptor& acceptor, boost::asio::io_context& io, Clock::time_point deadline);

// Whole frames on a non-blocking socket. A closed connection or a socket error throws
// troupe::Error(kIo); a malformed frame throws the codec's Error; a chunk frame is malformed here.
void write_frame(Socket& socket, const wire::OutFrame& frame, Clock::time_point deadline);
wire::Control read_control(Socket& socket, Clock::time_point deadline);

// The peer's "127.0.0.1:port", or "an unknown peer".
std::string peer_text(const Socket& socket);

// Close-on-exec, TCP_NODELAY, and the socket into the mode the setup phase needs (non-blocking).
void prepare_socket(Socket& socket);
void close_on_exec(int fd);

}  // namespace troupe::net::tcp
