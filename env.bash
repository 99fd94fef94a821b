# Enter the craik environment: `source env.bash` (bash). Every Makefile target does this itself.
#
# Activates the project virtual environment (.venv, made by `make setup`), points ROS 2 at the
# ROS wheels inside it, sources the colcon workspace (install/setup.bash) and selects headless
# rendering. Safe to source more than once.

_craik_root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [ ! -x "${_craik_root}/.venv/bin/python" ]; then
  echo "craik: no virtual environment at ${_craik_root}/.venv; run 'make setup' first." >&2
  return 1 2>/dev/null || exit 1
fi

# shellcheck disable=SC1091
source "${_craik_root}/.venv/bin/activate"

_craik_site="$("${VIRTUAL_ENV}/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

# The ROS wheels ship their shared libraries in <venv>/lib and site-packages/ros_*.libs; their
# bootstrapper re-executes every Python process to set LD_LIBRARY_PATH. Setting it here once
# (and marking the bootstrap as done) saves that second start of every interpreter.
_craik_ld="${VIRTUAL_ENV}/lib"
for _d in "${_craik_site}"/ros_*.libs; do
  [ -d "${_d}" ] && _craik_ld="${_craik_ld}:${_d}"
done
case ":${LD_LIBRARY_PATH:-}:" in
  *":${VIRTUAL_ENV}/lib:"*) ;;
  *) export LD_LIBRARY_PATH="${_craik_ld}${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}}" ;;
esac
export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1

# The venv is the ROS "underlay": ament and CMake find packages there.
case ":${AMENT_PREFIX_PATH:-}:" in
  *":${VIRTUAL_ENV}:"*) ;;
  *) export AMENT_PREFIX_PATH="${VIRTUAL_ENV}${AMENT_PREFIX_PATH:+:${AMENT_PREFIX_PATH}}" ;;
esac
case ":${CMAKE_PREFIX_PATH:-}:" in
  *":${VIRTUAL_ENV}:"*) ;;
  *) export CMAKE_PREFIX_PATH="${VIRTUAL_ENV}${CMAKE_PREFIX_PATH:+:${CMAKE_PREFIX_PATH}}" ;;
esac
export ROS_DISTRO="${ROS_DISTRO:-kilted}"
export ROS_VERSION=2
export ROS_PYTHON_VERSION=3
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
# MuJoCo renders offscreen through EGL (Mesa on CPU machines, NVIDIA on the lab robot).
export MUJOCO_GL="${MUJOCO_GL:-egl}"
export PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-egl}"

if [ -f "${_craik_root}/install/setup.bash" ]; then
  # colcon's scripts read unset variables; relax nounset while sourcing them.
  case $- in *u*) _craik_nounset=1; set +u ;; *) _craik_nounset=0 ;; esac
  # shellcheck disable=SC1091
  source "${_craik_root}/install/setup.bash"
  [ "${_craik_nounset}" = 1 ] && set -u
fi
export CRAIK_ROOT="${_craik_root}"
unset _craik_root _craik_site _craik_ld _d _craik_nounset
