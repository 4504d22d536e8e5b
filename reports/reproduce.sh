#!/usr/bin/env bash
# Rerun every shipped model (models/*.toml) into a temporary folder and compare its
# estimates.csv with the committed reports/<name>/estimates.csv, byte for byte.
# Prints "OK <name> (<seconds> s)" or "DIFF <name>" (with the first differing lines) per model;
# exits 1 if any differ. Usage, from the repository root:  bash reports/reproduce.sh [NAME ...]
set -u
cd "$(dirname "$0")/.."
DISPARITY=${DISPARITY:-.venv/bin/disparity}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for f in models/*.toml; do names+=("$(basename "$f" .toml)"); done
fi
status=0
for name in "${names[@]}"; do
    start=$(date +%s)
    if ! "$DISPARITY" run "models/$name.toml" -o "$tmp/$name" --quiet >"$tmp/$name.log" 2>&1; then
        echo "FAIL $name (see the log below)"; tail -5 "$tmp/$name.log"; status=1; continue
    fi
    seconds=$(( $(date +%s) - start ))
    if cmp -s "$tmp/$name/estimates.csv" "reports/$name/estimates.csv"; then
        echo "OK   $name (${seconds} s)"
    else
        echo "DIFF $name"
        diff "reports/$name/estimates.csv" "$tmp/$name/estimates.csv" | head -6
        status=1
    fi
done
exit $status
