"""Pool-based study of selection strategies for the EMT copper case (issue 16's data-efficiency
question, with exploration held fixed so that only the choice of frames differs).

The pool is what a user's MD produces: ASE Langevin MD driven by the teacher (EMT) from the
three start structures of ``cu_emt.yaml`` (fcc bulk 32 atoms, (111) slab 16 atoms, bulk with a
vacancy 31 atoms) at its temperatures (300, 900, 1800 K) and strains (0 and +3 %: isotropic for
the bulk cells, in-plane for the slab), ``--md-steps`` steps of 2 fs each, one frame every
``--sample-every`` steps after ``--skip`` steps. Every strategy of one seed draws from the same
pool (the pool's MD seeds depend on the seed). With ``--pool-file`` the pool is read from a
file instead (e.g. the frames the committee explored in `cgkit learn` runs, labelled by EMT).

Each run starts from the loop's seed set (2 rattled copies, 0.08 Å, of each start structure:
6 labels), trains the config's committee (3 members, cold start), then repeats: score every
unlabelled pool frame, label the ``--batch`` best, retrain (warm start, as the loop does). The
test-set force RMSE (``cu_test.extxyz``, 10 frames per regime) after every retraining is the
learning curve. Strategies:

* ``random``: uniform draws from the unlabelled pool (the baseline);
* ``sigma_rms`` / ``sigma_max``: the largest RMS / largest per-atom committee σ_F first, with
  the descriptor exclusion radius of :func:`cgkit.learn.selection.max_sigma_diverse` (the loop's
  ``sigma`` method; a single calibration scale does not change this ranking);
* ``oracle``: the largest TRUE RMS force error of the committee mean first (uses the hidden
  labels: an upper bound for any greedy selection by a per-frame score), same exclusion;
* ``oracle_nodiv``: the same without the exclusion radius;
* ``mix``: half of each batch by ``sigma_rms``, the other half uniform from the rest of the pool;
* ``kmeans``: σ-weighted k-means (weights σ²) of the unlabelled frames' descriptors into
  ``--batch`` clusters, the largest-σ frame of each (batch diversity).

``--bootstrap``: every member trains on a bootstrap resample of the labels (different per member
and iteration) instead of all of them.

Writes OUT/pool_study.json (curves per seed and strategy, per-regime test errors, labels to reach
``--targets``, ratios random/strategy with mean, std, min, max over seeds) and OUT/curves.png.
Finished runs in OUT are reused, so the same command with other targets only recomputes numbers;
with more ``--iterations`` a run is replayed from its saved committees (same picks) and extended.
``--temperatures``/``--strains`` replace the config's exploration grid for the teacher pool (e.g.
a temperature ladder); the pool's composition (frames per regime: a frame whose atoms moved
≥ 0.7 Å RMS from the run's start counts as liquid, else as its start structure's regime) is
written to the JSON, and every pick is tagged with its regime.

Run (about 5 min per strategy and seed on one shared core; 4 strategies x 3 seeds about 1 h):
  python pool_study.py --out cu_pool --seeds 0 1 2 --strategies random sigma_rms sigma_max oracle
"""
import argparse
import copy
import json
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent


def teacher_calculator(cfg):
    """A fresh ASE calculator of the config's teacher, as the loop's labeller builds it (``ase:EMT``,
    ``cgkit:sw``, ``ase:tblite.ase.TBLite:...``, a model file)."""
    from cgkit.io_potential import load_calculator
    return load_calculator(cfg["teacher"])


