#!/usr/bin/env bash
# Run the test suite (pytest, configured in pyproject.toml). Expects `source env.bash` done.
#
# With no arguments, the end-to-end system tests (each starts a whole simulated graph) run in a
# pytest process of their own after everything else: inside the
# same process as the other ~400 tests their graph's nodes were starved of CPU (see the
# module's docstring), while on their own they are reliable. With arguments, pytest runs
# exactly what was asked.
# pytest exits 5 when no test was collected (e.g. a marker filter matched nothing); that is not
# a failure of the code under test, so it is reported and mapped to success.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SYSTEM_TESTS=(test/test_reach_goal_system.py test/test_launch_system.py test/test_rviz_config.py)
# Its own process as well: after other tests in the same process (also the system tests) its
# node received no camera frame at all; alone it passes. Cause not found yet (session 7 note).
MAPPER_NODE_TEST=src/craik_mapping/test/test_gaussian_mapper_node.py

run() {
  python -m pytest "$@"
  local rc=$?
  if [ "${rc}" = 5 ]; then
    echo "[test] pytest collected no tests for: $*"
    return 0
  fi
  return "${rc}"
}

if [ "$#" -gt 0 ]; then
  run "$@"
  exit $?
fi
ignores=()
for t in "${SYSTEM_TESTS[@]}" "${MAPPER_NODE_TEST}"; do ignores+=("--ignore=${t}"); done
run "${ignores[@]}"
rc_main=$?
run "${SYSTEM_TESTS[@]}"
rc_system=$?
run "${MAPPER_NODE_TEST}"
rc_mapper=$?
[ "${rc_main}" = 0 ] && [ "${rc_system}" = 0 ] && [ "${rc_mapper}" = 0 ]
