# Source this to use the pip-path ROS 2 set-up from a shell: `source tools/ros_env.sh`.
# `make setup` installs the generated lanesad_ros messages into .venv itself (its lib/ is on
# the ROS wheels' library path already), so activating the venv is all the set-up there is;
# Fast DDS additionally needs its large-data transports for camera-sized images, in every
# process that takes part.
_lanesad_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$_lanesad_repo/.venv/bin/activate"
export FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA
unset _lanesad_repo
