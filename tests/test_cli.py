"""The CLI's manners: fast lazy start, version, help for every command, errors as one line."""

import subprocess
import sys

from conftest import ROOT, run_esi

HEAVY = ["torch", "transformers", "litellm", "deepspeed", "polars", "numpy", "scipy", "wfdb", "sklearn", "matplotlib"]


def test_help_imports_nothing_heavy():
    """`esi --help` must answer in well under a second: no heavy library may be imported to build it."""
    code = (
        "import sys; from typer.testing import CliRunner; from commands.main import app; "
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported by --help: {out.stdout.strip()}"


def test_every_command_listed_with_help():
    from commands.main import ORDER, _command_modules

    result = run_esi("--help")
    assert result.exit_code == 0
    for name in (m.replace("_", "-") for m in _command_modules()):  # module import_release -> command import-release
        assert name in result.stdout
        sub = run_esi(name, "--help")
        assert sub.exit_code == 0 and len(sub.stdout) > 100, name
    assert set(ORDER) <= set(_command_modules()), "a pipeline command module is missing"


def test_version():
    from esi_tools import __version__

    result = run_esi("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"esi-tools {__version__}"


def test_every_command_documented_in_readme():
    from commands.main import _command_modules

    readme = (ROOT / "README.md").read_text()
    missing = [name for name in (m.replace("_", "-") for m in _command_modules()) if f"esi {name}" not in readme]
    assert not missing, f"README lacks: {missing}"


def test_commands_chain_through_a_shell_pipe(tmp_path):
    """stdout carries only the artifact path, so `esi ingest … | esi features -` works in a real shell."""
    import os

    bin_dir = os.path.dirname(sys.executable)
    script = (f"{bin_dir}/esi ingest ptbxl {ROOT.parent / 'shared/data/ptbxl'} --limit 40 --out {tmp_path}/d "
              f"| {bin_dir}/esi features - --out {tmp_path}/f -j 1")
    out = subprocess.run(["bash", "-o", "pipefail", "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"{tmp_path}/f\n"
    assert "ingested 40 records" in out.stderr


def test_dash_without_stdin_is_a_clear_error(tmp_path):
    result = run_esi("features", "-", "--out", tmp_path / "f", input="")
    assert result.exit_code == 2 and "stdin holds no artifact path" in result.stderr
