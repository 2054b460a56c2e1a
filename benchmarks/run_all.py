#!/usr/bin/env python3
"""Run every benchmark and write benchmarks/RESULTS.md: machine, date, load, versions, the exact
command and markdown table of each figure, and the issue #7 CPU targets against what was measured.

    python benchmarks/run_all.py [--quick] [--threads N] [--out benchmarks/RESULTS.md]

Each script runs in its own process (``--json`` where it has one, for the Targets section).
``--quick`` uses few runs: rough figures that check the harness, not ones to quote. The CPU
figures move with whatever else runs on the machine: the load average is recorded before and
after each script; run the full set on a quiet machine. The soak (issue 21: the node for an
hour) is not part of the set: ``bench_soak.py --results benchmarks/RESULTS.md`` writes its
section, and this script keeps that section as it is when it rewrites the report.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# Issue #7 CPU targets (2 cores): frames per second end to end with the fastest backend at
# 288x800, postprocess per frame and preprocessing of a 1640x590 frame in milliseconds.
TARGET_E2E_FPS = 25.0
TARGET_POSTPROCESS_MS = 1.0
TARGET_PREPROCESS_MS = 3.0
SOAK_HEADING = "## Soak (issue 21)"  # bench_soak.py --results writes the section that starts so


def _proc_field(path: str, key: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine() -> dict:
    import numpy
    import onnxruntime
    import torch

    try:
        import openvino

        openvino_version = openvino.__version__.split("-")[0]
    except ImportError:
        openvino_version = "not installed"
    mem_kb = _proc_field("/proc/meminfo", "MemTotal")
    return {
        "cpu": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "ram_gib": round(int(mem_kb.split()[0]) / 2**20, 1) if mem_kb else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "openvino": openvino_version,
        "numpy": numpy.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }


def plan(args, json_dir: Path) -> list[dict]:
    """The benchmark commands: (key, title, argv, json path or None)."""
    from lanesad_ros.weights import default_weights_path

    quick = args.quick
    threads = ["--threads", str(args.threads)]
    runs = lambda full, fast: ["--runs", str(fast if quick else full)]  # noqa: E731
    warmup = ["--warmup", "1" if quick else "5"]
    steps = []

    def add(key, title, script, extra, json_flag=True):
        out = json_dir / f"{key}.json" if json_flag else None
        argv = [sys.executable, str(HERE / script), *extra] + (["--json", str(out)] if out else [])
        steps.append({"key": key, "title": title, "argv": argv, "json": out})

    add("model_enet", "Model forward, ENet-SAD", "bench_model.py",
        ["--models", "enet_sad", "--sizes", "288x800,368x640", *runs(30, 5), *warmup, *threads])
    add("model_resnet", "Model forward, ResNet-18/34-SAD (few runs)", "bench_model.py",
        ["--models", "resnet18_sad,resnet34_sad", "--sizes", "288x800", *runs(5, 2), "--warmup", "1", *threads])
    if default_weights_path().is_file():
        add("pipeline_shipped", "Detection pipeline, shipped weights", "bench_pipeline.py",
            [*runs(50, 8), *warmup, *threads])
    add("pipeline_288x800", "Detection pipeline, ENet-SAD at 288x800 (issue #7 target size)", "bench_pipeline.py",
        ["--random", "--input-size", "288", "800", *runs(50, 8), *warmup, *threads])
    add("input_size", "detect() by input size (README model card)", "bench_input_size.py",
        [*runs(40, 5), *warmup, *threads])
    add("ros_e2e", "End to end through ROS 2", "bench_ros_e2e.py",
        ["--seconds", "2", "--rates", "10,30", "--sizes", "1640x590"] if quick else [],
        json_flag=_has_json_flag("bench_ros_e2e.py"))
    add("startup", "Start-up to the first LaneArray (issue 13)", "bench_startup.py", ["--runs", "1" if quick else "3"])
    if importlib.util.find_spec("nncf") is not None:  # the quantisation tool's optional dependency
        add("int8", "OpenVINO fp32 vs INT8 (issue 13)", "bench_int8.py",
            ["--rounds", "1", "--runs", "3", "--frames", "20", *threads] if quick else [*threads])
    add("ego_lane", "Ego lane and boundary cubics on synthetic drives (issue 19)", "bench_ego_lane.py",
        ["--seconds", "2"] if quick else [], json_flag=False)
    add("closed_loop", "Lane keeping in a closed loop through DDS (issue 19)", "closed_loop.py",
        ["--duration", "10" if quick else "60", "--out", str(json_dir / "closed_loop")], json_flag=False)
    add("train", "Training throughput", "bench_train.py",
        ["--steps", "2", "--batch", "2", *threads] if quick else [*threads],
        json_flag=_has_json_flag("bench_train.py"))
    return steps


def _has_json_flag(script: str) -> bool:
    """Whether a script takes --json (not all of them do; their tables are still recorded)."""
    return "--json" in (HERE / script).read_text()


def run_step(step: dict, timeout: float) -> dict:
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    try:
        proc = subprocess.run(step["argv"], cwd=REPO, capture_output=True, text=True, timeout=timeout)
        rc, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, stdout, stderr = "timeout", exc.stdout or "", f"timed out after {timeout:.0f} s"
        stdout = stdout.decode() if isinstance(stdout, bytes) else stdout
    data = None
    if rc == 0 and step["json"] is not None and step["json"].is_file():
        data = json.loads(step["json"].read_text())
    return {**step, "rc": rc, "stdout": stdout.strip(), "stderr_tail": stderr.strip()[-2000:],
            "seconds": time.perf_counter() - start, "load_before": load_before, "load_after": os.getloadavg()[0],
            "data": data}


def _command(argv: list[str]) -> str:
    """The command as a user types it from the repository root (no temporary --json path)."""
    shown = ["python", str(Path(argv[1]).relative_to(REPO))]
    args = argv[2:]
    if "--json" in args:
        i = args.index("--json")
        args = args[:i] + args[i + 2:]
    return " ".join(shown + args)


def targets(results: dict) -> list[str]:
    """Rows of the Targets table from the 288x800 pipeline run."""
    lines = ["| target (CPU, issue #7) | measured | met | source |", "| --- | --- | --- | --- |"]
    pipe = results.get("pipeline_288x800", {}).get("data")
    if not pipe:
        lines.append("| all | not measured (the 288x800 pipeline benchmark failed) | - | - |")
        return lines
    rows = pipe["results"]
    detect = [r for r in rows if r["stage"].startswith("detect()")]
    best = min(detect, key=lambda r: r["median_ms"])
    fps = 1000.0 / best["median_ms"]
    eager = next((r for r in detect if r["backend"].startswith("torch")), None)
    vs = f", {eager['median_ms'] / best['median_ms']:.2f}x eager torch" if eager else ""
    lines.append(f"| end to end >= {TARGET_E2E_FPS:g} FPS at 288x800, fastest backend | {fps:.1f} FPS "
                 f"({best['median_ms']:.1f} ms median, {best['backend']}{vs}) "
                 f"| {'yes' if fps >= TARGET_E2E_FPS else 'no'} "
                 f"| detect() on a 1640x590 frame |")
    post = best["parts_median_ms"]["postprocess"]
    decode = [r["median_ms"] for r in rows if r["stage"].startswith("postprocess")]
    lines.append(f"| postprocess <= {TARGET_POSTPROCESS_MS:g} ms per frame | {post:.2f} ms in detect() "
                 f"(row softmax + decode); decode alone {min(decode):.2f}-{max(decode):.2f} ms | "
                 f"{'yes' if post <= TARGET_POSTPROCESS_MS else 'no'} | detect() timings, 4 lanes |")
    pre = next(r for r in rows if r["stage"].startswith("preprocess"))
    lines.append(f"| preprocess of a 1640x590 frame <= {TARGET_PREPROCESS_MS:g} ms | {pre['median_ms']:.2f} ms "
                 f"({pre['stage'].split(' ', 1)[1]}) | {'yes' if pre['median_ms'] <= TARGET_PREPROCESS_MS else 'no'} "
                 f"| Preprocessor resize + normalise |")
    return lines


def previous_soak(path: Path) -> str:
    """The soak section of an earlier report (from its heading to the next section), or ""."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    start = next((i for i, line in enumerate(lines) if line.startswith(SOAK_HEADING)), None)
    if start is None:
        return ""
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join(lines[start:end]).rstrip()


