"""`just smoke`: the whole chain on real PTB-XL records, every manifest linked to its inputs' digests."""

import json
from html.parser import HTMLParser

import pytest

from esi_tools.artifacts import open_artifact

EXPECTED = {"dataset": "dataset", "features": "features", "index": "retrieval-index", "retrieval": "retrieval",
            "captions": "captions", "model": "model", "emb-esi": "embeddings", "emb-random": "embeddings",
            "emb-features": "embeddings", "probe-superdiagnostic": "probe", "probe-form": "probe",
            "probe-rhythm": "probe", "identify": "identification", "report": "report"}


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources, self.open = [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])
        elif tag not in ("meta", "br", "hr", "img", "link"):
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"unbalanced </{tag}>"
        self.open.pop()


@pytest.mark.slow
def test_smoke_chain(smoke_run):
    run, proc = smoke_run  # `just smoke run=…`, run once per session (conftest.py)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.strip().splitlines()[-1] == str(run)
    for name, kind in EXPECTED.items():
        art = open_artifact(run / name, kind)
        for inp in art.manifest["inputs"]:
            assert open_artifact(inp["path"]).digest == inp["manifest_sha256"], (name, inp["role"])
    assert {i["role"] for i in open_artifact(run / "captions").manifest["inputs"]} >= {"dataset", "features", "retrieval"}
    page = (run / "report" / "report.html").read_text()
    parser = _Images()
    parser.feed(page)
    assert parser.open == [] and len(parser.sources) >= 6
    assert all(src.startswith("data:image/png;base64,") for src in parser.sources)
    metrics = json.loads((run / "probe-superdiagnostic" / "metrics.json").read_text())
    assert {r["embedding"] for r in metrics["results"]} >= {"esi", "random-init", "features"}
    assert "Subject identification" in page and "Provenance" in page
