"""cgkit spline force matching against VOTCA ``csg_fmatch`` (Debian's votca) on the same data.

Synthetic data with a known answer: the bead positions of the first frames of the hexane case
study (3-bead hexane, 636 beads, periodic box) with forces from known bond, angle and pair
laws. Both tools read the same TRR (GROMACS units) and the same VOTCA options file; cgkit runs in
VOTCA's conventions (:func:`cgkit.forcematch.votca.votca_options`).

* bond + pairs: cgkit and csg_fmatch agree to round-off, and both recover the known forces;
* with an angle: csg_fmatch's tables are biased, cgkit's recover the known forces; cgkit with
  VOTCA 2022's angle gradient (``IAngle::Grad`` in votca/csg/interaction.h: for the third bead
  the 1/sin θ factor multiplies only the first of the two terms — an operator-precedence slip —
  and for the first bead the projection term is divided by |v1||v2| instead of |v1|²) reproduces
  csg_fmatch to round-off. That is the cause of the angle, bond and A-A pair offsets between the
  two tools on hexane (the angle couples to the bond and, through the same beads, to the pairs).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cgkit.forcematch import SplineForceMatching
from cgkit.forcematch.votca import (KJ_PER_MOL_NM_PER_EV_PER_A, read_votca_settings, read_votca_table,
                                    votca_angle_gradient, votca_options)
from cgkit.trajectory import read_cg_arrays

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "case_studies" / "hexane" / "data"
CSG = shutil.which("csg_fmatch")
pytestmark = pytest.mark.skipif(CSG is None, reason="VOTCA csg_fmatch not installed (apt-get install votca)")

N_FRAMES = 10
K_BOND, R0 = 40.0, 2.55            # kJ/mol/Å², Å: U = k (r - r0)²
K_ANGLE, T0 = 30.0, np.radians(150.0)  # kJ/mol/rad²: U = k (θ - θ0)²


def pair_force(r):
    """Known pair force, kJ/mol/Å (repulsive > 0), zero beyond 10 Å."""
    return np.where(r < 10.0, 30 * np.exp(-(r - 3.4) / 0.6) - 2.0 * np.exp(-((r - 5.5) / 1.0) ** 2), 0.0)


TOPOLOGY = """<topology>
  <molecules>
    <molecule name="HEX" nmols="212" nbeads="3">
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


def _options(angle: bool) -> str:
    """VOTCA options (nm, rad) on grids that every frame block samples (csg_fmatch refuses empty
    grid intervals); 5 frames per block."""
    def g(lo, hi, n):
        return f"<min>{lo:.6f}</min><max>{hi:.6f}</max><step>{(hi - lo) / n:.6f}</step><out_step>{(hi - lo) / n / 5:.6f}</out_step>"
    s = ["<cg>", " <fmatch><constrainedLS>true</constrainedLS><frames_per_block>5</frames_per_block></fmatch>",
         f" <bonded><name>bond</name><fmatch>{g(0.2078, 0.2796, 8)}</fmatch></bonded>"]
    if angle:
        s.append(f" <bonded><name>angle</name><fmatch>{g(1.12, 3.1378, 8)}</fmatch></bonded>")
    for a, b, lo in (("A", "A", 0.3360), ("B", "B", 0.3600), ("A", "B", 0.3380)):
        s.append(f" <non-bonded><name>{a}-{b}</name><type1>{a}</type1><type2>{b}</type2>"
                 f"<fmatch>{g(lo, 1.0, 20)}</fmatch></non-bonded>")
    return "\n".join(s + ["</cg>", ""])


def _forces(P, L, top, angle: bool):
    """Known forces (kJ/mol/Å) on every bead of every frame (minimum image, exclusions as the
    CG topology)."""
    excl = set(map(tuple, top.exclusions.tolist()))
    out = []
    for x in P:
        F = np.zeros_like(x)
        d = x[None] - x[:, None]
        d -= L * np.round(d / L)
        r = np.linalg.norm(d, axis=2)
        i, j = np.nonzero(np.triu(r < 10.0, 1))
        keep = np.array([(a, b) not in excl for a, b in zip(i, j)])
        i, j = i[keep], j[keep]
        fv = pair_force(r[i, j])[:, None] * d[i, j] / r[i, j][:, None]
        np.add.at(F, j, fv)
        np.add.at(F, i, -fv)
        for a, b in top.bonds:
            v = x[b] - x[a]
            v -= L * np.round(v / L)
            rr = np.linalg.norm(v)
            fb = -2 * K_BOND * (rr - R0) * v / rr
            F[b] += fb
            F[a] -= fb
        if angle:
            for a, b, c in top.angles:
                b1, b2 = x[a] - x[b], x[c] - x[b]
                b1 -= L * np.round(b1 / L)
                b2 -= L * np.round(b2 / L)
                n1, n2 = np.linalg.norm(b1), np.linalg.norm(b2)
                cs = b1 @ b2 / (n1 * n2)
                f = -2 * K_ANGLE * (np.arccos(cs) - T0) * (-1 / np.sqrt(1 - cs * cs))
                g1 = f * (b2 / (n1 * n2) - cs * b1 / n1 ** 2)
                g3 = f * (b1 / (n1 * n2) - cs * b2 / n2 ** 2)
                F[a] += g1
                F[c] += g3
                F[b] -= g1 + g3
        out.append(F)
    return np.array(out)


