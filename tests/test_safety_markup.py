"""User text (paths, messages) is printed as it is, never as rich markup or emoji codes (issue 13.14)."""

import shutil

from conftest import LUDB, run_esi

from esi_tools.console import log, warn

ODD = "ecg [/x] [bold]run[/bold] :smile: [link=x]"


def test_an_error_naming_a_bracketed_path_prints_it_verbatim(tmp_path):
    missing = tmp_path / ODD
    result = run_esi("features", missing)
    assert result.exit_code == 2
    assert f"error: {missing}: no such artifact directory" in result.stderr


def test_error_about_a_bracketed_path_is_not_markup(tmp_path):
    bad = tmp_path / "[" / "x]"  # the path reads ".../[/x]"
    bad.mkdir(parents=True)
    (bad / "manifest.json").write_text("[/oops] not json")
    result = run_esi("features", bad)
    assert result.exit_code == 3
    assert f"{bad}/manifest.json" in result.stderr


def test_log_and_warn_print_text_verbatim(capsys):
    log(f"wrote {ODD}")
    warn(f"skipping {ODD}")
    err = capsys.readouterr().err
    assert f"wrote {ODD}" in err and f"warning: skipping {ODD}" in err


def test_ingest_and_features_work_in_bracketed_directories(tmp_path):
    src = tmp_path / "raw [" / "x] [bold]"  # the path reads ".../raw [/x] [bold]"
    src.mkdir(parents=True)
    for n in (1, 2):
        for ext in ("hea", "dat"):
            shutil.copy(LUDB / "data" / f"{n}.{ext}", src / f"{n}.{ext}")
    out = tmp_path / "runs [a]" / "ds [b]"
    out.parent.mkdir()
    stale = out.parent / ".ds [b].tmp-999999999"  # left by a killed writer whose pid no longer exists
    stale.mkdir()  # found only if the name is not read as a glob pattern ([b] = the letter b)
    (stale / ".esi-temporary").write_text("esi-tools temporary\n")  # the marker our writers leave inside
    result = run_esi("ingest", "wfdb", src, "--fs", "500", "--out", out)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(out)
    result = run_esi("-q", "features", out, "--out", out.parent / "f [c]", "-j", "1")
    assert result.exit_code == 0, result.stderr
    assert not stale.exists()
