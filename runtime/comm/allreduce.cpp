// Owns the allreduce algorithm choice.
#include "runtime/comm/allreduce.h"

#include <cstdint>

#include "runtime/comm/shared_memory_allreduce.h"
#include "runtime/error.h"

namespace troupe::comm {

AllreduceAlgo choose_allreduce(std::size_t bytes, int ranks) {
  // Two ranks: both algorithms are one exchange each way; the ring streams it in segments.
  if (ranks <= 2) return AllreduceAlgo::kRing;
  return bytes < kAllreduceCrossoverBytes ? AllreduceAlgo::kHalvingDoubling : AllreduceAlgo::kRing;
}

AllreduceAlgo parse_allreduce_algo(std::string_view name) {
  if (name == "auto") return AllreduceAlgo::kAuto;
  if (name == "ring") return AllreduceAlgo::kRing;
  if (name == "hd") return AllreduceAlgo::kHalvingDoubling;
  if (name == "shm") return AllreduceAlgo::kSharedMemory;
  throw Error(ErrorKind::kUsage, detail::concat("unknown allreduce algorithm '", name,
                                                "'; choose auto, ring, hd (halving-doubling) or shm (shared memory)"));
}

std::string_view allreduce_algo_name(AllreduceAlgo algo) {
  switch (algo) {
    case AllreduceAlgo::kAuto: return "auto";
    case AllreduceAlgo::kRing: return "ring";
    case AllreduceAlgo::kHalvingDoubling: return "hd";
    case AllreduceAlgo::kSharedMemory: return "shm";
  }
  return "?";
}

template <class T>
void allreduce(Transport& transport, std::span<T> data, AllreduceAlgo algo, RingOptions ring) {
  SharedWindow* window = transport.shared_window();
  if (algo == AllreduceAlgo::kAuto) {
    algo = choose_allreduce(data.size_bytes(), transport.size());
    // The same sums as the ring's, without the messages.
    if (algo == AllreduceAlgo::kRing && window) algo = AllreduceAlgo::kSharedMemory;
  }
  switch (algo) {
    case AllreduceAlgo::kRing: allreduce_ring<T>(transport, data, ring); return;
    case AllreduceAlgo::kHalvingDoubling: allreduce_halving_doubling<T>(transport, data); return;
    case AllreduceAlgo::kSharedMemory:
      if (!window) {
        throw Error(ErrorKind::kConfig, detail::concat("rank ", transport.rank(),
                                                       ": the shared-memory allreduce needs ranks that share memory "
                                                       "(comm.transport = shm, every rank on this host); choose "
                                                       "auto, ring or hd for this transport"));
      }
      allreduce_shared_memory<T>(*window, data);
      return;
    case AllreduceAlgo::kAuto: break;
  }
  TROUPE_CHECK(false, "allreduce algorithm ", static_cast<int>(algo));
}

template void allreduce<float>(Transport&, std::span<float>, AllreduceAlgo, RingOptions);
template void allreduce<double>(Transport&, std::span<double>, AllreduceAlgo, RingOptions);
template void allreduce<std::int64_t>(Transport&, std::span<std::int64_t>, AllreduceAlgo, RingOptions);
template void allreduce<__int128>(Transport&, std::span<__int128>, AllreduceAlgo, RingOptions);

}  // namespace troupe::comm
