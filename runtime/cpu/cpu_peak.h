// Owns the CPU's measured peak: what MFU divides by, measured once per CPU model and thread count and cached.
//
// Peaks are measured, not taken from a data sheet (clock speeds under AVX-512 load vary by part and by
// how many cores are busy): a register-only loop of AVX-512 FMAs (f32) and of vdpbf16ps (bf16 pairs into
// f32, where the CPU has AVX512-BF16), run on `threads` threads of a pool at once; and, for scale, the
// best f32 and bf16 matrix products troupe reaches at a GPT shape (the MLP's c_fc at batch 16 x block 128
// and width 256: 2048 x 1024 x 256, each thread 256 of its rows at once). Each thread keeps its best of many
// short rounds, so a busy machine lowers the figures less. A measurement takes about a second; it is kept in
// $XDG_CACHE_HOME/troupe/ (else ~/.cache/troupe/), one file per CPU model and thread count, and
// `troupe peak --refresh` measures again (say, after a BIOS or kernel change, or when the first
// measurement ran on a busy machine).
#pragma once

#include <string>

#include "runtime/config/choices.h"

namespace troupe {

struct CpuPeak {
  std::string cpu;          // /proc/cpuinfo's model name
  int threads = 0;
  double f32_fma = 0.0;     // FLOP/s of the FMA loop, all threads together
  double bf16_dot = 0.0;    // FLOP/s of the vdpbf16ps loop; 0 without AVX512-BF16
  double sgemm = 0.0;       // FLOP/s of the f32 product (CpuBackend::gemm, OpenBLAS)
  double bf16_gemm = 0.0;   // FLOP/s of the bf16 product (runtime/cpu/bf16_gemm.h); 0 without AVX512-BF16

  // The peak MFU is measured against: the FMA loop for f32; the vdpbf16ps loop for bf16 (the FMA loop
  // where the CPU lacks AVX512-BF16 and bf16 runs on the f32 units).
  double peak(Precision precision) const;
};

// The CPU's model name, as /proc/cpuinfo says ("unknown" where it does not).
std::string cpu_model_name();

// Runs the measurements now on `threads` threads (<= 0: every hardware thread).
CpuPeak measure_cpu_peak(int threads);

// The cache file for this CPU model and thread count.
std::string cpu_peak_cache_path(const std::string& cpu, int threads);

// The cached peak for this CPU and thread count, measured (and cached) when there is none or `refresh`.
// A cache that cannot be written is not an error: the measurement is used and measured again next time.
CpuPeak cpu_peak(int threads, bool refresh = false);

}  // namespace troupe
