"""Point the ROS wheels' CMake exports at this venv's Python and NumPy headers.

The PyPI ROS wheels were built in a manylinux container; their exported CMake targets name
include folders that exist only there (/opt/python/cp311-cp311/...), and CMake's generate
step fails on missing include folders. Rewriting those paths in the venv's
share/*/cmake/*.cmake files makes the build self-contained. Idempotent.
"""
from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

import numpy

BUILD_MACHINE_PYTHON = "/opt/python/cp311-cp311"


def replacements() -> dict[str, str]:
    py_include = Path(sysconfig.get_paths()["include"])
    if not (py_include / "Python.h").exists():
        sys.exit(f"Python headers not found at {py_include} (install python3-dev)")
    return {
        f"{BUILD_MACHINE_PYTHON}/lib/python3.11/site-packages/numpy/_core/include": numpy.get_include(),
        f"{BUILD_MACHINE_PYTHON}/include/python3.11": str(py_include),
    }


def main() -> int:
    prefix = Path(sys.prefix)
    rules = replacements()
    changed = 0
    for cmake_file in (prefix / "share").glob("*/cmake/*.cmake"):
        text = cmake_file.read_text()
        if BUILD_MACHINE_PYTHON not in text:
            continue
        for old, new in rules.items():
            text = text.replace(old, new)
        cmake_file.write_text(text)
        changed += 1
    print(f"fix_ros_wheel_cmake: rewrote {changed} CMake export file(s) under {prefix / 'share'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