@pytest.fixture(scope="module")
def hexane_geometry():
    P, _, B, tn, sp, _, top = read_cg_arrays(DATA / "hexane_cg.psf", DATA / "hexane_cg.trr")
    return P[:N_FRAMES], B[0][0], tn, sp, top


def _run_both(tmp: Path, geometry, angle: bool, votca_gradient: bool = False):
    import MDAnalysis as mda
    P, L, tn, sp, top = geometry
    F = _forces(P, L, top, angle)
    u = mda.Universe.empty(len(sp), trajectory=True)
    with mda.Writer(str(tmp / "traj.trr"), n_atoms=len(sp)) as w:  # Å, kJ/mol/Å → nm, kJ/mol/nm
        for k in range(len(P)):
            u.atoms.positions = P[k]
            u.dimensions = [L, L, L, 90, 90, 90]
            u.trajectory.ts.has_forces = True
            u.trajectory.ts.forces = F[k]
            u.trajectory.ts.time = float(k)
            w.write(u.atoms)
    (tmp / "topol.xml").write_text(TOPOLOGY)
    (tmp / "fmatch.xml").write_text(_options(angle))
    run = subprocess.run([CSG, "--top", "topol.xml", "--trj", "traj.trr", "--no-map", "--options", "fmatch.xml"],
                         cwd=tmp, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    st = read_votca_settings(tmp / "fmatch.xml", interactions=["bond A-B", "angle A-B-A"])
    fm_kw, solve_kw = votca_options(st)
    P2, F2, B2, tn2, sp2, _, top2 = read_cg_arrays(DATA / "hexane_cg.psf", tmp / "traj.trr")
    fm = SplineForceMatching(tn2, sp2, top2, **fm_kw)
    if votca_gradient:
        with votca_angle_gradient():
            fm.accumulate(P2, F2, B2, progress=False)
    else:
        fm.accumulate(P2, F2, B2, progress=False)
    res = fm.solve(**solve_kw)
    out = {}
    for t, info in zip(res.tables, res.interactions):
        x, fv, ev = read_votca_table(tmp / f"{st.names[t.label]}.force", t.kind)
        out[t.label] = (x, t(x)[1], fv, ev)
    return out


def _truth(label, x):
    """Known generalised force in eV/Å or eV/rad at x (Å or rad)."""
    if label.startswith("pair"):
        return pair_force(x) * 10 / KJ_PER_MOL_NM_PER_EV_PER_A
    if label.startswith("bond"):
        return -2 * K_BOND * (x - R0) * 10 / KJ_PER_MOL_NM_PER_EV_PER_A
    return -2 * K_ANGLE * (x - T0) / 96.485332


def _rel(a, b):
    return float(np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(b ** 2)))


def test_bond_and_pairs_match_csg_fmatch_to_roundoff(tmp_path, hexane_geometry):
    out = _run_both(tmp_path, hexane_geometry, angle=False)
    assert set(out) == {"bond A-B", "pair A-A", "pair A-B", "pair B-B"}
    for label, (x, f_cg, f_v, err_v) in out.items():
        scale = np.sqrt(np.mean(f_v ** 2))
        assert np.abs(f_cg - f_v).max() < 1e-4 * scale, label  # TRR single precision
        assert _rel(f_v, _truth(label, x)) < 0.05, label  # both recover the known law
        assert _rel(f_cg, _truth(label, x)) < 0.05, label


def test_angle_offset_is_votca_angle_gradient(tmp_path, hexane_geometry):
    """The cause of the hexane angle/bond/A-A differences, shown on data with a known answer."""
    right = _run_both(tmp_path, hexane_geometry, angle=True)
    (tmp_path / "v").mkdir()
    votca_like = _run_both(tmp_path / "v", hexane_geometry, angle=True, votca_gradient=True)
    x, f_cg, f_v, _ = right["angle A-B-A"]
    assert _rel(f_cg, _truth("angle A-B-A", x)) < 0.03  # cgkit recovers the known angle law
    assert _rel(f_v, _truth("angle A-B-A", x)) > 0.15  # csg_fmatch does not
    xb, fb_cg, fb_v, _ = right["bond A-B"]
    assert _rel(fb_cg, _truth("bond A-B", xb)) < 0.05
    assert _rel(fb_v, _truth("bond A-B", xb)) > 2 * _rel(fb_cg, _truth("bond A-B", xb))
    for label, (x, f_cg, f_v, _) in votca_like.items():  # VOTCA's gradient reproduces csg_fmatch
        assert np.abs(f_cg - f_v).max() < 1e-4 * np.sqrt(np.mean(f_v ** 2)), label
