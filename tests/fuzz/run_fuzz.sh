#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang in a sub-build and runs each for a
# bounded time over a generated seed corpus plus the committed regression corpus
# (tests/fuzz/corpus/<target>/: inputs that once found a bug). Exit 77 (ctest SKIP) when
# clang or libFuzzer is unavailable; 1 when a target crashes (the input is kept under
# WORK_DIR/artifacts/).
# Usage: run_fuzz.sh SRC_ROOT WORK_DIR [SECONDS_PER_TARGET] [SHARED_DIR]
set -u
src=$(cd "$1" && pwd)
work=$2
secs=${3:-25}
shared=${4:-$src/../shared}
mkdir -p "$work"
work=$(cd "$work" && pwd)

cxx=$(command -v clang++-14 || command -v clang++ || true)
cc=$(command -v clang-14 || command -v clang || true)
# A missing clang/libFuzzer skips (exit 77), except under CI=true, where setup.sh installs them.
skip_rc=77
[ "${CI:-}" = true ] && skip_rc=1
if [ -z "$cxx" ] || [ -z "$cc" ]; then
  echo "SKIP: clang not found"; exit $skip_rc
fi
printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' > "$work/probe.cpp"
if ! "$cxx" -fsanitize=fuzzer,address "$work/probe.cpp" -o "$work/probe" 2> "$work/probe.log"; then
  echo "SKIP: $cxx cannot link libFuzzer (install libclang-rt-14-dev):"; cat "$work/probe.log"; exit $skip_rc
fi

gen=()
command -v ninja > /dev/null && gen=(-G Ninja)
cmake -S "$src/tests/fuzz" -B "$work/build" "${gen[@]}" -DCMAKE_BUILD_TYPE=FuzzO1 -DCMAKE_CXX_FLAGS_FUZZO1="-O1 -g" -DCMAKE_C_FLAGS_FUZZO1="-O1 -g" \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_C_COMPILER="$cc" > "$work/configure.log" 2>&1 \
  || { cat "$work/configure.log"; exit 1; }
cmake --build "$work/build" -j2 || exit 1

rm -rf "$work/corpus"
"$work/build/fuzz_seed_gen" "$work/corpus" "$shared" || exit 1
mkdir -p "$work/artifacts"
status=0
for t in gguf safetensors config openai; do
  mkdir -p "$work/corpus/$t"  # openai: no generated seeds, the committed corpus only
  dirs=("$work/corpus/$t")
  [ -d "$src/tests/fuzz/corpus/$t" ] && dirs+=("$src/tests/fuzz/corpus/$t")
  echo "== fuzz_$t: ${secs}s over ${dirs[*]}"
  if ! "$work/build/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
       -artifact_prefix="$work/artifacts/$t-" -print_final_stats=1 "${dirs[@]}" > "$work/$t.log" 2>&1; then
    echo "FAIL: fuzz_$t found a bug; reproducer in $work/artifacts/"; tail -60 "$work/$t.log"; status=1
  else
    grep -E "^(stat::number_of_executed_units|stat::new_units_added|#[0-9]+ +DONE)" "$work/$t.log" | tail -3
  fi
done
exit $status
