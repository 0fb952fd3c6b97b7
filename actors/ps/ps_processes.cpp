// PsProcesses: rank 0's listeners, worker processes, links and restarts; a started worker's link.
#include "actors/ps/ps_processes.h"

#include <cstdio>
#include <cstdlib>

#include "net/tcp/address.h"
#include "net/tcp/launch.h"
#include "net/tcp/tcp_transport.h"
#include "runtime/error.h"
#include "runtime/process/replica_processes.h"
#include "runtime/strings.h"

namespace troupe::ps {

namespace {
constexpr const char* kAddressesEnv = "TROUPE_PS_ADDRESSES";
constexpr const char* kRestartEnv = "TROUPE_RESTART";
}  // namespace

bool PsProcesses::restarted() { return std::getenv(kRestartEnv) != nullptr; }

PsProcesses::PsProcesses(int rank, PsProcessOptions options) : rank_(rank), options_(std::move(options)) {
  const int W = options_.workers;
  TROUPE_CHECK(W >= 1 && rank >= 0 && rank < W, "ps process rank ", rank, " of ", W, " workers");
  host_ = net::tcp::parse_loopback_address(options_.address).host_text();
  if (rank > 0) {
    addresses_ = net::addresses_from_environment(kAddressesEnv);
    TROUPE_CHECK(static_cast<int>(addresses_.size()) == W - 1, "ps addresses for rank ", rank, " of ", W);
    auto link = net::connect_tcp({.rank = 1, .size = 2, .address = addresses_[static_cast<std::size_t>(rank - 1)],
                                  .secret = net::secret_from_environment(), .timeout = options_.timeout});
    tcp_.push_back(link.get());
    links_.push_back(std::move(link));
    return;
  }
  secret_ = net::job_secret();
  std::vector<net::TcpListener> listeners = net::bind_listeners(
      net::consecutive_addresses(options_.address_setting, options_.address, W - 1, "worker after the first"),
      kAddressesEnv, rendezvous_);
  if (!rendezvous_.empty()) addresses_ = split(rendezvous_);
  children_ = std::make_unique<ReplicaProcesses>(options_.program, options_.args, W, secret_, options_.heartbeat_limit);
  for (auto& listener : listeners) {
    auto link = net::connect_tcp({.rank = 0, .size = 2, .address = "", .secret = secret_, .timeout = options_.timeout},
                                 std::move(listener));
    tcp_.push_back(link.get());
    links_.push_back(std::move(link));
  }
}

PsProcesses::~PsProcesses() = default;

PsLinks PsProcesses::links() {
  PsLinks l;
  l.rank = rank_;
  l.links = std::move(links_);
  l.abort = [this] {
    std::lock_guard lock(mu_);
    for (auto* t : tcp_) t->abort();
  };
  if (rank_ == 0) {
    l.max_restarts = options_.max_restarts;
    l.restart = [this](int w) { return restart(w); };
  }
  return l;
}

// A fresh process for worker w joins over a new listener (the system picks its port) and resumes where
// its pushes stopped; the other workers keep their links.
std::unique_ptr<comm::Transport> PsProcesses::restart(int w) {
  net::TcpListener listener(host_ + ":0");
  std::string list;
  {
    std::lock_guard lock(mu_);
    addresses_[static_cast<std::size_t>(w - 1)] = listener.address();
    for (const auto& a : addresses_) list += (list.empty() ? "" : ",") + a;
  }
  const std::string ended = children_->restart(w, {{kAddressesEnv, list}, {kRestartEnv, "1"}});
  std::fprintf(stderr, "troupe: ps worker %d's old process %s; a new one joins at %s\n", w, ended.c_str(),
               listener.address().c_str());
  auto link = net::connect_tcp({.rank = 0, .size = 2, .address = "", .secret = secret_, .timeout = options_.timeout},
                               std::move(listener));
  std::lock_guard lock(mu_);
  tcp_[static_cast<std::size_t>(w - 1)] = link.get();
  return link;
}

std::string PsProcesses::wait_all() { return children_ ? children_->wait_all() : std::string(); }

}  // namespace troupe::ps
