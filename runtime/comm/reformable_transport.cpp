// ReformableTransport: forwarding to the current connections, failures turned into an abandoned step.
#include "runtime/comm/reformable_transport.h"

#include "runtime/comm/group_aborted.h"

namespace troupe::comm {

ReformableTransport::ReformableTransport(std::unique_ptr<Transport> inner, std::function<void()> break_inner)
    : rank_(inner->rank()), size_(inner->size()), inner_(std::move(inner)), break_inner_(std::move(break_inner)) {}

void ReformableTransport::aborted(const Error& e) {
  {
    std::lock_guard lock(mu_);
    if (first_.empty()) first_ = e.what();
  }
  interrupted_ = true;
  throw GroupAborted(e.what());
}

void ReformableTransport::send(int to, std::uint32_t tag, std::span<const std::byte> data) {
  try {
    inner_->send(to, tag, data);
  } catch (const GroupAborted&) {
    interrupted_ = true;
    throw;
  } catch (const Error& e) {
    aborted(e);
  }
}

void ReformableTransport::recv(int from, std::uint32_t tag, std::span<std::byte> out) {
  try {
    inner_->recv(from, tag, out);
  } catch (const GroupAborted&) {
    interrupted_ = true;
    throw;
  } catch (const Error& e) {
    aborted(e);
  }
}

void ReformableTransport::send_lent(int to, std::uint32_t tag, std::span<const std::byte> data) {
  try {
    inner_->send_lent(to, tag, data);
  } catch (const GroupAborted&) {
    interrupted_ = true;
    throw;
  } catch (const Error& e) {
    aborted(e);
  }
}

void ReformableTransport::release_lent() noexcept { inner_->release_lent(); }

std::string ReformableTransport::first_failure() const {
  std::lock_guard lock(mu_);
  return first_;
}

void ReformableTransport::break_group() {
  interrupted_ = true;
  if (break_inner_) break_inner_();
}

void ReformableTransport::replace(std::unique_ptr<Transport> inner, std::function<void()> break_inner) {
  TROUPE_CHECK(inner->rank() == rank_ && inner->size() == size_, "a reformed group of ", inner->size(), " at rank ",
               inner->rank(), " for ", size_, " at rank ", rank_);
  inner_ = std::move(inner);
  break_inner_ = std::move(break_inner);
  std::lock_guard lock(mu_);
  first_.clear();
  interrupted_ = false;
}

}  // namespace troupe::comm
