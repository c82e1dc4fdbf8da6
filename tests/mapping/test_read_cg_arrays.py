"""read_cg_arrays: a mapped CG trajectory as force-matching arrays, units converted at the edge."""
from pathlib import Path

import numpy as np
import pytest

from cgkit.errors import InputError
from cgkit.trajectory import read_cg_arrays
from cgkit.units import KJ_PER_MOL_TO_EV

DATA = Path(__file__).resolve().parents[2] / "case_studies" / "hexane" / "data"


def test_hexane_cg_trajectory_reads_as_arrays_in_ev_per_angstrom():
    import MDAnalysis as mda
    P, F, B, names, sp, masses, top = read_cg_arrays(DATA / "hexane_cg.psf", DATA / "hexane_cg.trr", stop=3)
    u = mda.Universe(str(DATA / "hexane_cg.psf"), str(DATA / "hexane_cg.trr"))
    u.trajectory[2]
    assert P.shape == F.shape == (3, len(u.atoms), 3) and B.shape == (3, 3)
    np.testing.assert_allclose(F[2], u.trajectory.ts.forces * KJ_PER_MOL_TO_EV, rtol=1e-6)
    assert names == ["A", "B"] and set(np.unique(sp)) == {0, 1}
    assert len(top.bonds) == len(u.bonds) and len(top.angles) == len(u.angles)
    # 1-2 and 1-3 pairs of every 3-bead molecule excluded: 3 per molecule
    assert len(top.exclusions) == 3 * len(u.atoms) // 3
    np.testing.assert_allclose(masses, u.atoms.masses)


def test_empty_frame_range_is_a_clear_error():
    with pytest.raises(InputError, match="no frames"):
        read_cg_arrays(DATA / "hexane_cg.psf", DATA / "hexane_cg.trr", start=10_000)
