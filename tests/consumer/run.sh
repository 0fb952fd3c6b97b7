#!/usr/bin/env bash
# Installs the build into a scratch prefix, then configures and builds tests/consumer against it (a
# project that enables only C++), checks that the CPU-only program links no CAF, Cap'n Proto or CUDA,
# and runs both programs.
set -euo pipefail
build=$1
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cmake --install "$build" --prefix "$scratch/prefix" > /dev/null
# Installed headers are reached as <troupe/...> only: none may include a generic "runtime/..." path.
if grep -rnE '#include "(runtime|models|actors|net)/' "$scratch/prefix/include/troupe"; then
  echo "FAIL: installed headers include generic paths (above)"; exit 1
fi
# The public API header drags no internal header in: Session, RunConfig (with the Device train.device holds
# and the CompressionSpec comm.compression holds, plain values), StepStats and troupe::Error only.
session_headers=$(echo '#include <troupe/actors/session.h>' |
                  c++ -std=c++20 -I"$scratch/prefix/include" -x c++ -E -H - 2>&1 >/dev/null | grep -o 'troupe/[^ ]*\.h' | sort -u)
echo "session.h includes:" $session_headers
for h in $session_headers; do
  case "$h" in
    troupe/actors/session.h|troupe/models/step_stats.h|troupe/runtime/config/run_config.h|troupe/runtime/config/choices.h|\
    troupe/runtime/device.h|troupe/runtime/comm/compression/compression_spec.h|troupe/runtime/error.h) ;;
    *) echo "FAIL: troupe/actors/session.h includes the internal header $h"; exit 1 ;;
  esac
done
cmake -S "$(dirname "$0")" -B "$scratch/build" -G Ninja -DCMAKE_PREFIX_PATH="$scratch/prefix" > "$scratch/configure.log" ||
  { cat "$scratch/configure.log"; exit 1; }
cmake --build "$scratch/build" > "$scratch/build.log" || { cat "$scratch/build.log"; exit 1; }
echo "consumer_core links:"
ldd "$scratch/build/consumer_core" | sed 's/^/  /'
if ldd "$scratch/build/consumer_core" | grep -Ei 'caf|capnp|kj|cuda|cublas|nccl'; then
  echo "FAIL: the CPU-only consumer links CAF, Cap'n Proto or CUDA (above)"; exit 1
fi
if nm -C "$scratch/build/consumer_core" | grep -E ' (caf|capnp)::' | head -3 | grep .; then
  echo "FAIL: the CPU-only consumer holds CAF or Cap'n Proto code (above)"; exit 1
fi
"$scratch/build/consumer_core"
"$scratch/build/consumer"
