"""Stage e — silicon phonons and elastic constants: distilled ENNP beside its SW teacher.

Both models are evaluated in float64 at SW's lattice constant (5.431 Å) so that the
comparison is of the force constants alone; the ENNP's residual pressure there is reported.

* Phonons (:class:`cgkit.properties.phonons.Phonons`, analytic Hessians, phonopy) in an n×n×n
  supercell of the conventional 8-atom cubic cell (n = 3 by default: 216 atoms, 16.3 Å wide,
  more than twice the 8 Å reach of the two-layer ENNP, so no force constant is folded): band
  structure along the standard fcc path and DOS; the figure of merit is max |ν_ENNP − ν_SW|
  over every branch and q-point of the path (THz).
* Elastic constants (:class:`cgkit.properties.elastic.ElasticConstants`, analytic Born term plus
  internal relaxation) of the 8-atom cubic cell: relaxed-ion C11, C12, C44 (GPa) and
  max |ΔC_ij| over the 6×6 tensor.
"""
from __future__ import annotations

import copy
import warnings

import numpy as np

from .common import plt, savefig

__all__ = ["run"]

A_SW = 5.431  # Å, SW's diamond lattice constant


def run(ctx) -> dict:
    import torch
    from ase.build import bulk

    from cgkit.properties.elastic import ElasticConstants
    from cgkit.properties.phonons import Phonons

    from ..calculator import CgkitCalculator
    from ..io_potential import load_potential
    from ..potentials.stillinger_weber import StillingerWeber
    from ..units import EV_PER_A3_TO_GPA

    ctx.read_result("teacher", needed_by="silicon")
    ennp = load_potential(ctx.need("teacher", ctx.out / "teacher" / "si_ennp" / "model.pt", "silicon"))
    ennp = copy.deepcopy(ennp).to(torch.float64)
    sw = StillingerWeber().to(torch.float64)
    p = ctx.cfg["silicon"]
    cubic = bulk("Si", "diamond", A_SW, cubic=True)
    n = int(p["supercell"])
    out, ph = {}, {}
    for name, model in (("SW", sw), ("ENNP", ennp)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            phon = Phonons(cubic, model, supercell=(n, n, n), mesh=(p["mesh"],) * 3,
                           band_npoints=p["band_npoints"], progress=False).run()
        ph[name] = phon
        el = ElasticConstants(cubic, model, method="analytic", relax_ions=True).run()
        C = np.asarray(el.results["C_relaxed"], dtype=float)
        a = cubic.copy()
        a.calc = CgkitCalculator(model)
        pressure = -float(np.trace(a.get_stress(voigt=False))) / 3 * EV_PER_A3_TO_GPA
        out[name] = {"C_relaxed_GPa": C, "C11": C[0, 0], "C12": C[0, 1], "C44": C[3, 3],
                     "C_clamped_C44": float(np.asarray(el.results["C_clamped"])[3, 3]),
                     "max_band_frequency_THz": phon.results["max_frequency_band"],
                     "gamma_optical_THz": float(max(phon.results["gamma"]["frequencies"])),
                     "pressure_GPa": pressure}
    f_sw = np.concatenate([np.asarray(f) for f in ph["SW"].results["band"]["frequencies"]])
    f_nn = np.concatenate([np.asarray(f) for f in ph["ENNP"].results["band"]["frequencies"]])
    dfreq = np.abs(f_nn - f_sw)
    dC = np.abs(out["ENNP"]["C_relaxed_GPa"] - out["SW"]["C_relaxed_GPa"])
    d = ctx.dir("silicon")
    # band structure + DOS, both models
    fig, (ax, axd) = plt().subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [3, 1]},
                                    sharey=True)
    b = ph["SW"].results["band"]
    for name, style in (("SW", dict(color="k", lw=1.2)), ("ENNP", dict(color="C3", lw=1.0, ls="--"))):
        bb = ph[name].results["band"]
        for x, f in zip(bb["distances"], bb["frequencies"]):
            ax.plot(x, f, **style)
        dos = ph[name].results["dos"]
        axd.plot(dos["dos"], dos["frequencies"], label=name, **style)
    for x in b["label_positions"]:
        ax.axvline(x, color="0.7", lw=0.6)
    ax.set_xticks(b["label_positions"])
    ax.set_xticklabels(b["labels"])
    ax.set_xlim(b["label_positions"][0], b["label_positions"][-1])
    ax.set_ylabel("frequency (THz)")
    ax.set_xlabel("wave vector along the fcc path")
    from matplotlib.lines import Line2D
    ax.legend([Line2D([], [], color="k", lw=1.2), Line2D([], [], color="C3", lw=1.0, ls="--")],
              ["SW teacher", "distilled ENNP"], loc="lower right", fontsize=8)
    ax.set_title(f"Si phonons: max |Δν| = {dfreq.max():.3f} THz", fontsize=10)
    axd.set_xlabel("DOS (states/THz per cell)")
    savefig(fig, d / "phonons.png")
    # elastic constants bar chart
    fig, ax = plt().subplots(figsize=(5, 3.4))
    names = ["C11", "C12", "C44"]
    x = np.arange(3)
    ax.bar(x - 0.2, [out["SW"][k] for k in names], 0.4, label="SW teacher", color="0.4")
    ax.bar(x + 0.2, [out["ENNP"][k] for k in names], 0.4, label="distilled ENNP", color="C3")
    ax.set_xticks(x)
    ax.set_xticklabels(names)
    ax.set_ylabel("relaxed-ion elastic constant (GPa)")
    ax.legend(fontsize=8)
    savefig(fig, d / "elastic.png")
    for name in ("SW", "ENNP"):
        ph[name].to_json(d / f"phonons_{name}.json", full=True)
    return {"lattice_constant_A": A_SW, "supercell": n, "band_npoints": p["band_npoints"],
            "phonon_max_abs_diff_THz": float(dfreq.max()), "phonon_mean_abs_diff_THz": float(dfreq.mean()),
            "elastic_max_abs_diff_GPa": float(dC.max()), "SW": out["SW"], "ENNP": out["ENNP"],
            "figures": [ctx.rel(d / "phonons.png"), ctx.rel(d / "elastic.png")]}
