import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from cgkit.nn import ENNP


TINY = dict(channels=4, l_max=2, n_layers=2, n_radial=6, radial_hidden=8, radial_layers=1,
            readout_hidden=4, dtype="float64")


def tiny_model(species=("Si", "C"), r_cut=3.5, seed=0, **kw):
    torch.manual_seed(seed)
    model = ENNP(list(species), r_cut, **{**TINY, 'init_seed': seed, **kw})
    # a non-trivial shift/scale so that they are exercised
    model.set_statistics(shift=[-1.5 - 0.3 * k for k in range(len(species))], scale=0.7,
                         avg_num_neighbors=8.0)
    return model


@pytest.fixture
def crystal():
    """8-atom rattled SiC-like cell (two species), right-handed triclinic cell."""
    a = bulk("Si", "diamond", 4.6, cubic=True)
    a.symbols[[1, 4, 6]] = "C"
    a.set_cell(a.cell.array + np.array([[0, 0.3, 0.1], [0.2, 0, -0.1], [0.1, 0.2, 0]]), scale_atoms=True)
    a.rattle(0.1, seed=3)
    return a


def random_rotation(seed: int, reflect: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return -q if reflect else q


def edge_conv_irreps(parity: str):
    """(input irreps, spherical-harmonic irreps) l ≤ 2 of an edge convolution: ``so3`` (all even),
    ``o3`` (natural parity) or ``o3_full`` (both parities of every l as input)."""
    from e3nn import o3
    if parity == "so3":
        in_irs = [o3.Irrep(l, 1) for l in range(3)]
        return in_irs, in_irs
    in_irs = [o3.Irrep(l, (-1) ** l) for l in range(3)]
    if parity == "o3_full":
        in_irs += [o3.Irrep(l, -((-1) ** l)) for l in range(3)]
    return in_irs, [o3.Irrep(l, (-1) ** l) for l in range(3)]
