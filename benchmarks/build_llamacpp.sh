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
if ! have_all; then
  SRC=$("$ROOT/scripts/get_llamacpp.sh")
  if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    nice -n "$NICE" cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
      -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
      -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=ON >&2
  fi
  nice -n "$NICE" cmake --build "$BUILD" -j "$JOBS" --target "${TARGETS[@]}" >&2
  have_all || { echo "build_llamacpp.sh: binaries missing under $BUILD/bin" >&2; exit 1; }
fi
echo "$BUILD/bin"
