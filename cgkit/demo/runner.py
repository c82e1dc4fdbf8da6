"""Stage plumbing of ``cgkit demo``: a context (output folder, config, safety time limits),
stage results on disk (``<out>/<stage>/result.json``) and the loop that runs the stages.

Each stage module exposes ``run(ctx) -> dict``; the dict holds the stage's numbers, a
``figures`` list (PNG paths relative to the output folder) and optionally ``status``
(``"ok"`` / ``"skipped"``) with a ``reason``. Stages read what earlier stages wrote, so any
stage can be run alone once its inputs exist.

Output folder:

* a whole run goes through :class:`cgkit.outputs.OutputFolder`: it is written into a staging
  folder and moved into place when the run ends (failed stages included: they are marked in
  the report and the command exits with 1); a non-empty ``--out`` is refused unless
  ``--overwrite``; an interrupted run leaves nothing behind;
* ``--stage NAME`` is the one in-place mode: it reruns single stages inside an existing demo
  folder (or starts one in a new or empty folder). Each stage writes into a staging folder
  that replaces ``<out>/<stage>/`` only when the stage succeeds; a failed rerun keeps the
  earlier files of that stage. The folder's settings (size, steps, seed) must match.
"""
from __future__ import annotations

import importlib
import os
import secrets
import shutil
import time
from pathlib import Path

from ..errors import CgkitError, InputError
from ..jsonutil import jsonable, loads_strict, write_json
from ..outputs import MANIFEST, OutputFolder
from ..threads import torch_threads
from .common import StageClock
from .config import STAGES, make_config

__all__ = ["DemoContext", "run_demo", "run_stage", "StageMissing", "REQUIRES", "TIMING_KEYS",
           "reproducible_part"]

#: module implementing each stage
MODULES = {"teacher": "teacher", "atomistic": "atomistic", "forcematch": "forcematch",
           "cg": "cgmd", "silicon": "silicon", "report": "report"}
#: stages whose outputs each stage reads
REQUIRES = {"teacher": (), "atomistic": ("teacher",), "forcematch": ("teacher", "atomistic"),
            "cg": ("teacher", "atomistic", "forcematch"), "silicon": ("teacher",), "report": ()}
#: keys of stage results and summary.json that are measurements of the machine (wall times,
#: speeds), not results of the computation: the only numbers that differ between two runs
TIMING_KEYS = ("wall_time_s", "train_wall_s", "teacher_md_wall_s", "sampling_wall_s", "md_wall_s",
               "force_recompute_wall_s", "fs_per_wall_s", "atomistic_fs_per_wall_s", "ns_per_day",
               "speedup", "time_limit_s", "timing_marks")
#: torch intra-op threads of every stage (the demo is sized for 2 cores; a fixed count keeps
#: floating-point reductions, and so the numbers, the same on machines with more cores)
DEMO_THREADS = 2
#: settings an in-place stage rerun must share with the folder it runs in
_SHARED = ("size", "steps", "seed")


class StageMissing(InputError):
    """A stage needs the output of an earlier stage that has not been run."""


