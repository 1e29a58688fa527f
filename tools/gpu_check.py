"""Does minidiff's GPU path work on this machine, and how fast is it against PyTorch CUDA? (tools/gpu_check.sh)

    tools/gpu_check.sh [--dry-run] [--out DIR] [--venv DIR] [--cache DIR] [--installer uv|pip] [--no-install]

On a machine with an NVIDIA GPU and only this repository, it runs these steps in
order, each with a timeout, and writes DIR/summary.json and DIR/summary.md (each
step's command, status, wall time against its estimate, and the tail of its
output; DIR/logs/<step>.log has all of it), rewritten after every step so that a
slot that ends early still leaves what was done:

    detect    nvidia-smi: the GPU, its driver, the CUDA version the driver supports
    install   a venv, then `uv pip install -e ".[gpu]" "torch==2.10.*" pytest` in one resolve (uv from
              PyPI into the venv first: parallel downloads and unpacking of the ~4.5 GB of
              wheels; --installer pip does the same with pip, about 100 s slower)
    device    CuPy sees the GPU, numba-cuda imports, torch sees CUDA; the versions
    compile   python -m minidiff.bench --device cuda --compile-only: every CUDA kernel of the
              U-Net, float32 and float64, into Numba's on-disk cache (NUMBA_CACHE_DIR) and
              CuPy's (CUPY_CACHE_DIR), both kept in --cache across steps and runs
    tests     python -m pytest tests/gpu, MINIDIFF_REQUIRE_GPU=1 (a missing GPU fails them)
    bench     python -m minidiff.bench --device cuda --json DIR/bench.json
    spiral    examples/spiral.py --device cuda --epochs 40
    judge     python -m minidiff.judge --epochs 5 (on the CPU, compiling the CPU kernels LeNet-5
              uses into the same cache): the judge of the MNIST step
    mnist     examples/mnist.py --conditional --device cuda --epochs 1 --samples 200

The tests and the benchmark come before the examples: if the slot runs short,
the answer to "does it work, how fast" is already written. Why torch 2.10:
from 2.11 on, PyPI's default Linux torch is a CUDA 13 build, which cannot share
a process with the gpu extra's CUDA 12 CuPy and Numba (its cuda-toolkit and
cuda-bindings pins conflict); left free, pip backtracks through every newer
torch wheel (~4 GB of downloads) before it settles on 2.10.0, the CUDA 12.8 build.

Without a GPU (no nvidia-smi, or one that lists no GPU), or with --dry-run, it
is a dry run: detect reports what it found, every other step is skipped with
its reason and the command it would run, nothing fails, the summary is written.
Exit status: 0 when no step failed, 1 when one did, 2 for bad arguments.
Needs only Python 3.8+ and its standard library (the steps run in the venv).
"""
import argparse
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH_SPEC = "torch==2.10.*"      # the newest torch whose default PyPI build is CUDA 12 (module docstring)
CATEGORIES = ("install", "compile", "tests", "bench", "examples", "other")

# Seconds each step is expected to take on an H100 node (16 cores, a fast link to PyPI), how they
# were estimated in docs/benchmarks.md ("On a GPU"); the summary prints them beside the real times.
ESTIMATE_S = {"detect": 1, "install": 50, "device": 10, "compile": 60, "tests": 45, "bench": 75,
              "spiral": 30, "judge": 30, "mnist": 45}
INSTALL_ESTIMATE_S = {"uv": 50, "pip": 150}

DEVICE_PROBE = r"""
import json, sys
from minidiff.backend import cuda_unavailable_reason
reason = cuda_unavailable_reason()
if reason is not None:
    sys.exit("no usable GPU: " + reason)
import cupy, numba, numba_cuda, torch
from minidiff.bench.gpu import gpu_name
rt = cupy.cuda.runtime
info = {"gpu": gpu_name(), "cuda_driver": rt.driverGetVersion(), "cuda_runtime": rt.runtimeGetVersion(),
        "cupy": cupy.__version__, "numba": numba.__version__, "numba_cuda": numba_cuda.__version__,
        "torch": torch.__version__, "torch_cuda": torch.version.cuda, "torch_sees_cuda": torch.cuda.is_available()}
print(json.dumps(info))
if not info["torch_sees_cuda"]:
    sys.exit("torch sees no CUDA device: a CPU build of torch?")
"""