def teacher_pool(cfg, seed, md_steps, sample_every, skip, temperatures=None, strains=None, repeats=1):
    """Teacher Langevin MD pool: one run per start structure × temperature (K) × strain (strains
    only for periodic structures), ``md_steps`` steps of the config's ``exploration.timestep_fs``
    (for molecules ASE's ``fixcm``: no thermostat noise on the centre of mass), a frame every ``sample_every`` steps after ``skip``;
    ``repeats`` independent runs (other MD seeds) of each. Each frame's
    ``info`` holds structure index, temperature_K, strain, md_step and ``rms_disp`` (Å): the RMS
    displacement of the atoms from the run's start, centre-of-mass drift removed (≳ 0.7 Å means
    the atoms diffuse: melted)."""
    from ase import units
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.md.langevin import Langevin
    from cgkit.learn import apply_strain, in_plane_strain
    from cgkit.learn.config import build_structures
    from cgkit.sampling import thermalize
    e = cfg["exploration"]
    dt = float(e.get("timestep_fs", 2.0))
    pool = []
    j = 0
    temperatures = e["temperatures"] if temperatures is None else temperatures
    strains = e.get("strains", [0.0]) if strains is None else strains
    for s, a0 in enumerate(build_structures(cfg["structures"], HERE)):
        for T in temperatures:
            for eps, rep in [(eps, r) for eps in strains for r in range(int(repeats))]:
                j += 1
                if eps and not a0.pbc.any():
                    continue  # a molecule has no cell to strain
                a = apply_strain(a0, in_plane_strain(a0, eps)) if eps else a0.copy()
                a.calc = teacher_calculator(cfg)
                rng_seed = 100000 * (seed + 1) + 97 * j
                thermalize(a, T, np.random.default_rng(rng_seed))
                md = Langevin(a, dt * units.fs, temperature_K=T, friction=0.02 / units.fs,
                              fixcm=not a.pbc.any(),
                              rng=np.random.default_rng(rng_seed + 1))
                x0 = a.positions.copy()
                for step in range(sample_every, md_steps + 1, sample_every):
                    md.run(sample_every)
                    if step <= skip:
                        continue
                    b = a.copy()
                    b.calc = SinglePointCalculator(b, energy=a.get_potential_energy(), forces=a.get_forces())
                    u = a.positions - x0
                    u -= u.mean(axis=0)
                    b.info.update(structure=s, temperature_K=float(T), strain=float(eps), md_step=step, repeat=rep,
                                  rms_disp=float(np.sqrt((u ** 2).sum(axis=1).mean())))
                    pool.append(b)
    return pool


MELT_RMS_DISP = 0.7  # Å: RMS displacement from the run's start above which a frame counts as melted


def frame_regime(a, names):
    """Test-set regime of a pool frame: 'liquid' if its atoms diffused (rms_disp ≥ MELT_RMS_DISP;
    periodic frames only: a molecule's large displacement is not a melt), else the name of its
    start structure (``names[structure]``)."""
    if a.pbc.any() and a.info.get("rms_disp", 0.0) >= MELT_RMS_DISP:
        return "liquid"
    k = int(a.info["structure"])
    return names[k] if k < len(names) else f"structure{k}"


def pool_composition(pool, names):
    """Frames per regime (see frame_regime), per temperature (K) and per (structure, T, strain)."""
    from collections import Counter
    reg = Counter(frame_regime(a, names) for a in pool)
    temp = Counter(f"{a.info['temperature_K']:g}" for a in pool)
    runs = Counter(f"{names[int(a.info['structure'])] if int(a.info['structure']) < len(names) else a.info['structure']}"
                   f" {a.info['temperature_K']:g}K strain{a.info['strain']:g}" for a in pool)
    melted = Counter(f"{a.info['temperature_K']:g}" for a in pool if frame_regime(a, names) == "liquid")
    return {"frames": len(pool), "per_regime": dict(sorted(reg.items())),
            "per_temperature_K": dict(sorted(temp.items(), key=lambda kv: float(kv[0]))),
            "melted_per_temperature_K": dict(sorted(melted.items(), key=lambda kv: float(kv[0]))),
            "per_run": dict(sorted(runs.items()))}


def seed_set(cfg, seed):
    from ase.calculators.singlepoint import SinglePointCalculator
    from cgkit.learn.config import build_structures
    ss = cfg["seed_set"]
    rng = np.random.default_rng(seed)
    teacher = teacher_calculator(cfg)
    out = []
    for a in build_structures(cfg["structures"], HERE):
        for _ in range(ss["n_rattled"]):
            b = a.copy()
            b.positions = b.positions + rng.normal(scale=ss["rattle"], size=b.positions.shape)
            b.calc = teacher
            e, f = b.get_potential_energy(), b.get_forces()
            b.calc = SinglePointCalculator(b, energy=e, forces=f)
            out.append(b)
    return out


