#!/usr/bin/env bash
# Build llama.cpp's llama-perplexity, llama-bench and llama-quantize (CPU only, Release, no curl/OpenSSL) from the tree
# scripts/get_llamacpp.sh fetches (the llama-cpp-python sdist's vendor/llama.cpp), into a cached build dir, and print
# the bin dir. Skips the build when the three binaries exist. ~7 min with 2 jobs, ~15 with one.
# Usage: LLAMACPP_BIN=$(benchmarks/build_llamacpp.sh)
#   env: LLAMACPP_BUILD_DIR (default <repo>/build/llamacpp), LLAMACPP_JOBS (default 1), LLAMACPP_NICE (default 19)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${LLAMACPP_BUILD_DIR:-$ROOT/build/llamacpp}
JOBS=${LLAMACPP_JOBS:-1}
NICE=${LLAMACPP_NICE:-19}
TARGETS=(llama-perplexity llama-bench llama-quantize)
have_all() { for t in "${TARGETS[@]}"; do [ -x "$BUILD/bin/$t" ] || return 1; done; }
# GGML_NATIVE builds for this CPU: a cached build from a host with other ISA features dies with SIGILL (these VMs
# differ host to host), so the build is keyed by the CPU's flags and redone when they change
CPU_KEY=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | sort | sha256sum | cut -c1-16)
if [ -f "$BUILD/CMakeCache.txt" ] && [ "$(cat "$BUILD/cpu_key" 2>/dev/null)" != "$CPU_KEY" ]; then
  echo "build_llamacpp.sh: the cached build is for another CPU; rebuilding" >&2
  rm -rf "$BUILD"
fi
if ! have_all; then
  SRC=$("$ROOT/scripts/get_llamacpp.sh")
  # this CPU's ISA features, except AMX: ggml's AMX kernels (which -march=native enables) die with SIGILL on Q8_0 /
  # Q4_0 matmuls on these VMs, at their first tilezero, also on hosts that grant the tile state (where moepy's own AMX
  # kernels run: 2026-12-03, a Xeon with amx_int8), so they stay off
  FLAGS=$(grep -m1 '^flags' /proc/cpuinfo)
  ISA=()
  for pair in avx:AVX avx2:AVX2 fma:FMA f16c:F16C bmi2:BMI2 avx_vnni:AVX_VNNI avx512f:AVX512 \
              avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16; do
    case " $FLAGS " in *" ${pair%%:*} "*) ISA+=("-DGGML_${pair##*:}=ON") ;; *) ISA+=("-DGGML_${pair##*:}=OFF") ;; esac
  done
  if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    nice -n "$NICE" cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF "${ISA[@]}" \
      -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
      -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
      -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=ON >&2
  fi
  nice -n "$NICE" cmake --build "$BUILD" -j "$JOBS" --target "${TARGETS[@]}" >&2
  have_all || { echo "build_llamacpp.sh: binaries missing under $BUILD/bin" >&2; exit 1; }
  echo "$CPU_KEY" > "$BUILD/cpu_key"
fi
echo "$BUILD/bin"
