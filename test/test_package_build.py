"""The colcon-style build: CMake configure/build/install of the whole ament_cmake package
against the venv's ROS prefix, then the generated types, the Python package and the
`ros2 run` executables are found from the install prefix alone."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import REPO_ROOT

PACKAGE_PARTS = ("package.xml", "CMakeLists.txt", "msg", "launch", "config", "demo", "lanesad_ros")


def _cmake() -> str:
    cmake = Path(sys.prefix) / "bin" / "cmake"
    if not cmake.exists() or not (Path(sys.prefix) / "share" / "rosidl_default_generators").exists():
        pytest.skip("ROS build wheels are not installed in this environment (make setup)")
    return str(cmake)


@pytest.fixture(scope="module")
def install_prefix(tmp_path_factory) -> Path:
    cmake = _cmake()
    work = tmp_path_factory.mktemp("colcon_ws")
    src = work / "src" / "lanesad_ros"
    src.mkdir(parents=True)
    for part in PACKAGE_PARTS:
        origin = REPO_ROOT / part
        if origin.is_dir():
            shutil.copytree(origin, src / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, src / part)
    build, install = work / "build", work / "install"
    env = dict(os.environ, AMENT_PREFIX_PATH=sys.prefix)
    steps = [
        [cmake, "-S", str(src), "-B", str(build), f"-DCMAKE_PREFIX_PATH={sys.prefix}",
         f"-DCMAKE_INSTALL_PREFIX={install}", f"-DPython3_EXECUTABLE={sys.executable}",
         "-DBUILD_TESTING=OFF"],
        [cmake, "--build", str(build), "-j", str(os.cpu_count() or 2)],
        [cmake, "--install", str(build)],
    ]
    for step in steps:
        result = subprocess.run(step, env=env, capture_output=True, text=True)
        assert result.returncode == 0, f"{' '.join(step)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return install


def _installed_env(install: Path) -> dict[str, str]:
    site = install / sysconfig.get_path("purelib", vars={"base": "", "platbase": ""}).lstrip("/")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(site)
    env["AMENT_PREFIX_PATH"] = f"{install}:{sys.prefix}"
    env["LD_LIBRARY_PATH"] = f"{install / 'lib'}:{env.get('LD_LIBRARY_PATH', '')}"
    return env


def test_install_prefix_serves_messages_and_core_from_one_tree(install_prefix):
    probe = (
        "import lanesad_ros, lanesad_ros.lanes\n"
        "from lanesad_ros.msg import Lane, LaneArray\n"
        "m = LaneArray(); m.lanes.append(Lane(slot=Lane.RIGHT, confidence=0.5))\n"
        "print(lanesad_ros.lanes.__file__)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], env=_installed_env(install_prefix),
                            capture_output=True, text=True, cwd=install_prefix)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(install_prefix)), result.stdout


def test_install_prefix_has_ros2_run_executables_and_share_files(install_prefix):
    lib = install_prefix / "lib" / "lanesad_ros"
    for name in ("lane_detector", "lane_detector_lifecycle", "lanesad-train", "lanesad-eval", "lanesad-bag"):
        assert os.access(lib / name, os.X_OK), f"{name} not installed as an executable in {lib}"
    share = install_prefix / "share" / "lanesad_ros"
    assert (share / "launch" / "lane_detector.launch.py").exists()
    assert (share / "config" / "lane_detector.yaml").exists()
    for name in ("camera_info.yaml", "lane_detector.yaml", "project_video_clip.mp4", "LICENSE"):
        assert (share / "demo" / "udacity" / name).exists(), name
    assert (share / "msg" / "LaneArray.msg").exists()
    assert (install_prefix / "share" / "ament_index" / "resource_index" / "packages" / "lanesad_ros").exists()
    # The executable starts from the install prefix alone (argparse --help exits 0).
    result = subprocess.run([sys.executable, str(lib / "lanesad-bag"), "--help"],
                            env=_installed_env(install_prefix), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
