"""The active-learning loop behind ``cgkit learn`` (configuration: :mod:`cgkit.learn.config`).

Per iteration k:

1. **train** a committee of ``committee.size`` ENNPs on all labels so far (``cgkit train``'s
   :class:`~cgkit.train.trainer.Trainer`, one folder per member; from iteration 1 on warm-started
   from the previous members when ``committee.warm_start``);
2. **calibrate** its force/energy spreads on the *fresh* labels of earlier iterations — frames
   each committee had not seen when it predicted them (:class:`cgkit.uncertainty.Calibration`);
3. **explore**: Langevin MD of the committee from every structure at every temperature and
   strain, classified by the trust levels on the calibrated σ_F (:func:`~cgkit.learn.explore`);
4. **select** up to ``selection.max_per_iteration`` frames: by default (``selection.method:
   sigma``) over every explored frame below ``trust.hi``, the largest calibrated σ first, with a
   descriptor exclusion radius so that a batch spans different events
   (:func:`~cgkit.learn.selection.max_sigma_diverse`); ``fps`` picks candidates (between the
   trust levels) by farthest-point sampling in descriptor space, away from what is already
   labelled; ``uniform`` draws uniformly among the candidates, as DP-GEN does; ``random`` draws
   uniformly from every explored frame: the baseline active learning must beat. Frames with two
   atoms closer than ``exploration.min_distance_fraction`` × the start structure's shortest
   distance are unphysical and never selected, whatever the method;
5. **label** them with the teacher (:class:`~cgkit.learn.Labeller`: serial, process pool, Dask).

It stops when the fraction of candidates among the explored frames falls below
``stop.candidate_fraction`` (converged), when ``stop.label_budget`` labels are spent, or after
``stop.max_iterations`` iterations; the committee trained on every label is the result
(``OUT/model.pt``, an :class:`~cgkit.ensemble.EnsemblePotential` with its calibration, loadable by
:func:`cgkit.load_potential`).

Every phase leaves its result in ``OUT`` before the next starts (labels one file per frame,
atomic files, training checkpoints), so a run killed at any point is resumed by running the same
command again: nothing already labelled is labelled again, finished training is not repeated,
and the final set equals an uninterrupted run's. A different config in the same folder is
refused (only ``stop.*`` may change, to extend a run).
"""
from __future__ import annotations

import copy
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..jsonutil import dumps, loads_strict, write_json
from ..results import Analysis, Results
from .config import build_structures, merge_config, validate_config
from .exploration import TrustLevels, explore, in_plane_strain
from .labelling import Labeller, LabelStore, frame_key
from .selection import farthest_point_sampling, max_sigma_diverse, structure_descriptors

__all__ = ["ActiveLearning", "LEARN_FILES"]

#: what a learn run writes at the top of its folder (besides labels/ and iter_*/)
LEARN_FILES = ("learn_config.json", "state.json", "model.pt", "summary.json", "selected.png",
               "error_vs_labels.png", "sigma_vs_error.png", "calibration.png")


def _comparable(cfg: dict) -> dict:
    c = copy.deepcopy(cfg)
    c.pop("stop", None)
    if not c.get("selection", {}).get("random_share"):
        c.get("selection", {}).pop("random_share", None)  # runs made before the key existed resume
    return c


def _fingerprint(cfg: dict) -> str:
    text = json.dumps(json.loads(dumps(_comparable(cfg))), sort_keys=True)  # key order is not content
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _shortest_distance(atoms) -> float:
    """Shortest interatomic distance (Å, minimum image where periodic); inf for one atom."""
    if len(atoms) < 2:
        return float("inf")
    d = atoms.get_all_distances(mic=bool(atoms.pbc.any()))
    d[np.diag_indices_from(d)] = np.inf
    return float(d.min())