def train_committee(cfg, frames, d, it, seed, prev_dir, bootstrap):
    from ase.io import write
    from cgkit.ensemble import EnsemblePotential
    from cgkit.io_potential import load_potential
    from cgkit.train.trainer import Trainer
    c = cfg["committee"]
    d.mkdir(parents=True, exist_ok=True)
    members = []
    for m in range(int(c["size"])):
        md = d / f"member_{m}"
        if (md / "model.pt").is_file():
            members.append(load_potential(str(md / "model.pt")))
            continue
        data = frames
        if bootstrap:
            rng = np.random.default_rng(seed * 7919 + 1000 * m + it)
            data = [frames[i] for i in rng.integers(0, len(frames), len(frames))]
        write(str(d / f"train_{m}.extxyz"), data, format="extxyz")
        tcfg = copy.deepcopy(c["train"])
        tcfg["output"] = str(md)
        tcfg["seed"] = int(seed) + 1000 * m + it
        # as the loop: every label trains unless the config asks for a validation split
        tcfg["data"] = {"val_fraction": 0.0, **(tcfg.get("data") or {}), "train": str(d / f"train_{m}.extxyz")}
        prev = prev_dir / f"member_{m}" / "model.pt" if prev_dir is not None else None
        if prev is not None and c.get("warm_start", True) and prev.is_file():
            tcfg["model"] = {"file": str(prev)}
            tcfg.update(copy.deepcopy(c.get("warm_start_train") or {}))
        else:
            tcfg["model"] = {**c["model"], "species": list(cfg["species"])}
        tr = Trainer(tcfg, resume=None, progress=False)
        tr.run()
        members.append(load_potential(str(md / "model.pt")))
    return EnsemblePotential(members)


def frame_scores(committee, frames):
    """Per frame: RMS and max committee σ_F (eV/Å) and the true RMS force error of the mean."""
    from cgkit.uncertainty import committee_predictions
    p = committee_predictions(committee, frames, raw=True)
    f_ref = np.concatenate([a.get_forces() for a in frames])
    err2 = np.sum((p["forces"] - f_ref) ** 2, axis=1)
    g = p["structure"]
    n = np.bincount(g)
    rms = np.sqrt(np.bincount(g, p["forces_std"] ** 2) / n)
    mx = np.array([p["forces_std"][g == k].max() for k in range(len(frames))])
    true = np.sqrt(np.bincount(g, err2) / n)
    return {"sigma_rms": rms, "sigma_max": mx, "oracle": true, "oracle_nodiv": true}


def weighted_kmeans(X, w, k, rng, n_iter=50):
    """Cluster labels (G,) of rows of X into k clusters, Lloyd iterations with weights w (G,),
    k-means++ start drawn with probability ∝ w·d²."""
    X = np.asarray(X, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64) + 1e-300
    C = [X[rng.choice(len(X), p=w / w.sum())]]
    for _ in range(1, k):
        d2 = np.min(((X[:, None, :] - np.array(C)[None]) ** 2).sum(-1), axis=1)
        p = w * d2
        C.append(X[rng.choice(len(X), p=p / p.sum())] if p.sum() > 0 else X[rng.integers(len(X))])
    C = np.array(C)
    for _ in range(n_iter):
        lab = np.argmin(((X[:, None, :] - C[None]) ** 2).sum(-1), axis=1)
        new = np.array([np.average(X[lab == c], axis=0, weights=w[lab == c]) if np.any(lab == c) else C[c]
                        for c in range(k)])
        if np.allclose(new, C):
            break
        C = new
    return lab


def test_errors(committee, test):
    from cgkit.learn.pareto import held_out_errors
    out = {"all": held_out_errors(committee, test)["forces_rmse_eV_per_A"]}
    for reg in sorted({a.info.get("regime", "") for a in test}):
        out[reg] = held_out_errors(committee, [a for a in test if a.info.get("regime", "") == reg])[
            "forces_rmse_eV_per_A"]
    return out


