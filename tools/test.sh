#!/usr/bin/env bash
# Run every test: install what is missing, build with -Dwerror=true, lint
# the protos with buf, run the unit and integration suites, then do the
# same under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan).
#
# The last line is the summary "N passed, N failed": the meson test results
# of both builds added up, plus one failure for each build or lint step
# that failed. Exits non-zero if anything failed.
#
# Options: --no-asan skips the sanitizer build; --no-deps skips tools/deps.sh.
# Further arguments go to both `meson test` runs (e.g. --suite unit).
# BUILD_DIR and ASAN_BUILD_DIR override the build directories (build,
# build-asan).
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)

run_asan=1
run_deps=1
meson_test_args=()
for a in "$@"; do
  case "$a" in
    --no-asan) run_asan=0 ;;
    --no-deps) run_deps=0 ;;
    *) meson_test_args+=("$a") ;;
  esac
done

passed=0
failed=0
skipped=0
failures=()

step() { printf '\n==== %s\n' "$*"; }

fail_step() {
  failed=$((failed + 1))
  failures+=("$1")
  echo "FAILED: $1" >&2
}

# Add up one meson testlog.json (one JSON object per test).
count_results() {
  local log=$1 label=$2 counts
  if [ ! -f "$log" ]; then
    fail_step "$label: no test log"
    return
  fi
  counts=$(/usr/bin/python3 - "$log" <<'PY'
import json, sys
p = f = s = 0
bad = []
for line in open(sys.argv[1]):
    line = line.strip()
    if not line:
        continue
    r = json.loads(line)
    res = r.get('result')
    if res in ('OK', 'EXPECTEDFAIL'):
        p += 1
    elif res == 'SKIP':
        s += 1
    else:
        f += 1
        bad.append('%s(%s)' % (r.get('name'), res))
print(p, f, s, ' '.join(bad))
PY
  ) || { fail_step "$label: unreadable test log"; return; }
  read -r p f s bad <<<"$counts"
  passed=$((passed + p))
  failed=$((failed + f))
  skipped=$((skipped + s))
  if [ "$f" -gt 0 ]; then
    failures+=("$label: $bad")
  fi
  echo "$label: $p passed, $f failed, $s skipped"
}

# Configure (or reconfigure) a build directory with the given options.
setup() {
  local dir=$1; shift
  if [ -f "$dir/meson-private/coredata.dat" ]; then
    meson configure "$dir" "$@" && return 0
    echo "reconfiguring $dir from scratch" >&2
    meson setup --wipe "$dir" "$@"
  else
    meson setup "$dir" "$@"
  fi
}

# Build and test one configuration.
build_and_test() {
  local dir=$1 label=$2; shift 2
  step "$label: configure $dir ($*)"
  if ! setup "$dir" "$@"; then
    fail_step "$label: meson setup"
    return
  fi
  step "$label: build"
  if ! ninja -C "$dir"; then
    fail_step "$label: build"
    return
  fi
  step "$label: meson test"
  rm -f "$dir/meson-logs/testlog.json"
  # Failures are counted from the test log, not from the exit status.
  meson test -C "$dir" --print-errorlogs "${meson_test_args[@]}" "${test_extra[@]}" || true
  count_results "$dir/meson-logs/testlog.json" "$label"
}

if [ "$run_deps" = 1 ]; then
  step "dependencies"
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
    echo "not root: assuming the dependencies are installed"
  elif ! tools/deps.sh; then
    # Go on: whatever is installed may still build and test.
    fail_step "tools/deps.sh"
  fi
fi

step "buf lint"
BUF=$ROOT/tools/node/node_modules/.bin/buf
if [ ! -x "$BUF" ]; then
  fail_step "buf lint: buf not installed (run tools/deps.sh)"
elif [ -f buf.yaml ] || [ -f buf.work.yaml ]; then
  "$BUF" lint || fail_step "buf lint"
else
  "$BUF" lint proto || fail_step "buf lint"
fi

# Normal build.
test_extra=()
build_and_test "${BUILD_DIR:-build}" "normal" -Dwerror=true

if [ "$run_asan" = 1 ]; then
  # Sanitizer build. LeakSanitizer needs ptrace-free process control; probe
  # it once and say so if it cannot run here rather than fail every test.
  detect_leaks=1
  probe_dir=$(mktemp -d)
  printf '#include <stdlib.h>\nint main(void){ void *volatile p = malloc(7); p = 0; (void)p; return 0; }\n' \
    > "$probe_dir/leak.c"
  if cc -fsanitize=address -g "$probe_dir/leak.c" -o "$probe_dir/leak" 2>/dev/null; then
    # The probe exits non-zero when it finds the leak: read its output
    # first, since under pipefail a pipe into grep would fail either way.
    probe_out=$(ASAN_OPTIONS=detect_leaks=1 "$probe_dir/leak" 2>&1 || true)
    if ! grep -q 'detected memory leaks' <<<"$probe_out"; then
      echo "WARNING: LeakSanitizer does not work in this environment; running with detect_leaks=0" >&2
      detect_leaks=0
    fi
  fi
  rm -rf "$probe_dir"

  supp=$ROOT/tests/integration/lsan.supp
  export ASAN_OPTIONS="detect_leaks=$detect_leaks:halt_on_error=1:abort_on_error=0:print_summary=1:strict_string_checks=1:check_initialization_order=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:print_summary=1"
  if [ -f "$supp" ]; then
    export LSAN_OPTIONS="suppressions=$supp:print_suppressions=0"
  fi
  # Sanitized code runs 2-3 times slower: double every test's timeout.
  test_extra=(--timeout-multiplier 2)
  build_and_test "${ASAN_BUILD_DIR:-build-asan}" "asan" -Dsanitize=true -Dwerror=true
fi

step "summary"
if [ "$skipped" -gt 0 ]; then
  echo "skipped: $skipped"
fi
for f in "${failures[@]}"; do
  echo "failed: $f"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