class ActiveLearning(Analysis):
    """``ActiveLearning(config, out).run()``: the loop of the module docstring.

    ``config``: dict (see :mod:`cgkit.learn.config`); ``base``: folder relative file names in the
    config are taken from; ``overwrite``: remove an earlier learn run's files in ``out`` first.
    Results: ``iterations`` (per iteration: labels, candidates, selected, test errors, fresh-label
    errors), ``n_labels``, ``stopped`` (why), ``model`` (path)."""

    def __init__(self, config: dict, out, *, base=None, overwrite: bool = False, progress: bool = True):
        self.config = validate_config(merge_config(config))
        self.out = Path(out)
        self.base = Path(base) if base is not None else Path.cwd()
        self.overwrite = bool(overwrite)
        self.progress = progress
        self.results = Results()
        self.structures = build_structures(self.config["structures"], self.base)
        species = set(self.config["species"])
        for k, a in enumerate(self.structures):
            extra = sorted(set(a.get_chemical_symbols()) - species)
            if extra:
                raise InputError(f"structure {k} has elements {extra} not in species {sorted(species)}")
        tf = self.config["test"]["file"]
        self.test = None
        if tf:
            from ase.io import read
            p = Path(tf) if Path(tf).is_absolute() else self.base / tf
            if not p.is_file():
                raise InputError(f"test.file: no file '{p}'")
            self.test = read(str(p), ":")
        lab = self.config["labelling"]
        self._labeller_args = dict(backend=lab["backend"], workers=int(lab["workers"]),
                                   address=lab["address"], jobqueue=lab["jobqueue"])
        Labeller(self.config["teacher"], **self._labeller_args)  # refuse a bad teacher/backend now

    # ------------------------------------------------------------------ folder and state
    def _say(self, msg: str) -> None:
        if self.progress:
            print(f"[learn {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def _open(self) -> dict:
        out = self.out
        if out.exists() and not out.is_dir():
            raise InputError(f"learn output {out} exists and is not a folder; choose another --out")
        cfg_file = out / "learn_config.json"
        if out.is_dir() and any(out.iterdir()):
            if not cfg_file.is_file():
                raise InputError(f"output folder {out} is not empty and holds no cgkit learn run; "
                                 "choose a new --out")
            if self.overwrite:
                import shutil
                for p in out.iterdir():
                    if p.name in LEARN_FILES or p.name == "labels" or p.name.startswith("iter_"):
                        shutil.rmtree(p) if p.is_dir() else p.unlink()
            else:
                old = loads_strict(cfg_file.read_text())
                if old.get("fingerprint") != _fingerprint(self.config):
                    raise InputError(f"{out} holds a cgkit learn run of a different config; only the "
                                     "stop.* budgets may change when resuming: restore the config, choose "
                                     "a new --out, or pass --overwrite to start over")
                self._say(f"resuming the run in {out}")
        out.mkdir(parents=True, exist_ok=True)
        write_json(cfg_file, {"fingerprint": _fingerprint(self.config), "config": self.config})
        state_file = out / "state.json"
        if state_file.is_file():
            return loads_strict(state_file.read_text())
        return {"iterations": [], "seed_keys": None}

    def _save_state(self, state: dict) -> None:
        write_json(self.out / "state.json", state)

    # ------------------------------------------------------------------ phases
    def _labeller(self) -> Labeller:
        return Labeller(self.config["teacher"], store=self.out / "labels", **self._labeller_args)

    def _seed_set(self, labeller: Labeller) -> list[str]:
        ss = self.config["seed_set"]
        frames = []
        if ss["file"]:
            from ase.io import read
            p = Path(ss["file"]) if Path(ss["file"]).is_absolute() else self.base / ss["file"]
            if not p.is_file():
                raise InputError(f"seed_set.file: no file '{p}'")
            frames = read(str(p), ":")
            keys = []
            store = LabelStore(self.out / "labels")
            for k, a in enumerate(frames):
                if a.calc is None or "forces" not in a.calc.results:
                    raise InputError(f"seed_set.file {p}: frame {k} has no energy/forces; give a labelled "
                                     "file or use seed_set.n_rattled")
                key = frame_key(a, self.config["teacher"])
                if key not in store:
                    store.put(key, a)
                keys.append(key)
            return keys
        rng = np.random.default_rng(self.config["seed"])
        for a in self.structures:
            for _ in range(ss["n_rattled"]):
                b = a.copy()
                b.positions = b.positions + rng.normal(scale=ss["rattle"], size=b.positions.shape)
                frames.append(b)
        self._say(f"seed set: labelling {len(frames)} rattled structures with {self.config['teacher']}")
        labeller(frames)
        return [frame_key(a, self.config["teacher"]) for a in frames]

    def _train(self, it: int, keys: list[str]):
        from ase.io import write
        from ..ensemble import EnsemblePotential
        from ..jsonutil import write_text_atomic  # noqa: F401 (atomic text below)
        from ..train.trainer import Trainer
        d = self.out / f"iter_{it:03d}"
        d.mkdir(exist_ok=True)
        store = LabelStore(self.out / "labels")
        frames = [store.get(k) for k in keys]
        data = d / "train.extxyz"
        tmp = d / ".train.extxyz.partial"
        write(str(tmp), frames, format="extxyz")
        tmp.replace(data)
        c = self.config["committee"]
        members = []
        for m in range(int(c["size"])):
            tcfg = copy.deepcopy(c["train"])
            tcfg["output"] = str(d / f"member_{m}")
            tcfg["seed"] = int(self.config["seed"]) + 1000 * m + it
            # every label trains unless the user asks for a validation split: the held-out
            # errors of the loop are the next iteration's fresh labels and the test file
            tcfg["data"] = {"val_fraction": 0.0, **(tcfg.get("data") or {}), "train": str(data)}
            prev = self.out / f"iter_{it - 1:03d}" / f"member_{m}" / "model.pt"
            if it > 0 and c["warm_start"] and prev.is_file():
                tcfg["model"] = {"file": str(prev)}
                tcfg.update(copy.deepcopy(c["warm_start_train"] or {}))
            else:
                tcfg["model"] = {**c["model"], "species": list(self.config["species"])}
            self._say(f"iteration {it}: training member {m + 1}/{c['size']} on {len(keys)} labels")
            tr = Trainer(tcfg, resume=None, progress=False)
            tr.run()
            members.append(tr.model)
        return EnsemblePotential(members)

    def _calibration(self, state: dict):
        """Calibration fitted on the fresh labels of earlier iterations: those of the batches'
        random shares when there are any (``selection.random_share`` > 0), else all."""
        from ..uncertainty import Calibration
        es, ee, fs, fe = [], [], [], []
        which = "fresh_random" if any(rec.get("fresh_random") for rec in state["iterations"]) else "fresh"
        for rec in state["iterations"]:
            f = rec.get(which)
            if f:
                es += f["energy_std"]; ee += f["energy_err"]; fs += f["forces_std"]; fe += f["forces_err"]
        if len(es) < 2 or len(fs) < 2:
            return Calibration()
        try:
            return Calibration.fit(es, ee, fs, fe, method=self.config["calibration"]["method"])
        except InputError:
            return Calibration()

    def _explore(self, it: int, committee) -> tuple[list, list, list, dict]:
        from ase.io import read, write
        d = self.out / f"iter_{it:03d}"
        marker = d / "exploration.json"
        cand_file, pool_file, fail_file = d / "candidates.traj", d / "explored.traj", d / "failed.traj"
        if marker.is_file():
            info = loads_strict(marker.read_text())
            cands = read(str(cand_file), ":") if info["n_candidates"] else []
            pool = read(str(pool_file), ":") if info["n_pool"] else []
            failed = read(str(fail_file), ":") if info.get("n_failed_frames") else []
            return cands, pool, failed, info
        e = self.config["exploration"]
        trust = TrustLevels(float(self.config["trust"]["lo"]), float(self.config["trust"]["hi"]))
        keep_all = (self.config["selection"]["method"] in ("random", "sigma")
                    or float(self.config["selection"]["random_share"]) > 0)
        frac = float(e["min_distance_fraction"])
        n_unphysical = 0
        cands, pool, failed = [], [], []
        counts = {"accurate": 0, "candidate": 0, "failed": 0}
        stopped = []
        jobs = [(s, a, T, eps) for s, a in enumerate(self.structures) for T in e["temperatures"]
                for eps in e["strains"]]
        skipped = sorted({s for s, a, T, eps in jobs if eps and not a.pbc.any()})
        if skipped:
            # a molecule or cluster has no cell to strain: its strained runs would duplicate the
            # unstrained ones, so they are not run
            self._say(f"iteration {it}: structures {skipped} are not periodic: their strained runs are "
                      "skipped (only exploration.strains 0 applies to them)")
            jobs = [(s, a, T, eps) for s, a, T, eps in jobs if not (eps and not a.pbc.any())]
        t0 = time.time()
        for j, (s, a, T, eps) in enumerate(jobs):
            # bulk: isotropic strain; slab: in its surface plane only (periodic directions)
            strain = in_plane_strain(a, eps) if eps else None
            res = explore(committee, a, temperature_K=float(T), n_steps=int(e["steps"]),
                          timestep_fs=float(e["timestep_fs"]), trust=trust, sample_every=int(e["sample_every"]),
                          friction_per_fs=float(e["friction_per_fs"]), strain=strain,
                          seed=int(self.config["seed"]) + 7919 * it + 31 * j, keep_all=keep_all)
            for c in res.candidates + res.frames:
                c.info.update(structure=s, strain=float(eps))
            if frac > 0:
                d_min = frac * _shortest_distance(a)
                ok = [c for c in res.candidates if _shortest_distance(c) >= d_min]
                okp = [c for c in res.frames if _shortest_distance(c) >= d_min]
                n_unphysical += len(res.frames) - len(okp) if keep_all else len(res.candidates) - len(ok)
                res.candidates, res.frames = ok, okp
            cands += res.candidates
            pool += res.frames
            if res.failed is not None:
                res.failed.info.update(structure=s, strain=float(eps))
                failed.append(res.failed)
            for k in counts:
                counts[k] += res.counts[k]
            if res.stopped != "completed":
                stopped.append({"structure": s, "temperature_K": float(T), "strain": float(eps),
                                "why": res.stopped})
            el = time.time() - t0
            self._say(f"iteration {it}: explored {j + 1}/{len(jobs)} runs ({counts['candidate']} candidates; "
                      f"ETA {el / (j + 1) * (len(jobs) - j - 1):.0f} s)")
        for path, frames in ((cand_file, cands), (pool_file, pool), (fail_file, failed)):
            if frames:
                tmp = path.with_name(f".{path.name}.partial")
                write(str(tmp), frames, format="traj")
                tmp.replace(path)
        n_inspected = sum(counts.values())
        info = {"counts": counts, "n_inspected": n_inspected, "n_candidates": len(cands), "n_pool": len(pool),
                "n_unphysical": n_unphysical,
                "n_failed_frames": len(failed),
                "candidate_fraction": counts["candidate"] / max(n_inspected, 1), "stopped_runs": stopped,
                "strained_runs_skipped_for_structures": skipped}
        write_json(marker, info)
        return cands, pool, failed, info

    def _select(self, it: int, cands: list, pool: list, keys: list[str], n: int) -> tuple[list, int]:
        """The frames to label and how many of them (the last ones) are the random share."""
        d = self.out / f"iter_{it:03d}"
        sel_file = d / "selected.json"
        sel = self.config["selection"]
        method = sel["method"]
        source = pool if method in ("random", "sigma") else cands
        n_random = 0
        if sel_file.is_file():
            rec = loads_strict(sel_file.read_text())
            idx, n_random = rec["indices"], int(rec.get("n_random", 0))
        else:
            if method in ("random", "uniform"):
                rng = np.random.default_rng(int(self.config["seed"]) + 104729 * (it + 1))
                idx = sorted(rng.choice(len(source), size=min(n, len(source)), replace=False).tolist()) if source else []
            elif method == "sigma":
                key = "sigma_rms" if sel["score"] == "rms" else "sigma_max"
                X = structure_descriptors(source, self.config["species"]) if source else np.zeros((0, 1))
                sig = [c.info[key] for c in source]
                idx = max_sigma_diverse(sig, X, n, exclusion_quantile=float(sel["exclusion_quantile"])) if source else []
            else:
                store = LabelStore(self.out / "labels")
                X = structure_descriptors(source, self.config["species"]) if source else np.zeros((0, 1))
                A = structure_descriptors([store.get(k) for k in keys], self.config["species"])
                sig = [c.info["sigma_max"] for c in source]
                idx = farthest_point_sampling(X, n, already=A, weights=sig) if source else []
            share = float(sel.get("random_share", 0.0))
            if share > 0 and method != "random" and pool:
                # a uniform share from every explored frame below hi: unbiased fresh errors for the
                # calibration, and part of each batch where the committee is (over)confident
                n_random = min(int(round(share * n)), len(pool))
                idx = list(idx[:n - n_random])  # the method's first picks (largest σ / farthest)
                ident = lambda a: (a.info.get("structure"), a.info.get("temperature_K"), a.info.get("strain"),
                                   a.info.get("md_step"))
                taken = {ident(source[i]) for i in idx}
                free = [i for i in range(len(pool)) if ident(pool[i]) not in taken]
                rng = np.random.default_rng(int(self.config["seed"]) + 7 * 104729 * (it + 1))
                extra = sorted(rng.choice(free, size=min(n_random, len(free)), replace=False).tolist())
                n_random = len(extra)
                chosen = [source[i] for i in idx] + [pool[i] for i in extra]
                write_json(sel_file, {"method": method, "indices": [int(i) for i in idx],
                                      "random_indices": [int(i) for i in extra], "n_random": n_random})
                return chosen, n_random
            write_json(sel_file, {"method": method, "indices": [int(i) for i in idx]})
        if n_random:
            extra = loads_strict(sel_file.read_text())["random_indices"]
            return [source[i] for i in idx] + [pool[i] for i in extra], n_random
        return [source[i] for i in idx], 0

    def _fresh_errors(self, committee, labelled: list) -> dict:
        from ..uncertainty import committee_predictions
        pred = committee_predictions(committee, labelled, raw=True)
        e_ref = np.array([a.get_potential_energy() for a in labelled])
        f_ref = np.concatenate([a.get_forces() for a in labelled])
        return {"energy_std": pred["energy_std"].tolist(), "energy_err": (pred["energy"] - e_ref).tolist(),
                "forces_std": pred["forces_std"].tolist(),
                "forces_err": np.linalg.norm(pred["forces"] - f_ref, axis=1).tolist()}

    def _test_errors(self, committee) -> dict | None:
        """Test-set errors of the committee mean (eV/atom, eV/Å), or None without a test set."""
        if not self.test:
            return None
        from .pareto import held_out_errors
        return held_out_errors(committee, self.test)

    # ------------------------------------------------------------------ the loop
    def run(self) -> "ActiveLearning":
        state = self._open()
        labeller = self._labeller()
        if state.get("seed_keys") is None:
            state["seed_keys"] = self._seed_set(labeller)
            self._save_state(state)
        keys = list(state["seed_keys"])
        for rec in state["iterations"]:
            keys += rec.get("selected_keys", [])
        st = self.config["stop"]
        it = len(state["iterations"])
        stopped = None
        while True:
            committee = self._train(it, keys)
            committee.calibration = self._calibration(state)
            test = self._test_errors(committee)
            if test:
                self._say(f"iteration {it}: test force RMSE {test['forces_rmse_eV_per_A']:.4f} eV/Å "
                          f"with {len(keys)} labels")
            if it >= int(st["max_iterations"]):
                stopped = f"max_iterations ({st['max_iterations']}) reached"
            elif len(keys) >= int(st["label_budget"]):
                stopped = f"label budget ({st['label_budget']}) spent"
            if stopped:
                state["final"] = {"iteration": it, "n_labels": len(keys), "test": test}
                break
            cands, pool, failed, info = self._explore(it, committee)
            unsure = 1.0 - info["counts"]["accurate"] / max(info["n_inspected"], 1)
            if unsure < float(st["candidate_fraction"]):
                stopped = (f"converged: {unsure:.3f} of the explored frames are candidates or beyond "
                           f"trust.hi (< {st['candidate_fraction']})")
                state["final"] = {"iteration": it, "n_labels": len(keys), "test": test}
                break
            if not cands and failed and self.config["selection"]["method"] in ("fps", "uniform"):
                # every trajectory left the trusted region before giving a candidate: label the
                # frames where they did (the first beyond hi, still close to a valid start)
                self._say(f"iteration {it}: no candidates between the trust levels; selecting among the "
                          f"{len(failed)} frames where runs exceeded trust.hi")
                cands = failed
            elif not pool and failed and self.config["selection"]["method"] == "sigma":
                self._say(f"iteration {it}: no explored frame below trust.hi; selecting among the "
                          f"{len(failed)} frames where runs exceeded it")
                pool = failed
            n = min(int(self.config["selection"]["max_per_iteration"]), int(st["label_budget"]) - len(keys))
            chosen, n_random = self._select(it, cands, pool, keys, n)
            self._say(f"iteration {it}: labelling {len(chosen)} selected frames "
                      f"({info['n_candidates']} candidates of {info['n_inspected']} explored)")
            t_lab = time.time()
            labelled = labeller(chosen)
            t_lab = time.time() - t_lab
            new_keys = [frame_key(a, self.config["teacher"]) for a in chosen]
            rec = {"iteration": it, "n_labels_before": len(keys), "n_selected": len(chosen),
                   "selected_keys": new_keys, "exploration": info, "test": test,
                   "labelling_s": t_lab,
                   "fresh": self._fresh_errors(committee, labelled) if labelled else None,
                   "n_random": n_random,
                   "fresh_random": (self._fresh_errors(committee, labelled[len(labelled) - n_random:])
                                    if labelled and n_random else None),
                   "calibration": committee.calibration.to_dict()}
            state["iterations"].append(rec)
            self._save_state(state)
            keys += new_keys
            it += 1
            if not chosen:
                stopped = "no frame to select"
                committee = self._train(it, keys)
                state["final"] = {"iteration": it, "n_labels": len(keys), "test": self._test_errors(committee)}
                break
        state["stopped"] = stopped
        self._save_state(state)
        committee.calibration = self._calibration(state)
        committee.save(self.out / "model.pt", metadata={"trained": True, "active_learning": True,
                                                        "n_labels": len(keys)})
        self.state = state
        r = self.results
        r.stopped = stopped
        r.n_labels = len(keys)
        r.model = str(self.out / "model.pt")
        r.iterations = [{k: v for k, v in rec.items() if k not in ("selected_keys", "fresh", "fresh_random")}
                        for rec in state["iterations"]]
        r.final = state["final"]
        r.calibration = committee.calibration.to_dict()
        self.plot(self.out)
        self.to_json(self.out / "summary.json")
        self._say(f"stopped: {stopped}; {len(keys)} labels; wrote {self.out / 'model.pt'}")
        return self

    def summary(self) -> dict:
        return dict(self.results)

    def plot(self, directory) -> list[Path]:
        from ..plotting import pyplot, savefig
        from ..uncertainty import calibration_curve
        plt = pyplot()
        directory = Path(directory)
        state = self.state
        recs = state["iterations"]
        paths = []
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.bar([r["iteration"] for r in recs], [r["n_selected"] for r in recs], label="selected")
        ax.plot([r["iteration"] for r in recs], [r["exploration"]["n_candidates"] for r in recs], "o-",
                color="C1", label="candidates")
        ax.set_xlabel("iteration"); ax.set_ylabel("frames"); ax.legend()
        paths.append(savefig(fig, directory / "selected.png"))
        pts = [(r["n_labels_before"], r["test"]) for r in recs if r.get("test")]
        if state.get("final", {}).get("test"):
            pts.append((state["final"]["n_labels"], state["final"]["test"]))
        if pts:
            fig, ax = plt.subplots(figsize=(5, 3.5))
            ax.plot([p[0] for p in pts], [p[1]["forces_rmse_eV_per_A"] for p in pts], "o-")
            ax.set_xlabel("labels"); ax.set_ylabel("test force RMSE (eV/Å)")
            ax.set_yscale("log")
            paths.append(savefig(fig, directory / "error_vs_labels.png"))
        fs = np.concatenate([r["fresh"]["forces_std"] for r in recs if r.get("fresh")] or [np.zeros(0)])
        fe = np.concatenate([r["fresh"]["forces_err"] for r in recs if r.get("fresh")] or [np.zeros(0)])
        if len(fs) > 1:
            fig, ax = plt.subplots(figsize=(5, 4))
            ax.loglog(np.maximum(fs, 1e-12), np.maximum(fe, 1e-12), ".", ms=2, alpha=0.5)
            hi = float(max(fs.max(), fe.max()))
            ax.plot([hi * 1e-3, hi], [hi * 1e-3, hi], "k--", lw=0.8)
            ax.set_xlabel("raw committee σ_F per atom (eV/Å)"); ax.set_ylabel("|ΔF| on fresh labels (eV/Å)")
            paths.append(savefig(fig, directory / "sigma_vs_error.png"))
            cal = self._calibration(state)
            fig, ax = plt.subplots(figsize=(5, 4))
            for lab, s in (("raw", fs), ("calibrated", cal.forces_std(fs))):
                c = calibration_curve(s, fe)
                ax.loglog(c["predicted_rms"], c["observed_rms"], "o-", label=lab)
            ax.plot([hi * 1e-3, hi], [hi * 1e-3, hi], "k--", lw=0.8, label="ideal")
            ax.set_xlabel("predicted RMS σ_F (eV/Å)"); ax.set_ylabel("observed RMS |ΔF| (eV/Å)"); ax.legend()
            paths.append(savefig(fig, directory / "calibration.png"))
        return paths
