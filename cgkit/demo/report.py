"""Stage f — the report: ``report/index.html`` (self-contained, PNGs beside it), ``report/report.md``
and ``summary.json`` in the output folder.

The summary table puts every number beside its reference and its target with a mark:
``PASS`` / ``FAIL`` where the issue sets an acceptance target, ``info`` where a number has a
reference but no target, ``skipped`` where a stage did not run and ``failed`` where it failed
(with the reason; a stage that reached its wall-clock safety limit is failed). Rows that are
measurements of the machine (speed-up, wall time) carry ``"timing": true`` in
``summary.json``: every other number is reproduced exactly by the same command.
"""
from __future__ import annotations

import html
import shutil
from pathlib import Path

from ..jsonutil import write_json, write_text_atomic
from .config import STAGES, TARGETS

__all__ = ["run", "summary_rows"]

TOTAL_BUDGET_S = 900.0

_TITLES = {"teacher": "a. Teachers → ENNPs (TraPPE-UA polyethylene, Stillinger–Weber silicon)",
           "atomistic": "b. Atomistic MD of the melt driven by the ENNP",
           "forcematch": "c. 4:1 mapping and spline force matching",
           "cg": "d. CG MD and comparison with the mapped atomistic trajectory",
           "silicon": "e. Silicon phonons and elastic constants: ENNP vs SW",
           "report": "f. Report"}

_CAPTIONS = {
    "learning_curve": "Training curves of the distilled ENNP (loss; validation MAE of forces in meV/Å "
                      "and energies in meV/atom).",
    "md_thermo": "ENNP atomistic Langevin MD: kinetic temperature and potential energy per site.",
    "bonded_tables": "Bond and angle potentials: spline MS-CG (dotted) and the Boltzmann-inverted, "
                     "IBI-refined tables used in CG MD (solid); right: JS divergence of the CG bonded "
                     "distributions vs the mapped ones during IBI.",
    "tables": "Spline MS-CG tables: generalised force (top, with 2σ jackknife band) and potential "
              "(bottom) of every interaction (pairs and dihedrals are used as fitted).",
    "bonded_distributions": "Bond-length and bond-angle distributions of the CG beads: mapped atomistic "
                            "vs CG MD (JS divergence in the titles).",
    "rdf": "Intermolecular bead–bead radial distribution function.",
    "rg_time": "Mean chain radius of gyration vs simulated time.",
    "speed": "Simulated femtoseconds per wall-clock second, one thread each.",
    "phonons": "Silicon phonon band structure and DOS: SW teacher (solid) and distilled ENNP (dashed).",
    "elastic": "Relaxed-ion elastic constants of silicon.",
}


def _fmt(v, nd=3):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    v = float(v)
    if v != v:
        return "nan"
    if abs(v) >= 1000 or (abs(v) < 1e-3 and v != 0):
        return f"{v:.3g}"
    return f"{v:.{nd}f}".rstrip("0").rstrip(".") if "." in f"{v:.{nd}f}" else f"{v:.{nd}f}"


def _row(section, quantity, value, unit, reference, target, status, note="", timing=False):
    row = {"section": section, "quantity": quantity, "value": value, "unit": unit,
           "reference": reference, "target": target, "status": status, "note": note}
    if timing:
        row["timing"] = True
    return row


