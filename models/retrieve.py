"""Candidate retrieval: from a note, the codes most worth showing the model, best first.

Four signals, combined by a small learned ranker (logistic regression):
- lexical: each clause of the note (negated clauses skipped, the qualifiers after it kept:
  "Migraine without aura") is searched in the code set's descriptions and inclusion terms; a
  code scores by how much of its wording the clause covers
  (two adjacent clauses of a sentence are searched together too: combination codes);
- neighbours: codes of the most similar notes in the training cases (TF-IDF cosine);
- phrases: for each word and word pair of the note, the share of training notes holding it that
  carry a code ("dyslipidemia" -> E78.5): the wording clinicians use that the code set lacks;
- prior: how often the code was assigned in the training cases.
Each source names an injury code with the 7th character the note supports (models/seventh.py).
The learned parts (neighbour index, phrases, priors, ranker weights, threshold) are fitted on CodiEsp
train (every choice out of fold) by `python -m builder retriever`, and travel in a coder bundle
(models/bundle.py) with the model trained on their candidates; the package ships a
retrieval-only bundle. Without them the retriever falls back to the lexical signal alone.
"""
from __future__ import annotations

import gzip
import json
import math
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from .codeset import CodeSet
from .contract import Candidate
from .seventh import NoteEncounter
from .text import clause_pairs, clauses, content_words, qualified_end, sided_end, stem, stems

FEATURES = ("lex_cover", "lex_clauses", "lex_rank", "lex_score", "knn", "knn_share", "prior",
            "knn_x_lex", "centroid", "centroid_rank", "phrase_share", "phrase_notes", "phrase_affirmed", "pair_cover",
            # A phrase's vote counts for more when another signal agrees (CodiEsp train, out of
            # fold: micro-F1 0.541 -> 0.553 with these products).
            "phrase_sqrt", "phrase_x_lex", "phrase_x_prior", "phrase_x_centroid", "phrase_x_knn")
_SAME_NOTE = 0.98  # a neighbour this similar is the query note itself (training data)
# A phrase votes for a code when at least this share of the training notes holding it carry the
# code (k / (n + 2), so a phrase of two notes, one with the code, gives 0.25). Lower shares add
# many candidates and little F1 (CodiEsp train, out of fold: 0.05 -> 0.543, 0.10 -> 0.541).
_PHRASE_MIN_SHARE = 0.1


def phrases(text: str) -> set[str]:
    """A text's stemmed content words and adjacent word pairs ("chronic_kidney")."""
    words = [stem(w) for w in content_words(text)]
    return set(words) | {f"{a}_{b}" for a, b in zip(words, words[1:])}


def affirmed_phrases(note: str) -> set[str]:
    """The phrases of a note's affirmed clauses: "denies chest pain" affirms no chest pain."""
    return set().union(*(phrases(note[start:end]) for start, end in clauses(note)))


