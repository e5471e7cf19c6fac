"""esi download against a local PhysioNet-style mirror of the real PTB-XL subset (127.0.0.1 only)."""

import hashlib
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import pytest
from conftest import PTBXL, run_esi

# A slice of the real subset keeps the test fast: metadata, 30 records at 100 Hz and 5 at 500 Hz.
FILES = ["ptbxl_database.csv", "scp_statements.csv", "LICENSE.txt"] + [
    f"records100/00000/{k:05d}_lr.{ext}" for k in range(1, 31) for ext in ("hea", "dat")
] + [f"records500/00000/{k:05d}_hr.{ext}" for k in range(1, 6) for ext in ("hea", "dat")]


class MirrorHandler(SimpleHTTPRequestHandler):
    """Serves files with Range support (416 past the end), a generated SHA256SUMS.txt, and faults on demand:
    corrupt bytes, extra files (`extra`: name -> bytes), extra raw SHA256SUMS lines, a 416 for every request of
    a file, and a first answer that stalls for `stall` seconds."""

    corrupt: set = set()
    requests: list = []
    extra: dict = {}
    extra_lines: list = []
    always_416: set = set()
    stall: dict = {}

    def log_message(self, *args):
        pass

    def do_GET(self):
        rel = unquote(self.path.lstrip("/"))
        self.requests.append((rel, self.headers.get("Range")))
        if rel in self.stall:
            time.sleep(self.stall.pop(rel))
        if rel == "SHA256SUMS.txt":
            files = {f: (PTBXL / f).read_bytes() for f in FILES} | self.extra
            body = "".join(f"{hashlib.sha256(b).hexdigest()}  {f}\n" for f, b in files.items()).encode()
            body += "".join(line + "\n" for line in self.extra_lines).encode()
        elif rel in FILES or rel in self.extra:
            body = self.extra[rel] if rel in self.extra else (PTBXL / rel).read_bytes()
            if rel in self.corrupt:
                body = body[:-1] + bytes([body[-1] ^ 1])
        else:
            self.send_error(404)
            return
        start = 0
        if rel in self.always_416:
            self.send_error(416)
            return
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        try:
            self.wfile.write(body[start:])
        except (BrokenPipeError, ConnectionResetError):  # a client that gave up on a stalled answer
            pass