def reproducible_part(obj):
    """``obj`` (a stage result or ``summary.json``) without its timing measurements
    (:data:`TIMING_KEYS`, and the summary rows marked ``"timing": true``): what two runs of the
    same command must reproduce exactly."""
    if isinstance(obj, dict):
        if obj.get("timing") is True:
            return None
        return {k: reproducible_part(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [x for x in (reproducible_part(v) for v in obj) if x is not None]
    return obj


class DemoContext:
    """Output folder, configuration and helpers shared by the stages.

    ``out`` is where stages read earlier stages' files (and, in a whole run, the staging folder
    they write to); ``display_out`` the folder the user named (for messages).
    """

    def __init__(self, out, config: dict, *, progress: bool = True, display_out=None):
        self.out = Path(out)
        self.display_out = Path(display_out) if display_out is not None else self.out
        self.cfg = config
        self.seed = int(config["seed"])
        self.progress = progress
        self.out.mkdir(parents=True, exist_ok=True)
        self._roots: dict[str, Path] = {}  # stage -> staging root of an in-place rerun

    def dir(self, stage: str) -> Path:
        d = self._roots.get(stage, self.out) / stage
        d.mkdir(parents=True, exist_ok=True)
        return d

    def time_limit(self, stage: str) -> float:
        return float(self.cfg["time_limit_s"][stage])

    def clock(self, stage: str) -> StageClock:
        """The stage's wall-clock safety limit, starting now."""
        return StageClock(stage, self.time_limit(stage),
                          hint="On a slower machine pass a larger --time-limit-scale.")

    def result_path(self, stage: str) -> Path:
        return self.out / stage / "result.json"

    def read_result(self, stage: str, *, needed_by: str | None = None) -> dict:
        p = self.result_path(stage)
        if not p.is_file():
            if needed_by is None:
                return {}
            raise StageMissing(f"stage '{needed_by}' needs the output of stage '{stage}' in "
                               f"{self.display_out}; run `cgkit demo --out {self.display_out} "
                               f"--stage {stage}` first (or the whole demo)")
        res = loads_strict(p.read_text())
        if needed_by is not None and res.get("status") != "ok":
            raise StageMissing(f"stage '{needed_by}' needs stage '{stage}', which did not complete "
                               f"({res.get('reason', res.get('status'))}); rerun it")
        return res

    def need(self, stage: str, path: Path, needed_by: str) -> Path:
        """``path`` written by ``stage``, or a StageMissing error naming the command to run."""
        path = Path(path)
        if not path.exists():
            shown = self.display_out / path.resolve().relative_to(self.out.resolve())
            raise StageMissing(f"stage '{needed_by}' needs {shown} from stage '{stage}'; run "
                               f"`cgkit demo --out {self.display_out} --stage {stage}` first "
                               "(or the whole demo)")
        return path

    def rel(self, path) -> str:
        """``path`` relative to the output folder (also for files of a stage being staged)."""
        path = Path(path).resolve()
        for root in [*self._roots.values(), self.out]:
            try:
                return str(path.relative_to(root.resolve()))
            except ValueError:
                continue
        raise InputError(f"{path} is not inside the demo output folder {self.display_out}")

    def write_result(self, stage: str, result: dict) -> dict:
        result = jsonable(result)
        write_json(self.dir(stage) / "result.json", result, indent=1)
        return result


def _say(msg: str) -> None:
    print(f"[cgkit demo] {msg}", flush=True)


def run_stage(ctx: DemoContext, stage: str, *, in_place: bool = False) -> dict:
    """Run one stage; record its wall time. A :class:`~cgkit.errors.CgkitError` (including a
    reached safety time limit) becomes a ``failed`` result; anything else is a bug and
    propagates. ``in_place``: write the stage into a staging folder that replaces
    ``<out>/<stage>/`` only on success (a failed rerun keeps the earlier files)."""
    if stage not in STAGES:
        raise InputError(f"unknown stage '{stage}'; choose from {', '.join(STAGES)}")
    module = importlib.import_module(f"{__package__}.{MODULES[stage]}")
    root = None
    if in_place:
        root = ctx.out / f".{stage}.partial-{os.getpid()}-{secrets.token_hex(3)}"
        root.mkdir()
        ctx._roots[stage] = root
    _say(f"stage {stage}: started (safety limit {ctx.time_limit(stage):.0f} s)")
    t0 = time.perf_counter()
    try:
        try:
            with torch_threads(DEMO_THREADS):
                res = module.run(ctx)
            res.setdefault("status", "ok")
        except StageMissing:
            raise
        except CgkitError as exc:
            res = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
        wall = time.perf_counter() - t0
        res["wall_time_s"] = wall
        res["time_limit_s"] = ctx.time_limit(stage)
        res["stage"] = stage
        if in_place and res["status"] != "ok":
            _say(f"stage {stage}: {res['status']} in {wall:.1f} s — {res['reason']}; the earlier "
                 f"files of this stage in {ctx.display_out} are kept")
            return jsonable(res)
        if res["status"] == "failed":  # no partial files of a failed stage: only its result
            shutil.rmtree(ctx.out / stage, ignore_errors=True)
        res = ctx.write_result(stage, res)
        if in_place:
            final = ctx.out / stage
            old = ctx.out / f".{stage}.old-{os.getpid()}-{secrets.token_hex(3)}"
            if final.exists():
                os.replace(final, old)
            os.replace(root / stage, final)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if root is not None:
            ctx._roots.pop(stage, None)
            shutil.rmtree(root, ignore_errors=True)
    extra = f" — {res['reason']}" if res["status"] != "ok" else ""
    _say(f"stage {stage}: {res['status']} in {wall:.1f} s{extra}")
    return res


def _run_stages(ctx: DemoContext, todo, *, in_place: bool) -> dict:
    results = {}
    for st in todo:
        try:
            results[st] = run_stage(ctx, st, in_place=in_place)
        except StageMissing as exc:
            if not any(r in todo for r in REQUIRES[st]):
                raise  # run alone without its inputs: tell the user which stage to run
            res = {"status": "skipped", "reason": str(exc), "stage": st,
                   "wall_time_s": 0.0, "time_limit_s": ctx.time_limit(st)}
            if not in_place:
                res = ctx.write_result(st, res)
            results[st] = res
            _say(f"stage {st}: skipped — {exc}")
    return results


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if (p.is_file() or p.is_symlink()) and p.name != MANIFEST
                  and not any(part.startswith(".") and ".partial-" in part for part in p.parts))


def _open_in_place(out: Path, cfg: dict) -> None:
    """Check that ``out`` is absent, empty or a demo folder made with the same settings."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        conf = out / "config.json"
        if not (conf.is_file() and (out / MANIFEST).is_file()):
            raise InputError(f"--stage reruns stages inside a cgkit demo output folder, and {out} is "
                             "not one (no config.json and manifest); run the whole demo into it "
                             "first or choose an empty --out")
        try:
            old = loads_strict(conf.read_text())
        except (ValueError, OSError) as exc:
            raise InputError(f"{conf} is unreadable ({exc}); run the whole demo into a new --out") from exc
        diff = [f"--{k} {old.get(k)} (asked: {cfg[k]})" for k in _SHARED if old.get(k) != cfg[k]]
        if diff:
            raise InputError(f"{out} was made with {', '.join(diff)}; rerun its stages with the same "
                             "--size/--steps/--seed, or run the whole demo into a new --out")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", cfg, indent=1)


def run_demo(out="demo_output", *, size: str = "default", steps: float = 1.0, seed: int = 0,
             stages=None, progress: bool = True, time_limit_scale: float = 1.0,
             overwrite: bool = False) -> dict:
    """Run the demo stages into ``out``; returns {stage: result}.

    ``stages=None`` runs them all into a new output folder (:class:`cgkit.outputs.OutputFolder`:
    refused when ``out`` is not empty unless ``overwrite``). ``stages``: names from
    :data:`STAGES` (run in the canonical order) rerun in place in an existing demo folder
    (each stage replaced atomically; see the module docstring).
    """
    cfg = make_config(size, steps, seed, time_limit_scale)
    unknown = sorted(set(stages or ()) - set(STAGES))
    if unknown:
        raise InputError(f"unknown stage(s) {unknown}; choose from {', '.join(STAGES)}")
    out = Path(out)
    if not stages:
        with OutputFolder(out, overwrite=overwrite, command="demo") as staging:
            ctx = DemoContext(staging, cfg, progress=progress, display_out=out)
            write_json(staging / "config.json", cfg, indent=1)
            return _run_stages(ctx, list(STAGES), in_place=False)
    existed_empty = out.is_dir() and not any(out.iterdir())
    new = not out.exists() or existed_empty
    _open_in_place(out, cfg)
    ctx = DemoContext(out, cfg, progress=progress)
    todo = [s for s in STAGES if s in set(stages)]
    try:
        results = _run_stages(ctx, todo, in_place=True)
    except BaseException:
        if new:  # refused or interrupted in a folder this call started: leave nothing behind
            shutil.rmtree(out, ignore_errors=True)
            if existed_empty:
                out.mkdir(exist_ok=True)
        else:
            write_json(out / MANIFEST, {"command": "demo", "files": _listing(out)})
        raise
    write_json(out / MANIFEST, {"command": "demo", "files": _listing(out)})
    return results
