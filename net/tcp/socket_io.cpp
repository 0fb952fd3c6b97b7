// Owns the poll()-bounded connect, accept, read and write loops of the setup phase.
#include "net/tcp/socket_io.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>
#include <thread>
#include <vector>

#include "runtime/error.h"

namespace troupe::net::tcp {

namespace asio = boost::asio;

namespace {

// Waits until `fd` is ready for `events`; throws DeadlineExceeded when the deadline passes first.
void wait_ready(int fd, short events, Clock::time_point deadline) {
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) throw DeadlineExceeded{};
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000)));
    if (n > 0) return;  // ready, or an error the next operation reports
    if (n < 0 && errno != EINTR) throw Error(ErrorKind::kIo, detail::concat("poll failed: ", std::strerror(errno)));
  }
}

}  // namespace

void close_on_exec(int fd) { ::fcntl(fd, F_SETFD, ::fcntl(fd, F_GETFD) | FD_CLOEXEC); }

void prepare_socket(Socket& socket) {
  close_on_exec(socket.native_handle());  // a rank that starts other processes does not lend them its links
  socket.set_option(asio::ip::tcp::no_delay(true));
  socket.non_blocking(true);
}

std::string peer_text(const Socket& socket) {
  boost::system::error_code ec;
  const auto ep = socket.remote_endpoint(ec);
  if (ec) return "an unknown peer";
  return detail::concat(ep.address().to_string(), ":", ep.port());
}

std::unique_ptr<Socket> connect_until(asio::io_context& io, const Endpoint& to, Clock::time_point deadline,
                                      std::string& last_error) {
  const asio::ip::tcp::endpoint endpoint(asio::ip::address_v4(to.host), to.port);
  auto delay = std::chrono::milliseconds(2);
  while (true) {
    auto socket = std::make_unique<Socket>(io);
    boost::system::error_code ec;
    socket->open(endpoint.protocol(), ec);
    if (!ec) {
      // Non-blocking, so that a host that does not answer (a link down, a firewall dropping the
      // SYN) costs at most the time left, not the kernel's minutes of SYN retries.
      close_on_exec(socket->native_handle());
      socket->non_blocking(true);
      socket->connect(endpoint, ec);
      if (ec == asio::error::in_progress || ec == asio::error::would_block) {
        try {
          wait_ready(socket->native_handle(), POLLOUT, deadline);
        } catch (const DeadlineExceeded&) {
          if (last_error.empty()) last_error = "no answer";
          throw;
        }
        int error = 0;
        socklen_t length = sizeof error;
        ::getsockopt(socket->native_handle(), SOL_SOCKET, SO_ERROR, &error, &length);
        ec = error ? boost::system::error_code(error, boost::system::system_category()) : boost::system::error_code{};
      }
    }
    if (!ec) {
      prepare_socket(*socket);
      return socket;
    }
    last_error = ec.message();
    if (Clock::now() + delay >= deadline) throw DeadlineExceeded{};
    std::this_thread::sleep_for(delay);
    delay = std::min(delay * 2, std::chrono::milliseconds(100));
  }
}

std::unique_ptr<Socket> accept_until(Acceptor& acceptor, asio::io_context& io, Clock::time_point deadline) {
  acceptor.non_blocking(true);
  while (true) {
    auto socket = std::make_unique<Socket>(io);
    boost::system::error_code ec;
    acceptor.accept(*socket, ec);
    if (!ec) {
      prepare_socket(*socket);
      return socket;
    }
    if (ec != asio::error::would_block && ec != asio::error::try_again && ec != asio::error::connection_aborted) {
      throw Error(ErrorKind::kIo, detail::concat("accept failed: ", ec.message()));
    }
    try {
      wait_ready(acceptor.native_handle(), POLLIN, deadline);
    } catch (const DeadlineExceeded&) {
      return nullptr;
    }
  }
}

void write_frame(Socket& socket, const wire::OutFrame& frame, Clock::time_point deadline) {
  for (const auto& piece : frame.pieces()) {
    std::size_t done = 0;
    while (done < piece.size()) {
      boost::system::error_code ec;
      done += socket.write_some(asio::buffer(piece.data() + done, piece.size() - done), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        wait_ready(socket.native_handle(), POLLOUT, deadline);
      } else if (ec) {
        throw Error(ErrorKind::kIo, detail::concat("sending to ", peer_text(socket), " failed: ", ec.message()));
      }
    }
  }
}

wire::Control read_control(Socket& socket, Clock::time_point deadline) {
  wire::FrameReader reader;
  auto read_exact = [&](std::span<std::byte> out) {
    std::size_t done = 0;
    while (done < out.size()) {
      boost::system::error_code ec;
      const std::size_t n = socket.read_some(asio::buffer(out.data() + done, out.size() - done), ec);
      done += n;
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        wait_ready(socket.native_handle(), POLLIN, deadline);
      } else if (ec == asio::error::eof) {
        throw Error(ErrorKind::kIo, "the connection closed during the handshake");
      } else if (ec) {
        throw Error(ErrorKind::kIo, detail::concat("the connection failed during the handshake: ", ec.message()));
      }
    }
  };
  auto frame = reader.read(read_exact, [](const wire::ChunkHeader&, std::size_t) { return nullptr; });
  if (std::holds_alternative<wire::InChunk>(frame)) {
    throw Error(ErrorKind::kIo, "a data chunk arrived during the handshake");
  }
  return std::get<wire::Control>(std::move(frame));
}

}  // namespace troupe::net::tcp
