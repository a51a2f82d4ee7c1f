#!/usr/bin/env bash
# Build moepy._C with AddressSanitizer + UBSan into a scratch directory and run the kernel tests
# against it (torch-free test files; torch's own allocator does not mix well with ASan).
# Usage: scripts/asan_tests.sh [test files...]   (default: the boundary, routing, layer, quant and fuzz tests)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=$(mktemp -d /tmp/moepy-asan.XXXXXX)
MOEPY_SANITIZE=1 $PY setup.py -q build_ext --build-lib "$OUT" --build-temp "$OUT/tmp" >/dev/null
(cd moepy && find . -name "*.py" -exec cp --parents {} "$OUT/moepy/" \;)
LIBASAN=$(gcc -print-file-name=libasan.so)
LIBUBSAN=$(gcc -print-file-name=libubsan.so)
REPO=$(pwd)
TESTS=("$@")
if [ ${#TESTS[@]} -eq 0 ]; then
  TESTS=(tests/test_fuzz.py tests/test_boundary.py tests/routing/test_routing.py tests/moe/test_layer.py tests/moe/test_quant.py)
fi
TESTS=("${TESTS[@]/#/$REPO/}")
cd "$OUT"  # so that `import moepy` finds the sanitized build, not the repo's in-place one
echo "ASan/UBSan build in $OUT; running ${TESTS[*]}"
PYTHONPATH="$OUT" LD_PRELOAD="$LIBASAN $LIBUBSAN" ASAN_OPTIONS=detect_leaks=0 $PY -c "
import moepy._C as c, sys
assert c.__file__.startswith('$OUT'), c.__file__
print('testing', c.__file__)"
# ldd output is captured first: piping it into grep -q under pipefail fails when grep exits early (SIGPIPE)
LINKED=$(ldd "$OUT"/moepy/_C*.so)
grep -q libasan <<<"$LINKED" || { echo "not an ASan build"; exit 1; }
PYTHONPATH="$OUT" LD_PRELOAD="$LIBASAN $LIBUBSAN" \
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  $PY -m pytest -q -p no:cacheprovider "${TESTS[@]}" \
  --rootdir="$REPO" -x
echo "ASan/UBSan run clean"
