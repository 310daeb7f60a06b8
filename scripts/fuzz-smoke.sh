#!/usr/bin/env bash
# Runs every fuzz target in the repository for FUZZTIME (default 10s), one
# after the other: `go test -fuzz` takes one target per package per run.
# The seed corpora in testdata/fuzz/ already run in every `make test`; this
# looks a little further. A crasher is written to testdata/fuzz/FuzzXxx/ and
# fails the run: check it in as a regression seed once fixed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
GO="${GO:-go}"
FUZZTIME="${FUZZTIME:-10s}"

found=0
while IFS= read -r file; do
	dir="./$(dirname "${file#./}")"
	for name in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$file"); do
		found=$((found + 1))
		echo "== $dir $name ($FUZZTIME)"
		"$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$dir"
	done
done < <(grep -rl --include='*_test.go' --exclude-dir=testdata --exclude-dir=.git '^func Fuzz' . | sort)

echo "fuzz-smoke: $found target(s) fuzzed for $FUZZTIME each"
