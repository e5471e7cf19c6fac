"""Corpus sources -> passages: the shipped knowledge base (`builtin`) and the user's Markdown/text files.

A passage is a dict with passage_id, title, text (what downstream shows an LLM), names (title, synonyms,
abbreviations, codes and machine phrasings: the names field BM25 weighs on its own, so a query that names a
concept finds that concept before passages that merely mention it), body (names plus text: what else BM25
sees), source, position and reference.
User files are chunked at Markdown headings and then into runs of paragraphs of at most `chunk_words` words,
so one passage stays about one topic and its position (file, heading, line) can be cited.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..console import warn
from ..errors import InputError

BUILTIN = "builtin"
TEXT_SUFFIXES = (".md", ".markdown", ".txt", ".text", ".rst")  # what a directory walk picks up
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_SLUG = re.compile(r"[^a-z0-9]+")


def builtin_passages() -> list[dict]:
    """The knowledge base as passages; ids are the knowledge ids, so hits resolve with passage_for()."""
    from ..knowledge import load_passages

    out = []
    for p in load_passages():
        codes = p["codes"]
        names = [p["title"], *p["synonyms"], *codes["scp"], *codes["mimic"], *(f.replace("_", " ") for f in codes["finding"])]
        criteria = " ".join(p["criteria"])
        text = p["text"] + (f" Criteria: {criteria}" if criteria else "")
        out.append({
            "passage_id": p["id"],
            "title": p["title"],
            "text": text,
            "names": list(dict.fromkeys(names)),
            "body": "\n".join([*names, text]),
            "source": BUILTIN,
            "position": f"{p.get('area', '')}:{p['id']}",
            "reference": p["reference"],
        })
    return out


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "convert it first, e.g. `iconv -f latin1 -t utf-8`"
        ) from None


def chunk_text(text: str, *, chunk_words: int) -> list[tuple[str, str, int]]:
    """Markdown/text -> [(heading, chunk text, first line number)], split at headings then by paragraphs."""
    sections: list[tuple[str, list[tuple[int, str]]]] = [("", [])]
    for lineno, line in enumerate(text.splitlines(), start=1):
        m = _HEADING.match(line)
        if m:
            sections.append((m[2], []))
        else:
            sections[-1][1].append((lineno, line))
    chunks = []
    for heading, lines in sections:
        paragraphs: list[tuple[int, list[str]]] = []
        for lineno, line in lines:
            if not line.strip():
                if paragraphs and paragraphs[-1][1]:
                    paragraphs.append((lineno + 1, []))
                continue
            if not paragraphs or (not paragraphs[-1][1] and paragraphs[-1][0] != lineno):
                paragraphs.append((lineno, []))
            paragraphs[-1][1].append(line.strip())
        current, start, words = [], 0, 0
        for lineno, para in (p for p in paragraphs if p[1]):
            n = sum(len(s.split()) for s in para)
            if current and words + n > chunk_words:
                chunks.append((heading, "\n".join(current), start))
                current, words = [], 0
            if not current:
                start = lineno
            current.append(" ".join(para))
            words += n
        if current:
            chunks.append((heading, "\n".join(current), start))
    return chunks


def file_passages(path: Path, *, chunk_words: int, root: Path | None = None) -> list[dict]:
    """One file -> chunks as passages with ids `<file slug>-<n>`, source = the path, position = line."""
    text = _read_text(path)
    name = (path.relative_to(root) if root else Path(path.name)).as_posix()
    slug = _SLUG.sub("_", name.lower()).strip("_") or "file"
    out = []
    for n, (heading, body, line) in enumerate(chunk_text(text, chunk_words=chunk_words), start=1):
        title = heading or path.stem
        out.append({
            "passage_id": f"{slug}-{n}",
            "title": title,
            "text": body,
            "names": [heading] if heading else [],
            "body": f"{heading}\n{body}" if heading else body,
            "source": str(path),
            "position": f"line {line}",
            "reference": f"{path.name}, line {line}",
        })
    return out


def collect(corpora: list[str], *, chunk_words: int) -> list[dict]:
    """Every passage of every CORPUS argument (`builtin`, a file, or a directory walked for text files)."""
    if not corpora:
        raise InputError("no corpus given: pass `builtin` and/or Markdown/text files or directories")
    passages: list[dict] = []
    seen_files: set[Path] = set()

    def add_file(path: Path, root: Path | None = None) -> None:
        if path.resolve() in seen_files:  # a file named twice (or inside a named directory) is indexed once
            return
        seen_files.add(path.resolve())
        chunks = file_passages(path, chunk_words=chunk_words, root=root)
        if not chunks:
            warn(f"{path}: no text, skipped")
        passages.extend(chunks)

    for item in corpora:
        if item == BUILTIN:
            if not any(p["source"] == BUILTIN for p in passages):
                passages.extend(builtin_passages())
            continue
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
            if not files:
                raise InputError(f"{path}: no text files ({', '.join(TEXT_SUFFIXES)}) in this directory")
            for f in files:
                add_file(f, root=path.parent)
        elif path.is_file():
            add_file(path)
        else:
            raise InputError(f"{item}: no such file or directory (a CORPUS is `builtin`, a file or a directory)")
    if not passages:
        raise InputError(f"empty corpus: {' '.join(corpora)} holds no text to index")
    seen: dict[str, int] = {}
    for p in passages:  # the same file given twice, or two files with one slug: keep ids unique
        n = seen.get(p["passage_id"], 0)
        seen[p["passage_id"]] = n + 1
        if n:
            p["passage_id"] = f"{p['passage_id']}_{n + 1}"
    return passages
