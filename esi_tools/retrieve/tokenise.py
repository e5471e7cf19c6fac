"""Domain tokenisation for BM25: case folding, numbers kept, light stemming, abbreviation <-> phrase expansion.

The same function tokenises passages and queries, so whatever normalisation it applies meets itself on both
sides. Expansion is two-way: an abbreviation adds the words of its phrase ("LBBB" -> lbbb left bundle branch
block) and a phrase adds its abbreviation ("left bundle branch block" -> ... lbbb), so a query written either
way matches a passage written either way. Bump TOKENISER_VERSION whenever the output of `tokenise` changes:
an index stores tokens, and one built by another version is refused rather than silently mismatched.
"""

from __future__ import annotations

import re
from functools import lru_cache

TOKENISER_VERSION = 2

# Clinical abbreviations as they appear in reports, textbooks and machine statements. Only unambiguous ones:
# "ST" (segment or sinus tachycardia?) and "PR"/"QT" (intervals, already tokens) are left alone.
ABBREVIATIONS: dict[str, str] = {
    "lbbb": "left bundle branch block",
    "rbbb": "right bundle branch block",
    "clbbb": "complete left bundle branch block",
    "crbbb": "complete right bundle branch block",
    "ilbbb": "incomplete left bundle branch block",
    "irbbb": "incomplete right bundle branch block",
    "lafb": "left anterior fascicular block",
    "lpfb": "left posterior fascicular block",
    "lahb": "left anterior hemiblock",
    "lphb": "left posterior hemiblock",
    "ivcd": "intraventricular conduction delay",
    "af": "atrial fibrillation",
    "afib": "atrial fibrillation",
    "afl": "atrial flutter",
    "aflt": "atrial flutter",
    "avb": "atrioventricular block",
    "av": "atrioventricular",
    "chb": "complete heart block",
    "lvh": "left ventricular hypertrophy",
    "rvh": "right ventricular hypertrophy",
    "lae": "left atrial enlargement",
    "rae": "right atrial enlargement",
    "mi": "myocardial infarction",
    "stemi": "st elevation myocardial infarction",
    "nstemi": "non st elevation myocardial infarction",
    "pvc": "premature ventricular contraction",
    "vpb": "ventricular premature beat",
    "pac": "premature atrial contraction",
    "apb": "atrial premature beat",
    "svpb": "supraventricular premature beat",
    "pjc": "premature junctional contraction",
    "svt": "supraventricular tachycardia",
    "psvt": "paroxysmal supraventricular tachycardia",
    "vt": "ventricular tachycardia",
    "vf": "ventricular fibrillation",
    "mat": "multifocal atrial tachycardia",
    "aivr": "accelerated idioventricular rhythm",
    "wpw": "wolff parkinson white",
    "nsr": "normal sinus rhythm",
    "lad": "left axis deviation",
    "rad": "right axis deviation",
    "lqts": "long qt syndrome",
    "qtc": "corrected qt",
    "hr": "heart rate",
    "bpm": "beats per minute",
    "ecg": "electrocardiogram",
    "ekg": "electrocardiogram",
    "lv": "left ventricular",
    "rv": "right ventricular",
    "hcm": "hypertrophic cardiomyopathy",
    "ber": "benign early repolarization",
}

# Variant wordings -> the wording the statement tables use; the canonical words are added beside the variant
# (one direction is enough: passages and queries both pass through here, so both gain the canonical form).
SYNONYMS: dict[str, str] = {
    "hemiblock": "fascicular block",
    "extrasystole": "premature complex",
    "premature beat": "premature complex",
    "premature contraction": "premature complex",
    "ectopic beat": "premature complex",
    "heart block": "atrioventricular block",
    "preexcitation": "pre excitation",
    "tachyarrhythmia": "tachycardia",
    "overload": "enlargement",
    "inverted": "inversion",
    "elevated": "elevation",
    "depressed": "depression",
    "prolongation": "prolonged",
    "long qt": "prolonged qt",
    "long pr": "prolonged pr",
    "tented": "peaked",
}

# Words that carry no retrieval signal. Negations are here too: BM25 cannot use them ("no ST elevation"
# still matches ST elevation), and keeping them would only reward passages that happen to say "not".
STOPWORDS = frozenset(
    "a an the of and or in on at to for with without by is are was were be been being as from that this these "
    "those it its into than then there their which who whom whose may can could should would will also often "
    "usually when where while if but so such not no nor any all each other more most less very per via vs "
    "has have had do does did".split()
)

