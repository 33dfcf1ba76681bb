"""FTS5's bm25 ranking of the code-set search table, computed over its own index in numpy.

`SELECT ... WHERE search_fts MATCH ? ORDER BY rank` makes FTS5 call its bm25 function once per
matching row, which cost most of a note's retrieval (0.82 s of 1.40 s over the 458 searches of
12 CodiEsp notes; finding the same rows took 0.17 s). Here the same formula runs over the
index's postings, read once per token from an `fts5vocab` table: the same rows, the same
scores bit for bit (double precision, the same order of operations and of phrases), the same
order of ties (by rowid), as tests/test_codeset.py checks against FTS5 itself.

FTS5's bm25 (sqlite3 ext/fts5/fts5_aux.c), every column weighted 1, for a query of phrases i:

    idf_i = log((N - n_i + 0.5) / (n_i + 0.5)), or 1e-6 where that is not positive
    score = -sum_i idf_i * f_i * (k1 + 1) / (f_i + k1 * (1 - b + b * D / avgdl))

N rows, n_i rows holding phrase i, f_i its instances in the row, D the row's tokens, avgdl
their mean; k1 = 1.2, b = 0.75.
"""
from __future__ import annotations

import math
import sqlite3
import threading
from functools import lru_cache

import numpy as np

_K1, _B = 1.2, 0.75
_TOKENIZER = "porter unicode61 remove_diacritics 2"  # as models/codeset/_schema.py declares it


class Bm25Index:
    """bm25-ranked phrase queries ("a" OR "b c" ...) over the code set's `search_fts`."""

    def __init__(self, path) -> None:
        # A connection of its own: the temporary tables below are per connection, and one lock
        # keeps the token reads of several threads apart.
        self._con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            self._con.execute("PRAGMA temp_store = MEMORY")  # no temporary file, wherever the app runs
            self._con.execute("CREATE VIRTUAL TABLE temp.search_instances "
                              "USING fts5vocab(main, search_fts, instance)")
            self._con.execute("CREATE VIRTUAL TABLE temp.search_terms USING fts5vocab(main, search_fts, row)")
            # The query's words go through the same tokenizer as the index (porter stems them).
            self._con.execute(f"CREATE VIRTUAL TABLE temp.query_text USING fts5(text, tokenize = '{_TOKENIZER}')")
            self._con.execute("CREATE VIRTUAL TABLE temp.query_tokens USING fts5vocab(temp, query_text, instance)")
            rows = self._con.execute("SELECT id, sz FROM search_fts_docsize").fetchall()
        self.row_count = len(rows)
        self.row_tokens = np.zeros(max((r for r, _ in rows), default=0) + 1, dtype=np.float64)
        for rowid, size in rows:
            self.row_tokens[rowid] = _row_size(size)
        self.mean_tokens = float(self.row_tokens.sum()) / self.row_count if self.row_count else 1.0

    @lru_cache(maxsize=65536)
    def tokens(self, phrase: str) -> tuple[str, ...]:
        """The index's tokens of a phrase, in order ("Kidneys failing" -> kidnei, fail)."""
        with self._lock:
            self._con.execute("INSERT INTO temp.query_text(rowid, text) VALUES (1, ?)", (phrase,))
            try:
                found = self._con.execute("SELECT term FROM temp.query_tokens ORDER BY offset").fetchall()
            finally:
                self._con.execute("DELETE FROM temp.query_text")
        return tuple(t for (t,) in found)

    @lru_cache(maxsize=65536)
    def _postings(self, token: str) -> tuple[np.ndarray, np.ndarray]:
        """(rowid, position) of every instance of a token."""
        with self._lock:
            found = self._con.execute("SELECT doc, offset FROM temp.search_instances WHERE term = ?",
                                      (token,)).fetchall()
        pairs = np.array(found, dtype=np.int64).reshape(-1, 2)
        return pairs[:, 0], pairs[:, 1]

    @lru_cache(maxsize=65536)
    def phrase_rows(self, phrase: str) -> tuple[np.ndarray, np.ndarray]:
        """The rows holding a phrase (its tokens at consecutive positions) and its instances in
        each, rows ascending."""
        tokens = self.tokens(phrase)
        if not tokens:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        rows, positions = self._postings(tokens[0])
        for shift, token in enumerate(tokens[1:], 1):
            next_rows, next_positions = self._postings(token)
            # Positions fit in 20 bits (rows hold at most a few hundred tokens): one key per instance.
            wanted = rows * (1 << 20) + positions + shift
            keep = np.isin(wanted, next_rows * (1 << 20) + next_positions)
            rows, positions = rows[keep], positions[keep]
        unique, counts = np.unique(rows, return_counts=True)
        return unique, counts.astype(np.float64)

    @lru_cache(maxsize=65536)
    def doc_freq(self, phrase: str) -> int:
        """How many rows hold the phrase (what `count(*) ... MATCH '"phrase"'` counts). A word's
        count is the index's own: reading the postings of "unspecified" to count them costs more."""
        tokens = self.tokens(phrase)
        if len(tokens) != 1:
            return len(self.phrase_rows(phrase)[0])
        with self._lock:
            found = self._con.execute("SELECT doc FROM temp.search_terms WHERE term = ?", tokens).fetchone()
        return found[0] if found else 0

    def top(self, phrases: list[str], limit: int) -> tuple[np.ndarray, np.ndarray]:
        """The `limit` best rows for `"p1" OR "p2" ...` (one phrase at least) and their rank (FTS5's bm25, negative,
        best first; ties by rowid), as `ORDER BY rank LIMIT limit` gives them."""
        found = [self.phrase_rows(p) for p in phrases]
        matched = np.unique(np.concatenate([rows for rows, _ in found]))
        if not len(matched):
            return matched, np.zeros(0, dtype=np.float64)
        score = np.zeros(len(matched), dtype=np.float64)
        length = _K1 * ((1 - _B) + (_B * self.row_tokens[matched]) / self.mean_tokens)
        for rows, freq in found:
            if not len(rows):
                continue
            idf = math.log((self.row_count - len(rows) + 0.5) / (len(rows) + 0.5))
            at = np.searchsorted(matched, rows)
            # Phrase by phrase, each term as fts5_aux.c writes it, so the doubles round alike.
            score[at] += (idf if idf > 0.0 else 1e-6) * ((freq * (_K1 + 1.0)) / (freq + length[at]))
        rank = -score
        best = np.lexsort((matched, rank))[:limit]
        return matched[best], rank[best]


def _row_size(blob: bytes) -> int:
    """A docsize record's tokens over all columns (SQLite varints, one per column)."""
    total, value = 0, 0
    for byte in blob:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            total, value = total + value, 0
    return total
