// Owns the allreduce algorithm choice.
#include "runtime/comm/allreduce.h"

#include <cstdint>

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
  throw Error(ErrorKind::kUsage, detail::concat("unknown allreduce algorithm '", name,
                                                "'; choose auto, ring or hd (halving-doubling)"));
}

std::string_view allreduce_algo_name(AllreduceAlgo algo) {
  switch (algo) {
    case AllreduceAlgo::kAuto: return "auto";
    case AllreduceAlgo::kRing: return "ring";
    case AllreduceAlgo::kHalvingDoubling: return "hd";
  }
  return "?";
}

template <class T>
void allreduce(Transport& transport, std::span<T> data, AllreduceAlgo algo, RingOptions ring) {
  if (algo == AllreduceAlgo::kAuto) algo = choose_allreduce(data.size_bytes(), transport.size());
  if (algo == AllreduceAlgo::kRing) allreduce_ring<T>(transport, data, ring);
  else allreduce_halving_doubling<T>(transport, data);
}

template void allreduce<float>(Transport&, std::span<float>, AllreduceAlgo, RingOptions);
template void allreduce<double>(Transport&, std::span<double>, AllreduceAlgo, RingOptions);
template void allreduce<std::int64_t>(Transport&, std::span<std::int64_t>, AllreduceAlgo, RingOptions);
template void allreduce<__int128>(Transport&, std::span<__int128>, AllreduceAlgo, RingOptions);

}  // namespace troupe::comm