@pytest.fixture
def mirror():
    MirrorHandler.corrupt, MirrorHandler.requests, MirrorHandler.extra = set(), [], {}
    MirrorHandler.extra_lines, MirrorHandler.always_416, MirrorHandler.stall = [], set(), {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(MirrorHandler, directory=str(PTBXL)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", MirrorHandler
    server.shutdown()


def test_download_verifies_resumes_and_feeds_ingest(tmp_path, mirror):
    url, handler = mirror
    out = tmp_path / "ptbxl"
    # a partial file from an interrupted run: only the rest must be fetched
    partial_file = out / "records100/00000/00001_lr.dat"
    partial_file.parent.mkdir(parents=True)
    partial_file.with_name("00001_lr.dat.part").write_bytes((PTBXL / "records100/00000/00001_lr.dat").read_bytes()[:1000])
    result = run_esi("-q", "download", "ptb-xl", "--out", out, "--base-url", url, "--records100-only")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    assert partial_file.read_bytes() == (PTBXL / "records100/00000/00001_lr.dat").read_bytes()
    assert ("records100/00000/00001_lr.dat", "bytes=1000-") in handler.requests
    assert not (out / "records500").exists()
    # a second run fetches nothing: every file is already verified
    handler.requests.clear()
    assert run_esi("-q", "download", "ptb-xl", "--out", out, "--base-url", url, "--records100-only").exit_code == 0
    assert handler.requests == [("SHA256SUMS.txt", None)]
    # what was downloaded ingests (30 records whose files exist; the rest listed as missing)
    result = run_esi("-q", "ingest", "ptbxl", out, "--out", tmp_path / "ds")
    assert result.exit_code == 0, result.output


def test_corrupted_file_fails_with_clear_message(tmp_path, mirror):
    url, handler = mirror
    handler.corrupt = {"records100/00000/00003_lr.dat"}
    result = run_esi("download", "ptb-xl", "--out", tmp_path / "p", "--base-url", url, "--records100-only")
    assert result.exit_code == 4
    assert "00003_lr.dat (sha256 mismatch)" in result.stderr and "rerun to resume" in result.stderr
    assert not (tmp_path / "p/records100/00000/00003_lr.dat").exists()


def test_unreachable_mirror(tmp_path):
    result = run_esi("download", "ludb", "--out", tmp_path / "l", "--base-url", "http://127.0.0.1:9/")
    assert result.exit_code == 4 and "cannot fetch" in result.stderr


# ------------------------------------------------------------------ faults of issue 13.16

LR1 = "records100/00000/00001_lr.dat"
LR2 = "records100/00000/00002_lr.dat"


def _get(url, out, *extra):
    return run_esi("download", "ptb-xl", "--out", out, "--base-url", url, "--records100-only", *extra)


def test_dot_entry_and_names_with_spaces(tmp_path, mirror):
    url, handler = mirror
    handler.extra = {"notes/read me first.txt": b"spaces in a name", "odd name (1).hea": b"x"}
    handler.extra_lines = [f"{'a' * 64}  .", f"{'b' * 64}  ./"]  # entries that name the directory itself
    result = _get(url, tmp_path / "p")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "p/notes/read me first.txt").read_bytes() == b"spaces in a name"
    assert (tmp_path / "p/odd name (1).hea").read_bytes() == b"x"
    assert "2 entries that name no file" in result.stderr


def test_416_answers(tmp_path, mirror):
    url, handler = mirror
    out = tmp_path / "p"
    whole = (PTBXL / LR1).read_bytes()
    (out / LR1).parent.mkdir(parents=True)
    (out / (LR1 + ".part")).write_bytes(whole)  # complete .part: the server answers 416 to its range
    (out / (LR2 + ".part")).write_bytes((PTBXL / LR2).read_bytes() + b"stale tail")  # longer than the file
    result = _get(url, out)
    assert result.exit_code == 0, result.stderr
    assert (out / LR1).read_bytes() == whole
    assert (out / LR2).read_bytes() == (PTBXL / LR2).read_bytes()
    handler.always_416 = {"records100/00000/00003_lr.dat"}  # a server that answers 416 to everything
    result = _get(url, tmp_path / "q")
    assert result.exit_code == 4
    assert "00003_lr.dat (HTTP 416)" in result.stderr and "internal error" not in result.stderr


def test_stale_local_file_is_replaced_or_removed(tmp_path, mirror):
    url, handler = mirror
    out = tmp_path / "p"
    (out / LR1).parent.mkdir(parents=True)
    (out / LR1).write_bytes(b"an older version")
    (out / LR2).write_bytes(b"another older version")
    handler.corrupt = {LR2}  # its re-download fails verification too
    result = _get(url, out)
    assert result.exit_code == 4 and "00002_lr.dat (sha256 mismatch)" in result.stderr
    assert (out / LR1).read_bytes() == (PTBXL / LR1).read_bytes()
    assert not (out / LR2).exists()  # a file known to be wrong is not left for `esi ingest` to read


def test_timeout_option(tmp_path, mirror):
    url, handler = mirror
    handler.stall = {LR1: 3.0}  # the first request of this file hangs; the retry is answered at once
    start = time.monotonic()
    result = _get(url, tmp_path / "p", "--timeout", "0.5", "-j", "1")
    assert result.exit_code == 0, result.stderr
    assert time.monotonic() - start < 30
    assert [r for r in handler.requests if r[0] == LR1] == [(LR1, None), (LR1, None)]
    assert (tmp_path / "p" / LR1).read_bytes() == (PTBXL / LR1).read_bytes()
    bad = run_esi("download", "ludb", "--out", tmp_path / "l", "--timeout", "0")
    assert bad.exit_code == 2


def test_download_into_an_artifact_is_refused(tmp_path, mirror):
    url, _ = mirror
    art = tmp_path / "art"
    art.mkdir()
    (art / "manifest.json").write_text("{}")
    result = _get(url, art / "raw")
    assert result.exit_code == 2 and "artifact" in result.stderr
    assert sorted(p.name for p in art.iterdir()) == ["manifest.json"]
