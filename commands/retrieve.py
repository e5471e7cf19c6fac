"""esi retrieve: build a BM25 index of cardiology knowledge, then retrieve top-k passages per ECG record.

`esi retrieve index CORPUS... --out DIR` builds the index; `esi retrieve DATASET --index I` (the default
`run` subcommand: any first token that is not a subcommand falls through to it) writes a retrieval artifact;
`esi retrieve search TEXT --index I` prints the hits of one free-text query as NDJSON.
"""

from __future__ import annotations

from pathlib import Path

import typer
from typer.core import TyperGroup

from ._options import ForceOption, OutOption, default_out, emit, esi_command, resolve_input


class _DefaultToRun(TyperGroup):
    """A group whose unknown first token (a dataset path, or an option) is handed to the `run` subcommand."""

    default = "run"

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [self.default, *args]
        return super().parse_args(ctx, args)


app = typer.Typer()
group = typer.Typer(
    cls=_DefaultToRun,
    no_args_is_help=True,
    help="Retrieve cardiology knowledge per record: `esi retrieve index builtin` once, then "
    "`esi retrieve DATASET --index I` (= `esi retrieve run ...`).",
)
app.add_typer(group, name="retrieve")

IndexOption = typer.Option(..., "--index", "-i", help="retrieval-index artifact (from `esi retrieve index`).")
TopKOption = typer.Option(5, "--top-k", "-k", min=1, help="Passages per record (5: room for each of 1-4 labels).")


@group.command("index")
@esi_command
def index(
    corpus: list[str] = typer.Argument(
        ..., help="`builtin` (the shipped knowledge base) and/or Markdown/text files or directories."
    ),
    out: Path = OutOption,
    chunk_words: int = typer.Option(200, "--chunk-words", min=20, help="Max words per chunk of a user file."),
    k1: float = typer.Option(1.5, "--k1", min=0.0, help="BM25 term-frequency saturation (rank-bm25 default)."),
    b: float = typer.Option(0.75, "--b", min=0.0, max=1.0, help="BM25 length normalisation (standard 0.75)."),
    force: bool = ForceOption,
) -> None:
    """Chunk and tokenise CORPUS (abbreviations expanded, numbers kept) into a BM25 index artifact."""
    from esi_tools.retrieve.index import IndexConfig, build_index

    config = IndexConfig(k1=k1, b=b, chunk_words=chunk_words)
    sources = [c if c == "builtin" else str(Path(c).resolve()) for c in corpus]
    emit(build_index(config, corpus, out or default_out("retrieval-index", *sources, k1, b, chunk_words), force=force))


@group.command("run")
@esi_command
def run(
    dataset: str = typer.Argument(..., help="dataset artifact (`-` reads its path from stdin)."),
    index: Path = IndexOption,
    features: Path = typer.Option(None, "--features", "-f", help="features artifact: adds its findings to queries."),
    top_k: int = TopKOption,
    out: Path = OutOption,
    force: bool = ForceOption,
) -> None:
    """One query per record (labels via the knowledge base, English report text, findings) -> top-k passages."""
    from esi_tools.retrieve.run import RetrieveConfig, retrieve

    data = resolve_input(dataset)
    feats = resolve_input(features) if features is not None else None
    parts = [data.resolve(), index.resolve(), feats.resolve() if feats else None, top_k]
    emit(retrieve(RetrieveConfig(top_k=top_k), data, index, out or default_out("retrieval", *parts),
                  features_path=feats, force=force))


@group.command("search")
@esi_command
def search(
    text: str = typer.Argument(..., help="Free-text query, e.g. 'LBBB' or 'prolonged QTc'."),
    index: Path = IndexOption,
    top_k: int = TopKOption,
) -> None:
    """Print the top-k passages for one query as NDJSON lines (passage_id, title, score) on stdout."""
    import json

    from esi_tools.errors import InputError
    from esi_tools.retrieve.index import load_index
    from esi_tools.retrieve.tokenise import tokenise

    if not text.strip():
        raise InputError("empty query: give some words, e.g. `esi retrieve search 'left bundle branch block' -i I`")
    if not tokenise(text):
        raise InputError(f"query {text!r} has no searchable word (only stop words or punctuation)")
    loaded = load_index(index)
    titles = dict(zip(loaded.passages["passage_id"], loaded.passages["title"], strict=True))
    for pid, score in loaded.search(text, top_k):
        typer.echo(json.dumps({"passage_id": pid, "title": titles[pid], "score": round(score, 4)}))