def run_one(cfg, strategy, seed, pool, X, test, out, batch, n_iter, bootstrap, exclusion_quantile,
            names=("crystal", "surface", "vacancy")):
    from cgkit.learn.selection import max_sigma_diverse
    run_dir = out / f"{strategy}_seed{seed}"
    res_file = run_dir / "run.json"
    if res_file.is_file():  # a finished run; a longer one is redone from its saved committees
        rec = json.loads(res_file.read_text())
        if len(rec["curve"]) >= n_iter + 1:
            return {**rec, "curve": rec["curve"][:n_iter + 1], "picks": rec["picks"][:n_iter]}
    seeds = seed_set(cfg, seed)
    labelled = list(seeds)
    chosen = []
    curve, picks = [], []
    prev = None
    rng = np.random.default_rng(seed * 104729 + 17)
    for it in range(n_iter + 1):
        d = run_dir / f"iter_{it:03d}"
        shared = out / f"shared_seed{seed}" / "iter_000"
        if it == 0:  # every strategy of a seed starts from the same committee
            committee = train_committee(cfg, labelled, shared, 0, seed, None, bootstrap)
            d = shared
        else:
            committee = train_committee(cfg, labelled, d, it, seed, prev, bootstrap)
        prev = d
        te = test_errors(committee, test)
        curve.append([len(labelled), te])
        print(f"  {strategy} seed {seed}: {len(labelled)} labels, test RMSE {te['all']:.4f} eV/Å", flush=True)
        if it == n_iter:
            break
        free = np.array([i for i in range(len(pool)) if i not in set(chosen)])
        if strategy == "random":
            pick = sorted(rng.choice(free, size=batch, replace=False).tolist())
        elif strategy == "mix":  # half by sigma_rms (with exclusion), half uniform from the rest
            sc = frame_scores(committee, [pool[i] for i in free])["sigma_rms"]
            loc = max_sigma_diverse(sc, X[free], (batch + 1) // 2, exclusion_quantile=exclusion_quantile)
            pick = [int(free[i]) for i in loc]
            rest = np.array([i for i in free if i not in set(pick)])
            pick += sorted(rng.choice(rest, size=batch - len(pick), replace=False).tolist())
        elif strategy == "kmeans":  # σ-weighted k-means in descriptor space, max σ per cluster
            sc = frame_scores(committee, [pool[i] for i in free])["sigma_rms"]
            lab = weighted_kmeans(X[free], sc ** 2, batch, rng)
            pick = []
            for c in range(batch):
                members = np.flatnonzero(lab == c)
                if len(members):
                    pick.append(int(free[members[np.argmax(sc[members])]]))
            rest = [i for i in np.argsort(-sc) if int(free[i]) not in set(pick)]
            pick += [int(free[i]) for i in rest[:batch - len(pick)]]
        else:
            sc = frame_scores(committee, [pool[i] for i in free])[strategy]
            q = 0.0 if strategy == "oracle_nodiv" else exclusion_quantile
            loc = max_sigma_diverse(sc, X[free], batch, exclusion_quantile=q)
            pick = [int(free[i]) for i in loc]
        chosen += pick
        labelled += [pool[i] for i in pick]
        picks.append([{"index": int(i), "structure": int(pool[i].info["structure"]),
                       "T": float(pool[i].info["temperature_K"]), "strain": float(pool[i].info["strain"]),
                       "regime": frame_regime(pool[i], names)}
                      for i in pick])
    rec = {"strategy": strategy, "seed": seed, "curve": curve, "picks": picks}
    run_dir.mkdir(parents=True, exist_ok=True)
    res_file.write_text(json.dumps(rec, indent=1))
    return rec


def labels_to_reach(pts, target):
    """First label count where the log-linearly interpolated curve [(n, err), ...] reaches target."""
    if pts and pts[0][1] <= target:
        return float(pts[0][0])
    for (n0, e0), (n1, e1) in zip(pts, pts[1:]):
        if e1 <= target < e0:
            t = (np.log(e0) - np.log(target)) / (np.log(e0) - np.log(e1))
            return float(n0 + t * (n1 - n0))
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(HERE / "cu_emt.yaml"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--strategies", nargs="+", default=["random", "sigma_rms", "sigma_max", "oracle"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--md-steps", type=int, default=300)
    ap.add_argument("--sample-every", type=int, default=10)
    ap.add_argument("--skip", type=int, default=0, help="MD steps before the first pool frame")
    ap.add_argument("--temperatures", type=float, nargs="+", default=None,
                    help="pool MD temperatures (K) instead of the config's exploration.temperatures")
    ap.add_argument("--strains", type=float, nargs="+", default=None,
                    help="pool MD strains instead of the config's exploration.strains")
    ap.add_argument("--repeats", type=int, default=1, help="independent MD runs per structure, T and strain")
    ap.add_argument("--regime-names", nargs="+", default=["crystal", "surface", "vacancy"],
                    help="test-set regime of each start structure (unmelted frames) for the pool composition")
    ap.add_argument("--pool-file", default=None, help="labelled extxyz/traj pool instead of teacher MD")
    ap.add_argument("--bootstrap", action="store_true")
    ap.add_argument("--exclusion-quantile", type=float, default=0.1)
    ap.add_argument("--model", default=None, help="YAML mapping replacing committee.model keys")
    ap.add_argument("--train", default=None, help="YAML mapping replacing committee.train keys")
    ap.add_argument("--warm-train", default=None, help="YAML mapping replacing committee.warm_start_train keys")
    ap.add_argument("--targets", type=float, nargs="+", default=[0.06, 0.05, 0.045, 0.04])
    args = ap.parse_args()
    from ase.io import read, write
    from cgkit.learn.config import merge_config
    from cgkit.learn.selection import structure_descriptors
    from cgkit.plotting import pyplot, savefig
    cfg = merge_config(yaml.safe_load(Path(args.config).read_text()))
    for key, val in (("model", args.model), ("train", args.train), ("warm_start_train", args.warm_train)):
        if val:
            cfg["committee"][key] = {**(cfg["committee"][key] or {}), **yaml.safe_load(val)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    test = read(str(HERE / cfg["test"]["file"]), ":")
    results = {"args": vars(args), "committee": cfg["committee"], "runs": []}
    for seed in args.seeds:
        pf = out / f"pool_seed{seed}.extxyz"
        if args.pool_file:
            pool = read(args.pool_file, ":")
        elif pf.is_file():
            pool = read(str(pf), ":")
        else:
            pool = teacher_pool(cfg, seed, args.md_steps, args.sample_every, args.skip,
                                args.temperatures, args.strains, repeats=args.repeats)
            write(str(pf), pool, format="extxyz")
        X = structure_descriptors(pool, cfg["species"])
        comp = pool_composition(pool, args.regime_names)
        results.setdefault("pool_composition", {})[str(seed)] = comp
        print(f"seed {seed}: pool of {len(pool)} frames, per regime {comp['per_regime']}", flush=True)
        for strategy in args.strategies:
            rec = run_one(cfg, strategy, seed, pool, X, test, out, args.batch, args.iterations,
                          args.bootstrap, args.exclusion_quantile, args.regime_names)
            results["runs"].append(rec)
            (out / "pool_study.json").write_text(json.dumps(results, indent=1))
    summ = {}
    for target in args.targets:
        summ[str(target)] = {}
        for strategy in args.strategies:
            need = []
            for seed in args.seeds:
                r = next(r for r in results["runs"] if r["seed"] == seed and r["strategy"] == strategy)
                need.append(labels_to_reach([(n, e["all"]) for n, e in r["curve"]], target))
            ratios = []
            for seed, n in zip(args.seeds, need):
                rr = next(r for r in results["runs"] if r["seed"] == seed and r["strategy"] == "random")
                nr = labels_to_reach([(n_, e["all"]) for n_, e in rr["curve"]], target)
                ratios.append(None if n is None or nr is None else nr / n)
            ok = [x for x in ratios if x is not None]
            summ[str(target)][strategy] = {
                "labels": need, "random_over_strategy": ratios,
                "ratio_mean": float(np.mean(ok)) if ok else None, "ratio_std": float(np.std(ok)) if ok else None,
                "ratio_min": float(np.min(ok)) if ok else None, "ratio_max": float(np.max(ok)) if ok else None,
                "not_reached": sum(n is None for n in need)}
    results["labels_to_target"] = summ
    curves = {}
    for strategy in args.strategies:
        runs = [r for r in results["runs"] if r["strategy"] == strategy]
        ns = [n for n, _ in runs[0]["curve"]]
        curves[strategy] = {"labels": ns}
        for reg in runs[0]["curve"][0][1]:
            es = np.array([[e[reg] for _, e in r["curve"]] for r in runs])
            curves[strategy][reg] = {"mean": es.mean(0).tolist(), "std": es.std(0).tolist(),
                                     "min": es.min(0).tolist(), "max": es.max(0).tolist()}
    results["mean_curves"] = curves
    (out / "pool_study.json").write_text(json.dumps(results, indent=1))
    plt = pyplot()
    regs = [k for k in curves[args.strategies[0]] if k != "labels"]
    fig, axes = plt.subplots(1, len(regs), figsize=(3.2 * len(regs), 3.4), sharex=True)
    for ax, reg in zip(np.atleast_1d(axes), regs):
        for k, strategy in enumerate(args.strategies):
            c = curves[strategy]
            ax.plot(c["labels"], c[reg]["mean"], "o-", color=f"C{k}", ms=3, label=strategy)
            ax.fill_between(c["labels"], c[reg]["min"], c[reg]["max"], color=f"C{k}", alpha=0.15)
        ax.set_yscale("log"); ax.set_xlabel("labels"); ax.set_title(reg if reg != "all" else "all (test set)")
    np.atleast_1d(axes)[0].set_ylabel("test force RMSE (eV/Å)")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    savefig(fig, out / "curves.png")
    print(json.dumps({t: {s: (v["ratio_mean"], v["ratio_min"], v["ratio_max"], v["not_reached"])
                          for s, v in d.items()} for t, d in summ.items()}))


if __name__ == "__main__":
    main()
