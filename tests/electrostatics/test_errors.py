"""Bad input is refused with cgkit errors that say what to change."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cgkit.electrostatics import Electrostatics, Exclusions
from cgkit.errors import CgkitError, InputError, NotSupportedError

CELL = np.diag([8.0, 9.0, 10.0])
POS = np.array([[0.0, 0, 0], [2.0, 0.5, 0.3], [4.0, 4.0, 4.0], [6.0, 1.0, 7.0]])
Q = np.array([1.0, -1.0, 0.5, -0.5])


def call(es, pos=POS, q=Q, cell=CELL, pbc=(True, True, True), dtype=torch.float64, **kw):
    return es.energy(torch.tensor(pos, dtype=dtype), torch.tensor(q, dtype=dtype),
                     torch.tensor(cell, dtype=dtype), list(pbc), **kw)


@pytest.mark.parametrize("method", ["ewald", "pme", "slab"])
def test_net_charge_refused_without_background(method):
    q = Q + np.array([0.0, 0.0, 0.0, 0.25])
    pbc = (True, True, False) if method == "slab" else (True, True, True)
    with pytest.raises(InputError, match=r"net charge of 0\.25 e.*background=True"):
        call(Electrostatics(method=method), q=q, pbc=pbc)
    assert torch.isfinite(call(Electrostatics(method=method, background=True), q=q, pbc=pbc))


@pytest.mark.parametrize("method", ["ewald", "pme"])
def test_ewald_needs_full_periodicity(method):
    with pytest.raises(NotSupportedError, match=r"direction z is not periodic.*method='slab'.*method='direct'"):
        call(Electrostatics(method=method), pbc=(True, True, False))
    with pytest.raises(NotSupportedError, match=r"direction x is not periodic"):
        call(Electrostatics(method=method), pbc=(False, False, False))


def test_direct_refuses_periodic_and_slab_needs_two_periodic_directions():
    with pytest.raises(NotSupportedError, match="open boundaries.*direction x is periodic"):
        call(Electrostatics(method="direct"))
    with pytest.raises(NotSupportedError, match="exactly two periodic directions"):
        call(Electrostatics(method="slab"))


def test_unreachable_accuracy_refused():
    with pytest.raises(InputError, match=r"accuracy 1e-12 cannot be reached in float32.*float64"):
        call(Electrostatics(method="ewald", accuracy=1e-12), dtype=torch.float32)
    assert torch.isfinite(call(Electrostatics(method="ewald", accuracy=1e-6), dtype=torch.float32))
    for bad in (0.0, 1.0, -1e-3, float("nan"), "1e-6", True):
        with pytest.raises(InputError, match="accuracy"):
            Electrostatics(accuracy=bad)


def test_bad_charges_refused():
    with pytest.raises(InputError, match=r"charges must have shape \(4,\)"):
        call(Electrostatics(), q=Q[:3])
    q = Q.copy()
    q[2] = np.nan
    with pytest.raises(InputError, match=r"charges of atoms \[2\] are NaN"):
        call(Electrostatics(), q=q)


def test_bad_settings_and_exclusions_refused():
    with pytest.raises(InputError, match="unknown electrostatics method"):
        Electrostatics(method="pppm")
    with pytest.raises(InputError, match="cutoff"):
        Electrostatics(cutoff=-1.0)
    with pytest.raises(InputError, match="slab"):
        Electrostatics(slab=1.0)
    with pytest.raises(InputError, match=r"shape \(m, 2\)"):
        Exclusions(np.array([0, 1, 2]), np.array([0.0]))
    with pytest.raises(InputError, match="scale has 1 entries for 2 pairs"):
        Exclusions(np.array([[0, 1], [1, 2]]), np.array([0.0]))
    with pytest.raises(InputError, match="outside 0..3"):
        call(Electrostatics(), exclusions=Exclusions(np.array([[0, 7]]), np.array([0.0])))


def test_overlapping_atoms_refused_and_errors_are_cgkit_errors():
    pos = POS.copy()
    pos[1] = pos[0]
    with pytest.raises(CgkitError, match="same position"):
        call(Electrostatics(method="direct"), pos=pos, pbc=(False, False, False))
    with pytest.raises(CgkitError, match="same position"):
        call(Electrostatics(method="ewald"), pos=pos)
    with pytest.raises(CgkitError, match="volume"):
        call(Electrostatics(), cell=np.diag([8.0, 9.0, 0.0]))


def test_value_object_is_frozen_and_hashable():
    es = Electrostatics(method="ewald", accuracy=1e-7)
    assert es == Electrostatics(method="ewald", accuracy=1e-7)
    assert hash(es) == hash(Electrostatics(method="ewald", accuracy=1e-7))
    assert "accuracy=1e-07" in repr(es)
    with pytest.raises(Exception):
        es.accuracy = 1e-3
