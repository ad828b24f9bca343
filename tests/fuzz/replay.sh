#!/usr/bin/env bash
# make check's run of a fuzz target: writes the seeds (seeds.py) to a
# temporary corpus and replays them and their variants.
#   replay.sh REPLAY_BINARY TARGET [MUTATIONS]
set -eu
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 "$(dirname "$0")/seeds.py" "$dir"
"$1" "$dir/$2" --mutate "${3:-200}"
