"""``cgkit demo``: the whole multiscale chain on a built-in default, with a report.

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
from .runner import DemoContext, StageMissing, run_demo, run_stage

__all__ = ["run_demo", "run_stage", "DemoContext", "StageMissing", "STAGES", "SIZES", "TARGETS",
           "make_config"]
