"""The BM25 index artifact (`retrieval-index`): build, load, search.

What is stored is data, not code: `passages.parquet` (passage_id, title, text, source, position, reference)
and `corpus.parquet` (passage_id, tokens, name_tokens). Loading rebuilds rank-bm25's BM25Okapi from the
tokens (never a pickle: it would tie the artifact to library internals and execute code on load).

A passage is scored in two fields, BM25F-style: body (names + prose) plus `name_weight` x names (title,
synonyms, abbreviations, codes). Prose alone lets a specific concept that mentions a general one outrank it
("ventricular premature complex" -> the blocked-atrial-premature-complex passage, which discusses ventricles
and premature complexes at length); the names field puts the concept a query names first.

Both BM25Okapi models are folded into one sparse term x passage weight matrix (idf x saturated tf, length
normalised), so a batch of queries is scored with one sparse product instead of rank-bm25's Python loop per
query term and passage. `BM25Index.bm25_scores` is rank-bm25's own scorer, kept for tests that hold the
two equal.

On top of BM25, a query that is exactly one passage's name (title, synonym, code or machine phrasing; case and
punctuation folded, unambiguous, longer than two characters) is pinned to that passage at rank 1: a statement
the knowledge base defines must retrieve its own definition first, whatever the word statistics say. BM25 still
fills the other slots and decides every query that is not a name. `exact=False` gives pure BM25.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..artifacts import ArtifactWriter, open_artifact
from ..console import log
from ..errors import ArtifactError, InputError
from ..knowledge import normalize_statement
from .tokenise import TOKENISER_VERSION, tokenise

KIND = "retrieval-index"
# A term found in more than half of a tiny corpus gets a negative idf in BM25Okapi, even after its epsilon
# floor (which is a fraction of a possibly negative average); such a term should count a little, never against.
MIN_IDF = 1e-3
QUERY_BATCH = 4096  # queries scored per sparse product: bounds the dense (batch x passages) score block


@dataclass(frozen=True)
class IndexConfig:
    k1: float = 1.5  # rank-bm25's default term-frequency saturation; the Robertson/Okapi usual range is 1.2-2
    b: float = 0.75  # standard length normalisation: long passages are penalised, not ignored
    epsilon: float = 0.25  # rank-bm25's default idf floor for very common terms (x average idf)
    chunk_words: int = 200  # user files: about one textbook paragraph or two, one topic per passage
    name_weight: float = 2.0  # gold recall@1, BM25 alone: 0.84 (0), 0.915 (1), 0.92 (2), 0.925 (4); 2 keeps prose in play


def build_index(config: IndexConfig, corpora: list[str], out: Path, *, force: bool = False) -> Path:
    """Tokenise every passage of `corpora` and write the index artifact at `out`."""
    import polars as pl

    from .corpus import collect

    passages = collect(corpora, chunk_words=config.chunk_words)
    tokens = [tokenise(p["body"]) for p in passages]
    empty = [p["passage_id"] for p, t in zip(passages, tokens, strict=True) if not t]
    if len(empty) == len(passages):
        raise InputError("empty corpus: no passage has an indexable word (only stop words or punctuation)")
    keep = [i for i, t in enumerate(tokens) if t]
    if empty:
        log(f"skipped {len(empty)} passages with no indexable word: {', '.join(empty[:5])}")
    columns = ["passage_id", "title", "text", "source", "position", "reference"]
    table = pl.DataFrame({c: [passages[i][c] for i in keep] for c in columns}, schema={c: pl.String for c in columns})
    table = table.with_columns(pl.Series("names", [passages[i]["names"] for i in keep], dtype=pl.List(pl.String)))
    corpus = pl.DataFrame(
        {"passage_id": table["passage_id"], "tokens": [tokens[i] for i in keep],
         "name_tokens": [tokenise("\n".join(passages[i]["names"])) for i in keep]},
        schema={"passage_id": pl.String, "tokens": pl.List(pl.String), "name_tokens": pl.List(pl.String)},
    )
    parameters = {**asdict(config), "corpora": list(corpora), "tokeniser_version": TOKENISER_VERSION}
    with ArtifactWriter(out, KIND, parameters=parameters, force=force) as writer:
        writer.write_table("passages.parquet", table)
        writer.write_table("corpus.parquet", corpus)
        vocabulary = {t for ts in corpus["tokens"].to_list() for t in ts}
        writer.summary.update({
            "passages": table.height,
            "vocabulary": len(vocabulary),
            "mean_tokens": round(float(np.mean([len(tokens[i]) for i in keep])), 1),
            "sources": sorted(set(table["source"].to_list())),
            "skipped_empty": len(empty),
        })
        path = writer.commit()
    log(f"indexed {table.height} passages, {len(vocabulary)} distinct terms")
    return path


class BM25Index:
    """A loaded index: passages table plus a sparse BM25 weight matrix (terms x passages)."""

    def __init__(self, artifact, passages, tokens: list[list[str]], name_tokens: list[list[str]]):
        from rank_bm25 import BM25Okapi

        self.artifact = artifact
        self.passages = passages
        self.ids = passages["passage_id"].to_list()
        params = artifact.parameters
        self.name_weight = float(params["name_weight"])
        settings = {"k1": params["k1"], "b": params["b"], "epsilon": params["epsilon"]}
        self.bm25 = BM25Okapi(tokens, **settings)
        # a corpus without any names (user files with no headings) has no names field to weigh
        self.bm25_names = BM25Okapi(name_tokens, **settings) if any(name_tokens) else None
        self.vocab = {term: i for i, term in enumerate(self.bm25.idf)}  # body tokens include every name token
        self.weights = self._weights(self.bm25, 1.0)
        if self.bm25_names is not None and self.name_weight:
            self.weights = (self.weights + self._weights(self.bm25_names, self.name_weight)).tocsr()
        self.exact = _exact_names(passages["names"].to_list())

    def _weights(self, bm25, factor: float):
        """BM25Okapi's per (term, passage) contribution as a sparse matrix, times `factor`."""
        from scipy import sparse

        rows, cols, vals = [], [], []
        k1, b, avgdl = bm25.k1, bm25.b, bm25.avgdl
        for doc, (freqs, length) in enumerate(zip(bm25.doc_freqs, bm25.doc_len, strict=True)):
            norm = k1 * (1 - b + b * length / avgdl)
            for term, tf in freqs.items():
                rows.append(self.vocab[term])
                cols.append(doc)
                vals.append(factor * max(bm25.idf[term], MIN_IDF) * tf * (k1 + 1) / (tf + norm))
        return sparse.csr_matrix((vals, (rows, cols)), shape=(len(self.vocab), len(self.ids)), dtype=np.float64)

    def __len__(self) -> int:
        return len(self.ids)

    def query_matrix(self, queries: list[list[str]]):
        """Token lists -> sparse (queries x terms) counts; unknown terms simply score nothing."""
        from scipy import sparse

        rows, cols = [], []
        for i, tokens in enumerate(queries):
            for t in tokens:
                j = self.vocab.get(t)
                if j is not None:
                    rows.append(i)
                    cols.append(j)
        data = np.ones(len(rows), dtype=np.float64)
        return sparse.csr_matrix((data, (rows, cols)), shape=(len(queries), len(self.vocab)))

    def search_tokens(self, queries: list[list[str]], top_k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k passage indices and scores per query, best first: (Q, k) int64 and float64.

        Slots with no match (score 0) hold index -1 and score 0. Ties break by passage order, so a run is
        reproducible.
        """
        k = min(top_k, len(self.ids))
        index = np.full((len(queries), k), -1, dtype=np.int64)
        score = np.zeros((len(queries), k), dtype=np.float64)
        for start in range(0, len(queries), QUERY_BATCH):
            block = (self.query_matrix(queries[start : start + QUERY_BATCH]) @ self.weights).toarray()
            if k < block.shape[1]:
                part = np.argpartition(-block, k - 1, axis=1)[:, :k]
            else:
                part = np.broadcast_to(np.arange(block.shape[1]), block.shape).copy()
            part_scores = np.take_along_axis(block, part, axis=1)
            order = np.lexsort((part, -part_scores), axis=1)  # by score desc, then passage order
            best = np.take_along_axis(part, order, axis=1)
            best_scores = np.take_along_axis(part_scores, order, axis=1)
            best[best_scores <= 0] = -1
            index[start : start + len(block)] = best
            score[start : start + len(block)] = np.where(best >= 0, best_scores, 0.0)
        return index, score

    def search_texts(self, texts: list[str], top_k: int, *, exact: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Like search_tokens, from query texts; with `exact`, a query naming a passage gets it at rank 1."""
        tokens = [tokenise(t) for t in texts]
        index, score = self.search_tokens(tokens, top_k)
        if not exact:
            return index, score
        for row, text in enumerate(texts):
            pinned = self.exact.get(normalize_statement(text))
            if pinned is None or index[row, 0] == pinned:
                continue
            own = float((self.query_matrix([tokens[row]]) @ self.weights[:, [pinned]]).toarray()[0, 0])
            rest = [(i, s) for i, s in zip(index[row], score[row], strict=True) if i != pinned]
            kept = [(pinned, own), *rest][: index.shape[1]]
            index[row] = [i for i, _ in kept]
            score[row] = [s for _, s in kept]
        return index, score

    def search(self, text: str, top_k: int = 5, *, exact: bool = True) -> list[tuple[str, float]]:
        """One free-text query -> [(passage_id, score)] best first, only passages that match at all."""
        index, score = self.search_texts([text], top_k, exact=exact)
        return [(self.ids[i], float(s)) for i, s in zip(index[0], score[0], strict=True) if i >= 0]

    def bm25_scores(self, text: str) -> np.ndarray:
        """rank-bm25's own scores of every passage for `text`, body + weighted names (slow reference path)."""
        tokens = tokenise(text)
        scores = self.bm25.get_scores(tokens)
        if self.bm25_names is not None:
            scores = scores + self.name_weight * self.bm25_names.get_scores(tokens)
        return scores


def _exact_names(names: list[list[str]]) -> dict[str, int]:
    """Folded name -> passage index, for names that belong to one passage only and are not 1-2 letters
    ("ST", "PR", "AF" are too ambiguous to override BM25: ST segment or sinus tachycardia?)."""
    owners: dict[str, set[int]] = {}
    for i, these in enumerate(names):
        for name in these or ():
            owners.setdefault(normalize_statement(name), set()).add(i)
    return {name: next(iter(o)) for name, o in owners.items() if len(o) == 1 and len(name.replace(" ", "")) > 2}


def load_index(path: str | Path) -> BM25Index:
    """Open a retrieval-index artifact and rebuild its BM25 model from the stored tokens."""
    artifact = open_artifact(path, KIND)
    version = artifact.parameters.get("tokeniser_version")
    if version != TOKENISER_VERSION:
        raise ArtifactError(
            f"{path}: index was tokenised by tokeniser version {version}, this esi-tools uses "
            f"{TOKENISER_VERSION}; rebuild it with `esi retrieve index`"
        )
    passages = artifact.table("passages.parquet")
    corpus = artifact.table("corpus.parquet")
    if corpus["passage_id"].to_list() != passages["passage_id"].to_list():
        raise ArtifactError(f"{path}: corpus.parquet and passages.parquet disagree on passage order")
    return BM25Index(artifact, passages, corpus["tokens"].to_list(), corpus["name_tokens"].to_list())
