"""Offline training of the SAD lane networks: ``lanesad-train``, ``torchrun -m lanesad_ros.training``; no ROS.

One YAML config (``config.py``, ``config/train/``) names the model, the data mix, augmentation,
optimiser, the iteration at which Self Attention Distillation switches on, evaluation and the
output folder. Modules: ``config`` (schema and loader), ``data`` (datasets and the deterministic
training stream), ``trainer`` (the loop and schedule), ``checkpoint`` (exact-resume state),
``validation`` (metrics during training), ``export`` (checkpoint -> weights + metadata),
``pseudo`` (pseudo-labels for self-training), ``quantize`` (OpenVINO INT8 of a weights file with
its accuracy guard: ``python -m lanesad_ros.training.quantize``), ``cli`` (the command line).
"""
