#!/usr/bin/env bash
# Run the whole suite: unit tests, then integration tests in parallel workers.
# pytest's exit code 5 means it collected nothing: that is a failure here,
# never a pass, so CI cannot go green by running no tests.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
workers=${L2MESH_TEST_WORKERS:-2}
"$PY" -m pytest -p no:cacheprovider -n "$workers" --dist loadgroup "$@"
rc=$?
if [[ $rc -eq 5 ]]; then
    echo "pytest collected no tests: failing on purpose" >&2
    exit 1
fi
exit $rc
