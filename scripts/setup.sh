#!/usr/bin/env bash
# Install everything craik needs into this checkout and build the colcon workspace.
#
# Idempotent: each stage records a stamp keyed by what it depends on and is skipped when nothing
# changed, so a second run takes seconds. Stages: Debian packages -> virtual environment ->
# Python packages -> CMake path fix of the ROS wheels -> colcon build.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"
VENV="${ROOT}/.venv"
STAMPS="${VENV}/.craik-stamps"
PYTHON="${CRAIK_PYTHON:-python3.11}"

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }
hash_of() { cat "$@" | sha256sum | cut -c1-16; }
start=$(date +%s)

# --- 1. Debian packages -----------------------------------------------------------------------
# libusb for pyrealsense2; Mesa EGL for MuJoCo's headless renderer.
APT_PACKAGES=(libusb-1.0-0 libegl1 libegl-mesa0 libgl1-mesa-dri libgles2 libglx-mesa0)
# Only for tests: Chromium + its WebDriver (the same Debian version, so they always match) and
# a font, for the browser test of `craik view` (src/craik_bringup/test/test_web_view.py). Where
# they cannot be installed (not root, no sudo), setup goes on and that test skips.
TEST_APT_PACKAGES=(chromium chromium-driver fonts-dejavu-core)
missing_of() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "${p}" 2>/dev/null | grep -q "install ok installed" || echo "${p}"
  done
}
# apt_install REQUIRED PACKAGE...: install as root or with sudo; a failure (or neither being
# possible) stops setup when REQUIRED is 1, else it is reported and setup goes on.
apt_install() {
  local required=$1
  shift
  local cmd="apt-get update && apt-get install -y --no-install-recommends $*"
  local runner=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      runner=(sudo)
    elif [ "${required}" = 1 ]; then
      die "missing Debian packages: $*. Run as root:  sudo ${cmd}"
    else
      log "note: $* missing (the browser test of craik view will skip); as root: ${cmd}"
      return 0
    fi
  fi
  log "installing Debian packages${runner:+ with sudo}: $*"
  if ! "${runner[@]}" env DEBIAN_FRONTEND=noninteractive bash -c "${cmd}" >/dev/null; then
    [ "${required}" = 1 ] && die "apt failed: ${cmd}"
    log "note: could not install $* (the browser test of craik view will skip): ${cmd}"
  fi
}
mapfile -t missing < <(missing_of "${APT_PACKAGES[@]}")
if [ "${#missing[@]}" -gt 0 ]; then apt_install 1 "${missing[@]}"; fi
mapfile -t missing_test < <(missing_of "${TEST_APT_PACKAGES[@]}")
if [ "${#missing_test[@]}" -gt 0 ]; then apt_install 0 "${missing_test[@]}"; fi

# --- 2. Virtual environment -------------------------------------------------------------------
command -v "${PYTHON}" >/dev/null || die "${PYTHON} not found (craik needs CPython 3.11; set CRAIK_PYTHON)"
if [ ! -x "${VENV}/bin/python" ]; then
  log "creating virtual environment ${VENV}"
  "${PYTHON}" -m venv "${VENV}"
fi
mkdir -p "${STAMPS}"

# --- 3. Python packages -----------------------------------------------------------------------
req_hash=$(hash_of scripts/requirements.txt scripts/ros_build_wheels.txt scripts/constraints.txt)
if [ "$(cat "${STAMPS}/pip" 2>/dev/null)" != "${req_hash}" ]; then
  log "installing Python packages (torch CPU, ROS 2 Kilted wheels, MuJoCo, franky, ...)"
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  "${VENV}/bin/python" -m pip install -q --upgrade pip wheel
  # setuptools < 80: colcon's ament_python build still calls `setup.py develop/install`.
  "${VENV}/bin/python" -m pip install -q -c scripts/constraints.txt 'setuptools<80' \
    -r scripts/requirements.txt -r scripts/ros_build_wheels.txt
  "${VENV}/bin/python" -c "import torch; assert not torch.version.cuda or torch.cuda.is_available() is False" \
    || true
  echo "${req_hash}" > "${STAMPS}/pip"
else
  log "Python packages up to date"
fi

# --- 4. Fix the ROS wheels' CMake export files ------------------------------------------------
# They hard-code the wheel builder's Python and numpy include directories.
py_inc=$("${VENV}/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np_inc=$("${VENV}/bin/python" -c 'import numpy; print(numpy.get_include())')
mapfile -t broken < <(grep -l '/opt/python/cp311-cp311' "${VENV}"/share/*/cmake/*Export.cmake 2>/dev/null || true)
if [ "${#broken[@]}" -gt 0 ]; then
  log "rewriting builder paths in ${#broken[@]} CMake export files"
  sed -i \
    -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#${np_inc}#g" \
    -e "s#/opt/python/cp311-cp311/include/python3.11#${py_inc}#g" \
    "${broken[@]}"
fi

# --- 5. colcon build --------------------------------------------------------------------------
# Rebuild only when a file under src/ (or colcon.meta) is newer than the last successful build.
build_stamp="${STAMPS}/colcon"
if [ ! -f "${build_stamp}" ] || [ ! -d install ] \
   || [ -n "$(find src colcon.meta -newer "${build_stamp}" -print -quit 2>/dev/null)" ]; then
  log "colcon build"
  # shellcheck disable=SC1091
  source "${ROOT}/env.bash"
  set +e
  # The venv is a plain prefix without local_setup files; colcon warns about that on every run.
  colcon --log-base log build --metas colcon.meta --symlink-install \
    --event-handlers console_cohesion+ summary+ status- 2>&1 \
    | grep -v 'WARNING:colcon.colcon_ros.prefix_path.ament'
  rc=${PIPESTATUS[0]}
  set -e
  [ "${rc}" = 0 ] || die "colcon build failed (see log/latest_build)"
  touch "${build_stamp}"
else
  log "workspace up to date"
fi

log "ready in $(( $(date +%s) - start )) s. Enter the environment with: source env.bash"
