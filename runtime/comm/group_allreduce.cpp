// GroupAllreduce: the choice, made once, and the three ways to sum.
#include "runtime/comm/group_allreduce.h"

#include <type_traits>

#include "runtime/comm/direct.h"
#include "runtime/comm/hierarchical.h"
#include "runtime/comm/ring.h"
#include "runtime/comm/shared_memory_allreduce.h"
#include "runtime/error.h"

namespace troupe::comm {

GroupAllreduce::GroupAllreduce(Transport& transport, GradientExchange exchange, std::shared_ptr<LocalGroup> local,
                               std::vector<int> host_of)
    : transport_(transport), local_(std::move(local)), host_of_(std::move(host_of)) {
  TROUPE_CHECK(exchange != GradientExchange::ps, "parameter servers do not allreduce");
  TROUPE_CHECK(host_of_.empty() || static_cast<int>(host_of_.size()) == transport_.size(), host_of_.size(),
               " hosts for a group of ", transport_.size());
  // Ranks by reference share one process, hence one host; otherwise the hosts decide.
  const bool hierarchy = !local_ && !host_of_.empty() && hierarchy_pays(host_of_);
  if (exchange == GradientExchange::alltoall) float_algo_ = Algo::direct;  // as asked
  else float_algo_ = local_ ? Algo::local : hierarchy ? Algo::hierarchical : Algo::ring;
  exact_algo_ = local_ ? Algo::local : hierarchy ? Algo::hierarchical : Algo::direct;
}

template <class T>
void GroupAllreduce::run(Algo algo, std::span<T> data) {
  switch (algo) {
    case Algo::local:
      local_->allreduce<T>(transport_.rank(), data);
      return;
    case Algo::ring:
      if constexpr (std::is_same_v<T, float>) {  // only float buckets take the ring (see the header)
        // The ring's sums, bit for bit, without its messages where the ranks share memory.
        if (SharedWindow* window = transport_.shared_window()) allreduce_shared_memory<T>(*window, data);
        else allreduce_ring<T>(transport_, data);
        return;
      }
      break;
    case Algo::hierarchical:
      allreduce_hierarchical<T>(transport_, data, host_of_);
      return;
    case Algo::direct: {
      const auto ranges = equal_ranges(data.size(), transport_.size());
      reduce_scatter_direct<T>(transport_, data, ranges);
      all_gather_direct<T>(transport_, data, ranges);
      return;
    }
  }
  TROUPE_CHECK(false, "no allreduce for this element type and algorithm");
}

std::size_t GroupAllreduce::bytes_sent(std::size_t bytes, bool exact) const {
  const auto n = static_cast<std::size_t>(transport_.size());
  if (n <= 1) return 0;
  if ((exact ? exact_algo_ : float_algo_) == Algo::hierarchical) return hierarchical_bytes_sent(host_of_, transport_.rank(), bytes);
  return 2 * bytes * (n - 1) / n;  // the ring and direct alike (a local group's by reference: what they would send)
}

void GroupAllreduce::sum(std::span<float> data) { run(float_algo_, data); }
void GroupAllreduce::sum(std::span<ExactSum> data) { run(exact_algo_, data); }

}  // namespace troupe::comm