# Variant spellings folded to one form before stemming (British -> American, common report spellings).
SPELLINGS = {"ischaemia": "ischemia", "ischaemic": "ischemic", "oedema": "edema", "haemodynamic": "hemodynamic",
             "anaemia": "anemia", "oesophageal": "esophageal", "centre": "center", "1st": "first",
             "2nd": "second", "3rd": "third", "infarct": "infarction", "infarcts": "infarction"}

# Lower-cased text -> tokens: words with trailing digits (v1, avr, 1avb splits to 1 + avb), numbers with decimals.
_TOKEN = re.compile(r"\d+(?:\.\d+)?|[a-z]+\d*")
# "A-V block", "S-A block": single letters joined by a hyphen are one abbreviation.
_LETTER_HYPHEN = re.compile(r"\b([a-z])-([a-z])\b")
_ORDINAL = re.compile(r"\b(1st|2nd|3rd)\b")


@lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    """A light suffix fold so plural/adjective forms meet: blocks->block, ischemic/ischemia->ischemi.

    Deliberately weaker than Porter: medical words are long and distinctive, and an aggressive stemmer
    merges terms that must stay apart (atrial/atrium are fine together, but ventricle/ventricular are too).
    """
    word = SPELLINGS.get(word, word)
    if len(word) <= 3 or word[0].isdigit():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if len(word) > 5 and word.endswith(("ic", "ia")):
        word = word[:-1]
    elif len(word) > 5 and word.endswith("y"):
        word = word[:-1] + "i"
    return word


def _base_tokens(text: str) -> list[str]:
    text = text.lower()
    text = _ORDINAL.sub(lambda m: SPELLINGS[m[1]], text)
    text = _LETTER_HYPHEN.sub(r"\1\2", text)
    return [stem(t) for t in _TOKEN.findall(text) if t not in STOPWORDS]


def _stemmed_phrase(phrase: str) -> tuple[str, ...]:
    return tuple(stem(t) for t in _TOKEN.findall(phrase.lower()) if t not in STOPWORDS)


# abbreviation -> stemmed phrase tokens, and first phrase token -> [(phrase tokens, abbreviation)]
_EXPAND = {stem(abbr): _stemmed_phrase(phrase) for abbr, phrase in ABBREVIATIONS.items()}
_PHRASES: dict[str, list[tuple[tuple[str, ...], str]]] = {}
for _abbr, _phrase in _EXPAND.items():
    if len(_phrase) > 1:
        _PHRASES.setdefault(_phrase[0], []).append((_phrase, _abbr))
# first variant token -> [(variant tokens, canonical tokens)]
_VARIANTS: dict[str, list[tuple[tuple[str, ...], tuple[str, ...]]]] = {}
for _variant, _canonical in SYNONYMS.items():
    _words = _stemmed_phrase(_variant)
    _VARIANTS.setdefault(_words[0], []).append((_words, _stemmed_phrase(_canonical)))


def tokenise(text: str) -> list[str]:
    """Text -> BM25 tokens: folded, stop words dropped, numbers kept, abbreviations, phrases and variant
    wordings expanded.

    A phrase adds only the abbreviation of the longest phrase matching at that point, so "incomplete left
    bundle branch block" adds ilbbb but not lbbb: the incomplete form must not outscore the complete one
    on a query for LBBB.
    """
    base = _base_tokens(text)
    for i, token in enumerate(list(base)):  # variant wordings first, so "heart block" can then add avb
        for words, canonical in _VARIANTS.get(token, ()):
            if tuple(base[i : i + len(words)]) == words:
                base.extend(canonical)
    out = list(base)
    covered = 0  # phrase matches do not overlap: positions before this are inside the last match
    for i, token in enumerate(base):
        phrase = _EXPAND.get(token)
        if phrase is not None and phrase != (token,):
            out.extend(phrase)
        if i < covered:
            continue
        best = max((m for m in _PHRASES.get(token, ()) if tuple(base[i : i + len(m[0])]) == m[0]),
                   key=lambda m: len(m[0]), default=None)
        if best is not None:
            out.append(best[1])
            covered = i + len(best[0])
    return out
