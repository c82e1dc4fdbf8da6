"""Right or refused (issue 13, acceptance): corrupted real inputs for map, fm, md, polymer,
phonons and elastic. Every run either

* exits 0 with a correct result: strict JSON, no nan/inf in any data file or trajectory, and
  the case's own check (same numbers as the clean input where the corruption changes nothing
  physical, e.g. a left-handed cell of the same lattice or a duplicated frame); or
* exits 1 with one line ``cgkit <cmd>: error: ...`` on stderr as its last line, no traceback,
  and no output folder or staging folder left at ``--out``.

Exit code 3 (internal error) is always a failure. The cases are in ``tests/cli/corpus.py``
(``python -m tests.cli.corpus CASE_ID DIR`` writes a case's inputs and prints its command).
A seeded random layer draws further corruptions (kind, frame, atom, truncation point); more
of them run under ``-m slow``. A few cases also run as a subprocess (``python -m cgkit.cli``)
to check that no traceback reaches the terminal.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cgkit.jsonutil import loads_strict

from . import corpus
from .conftest import assert_one_line_error, leftovers, run_cli, scan_outputs

N_RANDOM_FAST = 6
N_RANDOM_SLOW = 60


def _run_case(case: corpus.Case, d, cg_potential):
    info = corpus.prepare_case(case, d, cg_potential if "potential" in case.needs else None)
    res = run_cli(case.args(d))
    out = d / "out"
    where = (f"case {case.id} ({case.note or case.expect}; corruption {info or '-'})\n  "
             f"reproduce: .venv/bin/python -m tests.cli.corpus {case.id} /tmp/case && "
             f".venv/bin/cgkit {' '.join(case.args('/tmp/case'))}\n  " + res.describe())
    assert res.rc in (0, 1), f"exit code {res.rc} (3 = internal error, 2 = option parsing)\n  {where}"
    assert not res.unraisable, (f"a traceback reaches the terminal ('Exception ignored in ...'): "
                                f"{res.unraisable}\n  {where}")
    if res.rc == 1:
        assert case.expect in ("refuse", "either"), f"refused a valid input\n  {where}"
        assert_one_line_error(res, case.command)
        assert not leftovers(out), f"a refused run left output behind: {leftovers(out)}\n  {where}"
        if case.error_check is not None:
            line = [l for l in res.err.splitlines() if l.strip()][-1]
            try:
                case.error_check(line, info or {})
            except AssertionError as exc:
                raise AssertionError(f"refused with a message that misses what to fix: {exc}\n  {where}") from None
        return res
    assert case.expect in ("ok", "either"), f"exit 0 on input that must be refused\n  {where}"
    assert (out / "summary.json").is_file(), f"exit 0 but no {out}/summary.json\n  {where}"
    problems = scan_outputs(out)
    assert not problems, "non-finite or non-strict output:\n    " + "\n    ".join(problems) + f"\n  {where}"
    if case.check is not None:
        summary = loads_strict((out / "summary.json").read_text())
        try:
            case.check(d, summary, res.text)
        except AssertionError as exc:
            raise AssertionError(f"exit 0 with a wrong result: {exc}\n  {where}") from None
    return res


def _corpus_ids():
    return [c.id for c in corpus.build_cases()]


@pytest.mark.parametrize("case_id", _corpus_ids())
def test_cli_right_or_refused(case_id, cli_refs, cg_potential, tmp_path):
    case = {c.id: c for c in corpus.build_cases(cli_refs)}[case_id]
    _run_case(case, tmp_path, cg_potential)


@pytest.mark.parametrize("seed", range(N_RANDOM_FAST))
def test_cli_random_corruption(seed, cli_refs, cg_potential, tmp_path):
    _run_case(corpus.random_case(seed, cli_refs), tmp_path, cg_potential)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(N_RANDOM_FAST, N_RANDOM_FAST + N_RANDOM_SLOW))
def test_cli_random_corruption_more(seed, cli_refs, cg_potential, tmp_path):
    _run_case(corpus.random_case(seed, cli_refs), tmp_path, cg_potential)


def test_clean_references_ran(cli_refs):
    """The clean runs the checks compare with succeeded (else the checks above are vacuous)."""
    for key in ("phonons", "elastic_cu", "elastic_si"):
        assert cli_refs[key] is not None, cli_refs[key + "_result"].describe()


@pytest.mark.parametrize("case_id", ["map-nan_position", "map-garbage", "md-frames-empty", "polymer-truncated", "phonons-overlap",
                                     "elastic-cu-zero_volume"])
def test_no_traceback_reaches_the_terminal(case_id, tmp_path):
    """As a user runs it: a separate process, nothing but cgkit's own lines on stderr."""
    case = {c.id: c for c in corpus.build_cases()}[case_id]
    corpus.prepare_case(case, tmp_path)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("CGKIT_DEBUG", None)
    p = subprocess.run([sys.executable, "-m", "cgkit.cli", *case.args(tmp_path)], capture_output=True,
                       text=True, env=env, timeout=600, cwd=tmp_path)
    msg = f"`cgkit {' '.join(case.args(tmp_path))}` exited {p.returncode}\n{p.stderr[-3000:]}"
    assert p.returncode in (0, 1), msg
    assert "Traceback" not in p.stderr, msg
    if p.returncode == 1:
        lines = [l for l in p.stderr.splitlines() if l.strip()]
        assert lines and lines[-1].startswith(f"cgkit {case.command}: error: "), msg


