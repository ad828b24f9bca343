#!/usr/bin/env bash
# Runs every libFuzzer target of a fuzz build (make fuzz) for a bounded time
# each, starting from seeds.py's inputs and the corpus of earlier runs, and
# ends with one line per target. A crash leaves its input in
# BUILD/fuzz-artifacts/ and makes the run fail; replay it with
#   BUILD/tests/fuzz/fuzz-TARGET BUILD/fuzz-artifacts/TARGET-crash-...
#   run.sh BUILD [SECONDS_EACH]
set -u
build=$1
seconds=${2:-30}
corpus=$build/fuzz-corpus
artifacts=$build/fuzz-artifacts
mkdir -p "$corpus" "$artifacts"
python3 "$(dirname "$0")/seeds.py" "$corpus" || exit 1
failed=0
summary=()
for target in virtq virtio-rng virtio-console virtio-blk virtio-net qcow2; do
	[ -x "$build/tests/fuzz/fuzz-$target" ] || continue
	mkdir -p "$corpus/$target"
	log=$build/fuzz-$target.log
	"$build/tests/fuzz/fuzz-$target" -max_total_time="$seconds" -print_final_stats=1 \
		-artifact_prefix="$artifacts/$target-" "$corpus/$target" >"$log" 2>&1
	status=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
	if [ $status -eq 0 ]; then
		summary+=("fuzz-$target: ${runs:-?} runs in ${seconds}s, $cov, corpus $(ls "$corpus/$target" | wc -l) inputs, no finding")
	else
		failed=1
		summary+=("fuzz-$target: FINDING (status $status), see $log and $artifacts/")
		grep -m1 -E 'ERROR|runtime error' "$log"
	fi
done
printf '%s\n' "${summary[@]}"
exit $failed