def summary_rows(res: dict) -> list[dict]:
    """The summary table from the stage results ({stage: result dict})."""
    rows = []

    def skipped(stage, section, names):
        r = res.get(stage, {})
        reason = r.get("reason", "stage not run")
        st = "failed" if r.get("status") == "failed" else "skipped"
        for n in names:
            rows.append(_row(section, n, None, "", None, None, st, reason))

    t = res.get("teacher", {})
    if t.get("status") == "ok":
        for key, label in (("pe", "PE"), ("si", "Si")):
            e = t[key]["ennp"]
            rms = t[key]["ennp"].get("force_ref_rms") or t[key]["teacher_force_rms"]
            ratio = e["force_mae"] / rms if e["force_mae"] is not None and rms else None
            rows.append(_row("a. ENNP", f"{label} ENNP validation force MAE", e["force_mae"], "eV/Å",
                             f"teacher force RMS {_fmt(rms)} eV/Å (validation set)", "MAE ≤ 0.25 × RMS (demo criterion)",
                             "PASS" if ratio is not None and ratio <= 0.25 else "FAIL",
                             f"MAE/RMS = {_fmt(ratio)}; {e['n_train']} train / {e['n_val']} val structures, "
                             f"{e['epochs']} epochs, {e['n_parameters']} parameters"))
        e = t["si"]["ennp"]
        if e.get("stress_mae_GPa") is not None:
            rows.append(_row("a. ENNP", "Si ENNP validation stress MAE", e["stress_mae_GPa"], "GPa",
                             "SW stress", None, "info"))
    else:
        skipped("teacher", "a. ENNP", ["PE ENNP validation force MAE", "Si ENNP validation force MAE"])

    a = res.get("atomistic", {})
    if a.get("status") == "ok":
        rows.append(_row("b. atomistic MD", "mean temperature (2nd half)", a["mean_temperature_K"], "K",
                         "thermostat 450 K", None, "info",
                         f"{a['simulated_ps']:.2f} ps simulated"))
        rows.append(_row("b. atomistic MD", "ENNP force MAE on its own MD frames", a["teacher_force_mae_on_md_frames"],
                         "eV/Å", f"TraPPE-UA force RMS {_fmt(a['teacher_force_rms_on_md_frames'])} eV/Å",
                         None, "info"))
        if a.get("bond_length_min_max_A"):
            lo, hi = a["bond_length_min_max_A"]
            rows.append(_row("b. atomistic MD", "longest C–C bond during ENNP MD", hi, "Å",
                             "TraPPE-UA r₀ = 1.54 Å (thermal spread ≈ ±0.1 Å)", None, "info",
                             f"shortest {lo:.3f} Å; a bond above ~2 Å means the ENNP broke a chain"))
    else:
        skipped("atomistic", "b. atomistic MD", ["ENNP MD of the melt"])

    f = res.get("forcematch", {})
    if f.get("status") == "ok":
        for bt, r in f["residual"].items():
            rows.append(_row("c. force matching", f"RMS force residual, bead type {bt}",
                             r["rms_residual_eV_per_A"], "eV/Å", f"mapped force RMS {_fmt(r['rms_force_eV_per_A'])} eV/Å",
                             None, "info", "MS-CG residual includes the unavoidable many-body noise"))
        for bt, r in (f.get("residual_hybrid") or {}).items():
            rows.append(_row("c. force matching", f"hybrid (BI bonds/angles fixed): RMS force residual, bead type {bt}",
                             r["rms_residual_eV_per_A"], "eV/Å",
                             f"force left by the fixed tables {_fmt(r['rms_force_eV_per_A'])} eV/Å",
                             None, "info", "pairs and dihedrals force-matched on what the fixed tables leave"))
        nn = f.get("neural_cg") or {}
        if nn.get("status") == "ok":
            rows.append(_row("c. force matching", "neural CG (ENNP on the spline prior): RMS force residual",
                             nn["prior_plus_nn_residual_eV_per_A"], "eV/Å",
                             f"prior alone {_fmt(nn['prior_residual_eV_per_A'])} eV/Å", None, "info",
                             "force matching on mapped forces; not used for the CG MD comparison"))
        else:
            rows.append(_row("c. force matching", "neural CG potential", None, "", None, None, "skipped",
                             nn.get("reason", "not run")))
    else:
        skipped("forcematch", "c. force matching", ["spline MS-CG"])

    c = res.get("cg", {})
    if c.get("status") == "ok":
        rows.append(_row("d. CG vs atomistic", "JS divergence, bond length", c["js_bond"], "bit",
                         f"mean {_fmt(c['bond_mean_A']['reference'])} vs {_fmt(c['bond_mean_A']['cg'])} Å",
                         f"< {TARGETS['js_bond']}", "PASS" if c["js_bond"] < TARGETS["js_bond"] else "FAIL"))
        rows.append(_row("d. CG vs atomistic", "JS divergence, bond angle", c["js_angle"], "bit",
                         f"mean {_fmt(c['angle_mean_deg']['reference'])} vs {_fmt(c['angle_mean_deg']['cg'])} deg",
                         f"< {TARGETS['js_angle']}", "PASS" if c["js_angle"] < TARGETS["js_angle"] else "FAIL"))
        rg = c["rg"]
        ok = c["rg_rel_diff"] is not None and c["rg_rel_diff"] < TARGETS["rg_rel"]
        rows.append(_row("d. CG vs atomistic", "R_g (CG)", rg["cg"], "Å", f"mapped atomistic {_fmt(rg['reference'])} Å",
                         f"within {100 * TARGETS['rg_rel']:.0f} %", "PASS" if ok else "FAIL",
                         f"relative difference {100 * (c['rg_rel_diff'] or float('nan')):.1f} %; the atomistic "
                         f"reference covers {_fmt(a.get('simulated_ps'), 1)} ps, the CG run {_fmt(c.get('simulated_ps'), 1)} ps "
                         "(chain relaxation takes tens of ps: see the R_g time series)"))
        for key, label in (("ree", "RMS R_ee (CG)"), ("persistence_length", "persistence length (CG, bond ACF)"),
                           ("persistence_length_wlc", "persistence length (CG, worm-like chain from R_ee)")):
            q = c.get(key) or {}
            rows.append(_row("d. CG vs atomistic", label, q.get("cg"), q.get("unit") or "Å",
                             f"mapped atomistic {_fmt(q.get('reference'))} Å", None, "info",
                             "" if q.get("cg") is not None else "no value: the fit needs a longer run"))
        rows.append(_row("d. CG vs atomistic", "RMS difference of intermolecular g(r)",
                         c["rdf_inter_rms_difference"], "", "0 (identical)", None, "info"))
        dd = c["density_g_cm3"]
        rows.append(_row("d. CG vs atomistic", "mass density", dd["cg"], "g/cm³", f"{_fmt(dd['reference'])} g/cm³",
                         None, "info", dd["note"]))
        rows.append(_row("d. CG vs atomistic", "speed-up (simulated time per wall second)", c["speedup"], "×",
                         f"ENNP {_fmt(c['atomistic_fs_per_wall_s'])} fs/s vs CG {_fmt(c['fs_per_wall_s'])} fs/s",
                         f"≥ {TARGETS['speedup']:.0f}×", "PASS" if c["speedup"] >= TARGETS["speedup"] else "FAIL",
                         "same machine, one thread each", timing=True))
    else:
        skipped("cg", "d. CG vs atomistic", ["JS divergence, bond length", "JS divergence, bond angle",
                                              "R_g (CG)", "speed-up"])

    s = res.get("silicon", {})
    if s.get("status") == "ok":
        rows.append(_row("e. silicon", "max |ν_ENNP − ν_SW| along the band path", s["phonon_max_abs_diff_THz"],
                         "THz", f"SW max frequency {_fmt(s['SW']['max_band_frequency_THz'])} THz",
                         f"≤ {TARGETS['phonon_thz']}", "PASS" if s["phonon_max_abs_diff_THz"] <= TARGETS["phonon_thz"] else "FAIL",
                         f"mean |Δν| {_fmt(s['phonon_mean_abs_diff_THz'])} THz"))
        for k in ("C11", "C12", "C44"):
            dv = abs(s["ENNP"][k] - s["SW"][k])
            rows.append(_row("e. silicon", f"{k} (relaxed ion), ENNP", s["ENNP"][k], "GPa",
                             f"SW {_fmt(s['SW'][k], 1)} GPa", f"within {TARGETS['elastic_gpa']:.0f} GPa",
                             "PASS" if dv <= TARGETS["elastic_gpa"] else "FAIL", f"|Δ| = {_fmt(dv, 2)} GPa"))
        rows.append(_row("e. silicon", "max |ΔC_ij| over the 6×6 tensor", s["elastic_max_abs_diff_GPa"], "GPa",
                         "SW", f"≤ {TARGETS['elastic_gpa']:.0f}",
                         "PASS" if s["elastic_max_abs_diff_GPa"] <= TARGETS["elastic_gpa"] else "FAIL"))
        rows.append(_row("e. silicon", "ENNP pressure at SW's lattice constant", s["ENNP"]["pressure_GPa"], "GPa",
                         f"SW {_fmt(s['SW']['pressure_GPa'])} GPa", None, "info"))
    else:
        skipped("silicon", "e. silicon", ["phonons", "elastic constants"])

    total = sum(float(res.get(st, {}).get("wall_time_s") or 0.0) for st in STAGES if st != "report")
    ran = [st for st in STAGES if st != "report" and res.get(st, {}).get("status") == "ok"]
    if len(ran) == len(STAGES) - 1:
        rows.append(_row("timing", "total wall time of the stages", total, "s", None,
                         f"≤ {TOTAL_BUDGET_S:.0f} s", "PASS" if total <= TOTAL_BUDGET_S else "FAIL",
                         timing=True))
    else:
        rows.append(_row("timing", "total wall time of the stages", total if ran else None, "s", None,
                         f"≤ {TOTAL_BUDGET_S:.0f} s", "info" if ran else "skipped",
                         "not every stage ran in this output folder", timing=True))
    return rows