# ----------------------------------------------------------------------------- --out protection
OUT_CASES = ["map-clean", "fm-cg-clean", "md-clean", "polymer-clean", "phonons-clean", "elastic-cu-clean"]


@pytest.mark.parametrize("case_id", OUT_CASES)
def test_uncreatable_out_is_refused_in_one_line(case_id, cg_potential, tmp_path):
    """--out below a regular file cannot be created: exit 1, one cgkit error line (issue 13.9)."""
    case = {c.id: c for c in corpus.build_cases()}[case_id]
    corpus.prepare_case(case, tmp_path, cg_potential if "potential" in case.needs else None)
    (tmp_path / "afile").write_text("not a folder\n")
    argv = [a.replace(f"{tmp_path}/out", f"{tmp_path}/afile/out") for a in case.args(tmp_path)]
    res = run_cli(argv)
    assert res.rc == 1, res.describe()
    assert_one_line_error(res, case.command)
    assert (tmp_path / "afile").read_text() == "not a folder\n"


@pytest.mark.parametrize("case_id", OUT_CASES)
def test_foreign_non_empty_out_is_refused_and_kept(case_id, cg_potential, tmp_path):
    """--out holding the user's own files: refused (also with --overwrite), the files untouched
    (issue 13.8)."""
    case = {c.id: c for c in corpus.build_cases()}[case_id]
    corpus.prepare_case(case, tmp_path, cg_potential if "potential" in case.needs else None)
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("my notes\n")
    for extra in ([], ["--overwrite"]):
        res = run_cli(case.args(tmp_path) + extra)
        assert res.rc == 1, res.describe()
        assert_one_line_error(res, case.command)
        assert sorted(p.name for p in out.iterdir()) == ["mine.txt"], sorted(p.name for p in out.iterdir())
        assert not list(tmp_path.glob(".out.partial-*"))


def test_an_ase_calculator_that_fails_to_converge_is_a_refusal_not_an_internal_error(tmp_path, capsys):
    """A user's calculator raising ASE's CalculationFailed (an SCF that does not converge) exits 1
    with a cgkit error line, not 3 ("internal error")."""
    from ase.build import bulk
    from ase.io import write

    from cgkit.cli import main
    write(str(tmp_path / "Cu.cif"), bulk("Cu", "fcc", 3.61))
    rc = main(["elastic", "--structure", str(tmp_path / "Cu.cif"), "--potential",
               "ase:tests.cli.failing_calculator.NeverConverges", "--clamped-only", "--out", str(tmp_path / "el")])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "the ASE calculator failed on this input" in err and "internal error" not in err
    assert not (tmp_path / "el").exists()
