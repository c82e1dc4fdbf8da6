"""``cgkit learn CONFIG.yaml --out DIR``: active learning of an ENNP committee with a teacher.

Trains a committee on a seed set, explores with uncertainty-aware MD (trust levels on the
calibrated per-atom force σ, eV/Å), selects diverse candidates (farthest-point sampling),
labels them with the teacher (any ASE calculator spec; serial, process pool or Dask) and
retrains, until few candidates remain, the label budget is spent or the iterations run out.
Writes DIR/model.pt (the final committee with its calibration, loadable by
cgkit.load_potential), DIR/summary.json, plots (selected.png, error_vs_labels.png,
sigma_vs_error.png, calibration.png), labels/ and iter_NNN/ folders.

Resume: run the same command again after an interruption (even kill -9): finished training,
exploration and labels are reused, nothing is labelled twice. Every config key, default and
unit: `cgkit learn --help` below and the docstring of cgkit.learn.config.
"""
from __future__ import annotations

import argparse

_EPILOG = """minimal config:
  teacher: ase:EMT
  species: [Cu]
  structures:
    - {bulk: Cu, crystalstructure: fcc, a: 3.61, cubic: true, repeat: [2, 2, 2]}

example:
  cgkit learn case_studies/active_learning/cu_emt.yaml --out cu_al/
"""


def register(subparsers):
    from ..learn.config import __doc__ as config_doc
    p = subparsers.add_parser("learn", help="active learning: explore, select, label, retrain",
                              description=__doc__ + "\n" + (config_doc or ""), epilog=_EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="learn config (YAML)")
    p.add_argument("--out", required=True, help="run folder (resumed if it holds a run of the same config)")
    p.add_argument("--overwrite", action="store_true",
                   help="remove an earlier learn run in --out and start over")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from pathlib import Path

    import yaml

    from ..errors import InputError
    from ..learn.loop import ActiveLearning

    path = Path(args.config)
    if not path.is_file():
        raise InputError(f"no config file '{path}'")
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"{path} is not valid YAML: {exc}") from None
    al = ActiveLearning(cfg or {}, args.out, base=path.parent, overwrite=args.overwrite,
                        progress=not args.quiet).run()
    r = al.results
    print(f"{r.stopped}; {r.n_labels} labels; wrote {Path(args.out) / 'model.pt'}, "
          f"{Path(args.out) / 'summary.json'}")
    return 0
