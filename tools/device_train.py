"""Train several configs side by side on a lent GPU machine and bring their weights back: the one
prepared call the device tool allows (15 minutes of device time a task, at most 10 a command).

Here, once (CPU side; needs ../shared/data):

    python tools/device_train.py pack        # -> .devdata/ (git-ignored)

There, in one device call that carries .devdata (python3 is the device's, with CUDA torch):

    python3 tools/device_train.py run --limit 290 \\
        --run long config/train/enet_sad_multicam_long.yaml "" \\
        --run varied config/train/enet_sad_multicam_synth.yaml "train.iterations=3600 train.sad_start_iter=2160"

``pack`` copies the labelled sets the many-camera recipes read, JPEGs re-encoded at quality 75
(the working tree that travels is limited to 64 MiB; training decodes and augments them anyway),
and the round-2 weights the recipes start from. ``run`` refuses to start without CUDA, links
../shared/data to the packed copy, forces ``train.device=cuda train.amp=true`` (the first device run
of 2026-12-04 trained on the device's CPU because a config said ``device: cpu``), splits the CPUs
among the runs' data workers (data, not the GPU, limits ENet-SAD there), stops every run at
``--limit`` seconds and exports a stopped run's last checkpoint with ``timed_out: true`` in its
metadata. With ``--stop-at N`` a run is stopped as soon as its checkpoint of iteration N is written
(``train.keep_checkpoints`` is forced on; N must be a multiple of ``train.checkpoint_interval`` or the
last iteration) and that checkpoint is exported (``stopped_at: N``); a run that ends without it, at the
time limit say, fails the call (exit 1) and its last weights come back. Round 5's
first stage is iteration 1500 of the 3600 schedule, so seeds of it need no more device time than that.
Into $OUT: runs.tar.gz (weights, metadata, logs, configs) and monitor.txt (GPU use).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
PACK = REPO / ".devdata"
DATASETS = ("tusimple-train", "tusimple-train-0313", "tusimple", "tusimple-geometry", "culane-train")
ROUND2_COMMIT = "dfa1681"  # the round-2 default weights, the start of the many-camera recipes
JPEG_QUALITY = 75
MAX_PACK_BYTES = 56 * 2**20  # the repository itself travels too: 64 MiB in all


def pack(src: Path, dst: Path = PACK) -> int:
    """Copy ``DATASETS`` of ``src`` to ``dst/data`` (JPEGs re-encoded) and the round-2 weights to
    ``dst/init``; returns the bytes written. ValueError if a dataset is missing or the pack is too big."""
    missing = [name for name in DATASETS if not (src / name).is_dir()]
    if missing:
        raise ValueError(f"{src}: no {', '.join(missing)} (the datasets the many-camera recipes read)")
    shutil.rmtree(dst / "data", ignore_errors=True)
    for name in DATASETS:
        for path in sorted((src / name).rglob("*")):
            if path.is_dir():
                continue
            out = dst / "data" / path.relative_to(src)
            out.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix.lower() in (".jpg", ".jpeg"):
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if image is None:
                    raise ValueError(f"{path}: not a readable image")
                cv2.imwrite(str(out), image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            else:
                shutil.copy2(path, out)
    (dst / "init").mkdir(parents=True, exist_ok=True)
    for suffix in ("safetensors", "json"):
        blob = subprocess.run(["git", "show", f"{ROUND2_COMMIT}:lanesad_ros/weights/enet_sad_default.{suffix}"],
                              cwd=REPO, capture_output=True, check=True).stdout
        (dst / "init" / f"enet_sad_default.{suffix}").write_bytes(blob)
    size = sum(p.stat().st_size for p in dst.rglob("*") if p.is_file())
    if size > MAX_PACK_BYTES:
        raise ValueError(f"{dst}: {size / 2**20:.1f} MiB packed, more than {MAX_PACK_BYTES / 2**20:.0f} MiB travel")
    return size


def train_command(name: str, config: str, overrides: str, runs_dir: Path, workers: int) -> list[str]:
    """The lanesad-train command of one run: on CUDA with AMP, no validation (scored afterwards on the CPU
    side with ``lanesad-train calibrate`` / ``tune``), exported into ``runs_dir/name``."""
    return [sys.executable, "-m", "lanesad_ros.training", "--config", config, *overrides.split(),
            f"name={name}", f"train.output_dir={runs_dir / name}",
            f"export.path={runs_dir / name / 'enet_sad_default.safetensors'}", "train.device=cuda", "train.amp=true",
            "train.num_threads=1", "train.progress=false", f"data.num_workers={workers}", "eval.interval=1000000",
            "data.val=[]"]


def _monitor(path: Path, stop: threading.Event) -> None:
    with path.open("w") as out:
        while not stop.wait(30):
            try:
                query = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                        "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
            except OSError as exc:
                query = f"nvidia-smi: {exc}"
            out.write(f"{time.strftime('%H:%M:%S')} {query} load {os.getloadavg()[0]:.1f}\n")
            out.flush()


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _export(checkpoint: Path, weights: Path, env: dict, **extra: object) -> bool:
    """``lanesad-train export`` of ``checkpoint`` with ``extra`` set in the metadata; False if it failed."""
    sets = [arg for key, value in extra.items() for arg in ("--set", f"{key}={json.dumps(value)}")]
    done = subprocess.run([sys.executable, "-m", "lanesad_ros.training", "export", str(checkpoint), str(weights),
                           *sets], cwd=REPO, env=env, check=False)
    if done.returncode != 0:
        print(f"device_train: error: exporting {checkpoint} failed (exit {done.returncode})", file=sys.stderr)
    return done.returncode == 0


def run(runs: list[tuple[str, str, str]], limit: float, out: Path, stop_at: int | None = None,
        runs_dir: Path = Path("/tmp/device_runs")) -> int:
    """Start every run at once, stop each at ``limit`` s (or once its checkpoint of iteration ``stop_at`` is
    written), export stopped runs, pack the results into ``out``. 0 when every run has the weights asked for,
    else 1."""
    import torch  # here, not at the top: ``pack`` runs where torch may be the CPU build, and needs none of it

    if not torch.cuda.is_available():
        print("device_train: error: CUDA is not available here: run this on the GPU machine", file=sys.stderr)
        return 2
    shared = REPO.parent / "shared" / "data"
    if (PACK / "data").is_dir() and not os.path.lexists(shared):
        shared.parent.mkdir(parents=True, exist_ok=True)
        shared.symlink_to(PACK / "data")
    init = REPO / "outputs" / "round2"
    if (PACK / "init").is_dir() and not (init / "enet_sad_default.safetensors").exists():
        shutil.copytree(PACK / "init", init, dirs_exist_ok=True)
    shutil.rmtree(runs_dir, ignore_errors=True)
    runs_dir.mkdir(parents=True)
    out.mkdir(parents=True, exist_ok=True)
    workers = max(1, ((os.cpu_count() or 2) - len(runs)) // len(runs))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    stop = threading.Event()
    threading.Thread(target=_monitor, args=(out / "monitor.txt", stop), daemon=True).start()
    started = time.monotonic()
    procs = {}
    for name, config, overrides in runs:
        log = (runs_dir / f"{name}.log").open("w")
        if stop_at is not None:  # the checkpoint to stop at must be kept, not replaced by the next
            overrides = f"{overrides} train.keep_checkpoints=true"
        procs[name] = subprocess.Popen(train_command(name, config, overrides, runs_dir, workers), cwd=REPO, env=env,
                                       stdout=log, stderr=subprocess.STDOUT)
    target = None if stop_at is None else checkpoint_name(stop_at)
    pending, ended = dict(procs), {}
    while pending:
        for name, proc in list(pending.items()):
            elapsed = time.monotonic() - started
            if proc.poll() is not None:
                ended[name] = f"exit {proc.returncode}"
            elif target and (runs_dir / name / target).exists():
                _stop(proc)  # checkpoints are written atomically: one that exists is whole
                ended[name] = f"stopped at {target}"
            elif elapsed > limit:
                _stop(proc)
                ended[name] = "stopped at the time limit"
            else:
                continue
            print(f"{name}: {ended[name]} after {elapsed:.0f} s", flush=True)
            del pending[name]
        if pending:
            time.sleep(2)
    stop.set()
    failed = [name for name in procs if not _collect(runs_dir / name, stop_at, ended[name], env)]
    with tarfile.open(out / "runs.tar.gz", "w:gz") as tar:  # not the temporaries of a save cut short
        tar.add(runs_dir, arcname="runs", filter=lambda info: None if info.name.endswith(".tmp") else info)
    if failed:
        print(f"device_train: error: {', '.join(failed)}: not the weights asked for (see above and the logs in "
              "runs.tar.gz)", file=sys.stderr)
    return 1 if failed else 0


def checkpoint_name(iteration: int) -> str:
    """The file name the trainer gives the checkpoint of ``iteration`` (``train.keep_checkpoints``, ``Trainer.save``;
    spelled here because this script's own process does not import lanesad_ros; test_device_train runs the real
    trainer against it)."""
    return f"ckpt_{iteration:07d}.pt"


def _collect(folder: Path, stop_at: int | None, ended: str, env: dict) -> bool:
    """Leave a run's weights in ``folder``: its checkpoint of ``stop_at`` exported (``--stop-at``), else the
    run's own export or, for a stopped run, its last checkpoint (``timed_out``). True when those are the weights
    asked for; the checkpoints are deleted only then (else they go back in the archive)."""
    weights = folder / "enet_sad_default.safetensors"
    target = None if stop_at is None else checkpoint_name(stop_at)
    if target and (folder / target).exists():
        ok = _export(folder / target, weights, env, stopped_at=stop_at)
    else:
        ok = target is None
        if target:
            hint = " (does train.checkpoint_interval divide its iteration?)" if ended == "exit 0" else ""
            print(f"device_train: error: {folder.name} ended ({ended}) without writing {target}{hint}; its last "
                  "weights come back instead", file=sys.stderr)
        if not weights.exists() and (folder / "last.pt").exists():
            ok = _export(folder / "last.pt", weights, env, timed_out=True) and ok
    ok = ok and weights.exists()
    if ok:
        for checkpoint in folder.glob("*.pt"):
            checkpoint.unlink()
    shutil.rmtree(folder / "tensorboard", ignore_errors=True)
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="device_train", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    pk = sub.add_parser("pack", help="pack the labelled data and the round-2 weights into .devdata/")
    pk.add_argument("--src", type=Path, default=REPO.parent / "shared" / "data")
    rn = sub.add_parser("run", help="on the GPU machine: train the runs side by side")
    rn.add_argument("--run", nargs=3, action="append", required=True, metavar=("NAME", "CONFIG", "OVERRIDES"),
                    help="a run: its name, its config, its overrides in one argument ('' for none)")
    rn.add_argument("--limit", type=float, default=290.0, help="seconds before every run is stopped")
    rn.add_argument("--stop-at", type=int, metavar="N",
                    help="stop a run once its checkpoint of iteration N is written and export that checkpoint "
                         "(train.keep_checkpoints forced on; --limit still applies; a run without it fails)")
    rn.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "device_out")))
    args = p.parse_args(argv)
    if args.command == "pack":
        try:
            size = pack(args.src)
        except ValueError as exc:
            print(f"device_train: error: {exc}", file=sys.stderr)
            return 2
        print(f"packed {size / 2**20:.1f} MiB into {PACK}; carry it: run(..., carry=['.devdata'])")
        return 0
    if args.stop_at is not None and args.stop_at <= 0:
        p.error(f"--stop-at must be a positive iteration, got {args.stop_at}")
    return run([tuple(r) for r in args.run], args.limit, args.out, args.stop_at)


if __name__ == "__main__":
    sys.exit(main())
