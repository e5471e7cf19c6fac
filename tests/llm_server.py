"""A local OpenAI-compatible /v1/chat/completions server with switches for latency and faults.

Tests and `bench/bench_caption.py` drive the real litellm path against it: no network, no key, and every
failure mode a provider shows (429 + Retry-After, 500, a hang past the client timeout, malformed JSON,
empty / truncated / refused answers, a 401 that echoes the caller's key) can be scheduled per request.

    server = LLMServer(latency_s=0.2).start()     # http://127.0.0.1:<port>/v1
    server.queue.extend(["429", "500"])           # the next two requests fail, then normal answers
    server.always = "empty"                       # every request answers with empty content
    server.rules.append(("Age: 56", "refusal"))   # prompts containing this text are refused
    server.rules.append(("Age: 56", "say:Sinus rhythm."))      # ... answered with this text ("say-cut:": cut at max_tokens)

Standalone (for benchmarks in a separate process): `python tests/llm_server.py --port 0 --latency 0.2`
prints the base URL on stdout and serves until killed; GET /stats returns its counters as JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import threading
import time
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("429", "500", "503", "hang", "malformed", "empty", "truncated", "refusal", "401-echo", "drop")
REFUSAL = "I'm sorry, but I can't help with that request."


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a hung handler must never keep the test process alive
    request_queue_size = 256  # a concurrency-32 client opens many sockets at once

    def handle_error(self, request, client_address) -> None:
        """A client that gave up (timeout, killed run) is expected here, not worth a traceback."""
        exc = sys.exc_info()[1]
        if not isinstance(exc, (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)):
            super().handle_error(request, client_address)


class LLMServer:
    """State shared by the handler threads: switches, the fault schedule and counters."""

    def __init__(self, latency_s: float = 0.0, retry_after_s: float = 0.2, hang_s: float = 30.0):
        self.latency_s = latency_s
        self.retry_after_s = retry_after_s  # what a 429 asks the client to wait
        self.hang_s = hang_s  # how long "hang" holds a request (it is cut short by stop())
        self.queue: deque[str] = deque()  # faults for the next requests, first in first out
        self.always: str | None = None  # a fault for every request (after the queue is empty)
        self.rules: list[tuple[str, str]] = []  # (substring of the prompt, fault): persistent per-prompt faults
        self.requests = 0
        self.by_fault: Counter = Counter()
        self.prompts: Counter = Counter()  # user-prompt sha256 -> times received
        self.auth_headers: list[str] = []
        self.models: list[str] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _Server | None = None

    # ---- lifecycle -------------------------------------------------------------------------------
    def start(self, port: int = 0) -> LLMServer:
        self._httpd = _Server(("127.0.0.1", port), _handler_for(self))
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def reset_counters(self) -> None:
        with self._lock:
            self.requests = 0
            self.by_fault.clear()
            self.prompts.clear()
            self.auth_headers.clear()
            self.models.clear()

    # ---- per request -----------------------------------------------------------------------------
    def _next_fault(self, prompt: str) -> str | None:
        with self._lock:
            for needle, fault in self.rules:
                if needle in prompt:
                    return fault
            if self.queue:
                return self.queue.popleft()
            return self.always

    def _record(self, prompt: str, auth: str, model: str, fault: str | None) -> None:
        with self._lock:
            self.requests += 1
            self.by_fault[fault or "ok"] += 1
            self.prompts[hashlib.sha256(prompt.encode()).hexdigest()] += 1
            self.auth_headers.append(auth)
            self.models.append(model)


def answer_for(prompt: str) -> str:
    """A deterministic, prompt-dependent caption, so tests can tell which prompt produced which answer."""
    digest = hashlib.sha256(prompt.encode()).hexdigest()[:12]
    return f"Local model caption {digest}: the tracing is described from the evidence given in the prompt."


def _handler_for(state: LLMServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the async client reuses connections
        # Headers and body go out in two writes; with Nagle on, the second waits for the client's delayed ACK
        # (~40 ms per answer on Linux), which would swamp the latency switch.
        disable_nagle_algorithm = True

        def log_message(self, *args) -> None:  # quiet: tests read counters, not access logs
            pass

        def _send(self, status: int, body: bytes, headers: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str, headers: dict | None = None) -> None:
            body = json.dumps({"error": {"message": message, "type": "server_error", "code": status}}).encode()
            self._send(status, body, headers)

        def do_GET(self) -> None:  # noqa: N802 -- /stats lets a benchmark in another process read the counters
            if self.path.rstrip("/") != "/stats":
                self._error(404, f"no route {self.path}")
                return
            with state._lock:
                body = {"requests": state.requests, "by_fault": dict(state.by_fault),
                        "distinct_prompts": len(state.prompts)}
            self._send(200, json.dumps(body).encode())

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._error(404, f"no route {self.path}")
                return
            try:
                request = json.loads(raw)
                messages = request["messages"]
            except (ValueError, KeyError, TypeError):
                self._error(400, "request body is not a chat completion request")
                return
            prompt = "\n".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")
            auth = self.headers.get("Authorization", "")
            model = str(request.get("model", ""))
            fault = state._next_fault(prompt)
            state._record(prompt, auth, model, fault)
            if state.latency_s:
                time.sleep(state.latency_s)
            self._respond(fault, prompt, model, auth, request, messages)

        def _respond(self, fault, prompt, model, auth, request, messages) -> None:
            if fault == "429":
                self._error(429, "rate limited", {"Retry-After": f"{state.retry_after_s:g}"})
            elif fault in ("500", "503"):
                self._error(int(fault), "upstream failure")
            elif fault == "401-echo":  # a careless provider quoting the caller's key back in its error
                self._error(401, f"Incorrect API key provided: {auth.removeprefix('Bearer ')}")
            elif fault == "hang":
                state._stopping.wait(state.hang_s)
                self._error(504, "hung")
            elif fault == "drop":  # close the connection without any answer
                self.close_connection = True
                self.connection.shutdown(2)
            elif fault == "malformed":
                self._send(200, b'{"id": "x", "choices": [{"message": {"content": "trunc')
            else:
                content = {"empty": "", "refusal": REFUSAL}.get(fault, answer_for(prompt))
                if fault == "truncated":
                    content = answer_for(prompt)[:20]
                elif fault and fault.startswith(("say:", "say-cut:")):  # this exact answer (cut at max_tokens)
                    content = fault.partition(":")[2]
                prompt_tokens = sum(len(str(m.get("content", ""))) for m in messages) // 4 + 1
                body = {
                    "id": f"chatcmpl-{state.requests}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [{
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "length" if fault == "truncated" or str(fault).startswith("say-cut:")
                        else "stop",
                    }],
                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(content) // 4 + 1,
                              "total_tokens": prompt_tokens + len(content) // 4 + 1},
                }
                self._send(200, json.dumps(body).encode())

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 = any free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds each answer takes")
    parser.add_argument("--always", choices=FAULTS, default=None, help="a fault for every request")
    args = parser.parse_args(argv)
    server = LLMServer(latency_s=args.latency).start(args.port)
    server.always = args.always
    print(server.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
