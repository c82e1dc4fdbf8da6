"""Stage plumbing of ``cgkit demo``: a context (output folder, config, budgets), stage
results on disk (``<out>/<stage>/result.json``) and the loop that runs the stages.

Each stage module exposes ``run(ctx) -> dict``; the dict holds the stage's numbers, a
``figures`` list (PNG paths relative to the output folder) and optionally ``status``
(``"ok"`` / ``"skipped"``) with a ``reason``. Stages read what earlier stages wrote, so any
stage can be run alone once its inputs exist.
"""
from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

import numpy as np

from ..errors import CgkitError, InputError
from .config import STAGES, make_config

__all__ = ["DemoContext", "run_demo", "StageMissing"]

#: module implementing each stage
_MODULES = {"teacher": "teacher", "atomistic": "atomistic", "forcematch": "forcematch",
            "cg": "cgmd", "silicon": "silicon", "report": "report"}
#: stages whose outputs each stage reads
REQUIRES = {"teacher": (), "atomistic": ("teacher",), "forcematch": ("teacher", "atomistic"),
            "cg": ("teacher", "atomistic", "forcematch"), "silicon": ("teacher",), "report": ()}


class StageMissing(InputError):
    """A stage needs the output of an earlier stage that has not been run."""


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if np.isfinite(v) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


class DemoContext:
    """Output folder, configuration and helpers shared by the stages."""

    def __init__(self, out, config: dict, *, progress: bool = True):
        self.out = Path(out)
        self.cfg = config
        self.seed = int(config["seed"])
        self.progress = progress
        self.out.mkdir(parents=True, exist_ok=True)
        self._t0 = {}

    def dir(self, stage: str) -> Path:
        d = self.out / stage
        d.mkdir(parents=True, exist_ok=True)
        return d

    def budget(self, stage: str) -> float:
        return float(self.cfg["budget_s"][stage])

    def result_path(self, stage: str) -> Path:
        return self.out / stage / "result.json"

    def read_result(self, stage: str, *, needed_by: str | None = None) -> dict:
        p = self.result_path(stage)
        if not p.is_file():
            if needed_by is None:
                return {}
            raise StageMissing(f"stage '{needed_by}' needs the output of stage '{stage}' in {self.out}; "
                               f"run `cgkit demo --out {self.out} --stage {stage}` first (or the whole demo)")
        res = json.loads(p.read_text())
        if needed_by is not None and res.get("status") != "ok":
            raise StageMissing(f"stage '{needed_by}' needs stage '{stage}', which did not complete "
                               f"({res.get('reason', res.get('status'))}); rerun it")
        return res

    def need(self, stage: str, path: Path, needed_by: str) -> Path:
        """``path`` written by ``stage``, or a StageMissing error naming the command to run."""
        path = Path(path)
        if not path.exists():
            raise StageMissing(f"stage '{needed_by}' needs {path} from stage '{stage}'; run "
                               f"`cgkit demo --out {self.out} --stage {stage}` first (or the whole demo)")
        return path

    def rel(self, path) -> str:
        return str(Path(path).resolve().relative_to(self.out.resolve()))

    def write_result(self, stage: str, result: dict) -> dict:
        result = _jsonable(result)
        p = self.result_path(stage)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(result, indent=1))
        return result


def _say(msg: str) -> None:
    print(f"[cgkit demo] {msg}", flush=True)


def run_stage(ctx: DemoContext, stage: str) -> dict:
    """Run one stage; record its wall time and budget; errors become a 'failed' result."""
    if stage not in STAGES:
        raise InputError(f"unknown stage '{stage}'; choose from {', '.join(STAGES)}")
    module = importlib.import_module(f"{__package__}.{_MODULES[stage]}")
    _say(f"stage {stage}: started (budget {ctx.budget(stage):.0f} s)")
    t0 = time.perf_counter()
    try:
        res = module.run(ctx)
        res.setdefault("status", "ok")
    except StageMissing:
        raise
    except CgkitError as exc:
        res = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
    except Exception as exc:  # noqa: BLE001 - a broken stage must not hide the others' report
        import traceback
        res = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}",
               "traceback": traceback.format_exc(limit=6)}
    wall = time.perf_counter() - t0
    res["wall_time_s"] = wall
    res["budget_s"] = ctx.budget(stage)
    res["stage"] = stage
    res = ctx.write_result(stage, res)
    extra = f" — {res['reason']}" if res["status"] != "ok" else ""
    _say(f"stage {stage}: {res['status']} in {wall:.1f} s{extra}")
    return res


def run_demo(out="demo_output", *, size: str = "default", steps: float = 1.0, seed: int = 0,
             stages=None, progress: bool = True, time_scale: float = 1.0) -> dict:
    """Run the demo stages (all by default) into ``out``; returns {stage: result}.

    ``stages``: names from :data:`STAGES` (run in the canonical order). The report stage is
    always cheap and is re-run at the end of a full run.
    """
    cfg = make_config(size, steps, seed, time_scale)
    ctx = DemoContext(out, cfg, progress=progress)
    (ctx.out / "config.json").write_text(json.dumps(cfg, indent=1))
    todo = list(STAGES) if not stages else [s for s in STAGES if s in set(stages)]
    unknown = sorted(set(stages or ()) - set(STAGES))
    if unknown:
        raise InputError(f"unknown stage(s) {unknown}; choose from {', '.join(STAGES)}")
    results = {}
    for st in todo:
        try:
            results[st] = run_stage(ctx, st)
        except StageMissing as exc:
            if not any(r in todo for r in REQUIRES[st]):
                raise  # run alone without its inputs: tell the user which stage to run
            res = {"status": "skipped", "reason": str(exc), "stage": st,
                   "wall_time_s": 0.0, "budget_s": ctx.budget(st)}
            results[st] = ctx.write_result(st, res)
            _say(f"stage {st}: skipped — {exc}")
    return results
