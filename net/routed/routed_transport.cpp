// Owns RoutedTransport's per-peer dispatch and connect_routed's assembly of shared memory over the TCP mesh.
#include "net/routed/routed_transport.h"

#include "runtime/error.h"

namespace troupe::net {

RoutedTransport::RoutedTransport(comm::Transport& near, comm::Transport& far, std::vector<bool> near_peers,
                                 std::shared_ptr<void> owner, std::vector<std::string> hostnames)
    : near_(near), far_(far), near_peers_(std::move(near_peers)), owner_(std::move(owner)), hostnames_(std::move(hostnames)) {
  TROUPE_CHECK(near_.rank() == far_.rank() && near_.size() == far_.size(), "near transport is rank ", near_.rank(), " of ",
               near_.size(), ", far one rank ", far_.rank(), " of ", far_.size());
  TROUPE_CHECK(static_cast<int>(near_peers_.size()) == near_.size(), near_peers_.size(), " routes for ", near_.size(), " ranks");
}

bool RoutedTransport::near(int peer) const {
  TROUPE_CHECK(peer >= 0 && peer < size(), "rank ", peer, " of ", size());
  return peer == rank() || near_peers_[static_cast<std::size_t>(peer)];
}

comm::Transport& RoutedTransport::route(int peer) { return near(peer) ? near_ : far_; }

void RoutedTransport::send(int to, std::uint32_t tag, std::span<const std::byte> data) { route(to).send(to, tag, data); }

void RoutedTransport::recv(int from, std::uint32_t tag, std::span<std::byte> out) { route(from).recv(from, tag, out); }

void RoutedTransport::send_lent(int to, std::uint32_t tag, std::span<const std::byte> data) {
  route(to).send_lent(to, tag, data);
}

void RoutedTransport::release_lent() noexcept {
  near_.release_lent();
  far_.release_lent();
}

namespace {

std::unique_ptr<RoutedTransport> assemble(std::shared_ptr<ShmTransport> shm) {
  std::vector<bool> near(static_cast<std::size_t>(shm->size()));
  for (int p = 0; p < shm->size(); ++p) near[static_cast<std::size_t>(p)] = shm->shares_memory_with(p);
  ShmTransport& memory = *shm;
  TcpTransport& links = shm->links();  // owned by the shared-memory transport, which closes it last
  return std::make_unique<RoutedTransport>(memory, links, std::move(near), shm, shm->hostnames());
}

ShmOptions same_host(ShmOptions options) {
  options.peers = ShmPeers::same_host;
  return options;
}

}  // namespace

std::unique_ptr<RoutedTransport> connect_routed(const ShmOptions& options) {
  return assemble(connect_shm(same_host(options)));
}

std::unique_ptr<RoutedTransport> connect_routed(const ShmOptions& options, TcpListener listener) {
  return assemble(connect_shm(same_host(options), std::move(listener)));
}

}  // namespace troupe::net
