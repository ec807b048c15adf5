#!/usr/bin/env bash
# The device tool sends the checkout's tracked and not-ignored files plus what `carry` names, at
# most 64 MiB. The repository holds about 100 MB, 70 of them the HDF5 datasets of systems/, which
# the GPU checks do not read; without them the tree and the wheels of wheels.sh make about 48 MB.
#     bash benchmarks/gpu/slim-tree.sh off   # untrack the .h5 files in the index (files and HEAD untouched)
#     ... the device run of check.sh ...
#     bash benchmarks/gpu/slim-tree.sh on    # track them again (commit nothing in between)
set -euo pipefail
exclude="$(git rev-parse --git-dir)/info/exclude"
marker='**/*.h5'  # the line this script adds to (and removes from) .git/info/exclude
case "${1:-}" in
    off)
        git ls-files -z -- '*.h5' | xargs -0 -r git rm -q --cached --
        mkdir -p "$(dirname "$exclude")"
        grep -qxF "$marker" "$exclude" 2>/dev/null || echo "$marker" >> "$exclude"
        ;;
    on)
        git ls-tree -r -z --name-only HEAD | grep -z '\.h5$' | xargs -0 -r git reset -q HEAD --
        if [ -f "$exclude" ]; then grep -vxF "$marker" "$exclude" > "$exclude.new" || true; mv "$exclude.new" "$exclude"; fi
        ;;
    *) echo "usage: $0 off|on" >&2; exit 2 ;;
esac
{ git ls-files -z; git ls-files -z --others --exclude-standard; } | du -cb --files0-from=- | tail -n 1 |
    awk '{printf "tracked and untracked not ignored (what travels, with the carried .whl/): %.1f MB\n", $1 / 1e6}'
