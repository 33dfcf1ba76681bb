"""Layout of the compiled code-set cache. Bump SCHEMA_VERSION when it changes."""

SCHEMA_VERSION = 1
EDITION = "ICD-10-CM FY2026"

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE codes (
    code TEXT PRIMARY KEY,      -- as printed: E11.22, E11, E08-E13 (block), 4 (chapter)
    kind TEXT NOT NULL,         -- chapter | block | category | subcategory | extended
    description TEXT NOT NULL,
    parent TEXT,
    billable INTEGER NOT NULL,
    ord INTEGER NOT NULL,       -- pre-order position
    last_ord INTEGER NOT NULL   -- ord of the last descendant (= ord for a leaf)
) WITHOUT ROWID;
CREATE INDEX codes_parent ON codes(parent, ord);
CREATE INDEX codes_ord ON codes(ord, billable);
CREATE TABLE notes (code TEXT NOT NULL, field TEXT NOT NULL, text TEXT NOT NULL);
CREATE INDEX notes_code ON notes(code, field);
CREATE TABLE excludes1_ranges (code TEXT NOT NULL, lo TEXT NOT NULL, hi TEXT NOT NULL, note TEXT NOT NULL);
CREATE INDEX excludes1_code ON excludes1_ranges(code);
CREATE TABLE seven_chr (code TEXT NOT NULL, char TEXT NOT NULL, meaning TEXT NOT NULL);
CREATE INDEX seven_chr_code ON seven_chr(code);
CREATE VIRTUAL TABLE search_fts USING fts5(
    text, code UNINDEXED, field UNINDEXED, tokenize = 'porter unicode61 remove_diacritics 2'
);
"""