class NeighbourIndex:
    """TF-IDF vectors of training notes with their codes."""

    def __init__(self, idf: dict[str, float], vectors: list[dict[str, float]], codes: list[list[str]],
                 centroids: dict[str, dict[str, float]] | None = None,
                 phrase_notes: dict[str, list[int]] | None = None):
        self.idf = idf
        # Phrase -> the training notes (rows) holding it; phrases of a single note are left out.
        self.phrase_notes = phrase_notes or {}
        self._phrase_cache: dict[str, list[tuple[str, int, float]]] = {}
        self.vocab = {t: i for i, t in enumerate(idf)}
        self.codes = codes
        self.matrix = np.zeros((len(vectors), len(self.vocab)), dtype=np.float32)
        for row, vec in enumerate(vectors):
            for term, weight in vec.items():
                self.matrix[row, self.vocab[term]] = weight
        # Each code's centroid (mean vector of the cases that carry it), as postings per term.
        self.centroids = centroids or {}
        self.postings: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for code, vec in self.centroids.items():
            for term, weight in vec.items():
                self.postings[term].append((code, weight))

    @classmethod
    def fit(cls, notes: list[str], codes: list[list[str]], top_terms: int = 80) -> "NeighbourIndex":
        df = Counter(t for note in notes for t in stems(note))
        idf = {t: math.log(len(notes) / n) for t, n in df.items() if n >= 2}
        vectors = [cls._vector(note, idf, top_terms) for note in notes]
        sums: dict[str, Counter] = defaultdict(Counter)
        for vec, note_codes in zip(vectors, codes):
            for code in note_codes:
                sums[code].update(vec)
        centroids = {}
        for code, total in sums.items():
            top = dict(total.most_common(top_terms))
            norm = math.sqrt(sum(v * v for v in top.values())) or 1.0
            centroids[code] = {t: round(v / norm, 4) for t, v in top.items()}
        holders: dict[str, list[int]] = defaultdict(list)
        for row, note in enumerate(notes):
            for phrase in phrases(note):
                holders[phrase].append(row)
        return cls(idf, vectors, codes, centroids, {p: rows for p, rows in holders.items() if len(rows) >= 2})

    def phrase_scores(self, note: str) -> dict[str, tuple[float, int, float]]:
        """Per code: the best share k / (n + 2) over the note's phrases (n training notes hold the
        phrase, k of them carry the code), that k, and the best share over the phrases of its
        affirmed clauses; shares under _PHRASE_MIN_SHARE left out.

        Both count: the whole note's phrases say what the case is about (a negated "tumour
        recurrence" still marks a cancer case), the affirmed ones what it states (CodiEsp train,
        out of fold: micro-F1 0.511 with affirmed phrases alone, 0.542 with the whole note's,
        0.551 with both)."""
        affirmed = affirmed_phrases(note)
        out: dict[str, tuple[float, int, float]] = {}
        for phrase in phrases(note) | affirmed:
            for code, k, share in self._phrase_codes(phrase):
                best, notes, best_affirmed = out.get(code, (0.0, 0, 0.0))
                if (share, k) > (best, notes):  # ties go to the larger k, whatever the set order
                    best, notes = share, k
                if phrase in affirmed:
                    best_affirmed = max(best_affirmed, share)
                out[code] = (best, notes, best_affirmed)
        return out

    def _phrase_codes(self, phrase: str) -> list[tuple[str, int, float]]:
        """(code, k, share) of the codes the training notes holding `phrase` carry, share at
        least _PHRASE_MIN_SHARE; the same for every note, so counted once per phrase."""
        rows = self.phrase_notes.get(phrase)
        if not rows:
            return []
        if phrase not in self._phrase_cache:  # bounded: phrases of the training notes only
            carried = Counter(code for row in rows for code in self.codes[row])
            self._phrase_cache[phrase] = [(code, k, k / (len(rows) + 2)) for code, k in carried.items()
                                          if k / (len(rows) + 2) >= _PHRASE_MIN_SHARE]
        return self._phrase_cache[phrase]

    def centroid_scores(self, note: str) -> dict[str, float]:
        """Cosine of the note with each code's centroid (codes seen in training only)."""
        out: dict[str, float] = defaultdict(float)
        for term, weight in self._vector(note, self.idf).items():
            for code, w in self.postings.get(term, ()):
                out[code] += weight * w
        return dict(out)

    @staticmethod
    def _vector(note: str, idf: dict[str, float], top_terms: int | None = None) -> dict[str, float]:
        tf = Counter(stem(w) for w in content_words(note))
        vec = {t: (1 + math.log(n)) * idf[t] for t, n in tf.items() if t in idf}
        if top_terms:
            vec = dict(sorted(vec.items(), key=lambda kv: -kv[1])[:top_terms])
        norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
        return {t: round(v / norm, 4) for t, v in vec.items()}

    def scores(self, note: str, k: int = 20) -> tuple[dict[str, float], dict[str, float]]:
        """Per code: the similarity-weighted and the plain share of the k nearest notes carrying it."""
        vec = self._vector(note, self.idf)
        query = np.zeros(len(self.vocab), dtype=np.float32)
        for term, weight in vec.items():
            query[self.vocab[term]] = weight
        sims = self.matrix @ query
        order = [i for i in np.argsort(-sims) if sims[i] < _SAME_NOTE][:k]
        total = float(sum(sims[i] for i in order)) or 1.0
        weighted: dict[str, float] = defaultdict(float)
        share: dict[str, float] = defaultdict(float)
        for i in order:
            for code in self.codes[i]:
                weighted[code] += float(sims[i]) / total
                share[code] += 1 / max(len(order), 1)
        return dict(weighted), dict(share)

    def to_dict(self) -> dict:
        inverse = list(self.vocab)
        vectors = [{inverse[j]: round(float(row[j]), 4) for j in np.flatnonzero(row)} for row in self.matrix]
        return {"idf": {t: round(v, 4) for t, v in self.idf.items()}, "vectors": vectors,
                "codes": self.codes, "centroids": self.centroids, "phrase_notes": self.phrase_notes}


