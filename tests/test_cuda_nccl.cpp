// [cuda] NcclCommunicator: the unique id goes over the in-process control transport; an allreduce on
// device buffers sums over ranks (one rank per GPU: every GPU this machine has, ranks as threads).
#include <thread>

#include "net/inproc/inproc_transport.h"
#include "net/nccl/nccl_communicator.h"
#include "net/nccl/nccl_group.h"
#include "runtime/device_info.h"
#include "tests/cuda_oracle.h"

using namespace troupe;

#ifdef TROUPE_HAVE_NCCL
TEST_CASE("NCCL allreduce over one rank per GPU sums device buffers", "[cuda][nccl]") {
  const int ranks = static_cast<int>(query_devices().cuda_devices.size());
  net::InprocWorld world(ranks, std::chrono::seconds(30));
  const std::int64_t n = 1000;
  std::vector<std::vector<float>> results(ranks);
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r)
    threads.emplace_back([&, r] {
      CudaBackend be(CudaBackendOptions{r, false});
      auto control = world.transport(r);
      nccl::NcclCommunicator comm(*control, r);
      std::vector<float> v(n);
      for (std::int64_t i = 0; i < n; ++i) v[i] = static_cast<float>((r + 1) * (i % 7 + 1));
      Tensor buf = be.upload(Tensor::from_f32({n}, v));
      comm.allreduce_sum(buf, be.stream());
      results[r] = be.download(buf).to_vector();
    });
  for (auto& t : threads) t.join();
  const float rank_sum = static_cast<float>(ranks * (ranks + 1) / 2);
  for (int r = 0; r < ranks; ++r)
    for (std::int64_t i = 0; i < n; ++i) REQUIRE(results[r][i] == rank_sum * static_cast<float>(i % 7 + 1));
}
#endif