def report(results: dict, info: dict, args, started: str, load_start: float, kept_soak: str = "") -> str:
    lines = [
        "# Benchmark results",
        "",
        "Written by `python benchmarks/run_all.py" + (" --quick" if args.quick else "")
        + f" --threads {args.threads}`" + (" (**--quick: few runs, rough figures**)" if args.quick else "") + ".",
        "",
        f"- date: {started}",
        f"- machine: {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB RAM, CUDA: {info['cuda']}",
        f"- load average (1 min): {load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end "
        "(2 cores: above ~1.5 other processes share the CPU and the figures are slower than on a quiet machine)",
        f"- versions: python {info['python']}, torch {info['torch']}, onnxruntime {info['onnxruntime']}, "
        f"openvino {info['openvino']}, numpy {info['numpy']}",
        f"- inference threads: {args.threads} for every backend",
        "",
        "## Targets",
        "",
        *targets(results),
        "",
    ]
    for result in results.values():
        lines += [f"## {result['title']}", "", f"Command: `{_command(result['argv'])}`  ",
                  f"load average {result['load_before']:.2f} before, {result['load_after']:.2f} after; "
                  f"{result['seconds']:.0f} s", ""]
        if result["rc"] != 0:
            lines += [f"**Failed** (exit {result['rc']}):", "",
                      "```", result["stderr_tail"] or "(no output)", "```", ""]
        lines += [_demote_headings(result["stdout"]) or "(no output)", ""]
    if kept_soak:
        lines += [kept_soak, ""]
    return "\n".join(lines)


def _demote_headings(text: str) -> str:
    """Scripts print their own '# title'; nest those under this file's sections."""
    return "\n".join("##" + line if line.startswith("#") else line for line in text.splitlines())


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few runs per figure (checks the harness)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="inference threads for every backend (default: all cores)")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md", help="the markdown report to write")
    parser.add_argument("--only", default="", help="comma-separated step keys to run (default: all)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per script (default 600, quick 300)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_start = os.getloadavg()[0]
    info = machine()
    timeout = args.timeout or (300.0 if args.quick else 600.0)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        steps = plan(args, Path(tmp))
        only = {key for key in args.only.split(",") if key}
        unknown = only - {step["key"] for step in steps}
        if unknown:
            parser.error(f"unknown step(s) {', '.join(sorted(unknown))}; steps: "
                         f"{', '.join(step['key'] for step in steps)}")
        for step in steps:
            if only and step["key"] not in only:
                continue
            print(f"[run_all] {step['key']}: {_command(step['argv'])}", file=sys.stderr, flush=True)
            result = run_step(step, timeout)
            status = "ok" if result["rc"] == 0 else f"FAILED ({result['rc']})"
            print(f"[run_all] {step['key']}: {status} in {result['seconds']:.0f} s", file=sys.stderr, flush=True)
            results[step["key"]] = result
    write_atomic(args.out, report(results, info, args, started, load_start, previous_soak(args.out)) + "\n")
    print(f"[run_all] wrote {args.out}", file=sys.stderr)
    return 0 if all(r["rc"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
