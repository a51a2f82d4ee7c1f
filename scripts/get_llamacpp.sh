#!/usr/bin/env bash
# Fetch llama.cpp's tree from the llama-cpp-python sdist on PyPI (there is no llama.cpp wheel) and print the path
# of its vendor/llama.cpp directory, for MOEPY_LLAMACPP_DIR (tests/io/test_llamacpp_converter.py) and the llama.cpp
# benchmarks. Cached in ${MOEPY_CACHE:-$HOME/.cache/moepy}. pip needs a build backend to resolve an sdist's
# metadata; scikit-build-core in a scratch venv with --no-build-isolation avoids pip building llama.cpp itself.
# Usage: export MOEPY_LLAMACPP_DIR=$(scripts/get_llamacpp.sh)
set -euo pipefail
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
CACHE=${MOEPY_CACHE:-$HOME/.cache/moepy}
DEST="$CACHE/llama_cpp_python-$VERSION"
if [ ! -f "$DEST/vendor/llama.cpp/convert_hf_to_gguf.py" ]; then
  mkdir -p "$CACHE"
  if [ ! -f "$CACHE/llama_cpp_python-$VERSION.tar.gz" ]; then
    python3 -m venv "$CACHE/sdist-venv" >&2
    "$CACHE/sdist-venv/bin/pip" install -q scikit-build-core >&2
    "$CACHE/sdist-venv/bin/pip" download -q "llama-cpp-python==$VERSION" --no-deps --no-binary :all: \
      --no-build-isolation -d "$CACHE" >&2
  fi
  tar xzf "$CACHE/llama_cpp_python-$VERSION.tar.gz" -C "$CACHE"
fi
echo "$DEST/vendor/llama.cpp"
