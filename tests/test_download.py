"""esi download against a local PhysioNet-style mirror of the real PTB-XL subset (127.0.0.1 only)."""

import hashlib
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import PTBXL, run_esi

# A slice of the real subset keeps the test fast: metadata, 30 records at 100 Hz and 5 at 500 Hz.
FILES = ["ptbxl_database.csv", "scp_statements.csv", "LICENSE.txt"] + [
    f"records100/00000/{k:05d}_lr.{ext}" for k in range(1, 31) for ext in ("hea", "dat")
] + [f"records500/00000/{k:05d}_hr.{ext}" for k in range(1, 6) for ext in ("hea", "dat")]


class MirrorHandler(SimpleHTTPRequestHandler):
    """Serves files with Range support, a generated SHA256SUMS.txt, and optional corruption of one file."""

    corrupt: set = set()
    requests: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        rel = self.path.lstrip("/")
        self.requests.append((rel, self.headers.get("Range")))
        if rel == "SHA256SUMS.txt":
            body = "".join(f"{hashlib.sha256((PTBXL / f).read_bytes()).hexdigest()}  {f}\n" for f in FILES).encode()
        elif rel in FILES:
            body = (PTBXL / rel).read_bytes()
            if rel in self.corrupt:
                body = body[:-1] + bytes([body[-1] ^ 1])
        else:
            self.send_error(404)
            return
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            self.send_response(206)
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])


@pytest.fixture
def mirror():
    MirrorHandler.corrupt, MirrorHandler.requests = set(), []
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
