"""Long-range ENNP (cgkit.nn.LongRangeENNP): local ENNP + Coulomb of learned charges.

Independent references: finite differences (forces, stress, Hessian, charge gradients, Born
charges), analytic 1/r tails beyond the cutoff, the rotated/permuted/translated structure,
the saved-and-reloaded file, energy conservation in NVE.
"""
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from cgkit.calculator import CgkitCalculator
from cgkit.data import batch_graphs
from cgkit.errors import InputError
from cgkit.io_potential import load_potential
from cgkit.nn import LongRangeENNP
from cgkit.nn.longrange import parse_species_charges
from cgkit.testing import fd_forces, fd_hessian, fd_stress, random_orthogonal

K_E = 14.399645

TINY = dict(channels=4, l_max=1, n_layers=2, n_radial=4, radial_hidden=8, radial_layers=1,
            readout_hidden=4, charge_hidden=4, dtype="float64")


def lr_model(species=("Na", "Cl"), r_cut=3.0, seed=0, baseline=None, scheme="neutralize",
             parity=True, **kw):
    """A tiny long-range model with non-trivial (random) charge-head weights."""
    m = LongRangeENNP(list(species), r_cut, init_seed=seed, baseline_charges=baseline,
                      charge_scheme=scheme, parity=parity, **{**TINY, **kw})
    g = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for p in m.charge_out.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        m.hardness_raw.copy_(torch.linspace(-0.5, 0.8, len(species), dtype=m.dtype))
    m.set_statistics(shift=[-1.0 - 0.4 * k for k in range(len(species))], scale=0.5,
                     avg_num_neighbors=6.0)
    return m


def nacl_cell():
    """8-ion rattled, sheared rock-salt cell (periodic, triclinic)."""
    a = bulk("NaCl", "rocksalt", 5.0, cubic=True)
    a.set_cell(a.cell.array + np.array([[0, 0.3, 0.1], [0.2, 0, -0.2], [0.1, 0.25, 0]]),
               scale_atoms=True)
    a.rattle(0.15, seed=4)
    return a