class Retriever:
    def __init__(self, cs: CodeSet, model: dict | None = None):
        self.cs = cs
        self.model = model or {}
        if model and tuple(model.get("features", ())) != FEATURES:
            raise ValueError(f"This retriever file was fitted for features {model.get('features')}, "
                             f"this code computes {list(FEATURES)}: rebuild the bundle with "
                             "`make all` (or `python -m builder retriever`, then `bundle`).")
        self.prior: dict[str, int] = self.model.get("prior", {})
        self.max_prior = max(self.prior.values(), default=1)
        self.top_prior = {c for c, _ in Counter(self.prior).most_common(30)}
        knn = self.model.get("neighbours")
        self.neighbours = NeighbourIndex(knn["idf"], knn["vectors"], knn["codes"], knn.get("centroids"),
                                         knn.get("phrase_notes")) if knn else None
        self.weights = np.array(self.model.get("weights", [4.0, 1.0, 1.0] + [0.0] * (len(FEATURES) - 3)))
        self.bias = float(self.model.get("bias", -3.0))
        self.threshold = float(self.model.get("threshold", 0.5))
        # How often a code the note states in words was right, out of fold (`builder retriever`);
        # None in a retriever fitted before it was measured.
        self.stated_precision: float | None = self.model.get("stated_precision")
        self.name = self.model.get("name", "lexical")
        cs.prepare_search()  # when the retriever loads, not at the first note

    @classmethod
    def load(cls, cs: CodeSet, path: str | Path) -> "Retriever":
        """A fitted retriever file (retriever.json.gz, as `builder retriever` writes it)."""
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            return cls(cs, json.load(fh))

    # --- signals -----------------------------------------------------------------------
    def lexical(self, note: str, per_clause: int = 12) -> dict[str, dict]:
        found: dict[str, dict] = {}
        for start, end in clauses(note):
            end = qualified_end(note, end)  # "Migraine" + "without aura": G43.0, not G43.1
            end = sided_end(note, end)  # "Otitis externa" + ", left ear": H60.332's own words
            for hit in self.cs.search(note[start:end], limit=per_clause, billable_only=True):
                entry = found.setdefault(hit.code, {"cover": 0.0, "clauses": 0, "score": 0.0,
                                                    "span": (start, end), "description": hit.description})
                entry["clauses"] += hit.covered >= 0.5
                if hit.covered > entry["cover"]:
                    entry.update(cover=hit.covered, span=(start, end))
                entry["score"] = max(entry["score"], hit.score)
        return found

    def combined(self, note: str, per_pair: int = 8) -> dict[str, dict]:
        """Codes whose wording two adjacent clauses of a sentence cover together: combination
        codes written across a comma ("type 2 diabetes with nephropathy, CKD stage 4" -> E11.22)."""
        found: dict[str, dict] = {}
        for (a1, b1), (a2, b2) in clause_pairs(note):
            for hit in self.cs.search(f"{note[a1:b1]} {note[a2:b2]}", limit=per_pair, billable_only=True):
                if hit.covered > found.get(hit.code, {"cover": 0.0})["cover"]:
                    found[hit.code] = {"cover": hit.covered, "span": (a1, b2)}
        return found

    def _supported(self, found: dict, encounter: NoteEncounter, strength=lambda v: v) -> dict:
        """`found` keyed by each code with the 7th character the note supports; where two
        variants meet, the stronger entry stays."""
        out: dict = {}
        for code, value in found.items():
            code = encounter.supported_code(self.cs, code)
            if code not in out or strength(value) > strength(out[code]):
                out[code] = value
        return out

    def features(self, note: str) -> tuple[list[str], np.ndarray, dict[str, tuple[int, int]]]:
        """The pooled codes, their FEATURES rows, and where in the note each was found."""
        # Every source names an injury with the 7th character the note supports: a search finds
        # whichever wording of S93.491- scores best, neighbours the one their own note stated.
        encounter = NoteEncounter(note)
        lex = self._supported(self.lexical(note), encounter, lambda e: (e["cover"], e["score"]))
        pairs = self._supported(self.combined(note), encounter, lambda e: e["cover"])
        knn, knn_share = self.neighbours.scores(note) if self.neighbours else ({}, {})
        knn, knn_share = self._supported(knn, encounter), self._supported(knn_share, encounter)
        cent = self._supported(self.neighbours.centroid_scores(note), encounter) if self.neighbours else {}
        phrase = self._supported(self.neighbours.phrase_scores(note), encounter) if self.neighbours else {}
        lex_rank = {c: r for r, c in enumerate(sorted(lex, key=lambda c: -lex[c]["score"]), 1)}
        cent_rank = {c: r for r, c in enumerate(sorted(cent, key=lambda c: -cent[c])[:60], 1)}
        pool = set(lex) | set(pairs) | set(knn) | set(cent_rank) | set(phrase) | self.top_prior
        codes = sorted(pool)
        rows = []
        for c in codes:
            e = lex.get(c)
            cover = e["cover"] if e else 0.0
            share, notes, affirmed = phrase.get(c, (0.0, 0, 0.0))
            prior = math.log1p(self.prior.get(c, 0)) / math.log1p(self.max_prior)
            centroid, neighbour_share = cent.get(c, 0.0), knn_share.get(c, 0.0)
            rows.append([cover, math.log1p(e["clauses"]) if e else 0.0,
                         1.0 / lex_rank[c] if c in lex_rank else 0.0,
                         e["score"] / 3.6 if e else 0.0,  # search scores top out near 3.6
                         knn.get(c, 0.0), neighbour_share, prior, knn.get(c, 0.0) * cover, centroid,
                         1.0 / cent_rank[c] if c in cent_rank else 0.0, share, math.log1p(notes), affirmed,
                         pairs[c]["cover"] if c in pairs else 0.0,
                         math.sqrt(share), share * cover, share * prior, share * centroid, share * neighbour_share])
        x = np.array(rows, dtype=np.float64).reshape(-1, len(FEATURES))
        spans = {c: e["span"] for c, e in pairs.items()} | {c: e["span"] for c, e in lex.items()}
        return codes, x, spans

    def retrieve(self, note: str, k: int = 50) -> list[Candidate]:
        codes, x, spans = self.features(note)
        if not codes:
            return []
        probs = 1.0 / (1.0 + np.exp(-(x @ self.weights + self.bias)))
        out = []
        for i in np.argsort(-probs)[:k]:
            code = codes[i]
            if not self.cs.is_billable(code):
                continue
            start, end = spans.get(code, (0, 0))
            out.append(Candidate(code, self.cs.description(code), round(float(probs[i]), 4),
                                 start, end, tuple(round(float(v), 4) for v in x[i])))
        return out


_default: dict[int, Retriever] = {}


def default_retriever(cs: CodeSet) -> Retriever:
    """The retriever of the package's embedded bundle (fitted on CodiEsp train)."""
    if id(cs) not in _default:
        from . import bundle  # noqa: PLC0415

        _default[id(cs)] = bundle.embedded().load_retriever(cs)
    return _default[id(cs)]


def retrieve(note: str, cs: CodeSet, k: int = 20) -> list[Candidate]:
    """Candidates for a note from the embedded bundle's retriever."""
    return default_retriever(cs).retrieve(note, k=k)
