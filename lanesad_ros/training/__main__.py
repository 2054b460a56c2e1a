"""``python -m lanesad_ros.training`` / ``torchrun --nproc_per_node=N -m lanesad_ros.training --config ...``."""
import sys

from lanesad_ros.training.cli import main

sys.exit(main())
