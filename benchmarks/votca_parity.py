"""cgkit spline force matching vs VOTCA ``csg_fmatch`` on the hexane case-study trajectory.

Same data for both tools: the mapped 3-bead hexane trajectory of the case study
(``case_studies/hexane/data/hexane_cg.trr``: 212 molecules, 636 beads; csg_fmatch reads it with
``--no-map`` and a VOTCA XML topology with the same bonds, angle and exclusions), the first
``--frames`` frames, and the grids of VOTCA's tutorial ``hexane/force_matching/fmatch.xml`` read
by :func:`cgkit.forcematch.votca.read_votca_settings` (``frames_per_block`` raised from 5 to
``--block`` because 5-frame blocks of this trajectory leave grid intervals empty, which
csg_fmatch refuses).

For every interaction it prints, over the well-sampled part of the grid (≥ 10 samples per
interval in all frames), the RMS difference of the force tables relative to VOTCA's RMS force,
the mean difference (kJ/mol/nm or kJ/mol/rad), the median of |Δ|/σ_VOTCA (σ: VOTCA's block
error) and the fraction of points within 2 σ_VOTCA, for three cgkit runs:

* ``cgkit``: cgkit's defaults on VOTCA's grids (all frames in one fit, ridge, samples outside
  the grid dropped, correct angle gradient);
* ``cgkit-votca``: cgkit in VOTCA's conventions (natural splines, block means, samples outside
  the grid extrapolated: :func:`~cgkit.forcematch.votca.votca_options`), correct gradient;
* ``cgkit-votca-grad``: the same with VOTCA 2022's angle gradient
  (:func:`~cgkit.forcematch.votca.votca_2022_angle_gradient`) — it reproduces csg_fmatch, which
  shows that the remaining differences come from that gradient.

    python benchmarks/votca_parity.py [--frames 40] [--block 10]
    python benchmarks/votca_parity.py --water-psf cg.psf --water-trr cg.trr [--frames 40]

``--water-*``: also compare one-bead SPC/E water (a CG trajectory mapped by ``cgkit map``, e.g.
the water case study's) with the grid of VOTCA's ``spce/force_matching/fmatch.xml``.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "case_studies" / "hexane" / "data"
TUTORIAL = Path("/usr/share/votca/csg-tutorials/hexane/force_matching/fmatch.xml")
TOPOLOGY = """<topology>
  <molecules>
    <molecule name="HEX" nmols="{n}" nbeads="3">
      <bead name="A1" type="A" mass="29.0" q="0"/>
      <bead name="B" type="B" mass="28.0" q="0"/>
      <bead name="A2" type="A" mass="29.0" q="0"/>
    </molecule>
  </molecules>
  <bonded>
    <bond><name>bond</name><beads>HEX:A1 HEX:B
HEX:B HEX:A2</beads></bond>
    <angle><name>angle</name><beads>HEX:A1 HEX:B HEX:A2</beads></angle>
  </bonded>
</topology>
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--block", type=int, default=10)
    ap.add_argument("--water-psf", help="one-bead water CG topology (PSF of `cgkit map`)")
    ap.add_argument("--water-trr", help="one-bead water CG trajectory with mapped forces")
    args = ap.parse_args(argv)
    rc = _hexane(args)
    if rc == 0 and args.water_psf and args.water_trr:
        rc = _water(args)
    return rc


