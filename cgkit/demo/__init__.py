"""``cgkit demo``: the whole multiscale chain on a built-in default, with a report.

Every budget is a number of epochs, MD steps or IBI iterations with seeds derived from
``--seed``, so the same command gives the same numbers on any machine (wall times and speeds
aside: :func:`cgkit.demo.runner.reproducible_part`). Each stage has a wall-clock *safety*
limit; reaching it fails the stage (reported in ``summary.json`` and the report).

A whole run is written through :class:`cgkit.outputs.OutputFolder` (atomic; a non-empty
``--out`` is refused without ``--overwrite``). ``--stage NAME`` is the one in-place mode: it
reruns single stages inside an existing demo folder, each stage's folder replaced atomically.

Stages (each runnable alone with ``--stage NAME`` once its inputs exist):

a. ``teacher``    — TraPPE-UA polyethylene melt and Stillinger–Weber silicon sampled and
   labelled; a small ENNP distilled from each (:mod:`cgkit.demo.teacher`);
b. ``atomistic``  — ENNP-driven Langevin MD of the melt (:mod:`cgkit.demo.atomistic`);
c. ``forcematch`` — 4:1 mapping (``mappings/polyethylene_ua_4to1.yaml``) and spline MS-CG
   (:mod:`cgkit.demo.forcematch`);
d. ``cg``         — CG MD with the fitted tables, structure comparison with the mapped
   atomistic trajectory and the speed-up (:mod:`cgkit.demo.cgmd`);
e. ``silicon``    — phonons and elastic constants, ENNP beside SW (:mod:`cgkit.demo.silicon`);
f. ``report``     — ``report/index.html``, ``report/report.md``, ``summary.json``
   (:mod:`cgkit.demo.report`).
"""
from .config import SIZES, STAGES, TARGETS, make_config
from .runner import DemoContext, StageMissing, reproducible_part, run_demo, run_stage

__all__ = ["run_demo", "run_stage", "DemoContext", "StageMissing", "STAGES", "SIZES", "TARGETS",
           "make_config", "reproducible_part"]
