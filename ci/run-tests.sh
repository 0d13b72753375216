#!/usr/bin/env bash
# Run opsgate's own tests. pytest's exit code 5 (no tests collected) is a failure here.
set -uo pipefail
cd "$(dirname "$0")/.."
bash ci/install-services.sh || exit 1
# the venv's programs (ansible-inventory, ansible: testinfra's ansible backend runs them from PATH)
export PATH="$PWD/.venv/bin:$PATH"
.venv/bin/pytest tests src/opsgate --doctest-modules "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "run-tests: pytest collected no tests - treating that as a failure" >&2
    exit 1
fi
exit "$rc"
