// Owns RoutedTransport, the comm::Transport that reaches each peer through one of two transports (shared memory to the ranks on this host, TCP to the others), and connect_routed(), which builds it from where the ranks report they are.
//
// A multi-host job (docs/multi-host.md) puts several ranks on each host. Between hosts only TCP goes;
// inside a host, shared memory (net/shm) avoids the kernel's TCP path. Collectives are written against
// one Transport (runtime/comm/transport.h), so the choice is made per peer, underneath them:
//
//   route(p) = near   when rank p reported this rank's host name in the rendezvous (and can map its
//                     memory: same boot and pid namespace, net/shm/segment.h host_identity)
//            = far    otherwise
//
// The rendezvous learns every rank's host name (TcpTransport::hostnames); those are the names the
// Topology places the ranks on (plan::Place::host), so the routing and the hierarchical collectives
// (runtime/comm/hierarchical.h) see the same hosts.
//
// Contract: that of comm::Transport. Per (sender, receiver, tag) order holds because one pair of ranks
// always takes the same route. Failures are those of the route a call takes; both routes share the TCP
// mesh's liveness, so a dead peer is named at once on either (net/shm/shm_transport.h).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "net/shm/shm_transport.h"
#include "net/tcp/tcp_transport.h"
#include "runtime/comm/transport.h"

namespace troupe::net {

class RoutedTransport final : public comm::Transport {
 public:
  // `near` and `far` are endpoints of the same rank in groups of the same size; `near_peers[p]` says
  // which one reaches rank p. `owner` keeps both alive as long as this transport (it may own them in
  // any order: connect_routed's shared-memory transport owns its TCP mesh). `hostnames`: each rank's
  // host, as the rendezvous learned it (may be empty).
  RoutedTransport(comm::Transport& near, comm::Transport& far, std::vector<bool> near_peers,
                  std::shared_ptr<void> owner, std::vector<std::string> hostnames = {});

  int rank() const override { return near_.rank(); }
  int size() const override { return near_.size(); }
  void send(int to, std::uint32_t tag, std::span<const std::byte> data) override;
  void recv(int from, std::uint32_t tag, std::span<std::byte> out) override;
  // Lent sends take the peer's route like any other; release_lent() releases both routes' loans.
  void send_lent(int to, std::uint32_t tag, std::span<const std::byte> data) override;
  void release_lent() noexcept override;

  // Whether rank `peer` is reached through `near` (this rank itself counts as near).
  bool near(int peer) const;
  const std::vector<std::string>& hostnames() const { return hostnames_; }
  // The transport between hosts (what reports a link's protection, say).
  const comm::Transport& far_transport() const { return far_; }

 private:
  comm::Transport& route(int peer);

  comm::Transport& near_;
  comm::Transport& far_;
  std::vector<bool> near_peers_;
  std::shared_ptr<void> owner_;
  std::vector<std::string> hostnames_;
};

// Joins the group described by `options` (its `peers` is ignored): forms the TCP mesh of every rank,
// then shared memory among the ranks of each host; blocks until both are up. Errors as connect_shm.
std::unique_ptr<RoutedTransport> connect_routed(const ShmOptions& options);
// Rank 0 only: with a listener bound beforehand.
std::unique_ptr<RoutedTransport> connect_routed(const ShmOptions& options, TcpListener listener);

}  // namespace troupe::net
