// Owns the recursive halving-doubling step loop: fold, halving, doubling, unfold.
#include "runtime/comm/halving_doubling.h"

#include <bit>
#include <cstring>
#include <utility>
#include <vector>

#include "runtime/comm/elementwise.h"
#include "runtime/comm/ring.h"
#include "runtime/error.h"

namespace troupe::comm {

int hd_power(int ranks) {
  TROUPE_CHECK(ranks >= 1, "ranks = ", ranks);
  return static_cast<int>(std::bit_floor(static_cast<unsigned>(ranks)));
}

int hd_virtual_rank(int ranks, int rank) {
  TROUPE_CHECK(rank >= 0 && rank < ranks, "rank ", rank, " of ", ranks);
  const int rem = ranks - hd_power(ranks);
  if (rank < 2 * rem) return rank % 2 == 0 ? -1 : rank / 2;
  return rank - rem;
}

int hd_real_rank(int ranks, int vrank) {
  const int p = hd_power(ranks);
  TROUPE_CHECK(vrank >= 0 && vrank < p, "virtual rank ", vrank, " of ", p);
  const int rem = ranks - p;
  return vrank < rem ? 2 * vrank + 1 : vrank + rem;
}

template <class T>
void allreduce_halving_doubling(Transport& transport, std::span<T> data) {
  const int n = transport.size(), me = transport.rank();
  TROUPE_CHECK(n >= 1 && me >= 0 && me < n, "rank ", me, " of ", n);
  if (n == 1 || data.empty()) return;
  const int p = hd_power(n);
  const int v = hd_virtual_rank(n, me);
  auto send = [&](int to, std::span<const T> buf) { transport.send(to, kHalvingDoublingTag, std::as_bytes(buf)); };
  auto recv = [&](int from, std::span<T> buf) { transport.recv(from, kHalvingDoublingTag, std::as_writable_bytes(buf)); };

  if (v < 0) {            // an even rank below 2·rem: fold into me + 1, get the result back
    send(me + 1, data);   // to me + 1: my whole buffer
    recv(me + 1, data);   // from me + 1: the finished sum
    return;
  }
  std::vector<T> inbox;
  const bool folded = me < 2 * (n - p);  // an odd rank that carries its even neighbour's values too
  if (folded) {
    inbox.resize(data.size());
    recv(me - 1, inbox);  // from me - 1: its whole buffer
    add_into(data.data(), inbox.data(), data.data(), data.size());  // even's + odd's
  }

  // Element range of the blocks [lo, hi) of p near-equal blocks.
  auto elems = [&](int lo, int hi) {
    const std::size_t begin = ring_chunk(data.size(), p, lo).offset;
    const std::size_t end = hi == p ? data.size() : ring_chunk(data.size(), p, hi).offset;
    return data.subspan(begin, end - begin);
  };
  struct Split {
    int partner;  // real rank
    int keep_lo, keep_hi, give_lo, give_hi;
  };
  std::vector<Split> splits;
  int lo = 0, hi = p;
  for (int m = p / 2; m >= 1; m /= 2) {
    const int mid = (lo + hi) / 2;
    const bool lower = (v & m) == 0;
    Split s{hd_real_rank(n, v ^ m), lower ? lo : mid, lower ? mid : hi, lower ? mid : lo, lower ? hi : mid};
    std::span<T> give = elems(s.give_lo, s.give_hi), keep = elems(s.keep_lo, s.keep_hi);
    if (!give.empty()) send(s.partner, give);  // to the partner: my values of the half it keeps
    if (!keep.empty()) {
      inbox.resize(std::max(inbox.size(), keep.size()));
      std::span<T> in(inbox.data(), keep.size());
      recv(s.partner, in);  // from the partner: its values of the half I keep
      if (lower) add_into(keep.data(), keep.data(), in.data(), keep.size());  // mine (lower v) + theirs
      else add_into(keep.data(), in.data(), keep.data(), keep.size());        // theirs (lower v) + mine
    }
    splits.push_back(s);
    lo = s.keep_lo;
    hi = s.keep_hi;
  }
  for (auto it = splits.rbegin(); it != splits.rend(); ++it) {  // doubling: the halving in reverse
    std::span<T> mine = elems(it->keep_lo, it->keep_hi), theirs = elems(it->give_lo, it->give_hi);
    if (!mine.empty()) send(it->partner, mine);      // to the partner: my finished blocks
    if (!theirs.empty()) recv(it->partner, theirs);  // from the partner: its finished blocks
  }
  if (folded) send(me - 1, data);  // to me - 1: the finished sum
}

template void allreduce_halving_doubling<float>(Transport&, std::span<float>);
template void allreduce_halving_doubling<double>(Transport&, std::span<double>);
template void allreduce_halving_doubling<std::int64_t>(Transport&, std::span<std::int64_t>);
template void allreduce_halving_doubling<__int128>(Transport&, std::span<__int128>);

}  // namespace troupe::comm
