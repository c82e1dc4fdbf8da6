"""Control for a pool study's label-count ratios: are they a training-schedule effect?

In ``pool_study.py`` every strategy warm-starts its committee with the same fixed number of steps
per iteration, so a large label set gets fewer epochs than a small one. This script takes the
label sets a pool study chose (``DIR/STRATEGY_seedS/iter_K/train_0.extxyz``: the seed set plus
every pick up to iteration K) and trains a fresh committee (cold start, the config's model) on
each with one fixed, larger budget (``--train``), then reports the test-set force RMSE, overall
and per regime. If random's set of N labels, trained this way, is still no better than σ's set
of N/2 labels, the ratio does not come from under-training the larger set.

Run (about 5 min per label set and seed for the 19-molecule xTB set on one core):
  python retrain_control.py --config qm_xtb_molset.yaml --study STUDY_DIR --seeds 0 1 2 \\
      --sets sigma_rms:139 random:139 random:279 --train '{max_steps: 8000}' --out control.json
"""
import argparse
import copy
import json
from pathlib import Path

import yaml

from pool_study import HERE, test_errors, train_committee


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--study", required=True, help="the pool study's --out folder")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--sets", nargs="+", required=True, help="STRATEGY:LABELS, e.g. random:279")
    ap.add_argument("--train", default="{max_steps: 8000}", help="YAML mapping replacing committee.train keys")
    ap.add_argument("--out", required=True, help="JSON file to write (results so far kept on rerun)")
    args = ap.parse_args()
    from ase.io import read
    from cgkit.learn.config import merge_config
    cfg = merge_config(yaml.safe_load(Path(args.config).read_text()))
    cfg["committee"]["train"] = {**(cfg["committee"]["train"] or {}), **yaml.safe_load(args.train)}
    cfg["committee"]["warm_start"] = False
    test = read(str(HERE / cfg["test"]["file"]), ":")
    study = Path(args.study)
    out = Path(args.out)
    res = json.loads(out.read_text()) if out.is_file() else {"train": cfg["committee"]["train"], "sets": {}}
    for seed in args.seeds:
        for spec in args.sets:
            strategy, n = spec.split(":")
            key = f"{strategy}:{n}:seed{seed}"
            if key in res["sets"]:
                continue
            src, frames = None, []
            for f in sorted((study / f"{strategy}_seed{seed}").glob("iter_*/train_0.extxyz")):
                frames = read(str(f), ":")
                if len(frames) == int(n):
                    src = f
                    break
            if src is None:
                raise SystemExit(f"{study}/{strategy}_seed{seed} has no iteration with {n} labels")
            d = study / "control" / f"{strategy}_{n}_seed{seed}"
            committee = train_committee(copy.deepcopy(cfg), frames, d, 0, seed, None, False)
            res["sets"][key] = {"strategy": strategy, "labels": int(n), "seed": seed, "from": str(src),
                                "test": test_errors(committee, test)}
            print(f"{key}: test RMSE {res['sets'][key]['test']['all']:.4f} eV/Å", flush=True)
            tmp = out.with_name(out.name + ".partial")
            tmp.write_text(json.dumps(res, indent=1))
            tmp.replace(out)


if __name__ == "__main__":
    main()