def ion_cluster(seed=1, n=6):
    """Open cluster of Na/Cl ions, no pair closer than 2.2 Å."""
    rng = np.random.default_rng(seed)
    pos = []
    while len(pos) < n:
        p = rng.uniform(0, 4.5, 3)
        if all(np.linalg.norm(p - q) > 2.2 for q in pos):
            pos.append(p)
    return Atoms("NaCl" * (n // 2), positions=pos)


# ---------------------------------------------------------------------- charges
@pytest.mark.parametrize("scheme", ["neutralize", "qeq_local", "bond"])
def test_total_charge_exact_per_structure(scheme):
    m = lr_model(scheme=scheme, baseline={"Na": 0.7, "Cl": -0.4})
    frames = [ion_cluster(1), ion_cluster(2, 4), nacl_cell()]
    gs = [m.graph(a) for a in frames]
    b = batch_graphs(gs)
    q = m.atomic_charges(b)
    sums = torch.zeros(3, dtype=q.dtype).index_add(0, b.batch, q)
    assert torch.all(sums.abs() < 1e-13), sums
    assert q.abs().max() > 0.05  # charges are not trivially zero
    # per-structure total charges from targets (ions, anions)
    b.targets["total_charge"] = torch.tensor([1.0, -2.0, 0.0], dtype=torch.float64)
    q = m.atomic_charges(b)
    sums = torch.zeros(3, dtype=q.dtype).index_add(0, b.batch, q)
    assert torch.allclose(sums, b.targets["total_charge"], atol=1e-13, rtol=0)
    # a structure's charges do not depend on the other structures of the batch
    # (apart from the extra charge, spread uniformly or by softness 1/J_s)
    diff = (q[: len(frames[0])] - m.atomic_charges(gs[0])).detach().numpy()
    assert abs(diff.sum() - 1.0) < 1e-13 and np.all(diff > 0)
    for z in (11, 17):
        sel = frames[0].numbers == z
        assert np.ptp(diff[sel]) < 1e-13
    if scheme in ("neutralize", "bond"):
        assert np.allclose(diff, 1.0 / len(frames[0]), atol=1e-13)
    # float32: conserved to rounding
    m32 = lr_model(scheme=scheme).to(torch.float32)
    q32 = m32.atomic_charges(m32.graph(frames[0]))
    assert abs(float(q32.detach().sum())) < 1e-6


def test_fixed_charge_prior_is_exact_baseline():
    m = lr_model(baseline={"Na": 1.0, "Cl": -1.0}, learn_charges=False)
    with torch.no_grad():
        for p in m.charge_out.parameters():
            p.zero_()
    a = ion_cluster(3)
    q = m.atomic_charges(m.graph(a)).detach().numpy()
    assert np.array_equal(q, np.where(a.numbers == 11, 1.0, -1.0))
    assert not any(p.requires_grad for n, p in m.named_parameters() if not n.startswith("local."))
    Z = m.born_effective_charges(a)
    assert np.allclose(Z, q[:, None, None] * np.eye(3), atol=1e-14)


def test_bad_settings_refused():
    with pytest.raises(InputError, match="charge_scheme"):
        LongRangeENNP(["Na", "Cl"], 3.0, charge_scheme="magic")
    with pytest.raises(InputError, match="baseline_charges"):
        LongRangeENNP(["Na", "Cl"], 3.0, baseline_charges={"K": 1.0})
    with pytest.raises(InputError, match="baseline_charges"):
        LongRangeENNP(["Na", "Cl"], 3.0, baseline_charges=[1.0])
    with pytest.raises(InputError, match="electrostatics"):
        LongRangeENNP(["Na", "Cl"], 3.0, electrostatics={"method": "auto", "cutof": 9.0})
    with pytest.raises(InputError, match="SPECIES=CHARGE"):
        parse_species_charges(["Na1"])
    assert parse_species_charges("Na=1,Cl=-1") == {"Na": 1.0, "Cl": -1.0}
    # a net charge in a periodic cell needs the neutralising background (cgkit.electrostatics)
    m = lr_model()
    g = m.graph(nacl_cell())
    g.targets["total_charge"] = torch.tensor([1.0], dtype=torch.float64)
    with pytest.raises(InputError, match="net charge"):
        m.compute(g)


# ---------------------------------------------------------------------- energy = local + Coulomb
def test_energy_is_local_plus_coulomb_of_charges_open():
    """For an open cluster E − E_local = ½ Σ_{i≠j} k_e q_i q_j / r_ij with the model's charges."""
    m = lr_model()
    a = ion_cluster(5, 8)
    g = m.graph(a)
    t = m.energy_terms(g)
    q = t["charges"].detach().numpy()
    r = a.get_all_distances()
    np.fill_diagonal(r, np.inf)
    e_ref = 0.5 * K_E * q @ (1 / r) @ q
    assert abs(float(t["coulomb"].detach().sum()) - e_ref) < 1e-10 * abs(e_ref)
    assert abs(float(m.compute(g)["energy"][0]) - float(t["local"].detach().sum()) - e_ref) < 1e-10


def test_bond_scheme_keeps_distant_fragments_at_their_own_charge():
    """Two neutral NaCl clusters 3 Å beyond the cutoff: "bond" leaves each exactly neutral (and
    its charges those of the isolated cluster); "neutralize" moves charge between them."""
    a, b = ion_cluster(1, 6), ion_cluster(2, 6)
    b.positions += [4.5 + 3.0 + 3.0, 0, 0]  # cluster extent ≤ 4.5 Å, r_cut 3 Å
    ab = a + b
    assert np.min(np.linalg.norm(a.positions[:, None] - b.positions[None], axis=-1)) > 3.5
    net = {}
    for scheme in ("bond", "neutralize"):
        m = lr_model(scheme=scheme)
        q = m.atomic_charges(m.graph(ab)).detach().numpy()
        net[scheme] = q[:6].sum()
        if scheme == "bond":
            qa = m.atomic_charges(m.graph(a)).detach().numpy()
            assert np.abs(q[:6] - qa).max() < 1e-13
    assert abs(net["bond"]) < 1e-13
    assert abs(net["neutralize"]) > 1e-3


# ---------------------------------------------------------------------- symmetry
@pytest.mark.parametrize("parity", [True, False])
@pytest.mark.parametrize("periodic", [False, True])
def test_equivariance_rotation_translation_permutation(parity, periodic):
    m = lr_model(parity=parity, scheme="bond" if periodic else "neutralize")
    a = nacl_cell() if periodic else ion_cluster(4, 8)
    g = m.graph(a)
    out = m.compute(g, stress=periodic)
    q = m.atomic_charges(g).detach()
    rng = np.random.default_rng(11)
    for reflect in ([False, True] if parity else [False]):
        R = random_orthogonal(rng, reflection=reflect)
        b = a.copy()
        b.positions = a.positions @ R.T + rng.normal(size=3)
        if periodic:  # the same lattice; two vectors swapped after a reflection (right-handed)
            b.set_cell((a.cell.array @ R.T)[[1, 0, 2] if reflect else [0, 1, 2]], scale_atoms=False)
        perm = rng.permutation(len(a))
        b = b[perm]
        gb = m.graph(b)
        ob = m.compute(gb, stress=periodic)
        qb = m.atomic_charges(gb).detach()
        assert abs(float(ob["energy"][0] - out["energy"][0])) < 1e-10
        assert torch.allclose(qb, q[perm], atol=1e-12, rtol=0)
        Rt = torch.as_tensor(R)
        assert torch.allclose(ob["forces"], out["forces"][perm] @ Rt.T, atol=1e-10, rtol=0)
        if periodic:
            assert torch.allclose(ob["stress"][0], Rt @ out["stress"][0] @ Rt.T, atol=1e-10, rtol=0)


@pytest.mark.slow
def test_so3_model_distinguishes_mirror_images_o3_does_not():
    a = ion_cluster(6, 6)
    b = a.copy()
    b.positions[:, 0] *= -1
    e = {}
    for parity in (True, False):
        m = lr_model(parity=parity, n_layers=3)  # chirality needs a triple product: 3 layers
        e[parity] = [float(m.compute(m.graph(x), forces=False)["energy"][0]) for x in (a, b)]
    assert abs(e[True][0] - e[True][1]) < 1e-10
    assert abs(e[False][0] - e[False][1]) > 1e-8


# ---------------------------------------------------------------------- derivatives vs FD
@pytest.mark.parametrize("periodic,hessian", [
    (False, True), (True, False), pytest.param(True, True, marks=pytest.mark.slow)])
def test_forces_stress_hessian_equal_finite_differences(periodic, hessian):
    m = lr_model(scheme="bond" if periodic else "neutralize")
    a = nacl_cell() if periodic else ion_cluster(7, 6)
    g = m.graph(a)
    out = m.compute(g, stress=periodic)
    F = out["forces"].numpy()
    assert np.abs(fd_forces(m, a) - F).max() < 1e-6 * np.abs(F).max()
    if periodic:
        S = out["stress"][0].numpy()
        assert np.abs(fd_stress(m, a) - S).max() < 1e-6 * np.abs(S).max()
    if not hessian:
        return
    H = m.hessian(g).numpy()
    assert np.abs(fd_hessian(m, a) - H).max() < 1e-6 * np.abs(H).max()


@pytest.mark.parametrize("periodic,scheme", [(False, "qeq_local"), (True, "bond")])
def test_charge_gradients_equal_finite_differences(periodic, scheme):
    m = lr_model(scheme=scheme)
    a = nacl_cell() if periodic else ion_cluster(8, 6)
    g = m.graph(a)
    x = g.positions.clone().requires_grad_(True)
    q = m.atomic_charges(g, x, g.cell)
    J = torch.stack([torch.autograd.grad(q[k], x, retain_graph=True)[0] for k in range(len(a))])
    h = 1e-5
    Jfd = torch.zeros_like(J)
    for i in range(len(a)):
        for d in range(3):
            qs = []
            for s in (-2, -1, 1, 2):
                y = g.positions.clone()
                y[i, d] += s * h
                qs.append(m.atomic_charges(g, y, g.cell).detach())
            Jfd[:, i, d] = (qs[0] - 8 * qs[1] + 8 * qs[2] - qs[3]) / (12 * h)
    assert float(J.abs().max()) > 1e-3
    assert float((J - Jfd).abs().max()) < 1e-6 * float(J.abs().max())
    # Σ_k ∂q_k/∂r = 0 (total charge fixed) and Σ_i ∂q_k/∂r_i = 0 (translation invariance)
    assert float(J.sum(0).abs().max()) < 1e-12 and float(J.sum(1).abs().max()) < 1e-12


# ---------------------------------------------------------------------- smoothness at r_cut
@pytest.mark.parametrize("scheme", ["neutralize", pytest.param("bond", marks=pytest.mark.slow)])
def test_c2_smooth_when_ion_crosses_cutoff(scheme):
    """Na–Cl dimer: beyond r_cut the charges are the isolated ions' and E = E_∞ + k q₁q₂/r;
    inside, the deviation from that tail vanishes as (r_c − r)³ (energy), (r_c − r)² (force),
    (r_c − r) (curvature) — C² across the cutoff."""
    rc = 3.0
    m = lr_model(r_cut=rc, scheme=scheme, baseline={"Na": 0.3, "Cl": -0.3})

    def scan(rs):
        E, F, K, Q = [], [], [], []
        for r in rs:
            a = Atoms("NaCl", positions=[[0, 0, 0], [r, 0, 0]])
            g = m.graph(a)
            out = m.compute(g)
            E.append(float(out["energy"][0]))
            F.append(float(out["forces"][1, 0]))
            K.append(float(m.hessian(g)[3, 3]))
            Q.append(float(m.atomic_charges(g)[0]))
        return map(np.array, (E, F, K, Q))

    far = Atoms("NaCl", positions=[[0, 0, 0], [50.0, 0, 0]])
    gf = m.graph(far)
    q_inf = float(m.atomic_charges(gf)[0])
    e_loc_inf = float(m.energy_terms(gf)["local"].sum())
    assert abs(q_inf) > 1e-3

    def tail(r):  # E, F_x on ion 1, ∂²E/∂x₁² of the isolated-ion charges ±q∞
        c = -K_E * q_inf ** 2
        return e_loc_inf + c / r, c / r ** 2, 2 * c / r ** 3

    rs = np.array([rc + 0.2, rc + 1.0])
    E, F, K, Q = scan(rs)
    Et, Ft, Kt = tail(rs)
    assert np.allclose(E, Et, atol=1e-12) and np.allclose(F, Ft, atol=1e-12)
    assert np.allclose(K, Kt, atol=1e-11) and np.allclose(Q, q_inf, atol=1e-14)
    d = np.array([1e-2, 1e-3])
    E, F, K, Q = scan(rc - d)
    Et, Ft, Kt = tail(rc - d)
    dE, dF, dK, dQ = E - Et, F - Ft, K - Kt, Q - q_inf
    assert abs(dE[0] / dE[1]) > 700 and abs(dQ[0] / dQ[1]) > 700
    assert abs(dF[0] / dF[1]) > 70
    assert abs(dK[0] / dK[1]) > 7
    # and a jump-free scan through the cutoff
    rs = np.linspace(2.6, 3.4, 13)
    E, F, K, Q = scan(rs)
    dr = rs[1] - rs[0]
    assert np.max(np.abs(np.diff(E))) < 2 * np.max(np.abs(F)) * dr
    assert np.max(np.abs(np.diff(F))) < 2 * np.max(np.abs(K)) * dr


# ---------------------------------------------------------------------- Born effective charges
def _dipole(m, atoms):
    g = m.graph(atoms)
    return (m.atomic_charges(g).detach().numpy()[:, None] * atoms.positions).sum(0)


def test_born_charges_open_equal_fd_of_dipole_and_sum_rule():
    m = lr_model()
    a = ion_cluster(9, 6)
    Z = m.born_effective_charges(a)
    h = 1e-5
    Zfd = np.zeros_like(Z)
    for i in range(len(a)):
        for al in range(3):
            ds = []
            for s in (-2, -1, 1, 2):
                b = a.copy()
                b.positions[i, al] += s * h
                ds.append(_dipole(m, b))
            Zfd[i, al] = (ds[0] - 8 * ds[1] + 8 * ds[2] - ds[3]) / (12 * h)
    assert np.abs(Z - Zfd).max() < 1e-6 * np.abs(Z).max()
    q = m.atomic_charges(m.graph(a)).detach().numpy()
    assert np.abs(Z - q[:, None, None] * np.eye(3)).max() > 1e-3  # charge transfer contributes
    # acoustic sum rule: a rigid translation does not change the dipole of a neutral cluster
    assert np.abs(Z.sum(0)).max() < 1e-12
    # charged cluster: Σ_i Z*_i = Q·I
    b = a.copy()
    b.set_initial_charges([1.0] + [0.0] * (len(a) - 1))
    g = m.graph(b)
    if getattr(g, "charges", None) is not None:  # the graph carries ASE initial charges
        assert np.allclose(m.born_effective_charges(b).sum(0), np.eye(3), atol=1e-12)
    # rotation: Z*(R r) = R Z*(r) Rᵀ
    R = random_orthogonal(np.random.default_rng(2))
    c = a.copy()
    c.positions = a.positions @ R.T
    assert np.allclose(m.born_effective_charges(c), R @ Z @ R.T, atol=1e-10)


def test_born_charges_periodic_equal_open_cluster_and_do_not_depend_on_cell():
    """Rock salt: the periodic Born charges' charge-transfer part equals the exact (open)
    Born charge of the central ion of a large inversion-symmetric cluster cut from the
    crystal (whose neutralisation then adds no dipole); rattled crystal: the same Z* from the
    primitive cell and from a 2×1×1 supercell; sum rule imposed on request."""
    m = lr_model(r_cut=3.0, n_layers=1)
    a = bulk("NaCl", "rocksalt", 5.1)
    Z = m.born_effective_charges(a, acoustic_sum_rule=False)
    q = m.atomic_charges(m.graph(a)).detach().numpy()
    for i in range(2):
        big = a.repeat(7)
        centre = big.positions[i + 2 * (3 * 49 + 3 * 7 + 3)]  # an ion in the middle (8.8 Å deep)
        keep = [k for k in range(len(big)) if np.linalg.norm(big.positions[k] - centre) < 6.5]
        cl = big[keep]
        cl.pbc, cl.cell = False, np.zeros((3, 3))  # an open cluster
        k0 = int(np.argmin(np.linalg.norm(cl.positions - centre, axis=1)))
        assert cl.numbers[k0] == a.numbers[i]
        assert np.allclose((cl.positions - centre).sum(0), 0, atol=1e-9)  # inversion symmetric
        Zc = m.born_effective_charges(cl)[k0]
        qc = m.atomic_charges(m.graph(cl)).detach().numpy()[k0]
        flow = Z[i] - q[i] * np.eye(3)
        assert np.abs(flow).max() > 1e-3
        assert np.abs((Zc - qc * np.eye(3)) - flow).max() < 1e-10
    # cell independence (rattled, triclinic-strained): primitive vs 2×1×1 supercell
    b = a.copy()
    b.set_cell(b.cell.array + 0.1 * np.eye(3)[[1, 2, 0]], scale_atoms=True)
    b.rattle(0.05, seed=3)
    Zb = m.born_effective_charges(b, acoustic_sum_rule=False)
    Zb2 = m.born_effective_charges(b.repeat((2, 1, 1)), acoustic_sum_rule=False)
    assert np.abs(Zb2[:2] - Zb).max() < 1e-10 and np.abs(Zb2[2:] - Zb).max() < 1e-10
    # rotation covariance, and the sum rule when imposed
    R = random_orthogonal(np.random.default_rng(5))
    c = b.copy()
    c.set_cell(b.cell.array @ R.T, scale_atoms=False)
    c.positions = b.positions @ R.T
    assert np.allclose(m.born_effective_charges(c, acoustic_sum_rule=False), R @ Zb @ R.T, atol=1e-10)
    # "bond" charges: sum of bond dipoles, the sum rule holds exactly without imposing it
    mb = lr_model(r_cut=3.0, n_layers=2, scheme="bond")
    assert np.abs(mb.born_effective_charges(b, acoustic_sum_rule=False).sum(0)).max() < 1e-12
    viol = np.abs(Zb.sum(0)).max()
    print(f"raw acoustic-sum-rule violation {viol:.2e} e (|Z*| max {np.abs(Zb).max():.2f} e)")
    assert np.abs(m.born_effective_charges(b).sum(0)).max() < 1e-12


# ---------------------------------------------------------------------- persistence, ASE, ensembles
def test_save_load_round_trip_identical(tmp_path):
    m = lr_model(scheme="qeq_local", baseline=[0.5, -0.5],
                 electrostatics={"method": "auto", "accuracy": 1e-7})
    a = nacl_cell()
    p = tmp_path / "lr.pt"
    m.save(p, metadata={"trained": False})
    m2 = load_potential(p)
    assert type(m2) is LongRangeENNP and m2.get_config() == m.get_config()
    g = m.graph(a)
    o1, o2 = m.compute(g, stress=True), m2.compute(g, stress=True)
    for k in ("energy", "forces", "stress"):
        assert torch.equal(o1[k], o2[k]), k
    assert torch.equal(m.atomic_charges(g), m2.atomic_charges(g))
    # float32 file reloads as float32; ASE calculator gives the same numbers in float64
    calc = CgkitCalculator(m2, dtype=torch.float64)
    b = a.copy()
    b.calc = calc
    assert abs(b.get_potential_energy() - float(o1["energy"][0])) < 1e-12
    assert np.allclose(b.get_forces(), o1["forces"].numpy(), atol=1e-12)


def test_ensemble_and_sum_with_other_potentials():
    from cgkit.ensemble import EnsemblePotential
    a = ion_cluster(10, 6)
    ms = [lr_model(seed=s) for s in (0, 1)]
    ens = EnsemblePotential(ms)
    g = ens.graph(a)
    e = [float(x.compute(g)["energy"][0]) for x in ms]
    assert abs(float(ens.compute(g)["energy"][0]) - np.mean(e)) < 1e-12
    unc = ens.compute_with_uncertainty(g)
    assert float(unc["energy_std"][0]) > 0


# ---------------------------------------------------------------------- dynamics
@pytest.mark.parametrize("n_steps", [100, pytest.param(1000, marks=pytest.mark.slow)])
def test_nve_energy_conserved_open_cluster(n_steps):
    """Velocity Verlet, 1 fs, a 600 K 8-ion cluster (model + LJ repulsion, as a sum
    potential): no drift, fluctuation ≪ kinetic energy."""
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet
    from cgkit.potentials.lennard_jones import LennardJones
    m = lr_model(baseline={"Na": 0.6, "Cl": -0.6})
    lj = LennardJones(sigma=2.6, epsilon=0.1, cutoff=6.0, type_names=["Na", "Cl"]).to(torch.float64)
    a = ion_cluster(12, 8)
    a.calc = CgkitCalculator(m + lj)
    MaxwellBoltzmannDistribution(a, temperature_K=600, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(a, 1.0 * units.fs)
    etot, ekin = [], []
    for _ in range(n_steps // 10):
        dyn.run(10)
        etot.append(a.get_total_energy())
        ekin.append(a.get_kinetic_energy())
    etot = np.array(etot)
    assert np.ptp(ekin) > 0.05
    assert np.ptp(etot) < 2e-3 * np.mean(ekin), (np.ptp(etot), np.mean(ekin))
    assert abs(np.polyfit(np.arange(len(etot)), etot, 1)[0] * len(etot)) < 1e-3 * np.mean(ekin)


# ---------------------------------------------------------------------- training (existing trainer)
@pytest.mark.slow
def test_trainer_fits_long_range_model_from_energies_and_forces(tmp_path):
    """`model: {file: lr.pt}` with the standard trainer: latent charges learnt from E and F only
    (teacher: fixed ±0.8 e charges + LJ); the validation force error drops below the error of
    the initial model."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write
    from cgkit.potentials.lennard_jones import LennardJones
    from cgkit.train import Trainer
    teacher = lr_model(baseline={"Na": 0.8, "Cl": -0.8}, learn_charges=False, seed=5)
    with torch.no_grad():
        for p in teacher.charge_out.parameters():
            p.zero_()
    teacher = teacher + LennardJones(sigma=2.6, epsilon=0.1, cutoff=6.0,
                                     type_names=["Na", "Cl"]).to(torch.float64)
    frames = []
    for s in range(16):
        a = ion_cluster(100 + s, 6)
        out = teacher.compute(teacher.graph(a))
        a.calc = SinglePointCalculator(a, energy=float(out["energy"][0]), forces=out["forces"].numpy())
        frames.append(a)
    write(tmp_path / "ions.xyz", frames)
    model = LongRangeENNP(["Na", "Cl"], 3.0, init_seed=1, **TINY)  # as created: small charges
    model.save(tmp_path / "lr.pt", metadata={"trained": False})
    cfg = {"output": str(tmp_path / "run"), "seed": 0, "model": {"file": str(tmp_path / "lr.pt")},
           "data": {"train": str(tmp_path / "ions.xyz"), "val_fraction": 0.25},
           "loss": {"energy": 1.0, "forces": 10.0}, "batch_size": 4, "max_epochs": 6,
           "optimizer": {"lr": 0.02}, "threads": 1}
    Trainer(cfg).run()
    trained = load_potential(tmp_path / "run" / "model.pt")
    assert isinstance(trained, LongRangeENNP)

    def force_rmse(m):
        err = [m.compute(m.graph(a))["forces"].numpy() - a.get_forces() for a in frames]
        return float(np.sqrt(np.mean(np.concatenate(err) ** 2)))
    before, after = force_rmse(load_potential(tmp_path / "lr.pt")), force_rmse(trained)
    print(f"force RMSE before {before:.3f}, after {after:.3f} eV/Å")
    assert after < 0.7 * before


def test_trainer_builds_a_long_range_model_from_the_config(tmp_path):
    """`model.long_range` in a training config gives a LongRangeENNP trained by the normal trainer."""
    from ase.build import bulk
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    from cgkit.errors import InputError as _InputError
    from cgkit.io_potential import load_potential
    from cgkit.nn import LongRangeENNP
    from cgkit.train.trainer import Trainer
    teacher = load_potential("cgkit:nacl-bmh:cutoff=5")
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(4):
        a = bulk("NaCl", "rocksalt", 5.64, cubic=True)
        a.positions += rng.normal(scale=0.05, size=a.positions.shape)
        out = teacher.compute(teacher.graph(a))
        a.calc = SinglePointCalculator(a, energy=float(out["energy"][0]), forces=out["forces"].numpy())
        frames.append(a)
    write(str(tmp_path / "nacl.extxyz"), frames)
    cfg = {"output": str(tmp_path / "run"), "max_epochs": 1, "batch_size": 2,
           "model": {"species": ["Na", "Cl"], "r_cut": 4.0, "channels": 4, "l_max": 1, "n_layers": 1,
                     "dtype": "float64", "long_range": {"charge_scheme": "bond"}},
           "data": {"train": str(tmp_path / "nacl.extxyz"), "val_fraction": 0.5}}
    tr = Trainer(cfg, progress=False).run()
    assert isinstance(tr.model, LongRangeENNP) and tr.model.charge_scheme == "bond"
    assert isinstance(load_potential(tmp_path / "run" / "model.pt"), LongRangeENNP)
    with pytest.raises(_InputError, match="unknown option.*model.long_range"):
        Trainer({**cfg, "output": str(tmp_path / "r2"),
                 "model": {**cfg["model"], "long_range": {"charges": 1}}}, progress=False).run()


def test_model_init_cli_writes_a_long_range_model(tmp_path, capsys):
    from cgkit.cli import main
    out = tmp_path / "lr.pt"
    assert main(["model", "init", "--species", "Na", "Cl", "--r-cut", "4", "--long-range", "--charge-scheme", "bond",
                 "--baseline-charges", "Na=1", "Cl=-1", "--dtype", "float64", "--out", str(out)]) == 0
    m = load_potential(out)
    assert isinstance(m, LongRangeENNP) and m.charge_scheme == "bond"
    q = m.atomic_charges(m.graph(bulk("NaCl", "rocksalt", 5.64, cubic=True))).detach()
    assert abs(float(q.sum())) < 1e-12
    assert main(["model", "init", "--species", "Na", "Cl", "--charge-scheme", "bond", "--out",
                 str(tmp_path / "x.pt")]) == 1
    assert "add --long-range" in capsys.readouterr().err
