#!/usr/bin/env bash
# Builds the frame decoder's libFuzzer target (tests/fuzz/) with clang++ into BUILD_DIR and fuzzes it
# for SECONDS, starting from valid frames made by the real encoder; fails on any crash. Exits 77
# (CTest: Skipped) when clang++ or its libFuzzer runtime is missing.
# Usage: tests/fuzz_frame_decoder.sh SOURCE_DIR BUILD_DIR [SECONDS]
set -euo pipefail
src=$1
out=$2
seconds=${3:-30}

cxx=$(command -v clang++ || true)
if [[ -z "$cxx" ]]; then
  echo "SKIP: clang++ not found; install clang (Debian: apt-get install clang) to build the fuzz target"
  exit 77
fi
mkdir -p "$out"
probe="$out/libfuzzer_probe"
if ! echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' |
    "$cxx" -x c++ - -fsanitize=fuzzer,address,undefined -o "$probe" 2>"$probe.log"; then
  echo "SKIP: $cxx cannot link -fsanitize=fuzzer (the libFuzzer runtime is missing;" \
       "Debian: apt-get install libclang-rt-14-dev):"
  cat "$probe.log"
  exit 77
fi

cmake -S "$src/tests/fuzz" -B "$out" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$out"

rm -rf "$out/seeds" "$out/corpus"
mkdir -p "$out/seeds" "$out/corpus"
"$out/fuzz_frame_seeds" "$out/seeds"
# Every seed once (they must decode cleanly), then fuzzing from them for a bounded time.
"$out/fuzz_frame_decoder" "$out"/seeds/*
"$out/fuzz_frame_decoder" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$out/" "$out/corpus" "$out/seeds"