def _water(args) -> int:
    from cgkit.forcematch import SplineForceMatching
    from cgkit.forcematch.votca import (KJ_PER_MOL_NM_PER_EV_PER_A, read_votca_settings, read_votca_table,
                                        votca_options)
    from cgkit.trajectory import read_cg_arrays
    src = Path("/usr/share/votca/csg-tutorials/spce/force_matching/fmatch.xml")
    P, F, B, tn, sp, _, top = read_cg_arrays(args.water_psf, args.water_trr)
    n = min(args.frames, len(P))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        opts = re.sub(r"<frames_per_block>\s*\d+\s*</frames_per_block>",
                      f"<frames_per_block>{args.block}</frames_per_block>", src.read_text())
        (tmp / "fmatch.xml").write_text(opts)
        (tmp / "topol.xml").write_text(f"""<topology><molecules><molecule name="SOL" nmols="{len(sp)}" nbeads="1">
<bead name="W" type="{tn[0]}" mass="18.0154" q="0"/></molecule></molecules></topology>
""")
        t0 = time.perf_counter()
        run = subprocess.run([shutil.which("csg_fmatch"), "--top", "topol.xml", "--trj", str(Path(args.water_trr).resolve()),
                              "--no-map", "--options", "fmatch.xml", "--nframes", str(n)], cwd=tmp,
                             capture_output=True, text=True)
        t_votca = time.perf_counter() - t0
        if run.returncode != 0:
            print(run.stdout[-3000:], run.stderr[-3000:])
            return 1
        st = read_votca_settings(tmp / "fmatch.xml", interactions=[f"pair {tn[0]}-{tn[0]}"])
        fm_kw, solve_kw = votca_options(st)
        (lab, name), = st.names.items()
        x, fv, ev = read_votca_table(tmp / f"{name}.force", "pair")
    out = {}
    for mode in ("cgkit", "cgkit-votca"):
        kw, skw = dict(fm_kw), dict(solve_kw)
        if mode == "cgkit":
            kw.update(outside="drop", block_size=args.block)
            skw = {}
        t0 = time.perf_counter()
        fm = SplineForceMatching(tn, sp, top, **kw)
        fm.accumulate(P[:n], F[:n], B[:n], progress=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = fm.solve(**skw)
        out[mode] = (res.tables[0], time.perf_counter() - t0)
        basis, c = fm.interactions[0].basis, fm.normal_equations.counts[0]
    iv = np.clip(((x - basis.x_min) / basis.h).astype(int), 0, basis.n_intervals - 1)
    ok = (c[iv] >= 10) & (x < basis.x_max - 1e-9)
    print(f"\none-bead SPC/E water ({len(sp)} beads), {n} frames, VOTCA spce tutorial grid, {args.block} frames "
          f"per block; csg_fmatch {t_votca:.2f} s, "
          + ", ".join(f"{k} {v[1]:.2f} s ({v[1] / t_votca:.2f}x)" for k, v in out.items()))
    for mode, (t, _) in out.items():
        d = t(x[ok])[1] - fv[ok]
        z = np.abs(d) / np.maximum(ev[ok], 1e-300)
        print(f"{lab:13s} {x[ok].min() / 10:.3g}-{x[ok].max() / 10:.3g} nm {mode:>17s} "
              f"relRMS {np.sqrt(np.mean(d ** 2) / np.mean(fv[ok] ** 2)):.3f} mean Δ "
              f"{d.mean() * KJ_PER_MOL_NM_PER_EV_PER_A:+.2f} kJ/mol/nm, med|Δ|/σ {np.median(z):.2f}, "
              f"≤2σ {np.mean(z <= 2):.2f}")
    return 0


def _hexane(args) -> int:
    csg = shutil.which("csg_fmatch")
    if csg is None or not TUTORIAL.exists():
        print("needs VOTCA csg_fmatch and votca-tutorials (apt-get install votca votca-tutorials)")
        return 0
    from cgkit.forcematch import SplineForceMatching
    from cgkit.forcematch.votca import (KJ_PER_MOL_NM_PER_EV_PER_A, KJ_PER_MOL_PER_EV, read_votca_settings,
                                        read_votca_table, votca_angle_gradient, votca_options)
    from cgkit.trajectory import read_cg_arrays
    P, F, B, tn, sp, _, top = read_cg_arrays(DATA / "hexane_cg.psf", DATA / "hexane_cg.trr")
    n = args.frames
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        opts = re.sub(r"<frames_per_block>\s*\d+\s*</frames_per_block>",
                      f"<frames_per_block>{args.block}</frames_per_block>", TUTORIAL.read_text())
        (tmp / "fmatch.xml").write_text(opts)
        (tmp / "topol.xml").write_text(TOPOLOGY.format(n=len(sp) // 3))
        t0 = time.perf_counter()
        run = subprocess.run([csg, "--top", "topol.xml", "--trj", str(DATA / "hexane_cg.trr"), "--no-map",
                              "--options", "fmatch.xml", "--nframes", str(n)], cwd=tmp,
                             capture_output=True, text=True)
        t_votca = time.perf_counter() - t0
        if run.returncode != 0:
            print(run.stdout[-3000:], run.stderr[-3000:])
            return 1
        st = read_votca_settings(tmp / "fmatch.xml", interactions=["bond A-B", "angle A-B-A"])
        fm_kw, solve_kw = votca_options(st)
        votca = {lab: read_votca_table(tmp / f"{name}.force", Interaction_kind(lab))
                 for lab, name in st.names.items()}
    runs, times, counts = {}, {}, None
    for name in ("cgkit", "cgkit-votca", "cgkit-votca-grad"):
        kw = dict(fm_kw)
        skw = dict(solve_kw)
        if name == "cgkit":
            kw.update(outside="drop", block_size=args.block)
            skw = {}
        t0 = time.perf_counter()
        fm = SplineForceMatching(tn, sp, top, **kw)
        if name == "cgkit-votca-grad":
            with votca_angle_gradient():
                fm.accumulate(P[:n], F[:n], B[:n], progress=False)
        else:
            fm.accumulate(P[:n], F[:n], B[:n], progress=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = fm.solve(**skw)
        times[name] = time.perf_counter() - t0
        runs[name] = {t.label: t for t in res.tables}
        if counts is None:
            counts = {it.label: (it.basis, c) for it, c in zip(fm.interactions, fm.normal_equations.counts)}
    print(f"hexane, {n} frames, VOTCA tutorial grids, {args.block} frames per block; csg_fmatch {t_votca:.2f} s, "
          + ", ".join(f"{k} {v:.2f} s ({v / t_votca:.2f}x csg_fmatch)" for k, v in times.items()))
    print(f"{'interaction':13s} {'range':>15s} {'run':>17s} {'relRMS':>7s} {'mean Δ':>8s} "
          f"{'med|Δ|/σ':>9s} {'≤2σ':>5s}")
    for lab, (x, fv, ev) in votca.items():
        kind = Interaction_kind(lab)
        basis, c = counts[lab]
        iv = np.clip(((x - basis.x_min) / basis.h).astype(int), 0, basis.n_intervals - 1)
        ok = c[iv] >= 10
        if kind == "pair":
            ok &= x < basis.x_max - 1e-9
        unit = KJ_PER_MOL_PER_EV if kind in ("angle", "dihedral") else KJ_PER_MOL_NM_PER_EV_PER_A
        xs = x[ok]
        rng = f"{xs.min() / (1 if kind in ('angle',) else 10):.3g}-{xs.max() / (1 if kind == 'angle' else 10):.3g}"
        rng += " rad" if kind == "angle" else " nm"
        for name, tabs in runs.items():
            d = (tabs[lab](xs)[1] - fv[ok])
            rel = np.sqrt(np.mean(d ** 2) / np.mean(fv[ok] ** 2))
            z = np.abs(d) / np.maximum(ev[ok], 1e-300)
            print(f"{lab:13s} {rng:>15s} {name:>17s} {rel:7.3f} {d.mean() * unit:+8.2f} {np.median(z):9.2f} "
                  f"{np.mean(z <= 2):5.2f}")
    return 0


def Interaction_kind(label: str) -> str:
    return label.split()[0]


if __name__ == "__main__":
    raise SystemExit(main())