def _copy_figures(ctx, res, fig_dir: Path) -> dict:
    out = {}
    for st in STAGES:
        for rel in res.get(st, {}).get("figures", []) or []:
            src = ctx.out / rel
            if src.is_file():
                name = rel.replace("/", "_")
                shutil.copy2(src, fig_dir / name)
                out.setdefault(st, []).append(("figures/" + name, Path(name).stem))
    return out


def _caption(stem: str) -> str:
    prefix = {"teacher_pe": "Polyethylene (TraPPE-UA teacher). ", "teacher_si": "Silicon (SW teacher). "}
    pre = next((v for k, v in prefix.items() if stem.startswith(k)), "")
    for k, v in _CAPTIONS.items():
        if k in stem:
            return pre + v
    return stem


_CSS = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;width:100%;font-size:14px}th,td{border:1px solid #ccc;padding:4px 6px;
text-align:left;vertical-align:top}th{background:#f0f0f0}.PASS{color:#fff;background:#2a7d2a;font-weight:bold}
.FAIL{color:#fff;background:#b22;font-weight:bold}.info{color:#555}.skipped,.failed{color:#fff;background:#888}
figure{display:inline-block;margin:8px;max-width:520px;vertical-align:top}figure.wide{max-width:100%}figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:13px;color:#444}code{background:#f4f4f4;padding:1px 3px}"""


def run(ctx) -> dict:
    res = {st: ctx.read_result(st) for st in STAGES if st != "report"}
    rdir = ctx.dir("report")
    fig_dir = rdir / "figures"
    fig_dir.mkdir(exist_ok=True)
    figs = _copy_figures(ctx, res, fig_dir)
    rows = summary_rows(res)
    cfg = ctx.cfg
    # targets on computed numbers (reproducible) and on timings (machine-dependent), apart
    n_pass = sum(r["status"] == "PASS" for r in rows if not r.get("timing"))
    n_fail = sum(r["status"] == "FAIL" for r in rows if not r.get("timing"))
    timing_marks = {m: sum(r["status"] == m for r in rows if r.get("timing")) for m in ("PASS", "FAIL")}
    marks_txt = (f"{n_pass} targets passed, {n_fail} failed (timing targets on this machine: "
                 f"{timing_marks['PASS']} passed, {timing_marks['FAIL']} failed).")
    failed = {st: r.get("reason") for st, r in res.items() if r and r.get("status") == "failed"}
    failed_txt = "".join(f" Stage {st} FAILED: {why}." for st, why in failed.items())

    # ---------------- HTML
    h = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>cgkit demo report</title>",
         f"<style>{_CSS}</style></head><body>",
         "<h1>cgkit demo: teacher → ENNP → atomistic MD → CG → properties</h1>",
         f"<p>Size <code>{html.escape(str(cfg['size']))}</code>, step scale {cfg['steps']}, seed {cfg['seed']}. "
         f"{marks_txt}{html.escape(failed_txt)} Units: eV, Å, fs, amu, GPa, THz; "
         "JS divergences in bits.</p>",
         "<h2>Summary</h2><table><tr><th>section</th><th>quantity</th><th>value</th><th>unit</th>"
         "<th>reference</th><th>target</th><th>mark</th><th>note</th></tr>"]
    for r in rows:
        h.append("<tr>" + "".join(f"<td>{html.escape(_fmt(r[k]) if k == 'value' else str(r[k] or '—'))}</td>"
                                  for k in ("section", "quantity", "value", "unit", "reference", "target"))
                 + f"<td class='{r['status']}'>{r['status']}</td><td>{html.escape(r['note'])}</td></tr>")
    h.append("</table><h2>Stages</h2><table><tr><th>stage</th><th>status</th><th>wall time (s)</th>"
             "<th>safety limit (s)</th><th>note</th></tr>")
    for st in STAGES:
        r = res.get(st) if st != "report" else None
        if r is None:
            continue
        h.append(f"<tr><td>{st}</td><td class='{'info' if r.get('status') == 'ok' else 'skipped'}'>"
                 f"{r.get('status', 'not run')}</td><td>{_fmt(r.get('wall_time_s'), 1)}</td>"
                 f"<td>{_fmt(r.get('time_limit_s'), 0)}</td><td>{html.escape(str(r.get('reason', '')))}</td></tr>")
    h.append("</table>")
    for st in STAGES:
        if st not in figs:
            continue
        h.append(f"<h2>{html.escape(_TITLES[st])}</h2>")
        for src, stem in figs[st]:
            cap = _caption(stem)
            wide = " class='wide'" if any(w in stem for w in ("tables", "phonons", "bonded_distributions")) else ""
            h.append(f"<figure{wide}><a href='{src}'><img src='{src}' alt='{html.escape(stem)}'></a>"
                     f"<figcaption>{html.escape(cap)}</figcaption></figure>")
    h.append("<h2>Method notes</h2><ul>"
             "<li>ENNPs are trained on teacher labels only (energies, forces; silicon also stresses); "
             "validation MAEs are on a held-out 15 % of the sampled structures.</li>"
             "<li>The CG comparison uses the ENNP trajectory mapped with "
             "<code>mappings/polyethylene_ua_4to1.yaml</code>; CG MD starts from its first mapped frame, "
             "the first 10 % of the CG run is discarded.</li>"
             "<li>Speed-up: simulated time per wall second of the two MD runs of this demo on the same "
             "machine, one thread each.</li>"
             "<li>Silicon properties of both models are evaluated at SW's lattice constant 5.431 Å.</li></ul>")
    h.append("</body></html>")
    write_text_atomic(rdir / "index.html", "\n".join(h))

    # ---------------- Markdown
    md = ["# cgkit demo report", "",
          f"Size `{cfg['size']}`, step scale {cfg['steps']}, seed {cfg['seed']}: {marks_txt}{failed_txt} "
          "JS divergences in bits.", "",
          "| section | quantity | value | unit | reference | target | mark | note |",
          "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append("| " + " | ".join([r["section"], r["quantity"], _fmt(r["value"]), r["unit"] or "",
                                     str(r["reference"] or "—"), str(r["target"] or "—"), r["status"],
                                     r["note"].replace("|", "/")]) + " |")
    md += ["", "| stage | status | wall time (s) | safety limit (s) |", "|---|---|---|---|"]
    for st in STAGES:
        r = res.get(st)
        if r:
            md.append(f"| {st} | {r.get('status')} | {_fmt(r.get('wall_time_s'), 1)} | {_fmt(r.get('time_limit_s'), 0)} |")
    for st in STAGES:
        if st in figs:
            md += ["", f"## {_TITLES[st]}", ""]
            md += [f"![{_caption(stem)}]({src})" for src, stem in figs[st]]
    write_text_atomic(rdir / "report.md", "\n".join(md) + "\n")

    summary = {"config": {k: cfg[k] for k in ("size", "steps", "seed")}, "targets": TARGETS,
               "rows": rows, "n_pass": n_pass, "n_fail": n_fail, "timing_marks": timing_marks,
               "failed_stages": failed,
               "stages": {st: {k: v for k, v in r.items() if k not in ("figures", "traceback")}
                          for st, r in res.items() if r},
               "wall_time_s": {st: r.get("wall_time_s") for st, r in res.items() if r},
               "report": "report/index.html"}
    write_json(ctx.out / "summary.json", summary, indent=1)
    print(f"[cgkit demo] report: {(ctx.display_out / 'report' / 'index.html').resolve()}", flush=True)
    return {"index_html": ctx.rel(rdir / "index.html"), "n_pass": n_pass, "n_fail": n_fail}
