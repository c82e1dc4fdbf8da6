"""The README runs as printed (issue 13, item 11).

Every fenced ```python block of README.md is written to a file and run in a fresh interpreter
in an empty temporary folder; every ``cgkit ...`` line of every ```bash block is run (in-process,
``cgkit.cli.main``) in a temporary folder holding small real inputs the test makes:

=================  ==========================================================================
README file        what the test puts there
=================  ==========================================================================
Si.cif, Cu.cif     ASE's primitive diamond Si / fcc Cu cells written by ``ase.io.write``
topol.tpr, conf.gro  20 OPLS-AA hexanes (GROMACS data committed in case_studies/hexane/data)
traj.trr           100 frames of that GROMACS trajectory (positions + forces)
hexane.xml         VOTCA's 3-bead hexane map (from votca-tutorials, or the same map inline)
sys.tpr, traj.xtc  4 bead-spring chains of 12 beads, bead types CG1/CG2 (PSF + XTC)
config.yaml        a 2-epoch training run on 6 SW-labelled 8-atom Si cells
mappings/          a link to the repository's mappings/
=================  ==========================================================================

Each bash block runs in its own folder (the blocks are separate sections: the Feature-notes
block repeats ``cgkit map ... --out cg/``, which a shared folder would refuse as non-empty);
within a block the lines run in README order (``fm`` reads the ``cg/`` that ``map`` wrote).

Substitutions are listed in ``SUBSTITUTIONS`` below, each with its reason, and are applied
visibly (the test id and any failure message show the command that ran). Lines that are not
``cgkit`` commands and the slow ``cgkit demo`` are listed in ``NOT_RUN`` / marked slow, with
the reason; nothing is skipped silently.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from tests.cli import data

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: (README text, replacement, reason) applied to each cgkit line, in order
SUBSTITUTIONS = [
    ("--topology topol.tpr", "--topology topol.gro",
     "MDAnalysis cannot write TPR files and GROMACS is not installed: the GRO of the same system"),
    ("--topology sys.tpr", "--topology sys.psf",
     "MDAnalysis cannot write TPR files: a PSF (bonds, bead types CG1/CG2) of the same chains"),
    ("--steps 200000", "--steps 200",
     "200 000 CG MD steps take minutes; 200 steps run the same code path"),
    ("--bonded ibi --temperature 300 --out hybrid/",
     "--bonded ibi --temperature 300 --ibi-iterations 1 --ibi-steps 200 --ibi-equilibration 50 --out hybrid/",
     "the default IBI (4 iterations of 6000 MD steps) takes ~40 s here; one short iteration "
     "runs the same code path"),
]

#: README lines of bash blocks that are not run here, and why
NOT_RUN = {
    "make demo": "a make target, not a cgkit command: it runs `cgkit demo` (see the slow test below)",
    "make test": "a make target, not a cgkit command: it runs this test suite",
}

#: cgkit lines that run only under `-m slow`, and why
SLOW = {
    "cgkit demo --out demo_output --size small":
        "the whole multiscale chain (minutes on 2 cores): slow suite only",
}


# ----------------------------------------------------------------------------- README parsing
def _blocks(lang: str):
    """[(first README line number of the block's body (1-based), body text)] for ```lang fences."""
    lines = README.read_text().splitlines()
    out, k = [], 0
    while k < len(lines):
        if lines[k].strip() == f"```{lang}":
            start = k + 1
            j = start
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            out.append((start + 1, "\n".join(lines[start:j])))
            k = j + 1
        else:
            k += 1
    return out


def _bash_commands():
    """[(block index, README line number, command as printed)]: continuation lines joined,
    trailing ``# comments`` dropped."""
    cmds = []
    for b, (first, body) in enumerate(_blocks("bash")):
        lines = body.splitlines()
        k = 0
        while k < len(lines):
            lineno = first + k
            text = lines[k]
            while text.rstrip().endswith("\\") and k + 1 < len(lines):
                k += 1
                text = text.rstrip()[:-1].rstrip() + " " + lines[k].strip()
            k += 1
            text = re.sub(r"\s+#.*$", "", text).strip()
            if text:
                cmds.append((b, lineno, text))
    return cmds


def _substitute(cmd: str) -> tuple[str, list[str]]:
    used = []
    for old, new, why in SUBSTITUTIONS:
        if old in cmd:
            cmd = cmd.replace(old, new)
            used.append(f"{old!r} -> {new!r} ({why})")
    return cmd, used


PY_BLOCKS = _blocks("python")
BASH = _bash_commands()


def test_readme_has_the_examples_this_test_runs():
    assert PY_BLOCKS, "README.md has no ```python block"
    assert any(c.startswith("cgkit ") for _, _, c in BASH), "README.md has no cgkit command"
    # every substitution still matches a README line (otherwise the table is stale)
    for old, _, _ in SUBSTITUTIONS:
        assert any(old in c for _, _, c in BASH), f"substitution {old!r} matches no README command"


# ----------------------------------------------------------------------------- python blocks
@pytest.mark.parametrize("first,body", PY_BLOCKS, ids=[f"README.md:{n}" for n, _ in PY_BLOCKS])
def test_readme_python_block_runs(first, body, tmp_path):
    script = tmp_path / "block.py"
    script.write_text(body + "\n")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.pop("CGKIT_DEBUG", None)
    p = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                       env=env, timeout=600)
    if p.returncode != 0:
        # name the README line of the failing statement
        m = re.findall(r'File "[^"]*block\.py", line (\d+)', p.stderr)
        where = f"README.md:{first + int(m[-1]) - 1}" if m else f"README.md block at line {first}"
        line = body.splitlines()[int(m[-1]) - 1].strip() if m else ""
        last = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
        pytest.fail(f"{where}: `{line}` -> {last}\n{p.stderr[-3000:]}")


# ----------------------------------------------------------------------------- bash blocks
@pytest.fixture(scope="module")
def readme_inputs(tmp_path_factory):
    """One folder per bash block, each holding the inputs of the table in the module docstring."""
    cache = {}

    def get(block: int) -> Path:
        if block not in cache:
            d = tmp_path_factory.mktemp(f"readme_block{block}")
            data.write_crystals(d)
            data.write_aa_hexane(d, n_frames=100, gro="conf.gro", trr="traj.trr")
            (d / "topol.gro").write_bytes((d / "conf.gro").read_bytes())
            data.write_cg_polymer(d, psf="sys.psf", xtc="traj.xtc")
            data.write_train_config(d, "config.yaml", out="run")
            (d / "hexane.xml").write_text(data.hexane_votca_xml())
            (d / "mappings").symlink_to(ROOT / "mappings")
            cache[block] = d
        return cache[block]
    return get


def _bash_params():
    params = []
    for b, lineno, cmd in BASH:
        ident = f"README.md:{lineno}:{cmd.split(' --')[0][:40]}"
        marks = []
        if cmd in SLOW:
            marks.append(pytest.mark.slow)
        params.append(pytest.param(b, lineno, cmd, id=ident, marks=marks))
    return params


_RAN: set = set()


def _run(cmd: str):
    """Run one README cgkit line (after SUBSTITUTIONS) in-process; (command run, notes, exit code)."""
    from cgkit.cli import main
    ran, used = _substitute(cmd)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            rc = main(shlex.split(ran)[1:])
        except SystemExit as exc:        # argparse: unknown option / bad value
            rc = exc.code
    return ran, used, rc


@pytest.mark.parametrize("block,lineno,cmd", _bash_params())
def test_readme_command_runs(block, lineno, cmd, readme_inputs, monkeypatch, capsys):
    if not cmd.startswith("cgkit "):
        reason = NOT_RUN.get(cmd)
        assert reason, (f"README.md:{lineno}: `{cmd}` is neither a cgkit command nor listed in "
                        "NOT_RUN with a reason")
        pytest.skip(f"README.md:{lineno}: `{cmd}` not run: {reason}")
    workdir = readme_inputs(block)
    monkeypatch.chdir(workdir)
    # earlier lines of the same block first (their outputs are this line's inputs), when this
    # line is run alone (pytest -k); their failures are reported by their own test ids
    for b, n, earlier in BASH:
        if b == block and n < lineno and earlier.startswith("cgkit ") and earlier not in SLOW \
                and (b, n) not in _RAN:
            _run(earlier)
            _RAN.add((b, n))
    capsys.readouterr()
    _RAN.add((block, lineno))
    ran, used, rc = _run(cmd)
    argv = shlex.split(ran)[1:]
    cap = capsys.readouterr()
    note = f"\n  substituted: {'; '.join(used)}" if used else ""
    assert rc == 0, (f"README.md:{lineno}: `{cmd}` exited {rc}{note}\n  ran: cgkit {' '.join(argv)} "
                     f"in {workdir}\n  stderr: {cap.err.strip()[-2000:]}")
    assert "Traceback" not in cap.err
    # "Each command writes an output folder with summary.json" (README, Command line)
    if "--out" in argv:
        out = Path(argv[argv.index("--out") + 1])
        if not out.suffix:
            assert (out / "summary.json").is_file(), f"README.md:{lineno}: no {out}/summary.json"
            from cgkit.jsonutil import loads_strict
            loads_strict((out / "summary.json").read_text())


# ----------------------------------------------------------------------------- potential specs
SPEC = re.compile(r"`((?:cgkit|ase):[A-Za-z][^`\s]*)`")


def _readme_specs():
    return sorted(set(SPEC.findall(README.read_text())))


def test_readme_quotes_potential_specs():
    assert _readme_specs(), "README.md quotes no `cgkit:...` / `ase:...` potential spec"


#: structures the charged built-ins are meant for (the others get Si for cgkit:, Cu for ase:)
SPEC_STRUCTURES = {
    "cgkit:coulomb": "NaCl8.extxyz",    # rock salt with initial charges ±1 e
    "cgkit:nacl-bmh": "NaCl8.extxyz",
    "cgkit:spcfw": "water8.extxyz",     # 8 water molecules in a 6.2 Å box
}


def _write_charged_structures(d):
    import ase.io
    import numpy as np
    from ase import Atoms
    from ase.build import bulk
    nacl = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    nacl.set_initial_charges([1.0 if s == "Na" else -1.0 for s in nacl.get_chemical_symbols()])
    ase.io.write(str(d / "NaCl8.extxyz"), nacl)
    rng = np.random.default_rng(1)
    pos, syms = [], []
    theta = np.radians(109.0)
    for ijk in np.ndindex(2, 2, 2):
        o = (np.array(ijk) + 0.5) * 3.1
        R = np.linalg.qr(rng.normal(size=(3, 3)))[0]
        pos += [o, o + R @ np.array([1.0, 0.0, 0.0]), o + R @ np.array([np.cos(theta), np.sin(theta), 0.0])]
        syms += ["O", "H", "H"]
    ase.io.write(str(d / "water8.extxyz"), Atoms(syms, positions=pos, cell=np.eye(3) * 6.2, pbc=True))


@pytest.mark.parametrize("spec", _readme_specs())
def test_readme_potential_spec_is_accepted_by_the_cli(spec, tmp_path, monkeypatch, capsys):
    """Every --potential spec the README quotes runs `cgkit elastic` (Si for cgkit built-ins,
    Cu for ASE calculators: structures the potentials are meant for)."""
    from cgkit.cli import main
    monkeypatch.chdir(tmp_path)
    data.write_crystals(tmp_path)
    _write_charged_structures(tmp_path)
    structure = next((f for prefix, f in SPEC_STRUCTURES.items() if spec.startswith(prefix)),
                     "Si.cif" if spec.startswith("cgkit:") else "Cu.cif")
    argv = ["elastic", "--structure", structure, "--potential", spec, "--clamped-only", "--out", "el"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code
    err = capsys.readouterr().err
    assert rc == 0, f"README spec `{spec}`: `cgkit {' '.join(argv)}` exited {rc}: {err.strip()[-1500:]}"