class Step:
    """One step: a name, its category for the time split, the commands it runs and what it needs."""

    def __init__(self, name, category, commands, what, timeout, needs=(), env=None, gpu=True):
        self.name, self.category, self.commands, self.what = name, category, commands, what
        self.timeout, self.needs, self.env, self.gpu = timeout, tuple(needs), dict(env or {}), gpu


def steps(args):
    """The steps, in order, for these arguments."""
    py = os.path.join(args.venv, "bin", "python")
    out = args.out
    if args.installer == "uv":
        install = [[sys.executable, "-m", "venv", args.venv], [py, "-m", "pip", "install", "-q", "uv"],
                   [py, "-m", "uv", "pip", "install", "--python", py, "-e", ".[gpu]", TORCH_SPEC, "pytest>=7"]]
    else:
        install = [[sys.executable, "-m", "venv", args.venv], [py, "-m", "pip", "install", "-q", "--upgrade", "pip"],
                   [py, "-m", "pip", "install", "-e", ".[gpu]", TORCH_SPEC, "pytest>=7"]]
    return [
        Step("detect", "other", [["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                  "--format=csv,noheader"], ["nvidia-smi"]],
             "the GPU and its driver (nvidia-smi)", 30, gpu=False),
        Step("install", "install", [] if args.no_install else install,
             f"a venv at {args.venv} with minidiff[gpu], {TORCH_SPEC} and pytest", 900),
        Step("device", "other", [[py, "-c", DEVICE_PROBE]], "CuPy sees the GPU, numba-cuda and torch CUDA import",
             120, needs=("install",)),
        Step("compile", "compile", [[py, "-m", "minidiff.bench", "--device", "cuda", "--compile-only",
                                     "--json", os.path.join(out, "compile.json")]],
             "every CUDA kernel of the U-Net, float32 and float64, into the on-disk caches", 600,
             needs=("device",)),
        Step("tests", "tests", [[py, "-m", "pytest", "tests/gpu", "-q", "-rs", "-p", "no:cacheprovider",
                                 "-o", "addopts="]],
             "tests/gpu: the kernels at the U-Net's sizes, U-Net train step and guided sampling "
             "against NumPy, a GPU checkpoint loaded on the CPU", 900, needs=("device",),
             env={"MINIDIFF_REQUIRE_GPU": "1"}),
        Step("bench", "bench", [[py, "-m", "minidiff.bench", "--device", "cuda", "--json",
                                 os.path.join(out, "bench.json")]],
             "the U-Net train step, forward at batch 64 and 256, DDIM 20 steps against PyTorch CUDA", 900,
             needs=("device",)),
        Step("spiral", "examples", [[py, "examples/spiral.py", "--device", "cuda", "--epochs", "40",
                                     "--out", os.path.join(out, "spiral"), "--no-progress"]],
             "the spiral example on the GPU, 40 epochs", 600, needs=("device",)),
        Step("judge", "examples", [[py, "-m", "minidiff.judge", "--epochs", "5",
                                    "--out", os.path.join(out, "judge.h5")]],
             "the LeNet-5 judge for the MNIST step (CPU, 5 epochs)", 600, needs=("install",), gpu=False),
        Step("mnist", "examples", [[py, "examples/mnist.py", "--conditional", "--device", "cuda", "--epochs", "1",
                                    "--samples", "200", "--judge", os.path.join(out, "judge.h5"),
                                    "--out", os.path.join(out, "mnist_cond"), "--no-progress"]],
             "one epoch of the conditional MNIST example on the GPU, 200 samples per sampler", 900,
             needs=("device", "judge")),
    ]


def detect_gpu():
    """(True, what nvidia-smi lists) when it lists a GPU, else (False, why not)."""
    if shutil.which("nvidia-smi") is None:
        return False, "no NVIDIA GPU here: nvidia-smi is not on PATH"
    try:
        res = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return False, f"nvidia-smi -L failed: {e}"
    gpus = [line for line in res.stdout.splitlines() if line.startswith("GPU ")]
    if res.returncode != 0 or not gpus:
        return False, f"nvidia-smi -L lists no GPU (exit {res.returncode}): {(res.stdout + res.stderr).strip()[:200]}"
    return True, "; ".join(gpus)


def tail(text, lines=25):
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run_step(step, args, env, log_path):
    """Run the step's commands in turn (stop at the first failure) -> (status, seconds, output, reason)."""
    t0, chunks = time.perf_counter(), []
    with open(log_path, "w") as log:
        for cmd in step.commands:
            line = "$ " + " ".join(shlex.quote(c) for c in cmd)
            log.write(line + "\n")
            log.flush()
            chunks.append(line)
            left = step.timeout - (time.perf_counter() - t0)
            try:
                res = subprocess.run(cmd, cwd=ROOT, env=dict(env, **step.env), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, timeout=max(left, 1))
                text, code = res.stdout, res.returncode
            except subprocess.TimeoutExpired as e:
                text, code = e.output or "", None
                text = text.decode(errors="replace") if isinstance(text, bytes) else text
            except OSError as e:
                text, code = f"{type(e).__name__}: {e}", -1
            log.write(text)
            chunks.append(text)
            if code is None:
                return "failed", time.perf_counter() - t0, tail("\n".join(chunks)), f"timed out after {step.timeout} s"
            if code != 0:
                return "failed", time.perf_counter() - t0, tail("\n".join(chunks)), f"exit status {code}"
    return "passed", time.perf_counter() - t0, tail("\n".join(chunks)), ""


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def git_commit():
    try:
        res = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10)
        return res.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def summary(state, args):
    """The summary dict: the run, every step, the time split, and what the steps wrote."""
    split = {c: 0.0 for c in CATEGORIES}
    for s in state["steps"]:
        split[s["category"]] += s["seconds"] or 0.0
    out = dict(state)
    out["time_split_s"] = split
    out["total_s"] = sum(split.values())
    out["estimate_total_s"] = sum(ESTIMATE_S.values())
    out["compile"] = read_json(os.path.join(args.out, "compile.json"))
    out["bench"] = read_json(os.path.join(args.out, "bench.json"))
    out["examples"] = {name: read_json(os.path.join(args.out, sub, "metrics.json"))
                       for name, sub in (("spiral", "spiral"), ("mnist", "mnist_cond"))}
    out["failed"] = [s["name"] for s in state["steps"] if s["status"] == "failed"]
    return out


def _ms(v):
    return "-" if v is None else f"{1e3 * v:.1f}"


def _num(v, fmt="{:.2f}"):
    return "-" if v is None else fmt.format(v)


def markdown(s):
    """The summary as Markdown: steps, time split, the benchmark, compile times, the examples, outputs."""
    lines = [f"# GPU check, {s['started']}", "",
             f"Mode: **{s['mode']}**{' (' + s['dry_run_reason'] + ')' if s.get('dry_run_reason') else ''}. "
             f"Commit {s['commit'] or '?'}. Machine: {s['machine'] or '-'}.", "",
             "| step | status | seconds | estimate (H100) | what |", "| --- | --- | --- | --- | --- |"]
    for st in s["steps"]:
        status = st["status"] + (f": {st['reason']}" if st["reason"] else "")
        lines.append(f"| {st['name']} | {status} | {_num(st['seconds'], '{:.1f}')} | {st['estimate_s']} | "
                     f"{st['what']} |")
    lines += ["", "Time split (seconds): " + ", ".join(f"{c} {v:.1f}" for c, v in s["time_split_s"].items())
              + f"; total {s['total_s']:.1f} (estimate {s['estimate_total_s']}).", ""]
    if s.get("compile"):
        c = s["compile"]
        lines += [f"Compile step: Numba compile (or cache load) {json.dumps(c.get('numba_compile_s'))} s, "
                  f"wall {json.dumps(c.get('wall_s'))} s, on {c.get('gpu')}.", ""]
    if s.get("bench"):
        lines += ["| case | numba ms | CuPy ref ms | torch ms | best/torch | paired | GFLOP/s | MB ours | MB torch "
                  "| first call ms | numba compile ms |", "| --- " * 11 + "|"]
        for r in s["bench"]:
            mem, first = r.get("peak_mb") or {}, r.get("first_call_s") or {}
            lines.append(f"| {r['case']} | {_ms(r['minidiff_kernels_s'])} | {_ms(r['minidiff_reference_s'])} | "
                         f"{_ms(r['torch_s'])} | {_num(r['ratio_vs_torch'])} | {_num(r['paired_ratio_vs_torch'])} | "
                         f"{_num(r['gflops'], '{:.0f}')} | {_num(mem.get('minidiff'), '{:.1f}')} | "
                         f"{_num(mem.get('torch'), '{:.1f}')} | {_ms(first.get('minidiff_kernels'))} | "
                         f"{_ms(r.get('numba_compile_s'))} |")
        lines.append("")
    for name, m in (s.get("examples") or {}).items():
        if m:
            keys = [k for k in ("ddpm_mean_distance", "ddim_mean_distance", "fld_ddpm", "fld_ddim",
                                "guided_accuracy_ddpm", "train_time_s", "total_time_s") if k in m]
            lines.append(f"{name}: " + ", ".join(f"{k} {m[k]:.4g}" for k in keys))
    lines += ["", "## Step outputs (last lines; all of it in logs/)", ""]
    for st in s["steps"]:
        lines += [f"### {st['name']}: {st['status']}", "", "```", f"$ {st['command']}",
                  st["output"] or st["reason"] or "", "```", ""]
    return "\n".join(lines)


def write_summary(state, args):
    s = summary(state, args)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(s, f, indent=1)
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write(markdown(s))
    return s


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="tools/gpu_check.sh", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--dry-run", action="store_true", help="skip every step after detect, saying why (the default "
                                                          "without a GPU)")
    p.add_argument("--out", default=os.path.join(ROOT, "outputs", "gpu_check"), help="where the summary goes")
    p.add_argument("--venv", default=os.path.join(ROOT, ".venv-gpu"), help="the virtualenv to create or reuse")
    p.add_argument("--cache", default=os.path.join(ROOT, ".gpu-cache"),
                   help="Numba's and CuPy's on-disk kernel caches (kept across runs)")
    p.add_argument("--installer", default="uv", choices=["uv", "pip"],
                   help="uv (default; installed into the venv by its pip first: parallel downloads and "
                        "unpacking) or pip")
    p.add_argument("--no-install", action="store_true", help="use the venv as it is")
    args = p.parse_args(argv)
    for name in ("out", "venv", "cache"):
        setattr(args, name, os.path.abspath(getattr(args, name)))
    return args


def main(argv=None):
    args = parse_args(argv)
    ESTIMATE_S["install"] = 0 if args.no_install else INSTALL_ESTIMATE_S[args.installer]
    os.makedirs(os.path.join(args.out, "logs"), exist_ok=True)
    has_gpu, found = detect_gpu()
    dry_reason = "--dry-run" if args.dry_run else (None if has_gpu else found)
    env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(args.cache, "numba"),
               CUPY_CACHE_DIR=os.path.join(args.cache, "cupy"), PYTHONUNBUFFERED="1", MPLBACKEND="Agg",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    env.pop("MINIDIFF_KERNELS", None)
    state = {"started": datetime.datetime.now().isoformat(timespec="seconds"), "commit": git_commit(),
             "mode": "dry run" if dry_reason else "gpu", "dry_run_reason": dry_reason, "machine": found,
             "python": sys.version.split()[0], "torch_spec": TORCH_SPEC, "installer": args.installer,
             "numba_cache_dir": env["NUMBA_CACHE_DIR"], "cupy_cache_dir": env["CUPY_CACHE_DIR"], "steps": []}
    print(f"gpu_check: {state['mode']}{' (' + dry_reason + ')' if dry_reason else ''}; summary in {args.out}",
          flush=True)
    status = {}
    for step in steps(args):
        command = " && ".join(" ".join(shlex.quote(c) for c in cmd) for cmd in step.commands) or "(nothing)"
        blocked = [n for n in step.needs if status.get(n) not in ("passed",)]
        if dry_reason and (step.gpu or step.name != "detect"):
            result = ("skipped", None, "", f"dry run: {dry_reason}")
        elif dry_reason and step.name == "detect":
            result = ("passed", 0.0, found, "")
        elif blocked:
            result = ("skipped", None, "", f"needs {', '.join(blocked)}, which did not pass")
        elif not step.commands:
            result = ("passed", 0.0, "--no-install: the venv as it is", "")
        else:
            result = run_step(step, args, env, os.path.join(args.out, "logs", f"{step.name}.log"))
        status[step.name] = result[0]
        state["steps"].append({"name": step.name, "category": step.category, "status": result[0],
                               "seconds": result[1], "estimate_s": ESTIMATE_S[step.name], "what": step.what,
                               "command": command, "reason": result[3], "output": result[2]})
        print(f"  {step.name:8s} {result[0]:8s} {_num(result[1], '{:6.1f} s')}  {result[3]}", flush=True)
        write_summary(state, args)
    s = write_summary(state, args)
    print(f"total {s['total_s']:.1f} s (estimate on an H100: {s['estimate_total_s']} s); "
          + ", ".join(f"{c} {v:.1f}" for c, v in s["time_split_s"].items())
          + f"; failed: {', '.join(s['failed']) or 'none'}; wrote {os.path.join(args.out, 'summary.md')}")
    return 1 if s["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
