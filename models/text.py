"""The note's text helpers, in one place: words, stems, clauses and negation, quotes.

Retrieval, evidence and the code set's search all read a note through these, so a change to
what counts as a word or a negated clause changes them all alike.
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

WORD_RE = re.compile(r"[a-z0-9]+")  # a word, in lower-cased text
# Words too common in code descriptions to help ranking (and "unspecified" must not decide).
_STOPWORDS = frozenset(
    "a an and as at by for from in into is of on or other the to with due "
    "unspecified specified nos nec type without complications".split()
)


# Forms of one word that the suffixes below leave apart, where notes write one and the code set
# the other: "calculous cholecystitis" is K80's "calculus of gallbladder with ... cholecystitis",
# "polycystic ovary syndrome" E28.2 "Polycystic ovarian syndrome", "ingrown toenail" L60.0
# "Ingrowing nail", "menopausal" the "menopause" of N95's terms, "head lice" B85.0's "Head-louse
# infestation". Each stems as the first form, and
# a text's word is searched in each form (`expand`).
_WORD_FAMILY_GROUPS = (("calculus", "calculous"), ("ovary", "ovarian", "ovaries"), ("ingrowing", "ingrown"),
                       ("menopause", "menopausal"), ("louse", "lice"))
_WORD_FAMILIES = {form: group for group in _WORD_FAMILY_GROUPS for form in group}
# Forms that are another word than their stem: "burning" eyes or urination is a sensation, not
# the code set's "Burn of ..." injuries (T30.0 from "burning, gritty eyes").
_UNSTEMMED = frozenset({"burning"})


@lru_cache(maxsize=131072)  # the hottest call of retrieval: the same words recur in every search
def stem(word: str) -> str:
    """A light stemmer for ranking: diabetes/diabetic -> diabet, kidneys -> kidney,
    hypertension/hypertensive -> hypertens."""
    word = _WORD_FAMILIES[word][0] if word in _WORD_FAMILIES else word
    if word in _UNSTEMMED:
        return word
    # -ion/-ive: hypertension and hypertensive, infection and infective, as the index's porter
    # stemmer already matches them.
    for suffix in ("ions", "ies", "es", "ic", "al", "ion", "ive", "s", "ed", "ing"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


# Abbreviations clinicians write for what the code set spells out. Only those with one clinical
# reading: PE (pulmonary embolism or physical exam), MS, RA and CP are left as written.
_ABBREVIATIONS = {
    "copd": "chronic obstructive pulmonary disease", "ckd": "chronic kidney disease",
    "esrd": "end stage renal disease", "aki": "acute kidney injury", "htn": "hypertension",
    "dm": "diabetes mellitus", "t2dm": "type 2 diabetes mellitus", "dm2": "type 2 diabetes mellitus",
    "t1dm": "type 1 diabetes mellitus", "chf": "congestive heart failure",
    "hfref": "heart failure with reduced ejection fraction",
    "hfpef": "heart failure with preserved ejection fraction", "cad": "coronary artery disease",
    "afib": "atrial fibrillation", "mi": "myocardial infarction",
    "stemi": "st elevation myocardial infarction", "nstemi": "non st elevation myocardial infarction",
    "cva": "cerebrovascular accident stroke", "tia": "transient ischemic attack",
    "dvt": "deep vein thrombosis", "uti": "urinary tract infection",
    "uri": "upper respiratory infection", "gerd": "gastro esophageal reflux disease",
    "osa": "obstructive sleep apnea", "bph": "benign prostatic hyperplasia", "hld": "hyperlipidemia",
    "oa": "osteoarthritis", "ards": "acute respiratory distress syndrome", "pna": "pneumonia",
    "sob": "shortness of breath", "ibs": "irritable bowel syndrome", "ibd": "inflammatory bowel disease",
    "adhd": "attention deficit hyperactivity disorder", "ptsd": "post traumatic stress disorder",
    "mdd": "major depressive disorder", "gad": "generalized anxiety disorder",
    "hcv": "hepatitis c", "hbv": "hepatitis b", "pud": "peptic ulcer disease",
    "pad": "peripheral arterial disease", "pvd": "peripheral vascular disease",
    "lbp": "low back pain", "bmi": "body mass index", "psa": "prostate specific antigen",
}
# Words clinicians write where the code set writes others: ICD-10-CM names the ends of a long
# bone "lower end" and "upper end" ("Fracture of lower end of radius"), a note "distal radius".
# The word stays beside its synonym: "distal phalanx" is the code set's own wording.
_SYNONYMS = {"distal": "distal lower end", "proximal": "proximal upper end",
             # The colon is the large intestine, the code set's word in K55-K63 ("Diverticulitis
             # of large intestine"); the sigmoid is the colon's last part.
             "colon": "colon large intestine", "sigmoid": "sigmoid large intestine",
             # "E. coli" is Escherichia coli (B96.20), the "E." too short to read as a word.
             "coli": "coli escherichia",
             # The lumbar region is the lower back, the injury codes' word ("Strain of muscle,
             # fascia and tendon of lower back", S39.012-).
             "lumbar": "lumbar lower back",
             # A hiatal hernia is K44's "hiatus hernia"; vulvovaginal, B37.31's "vulva and vagina".
             "hiatal": "hiatal hiatus", "vulvovaginal": "vulvovaginal vulva vagina",
             # Herpes labialis is herpes simplex of the lip (B00.1 "Herpes simplex labialis").
             "labialis": "labialis simplex",
             # Anaphylaxis is the anaphylactic reaction of T78.0- and T88.6.
             "anaphylaxis": "anaphylaxis anaphylactic reaction",
             # Triglycerides are the glycerides of E78.1 "Pure hyperglyceridemia".
             "hypertriglyceridemia": "hypertriglyceridemia hyperglyceridemia",
             # The code set's nail is a toe's or a finger's ("Ingrowing nail", L60.0).
             "toenail": "toenail nail toe", "toenails": "toenails nail toe",
             "fingernail": "fingernail nail finger", "fingernails": "fingernails nail finger",
             # A midshaft fracture is of the bone's shaft (S42.02- "... fracture of shaft of clavicle").
             "midshaft": "midshaft shaft",
             # C. difficile was renamed Clostridioides in 2016; the code set's titles keep
             # "Clostridium" (A04.7- "Enterocolitis due to Clostridium difficile").
             "clostridioides": "clostridioides clostridium"}
# The Alphabetic Index's cross-references for words the code set's descriptions seldom use:
# "Tumor - see Neoplasm, unspecified behavior", "Carcinoma - see Neoplasm, by site, malignant"
# ("bladder carcinoma" -> C67.9, Malignant neoplasm of bladder). CodiEsp train, out of fold: micro-F1 0.5416
# -> 0.5438, recall@50 0.655 -> 0.661. Tried and left out: "metastasis - see Neoplasm, secondary"
# (0.5398: a site-less "metastases" reads as C79.9 or C79.89: 59 more wrong codes), "smoker - see
# Dependence, nicotine" (3 more right codes, 12 more wrong ones), organ adjectives as their nouns
# ("renal" -> kidney: 0.5427, the synthetic notes 0.4749 -> 0.4707).
_INDEX_SEE = {"neoplasm": "tumor tumors tumour tumours",
              "vaginitis": "vaginosis",  # "Vaginosis - see Vaginitis": bacterial vaginosis is N76.0
              "malignant neoplasm": "carcinoma carcinomas adenocarcinoma adenocarcinomas cancer cancers"}
_SYNONYMS |= {w: f"{w} {target}" for target, words in _INDEX_SEE.items() for w in words.split()}
# Word forms the code set writes otherwise, read in their place: "left-sided" is "left side" (too
# short to stem), "secondhand" the code set's "second hand tobacco smoke".
_WORD_FORMS = {"sided": "side", "secondhand": "second hand"}
_EXPANSIONS = {abbr: tuple(words.split()) for abbr, words in (_ABBREVIATIONS | _SYNONYMS | _WORD_FORMS).items()}


def expand(word: str) -> tuple[str, ...]:
    """A lower-cased word, or the words its abbreviation stands for ("copd" -> chronic ...), or
    it and its other forms ("ovary" -> ovary, ovarian, ovaries); a plural in -oses as its singular
    in -osis ("keratoses" -> keratosis), as the code set names it (the stemmers part them:
    keratos, keratosi)."""
    if word in _EXPANSIONS:
        return _EXPANSIONS[word]
    if word in _WORD_FAMILIES:
        return (word, *(form for form in _WORD_FAMILIES[word] if form != word))
    return (word[:-2] + "is",) if len(word) > 6 and word.endswith("oses") else (word,)


# ICD-10-CM names the leg and the arm two ways: "lower limb" and "upper limb" in the skin, soft
# tissue, nerve and neoplasm codes ("Cellulitis of left lower limb"), "leg" and "arm" in the
# musculoskeletal and injury codes ("Pain in left leg"); notes also write "lower extremity".
# All read as "leg" and "arm", in the note and in the code set alike, so "cellulitis of the left
# lower leg" states L03.116.
_LIMB = re.compile(r"\b(lower|upper) (?:limb|extremit(?:y|ie))s?\b")
_LIMB_WORDS = {"lower": "leg", "upper": "arm"}
_LIMB_PHRASES = {"leg": "lower limb", "legs": "lower limb", "arm": "upper limb", "arms": "upper limb"}


# Low back pain is lumbago: M54.50 "Low back pain, unspecified" includes "Lumbago NOS", and the
# code set names it so in its combinations ("Lumbago with sciatica, left side").
_LOW_BACK_PAIN = re.compile(r"\blow back pain\b")


# Tobacco dependence is nicotine dependence (index: "Dependence, tobacco - see Dependence, drug,
# nicotine"; F17.210 "Nicotine dependence, cigarettes, uncomplicated").
_TOBACCO_DEPENDENCE = re.compile(r"\btobacco dependence\b")
# A coronary stent is the code set's "coronary angioplasty implant" (Z95.5 "Presence of coronary
# angioplasty implant and graft"): "Coronary stent in place", "stent to the LAD".
_CORONARY_STENT = re.compile(
    r"\b(?:coronary (?:artery )?stents?|stents? (?:in|to|of) the (?:lad|rca|lcx|circumflex|left anterior descending|"
    r"right coronary|left main|coronary)\b)")


# A spine level names its region, as the code set's spine codes do ("Intervertebral disc disorders
# with radiculopathy, lumbosacral region" for L5-S1); a herniated disc is the index's "displacement,
# intervertebral disc".
_SPINE_LEVEL = re.compile(r"\b([ctl])(\d{1,2}) ?(?:-|to) ?([ctls])?(\d{1,2})\b")
_SPINE_REGIONS = {("c", "c"): "cervical", ("c", "t"): "cervicothoracic", ("t", "t"): "thoracic",
                  ("t", "l"): "thoracolumbar", ("l", "l"): "lumbar", ("l", "s"): "lumbosacral"}
_HERNIATED_DISC = re.compile(r"\b(?:herniated|bulging|protruding|extruded|slipped) dis[ck]s?\b|"
                             r"\bdis[ck]s? (?:herniation|protrusion|bulge|extrusion)s?\b")


def _spine_region(m: re.Match) -> str:
    first, second = m.group(1), m.group(3) or m.group(1)
    region = _SPINE_REGIONS.get((first, second))
    return f"{m.group()} {region}" if region else m.group()


# The lateral malleolus is the fibula's lower end, the medial the tibia's, as the fracture codes
# name them: S82.64- "Nondisplaced fracture of lateral malleolus of right fibula".
_MALLEOLUS = re.compile(r"\b(lateral|medial) malleol(?:us|ar|i)\b")
_MALLEOLUS_BONES = {"lateral": "fibula", "medial": "tibia"}


def _unaccented(text: str) -> str:
    """"Ménière" as "meniere": the code set writes the accents that notes mostly leave out, and a
    word is ASCII letters and digits (WORD_RE), so an accent split it in pieces."""
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _in_code_set_words(text: str) -> str:
    """A lower-cased text in the code set's words, without accents: its "lower limb" and "upper
    extremity" read as "leg" and "arm", its "low back pain" as lumbago too, its "tobacco
    dependence" as nicotine's, its coronary stent as the presence of a coronary angioplasty
    implant, a malleolus with its bone, a spine level with its region ("L5-S1": lumbosacral), a
    herniated disc as a displaced one."""
    text = _LIMB.sub(lambda m: _LIMB_WORDS[m.group(1)], _unaccented(text.lower()))
    text = _TOBACCO_DEPENDENCE.sub("tobacco nicotine dependence", text)
    text = _CORONARY_STENT.sub(lambda m: m.group() + " presence of coronary angioplasty implant", text)
    text = _MALLEOLUS.sub(lambda m: f"{m.group()} {_MALLEOLUS_BONES[m.group(1)]}", text)
    text = _SPINE_LEVEL.sub(_spine_region, text)
    text = _HERNIATED_DISC.sub(lambda m: f"{m.group()} intervertebral disc displacement", text)
    return _LOW_BACK_PAIN.sub("low back pain lumbago", text)


def synonym_phrases(text: str) -> list[str]:
    """The code set's wordings of a text's words, where one is several words ("distal" ->
    "lower end", "leg" -> "lower limb"), for a phrase search: each of "lower" and "end" is in
    thousands of entries."""
    words = dict.fromkeys(WORD_RE.findall(_in_code_set_words(text)))
    return [" ".join(_EXPANSIONS[w][1:]) for w in words if w in _SYNONYMS] + list(
        dict.fromkeys(_LIMB_PHRASES[w] for w in words if w in _LIMB_PHRASES))


def content_words(text: str) -> list[str]:
    """The words of a text that say something, abbreviations spelled out ("COPD" -> chronic
    obstructive pulmonary disease), so the note, the code set and the evidence read alike."""
    return list(_content_words(text))


@lru_cache(maxsize=262144)
def _content_words(text: str) -> tuple[str, ...]:
    # Cached: a note's retrieval asks for the words of the same code-set entries thousands of
    # times (3,000 calls a CodiEsp note, a fifth of retrieval's time).
    return tuple(x for w in WORD_RE.findall(_in_code_set_words(text)) for x in expand(w) if x not in _STOPWORDS)


def word_stems(word: str) -> frozenset[str]:
    """The stems one word of a note stands for (several for an abbreviation)."""
    return frozenset(stem(x) for x in expand(word))


@lru_cache(maxsize=262144)
def stems(text: str) -> frozenset[str]:
    """Stemmed content words of a text (cached: code descriptions repeat across searches)."""
    return frozenset(stem(w) for w in content_words(text))


# Words of ICD-10-CM wording that say nothing about which condition it is.
# A lone "s" is what a possessive leaves ("Raynaud's", "Bell's"): notes write "Raynaud phenomenon"
# and "Bell palsy" as often, so no wording asks for it (search still counts it where both have it).
_BOILERPLATE = {stem(w) for w in ("unspecified", "specified", "other", "organism", "site", "part", "region",
                                  "elsewhere", "classified", "mention", "complication", "without",
                                  "uncomplicated", "type", "condition", "disorder")} | {"s"}


def key_words(text: str) -> set[str]:
    """The stems that say which condition a text is about."""
    return set(_key_words(text))


@lru_cache(maxsize=262144)
def _key_words(text: str) -> frozenset[str]:
    return frozenset(stem(w) for w in _content_words(text)) - _BOILERPLATE


_IRREGULAR = {"feet": "foot", "teeth": "tooth"}


def singulars(word: str) -> set[str]:
    """What a plural may be the plural of ("eyes": eye, "ovaries": ovary); none for a word that
    is not a plural."""
    word = word.lower()
    if word in _IRREGULAR:
        return {_IRREGULAR[word]}
    if word.endswith("ies"):
        return {word[:-3] + "y"}
    return {word[:-1], word[:-2]} if word.endswith("s") else set()


# Words that end in "-es" or "-ies" and are no plural (Clostridioides is a genus).
_SINGULAR_ES = frozenset("diabetes herpes rabies scabies caries species series feces faeces nares tabes ascites "
                         "rickets mumps measles shingles clostridioides".split())


def plural_twins(text: str) -> dict[str, str]:
    """{stem of a plural word: stem of its singular} where the two stem apart: "cycles" (cycl)
    is "cycle", "seizures" "seizure", "allergies" "allergy". The light stemmer cuts "-es" and
    "-ies" whole; the code set writes most conditions in the singular."""
    out = {}
    for word in WORD_RE.findall(text.lower()):
        if not word.endswith("es") or word in _SINGULAR_ES or word.endswith(("sses", "xes", "zes", "ches", "shes")):
            continue  # "diabetes" is one disease; "abscesses" stems as "abscess" already
        singular = max(singulars(word), key=len)  # what keeps most of the word: "cycle", not "cycl"
        if len(singular) > 3 and stem(singular) != stem(word):
            out[stem(word)] = stem(singular)
    return out


# ICD-10-CM's nonessential modifiers: words in parentheses that may be present in the note or
# absent without changing the code ("Seizure(s) (convulsive) NOS"), and what square brackets hold,
# a synonym or an explanation ("Panic disorder [episodic paroxysmal anxiety]").
NONESSENTIAL = re.compile(r"\([^()]*\)|\[[^\[\]]*\]")


# What a code-set title says that a note need not: "..., not specified as traumatic" and "site not
# specified" (the default, stated by not saying otherwise: "Nontraumatic complete rotator cuff
# tear" is M75.12-, "Urinary tract infection" N39.0),
# ", current injury" (the injury chapter's 7th character already says which visit of which
# injury: "bucket-handle tear of the medial meniscus, acute" is S83.21-), B95-B97's "as the cause
# of diseases classified elsewhere" (the organism is the wording: "due to H. pylori infection"
# states B96.81), L02's "Cutaneous" before "abscess" ("Abscess of the left axilla" is L02.412),
# and "secondary to",
# which notes write "due to" ("Iron deficiency anemia due to chronic blood loss" is D50.0).
_UNSAID = re.compile(r",?\s*(?:\b(?:site|level|pregnancy) )?\bnot specified\b(?: as\b[^,]*)?"
                     r"|,\s*current injury\b|,?\s*\bas the cause of diseases classified elsewhere\b", re.I)
_SECONDARY_TO = re.compile(r"\bsecondary to\b", re.I)
# L02's skin abscess: the index codes "Abscess, axilla" there, a note writes no "cutaneous".
_CUTANEOUS_ABSCESS = re.compile(r"\bcutaneous (?=abscess)", re.I)
# A word of a title that notes leave out: diabetes is diabetes mellitus ("Gestational diabetes,
# diet controlled" is O24.410); diabetes insipidus keeps its own word.
_UNSAID_WORDS = frozenset({"mellitu"})


def plain_wording(wording: str) -> str:
    """A code-set wording without what a note need not say (`_UNSAID`)."""
    return _CUTANEOUS_ABSCESS.sub("", _SECONDARY_TO.sub("due to", _UNSAID.sub("", wording)))


@lru_cache(maxsize=262144)
def essential_stems(text: str) -> frozenset[str]:
    """The stems a code-set entry asks the note for: its content words less the nonessential
    modifiers and the boilerplate ("Pneumonia, unspecified organism" asks for pneumonia only)."""
    return frozenset(key_words(NONESSENTIAL.sub(" ", text))) or stems(text)


@lru_cache(maxsize=262144)
def stated_stems(wording: str) -> frozenset[str]:
    """The stems a note's sentence must hold to state a code-set wording: its essential stems
    less what a note need not say (`plain_wording`, "mellitus"), a plural as its singular (a
    sentence holds the singular of its plurals too: `plural_twins`). The code-set search keeps
    `essential_stems`: its cover is a feature the ranker was fitted on."""
    plain = plain_wording(wording)
    singular = plural_twins(plain)  # "in other diseases" asks for a disease: the note's may be one
    return frozenset(singular.get(s, s) for s in essential_stems(plain) - _UNSAID_WORDS) or essential_stems(wording)


# What square brackets hold is another name for the words before them: one word ("fracture of
# lunate [semilunar]"), the whole name ("Acute obstructive laryngitis [croup]"), an eponym of the
# condition ("Radial styloid tenosynovitis [de Quervain]") or initials ("Body mass index [BMI]",
# "Escherichia coli [E. coli]").
_BRACKET = re.compile(r"\[([^\[\]]+)\]")
_LINKING = frozenset("of by to in on with without due for from and or at".split())
_NAME_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'-]*")
_EXPLAINING = frozenset("any all except including excluding".split())


@lru_cache(maxsize=65536)
def bracket_alternatives(wording: str) -> tuple[str, ...]:
    """The wording with its first bracketed name standing in for what it names ("Acute
    obstructive laryngitis [croup]" -> "croup"; "Radial styloid tenosynovitis [de Quervain]" ->
    "de Quervain tenosynovitis"; "Elevated prostate specific antigen [PSA]" -> "Elevated PSA");
    () without brackets, for an explanation ("[any part, except face]") or where what it names
    is unclear ("anti-D [Rh]")."""
    hit = _BRACKET.search(wording)
    if hit is None:
        return ()
    name, tail = hit.group(1).strip(), wording[hit.end():]
    tokens = name.replace(".", " ").split()
    if not _NAME_WORD.search(name) or "," in name or tokens[0].lower() in _EXPLAINING:
        return ()
    head = wording[:hit.start()].rstrip()
    cut = head.rfind(",") + 1
    words = list(_NAME_WORD.finditer(head, cut))
    # What it names is after the last linking word: "lunate" in "fracture of lunate".
    last_link = max((i for i, w in enumerate(words) if w.group().lower() in _LINKING), default=-1)
    named = words[last_link + 1:]
    if not named:
        return ()
    if len(tokens) == 1 and tokens[0].isupper():  # initials: BMI for Body Mass Index
        count = len(name) if len(name) <= len(named) and all(
            w.group()[0].lower() == c.lower() for w, c in zip(named[-len(name):], name)) else 0
    elif 1 < len(tokens) <= len(named) and all(
            w.group()[0].lower() == t[0].lower() for w, t in zip(named[-len(tokens):], tokens)):
        count = len(tokens)  # E. coli for Escherichia coli
    elif any(t[0].isupper() for t in tokens) and all(t.isalpha() and t[1:].islower() for t in tokens):
        # an eponym ("de Quervain"): its name and the condition's last word
        last = named[-1]
        return (f"{head[:named[0].start()]}{name} {last.group()}{head[last.end():]}{tail}",) if len(named) > 1 else ()
    elif name != name.lower():  # initials that match no words ("anti-D [Rh]", "[CA 125]")
        return ()
    elif last_link < 0 and not tail.strip():
        count = len(named)  # the whole name: croup, "episodic paroxysmal anxiety"
    else:
        count = 1  # one word: semilunar for lunate
    if not count:
        return ()
    first = named[-count]
    return (f"{head[:first.start()]}{name}{head[named[-1].end():]}{tail}".strip(),)


# Two words joined by "and" in a title: ICD-10-CM reads it as "and/or" (guideline I.A.14), so
# "Acute embolism and thrombosis of left femoral vein" is said by "thrombosis of the left
# femoral vein", "Hypo-osmolality and hyponatremia" by "hyponatremia".
# A list reads alike: "Strain of muscle, fascia and tendon of lower back" is said by "muscle strain
# of the lower back".
_AND_PAIR = re.compile(r"\b([A-Za-z-]{3,}(?:, [A-Za-z-]{3,})*),? and ([A-Za-z-]{3,})\b")


def and_alternatives(wording: str) -> list[str]:
    """The wording once per word of its first "X and Y" pair or "X, Y and Z" list, the others
    left out; [] without one. An item of a list only where three words or more remain: "Hand,
    foot and mouth disease" is one disease's name, not "foot disease"."""
    hit = _AND_PAIR.search(wording)
    if hit is None:
        return []
    head, tail = wording[:hit.start()], wording[hit.end():]
    items = [*hit.group(1).split(", "), hit.group(2)]
    alternatives = [head + word + tail for word in items]
    return alternatives if len(items) == 2 else [a for a in alternatives if len(content_words(a)) >= 3]


def and_list(wording: str) -> bool:
    """Is the first "and" of the wording the end of a list of three or more ("muscle, fascia and
    tendon"), not a pair ("machines and devices")?"""
    hit = _AND_PAIR.search(wording)
    return hit is not None and ", " in hit.group(1)


# Two words joined by a slash or by "or", each of three letters or more: the code set's "either"
# ("Grade/stage II hemorrhoids", "antithrombotics/antiplatelets", "Complete rotator cuff tear or
# rupture"). Levels and names keep theirs ("C5/C6", "T/NK-cell"); "with or without", "two or
# more", "other or unspecified" are no choice of word, nor is "without perforation or abscess",
# which says neither is there.
_NO_CHOICE = r"(?:with|without|more|less|other|unspecified|applicable)\b"
_SLASHED = re.compile(r"\b([A-Za-z]{3,})/([A-Za-z]{3,})\b")
_EITHER_OR = re.compile(rf"(?<!without )(?<!\bno )(?<!\bnot )\b(?!{_NO_CHOICE})([A-Za-z]{{3,}}) or "
                        rf"(?!{_NO_CHOICE})([A-Za-z]{{3,}})\b")


def two_names(wording: str) -> bool:
    """Is the wording two names joined by "and" and nothing more but ", unspecified" ("Syncope
    and collapse", "Hypo-osmolality and hyponatremia")? Each then names the condition alone."""
    hit = _AND_PAIR.search(wording)
    return (hit is not None and ", " not in hit.group(1) and not wording[:hit.start()].strip()
            and wording[hit.end():].strip(" ,").lower() in ("", "unspecified"))


def slash_alternatives(wording: str) -> list[str]:
    """The wording once per alternative of its slashed or "or" pairs ("Grade/stage II
    hemorrhoids" -> "Grade II hemorrhoids", "stage II hemorrhoids"): a note says one of them,
    rarely both."""
    hits = [h for h in (_SLASHED.search(wording), _EITHER_OR.search(wording)) if h]
    if not hits:
        return [wording]
    hit = min(hits, key=lambda h: h.start())
    head, tail = wording[:hit.start()], wording[hit.end():]
    return [head + word + rest for word in hit.groups() for rest in slash_alternatives(tail)]


# A full stop after a lone capital before a lower-case word is an initial, not a sentence's end:
# "Chronic gastritis due to H. pylori infection", "E. coli".
_AFTER_LONE_CAPITAL = r"(?<=(?<![A-Za-z0-9])[A-Z])"
_SENTENCE = re.compile(rf"(?:[^\n.;]|{_AFTER_LONE_CAPITAL}\.(?= [a-z]))+(?:[.;]|$)", re.M)
_SENTENCE_END = re.compile(rf"[\n;]|(?<!(?<![A-Za-z0-9])[A-Z])\.|{_AFTER_LONE_CAPITAL}\.(?! [a-z])")
# Where a sentence splits into clauses: a comma, or a contrast word. A contrast word also ends a
# negation's reach ("denies cough, but has fever"); a comma does not ("no fever, chills or cough").
_CONTRAST = r"but|however|although|though|except|whereas|while"
_CLAUSE_SPLIT = re.compile(rf"(,|\b(?:{_CONTRAST})\b)", re.I)
# A negation cue among a clause's first words ("He denies...", "There was no...", "Pulmonary
# embolism was ruled out").
_NEGATION = re.compile(
    r"^\W*(?:[a-z]+\W+){0,3}?(?:no evidence of|no signs? of|no history of|no|not|nor|denies|"
    r"denied|deny|denying|without|negative for|ruled out|rules out|rule out|excluded|free of|"
    r"absence of|absent|never had)\b", re.I)
# A condition "was considered and ruled out", "has been excluded": the cue comes later in the
# clause, after a verb, and negates the words before it.
_RULED_OUT = re.compile(
    r"^\W*(?:[\w-]+\W+){1,6}?(?:was|were|is|are|been|and)\s+(?:[a-z]+\s+){0,2}?"
    r"(?:ruled out|excluded)\b", re.I)
# Cues that negate what follows them wherever they stand in a clause; the words before stay
# affirmed: "Cough with no fever", "Type 2 diabetes without complications", "He has hypertension
# and denies chest pain". Cues written after what they negate ("... was ruled out") and a bare
# "no"/"not" ("no longer", "not well controlled") count only among a clause's first words, above.
_NEGATION_INSIDE = re.compile(
    r"\b(?:with no|without|denies|denied|denying|negative for|no (?:evidence|signs?|history) of|"
    # What the patient is told to come back for has not happened: "Return if fever or spreading
    # redness", "Return for worsening headache, repeated vomiting or confusion".
    r"return(?:ing)? (?:sooner )?(?:if|for|with)|call (?:if|for|with)|come back (?:if|for)|"
    r"seek (?:\w+ )?(?:care|attention) (?:if|for)|precautions (?:for|about)|warning signs? (?:of|for)|"
    r"watch for|monitor for|"
    # A goal is not yet reached: "Nutrition counseling, goal 7% weight loss".
    r"goal)\b",
    re.I)
# A vaccine names the disease it prevents ("Vaccines given today: DTaP, IPV, MMR and varicella",
# "hepatitis A and B vaccination", "tetanus booster"): the clause and the list after it name no
# condition of the patient's.
VACCINE = re.compile(r"\b(?:vaccin\w*|immuni[sz]\w*|boosters?|toxoids?|(?:flu|tetanus|pneumonia) shots?|"
                     r"Tdap|DTaP|MMRV?|Shingrix|Gardasil|Prevnar\w*|Pneumovax|PCV ?\d\d|PPSV ?23)\b", re.I)
_FILLER_WORDS = frozenset("a an and also the this our there he she they patient pt mr mrs ms man "
                          "woman boy girl child is was are were".split())
# Words that start a new statement: they end a negation's reach, within a clause ("with no
# history of interest presented with headache") and over a list ("..., who underwent vasectomy").
_RESTART_WORDS = (r"who|which|whose|whom|so|then|as well as|presents|presented|presenting|"
                  r"consulted|underwent|developed|diagnosed|admitted|studied|referred|complains|"
                  r"complained|shows|showed|reveals|revealed")
_RESTART = re.compile(rf"\b(?:{_RESTART_WORDS})\b", re.I)
# A negation's list is made of short items that do not start anew ("No fever, and he reports
# cough"); a longer clause is a new statement.
_LIST_ITEM_WORDS = 6
_AFFIRMATION = re.compile(
    r"^\W*(?:(?:and|he|she|they|patient|pt)\W+)*(?:with\b(?!\s+no\b)|has|have|had|reports|"
    rf"reported|endorses|endorsed|admits|positive for|is|are|was|were|been|{_RESTART_WORDS})\b",
    re.I)


# A normal finding: a body part or test, then "clear", "normal", "unremarkable", "negative" or
# "within normal limits" ("Lungs clear to auscultation bilaterally", "Chest X-ray: normal",
# "the lungs were clear"). The clause says the part is healthy, so it names no condition of it.
# The part is one to three words, none of them a link ("leukocytosis with normal formula" is
# leukocytosis); what follows "and"/"but"/"with"/"showed" after the finding is read as a clause
# of its own ("The ECG was normal and chest X-ray showed cardiomegaly").
_LINK_WORDS = r"(?:with|and|or|of|in|on|to|for|by|without|but|while|showed|shows|revealed)"
_NORMAL_FINDING = re.compile(
    rf"^\W*(?:the\s+)?(?:(?!{_LINK_WORDS}\b)[\w-]+\s+){{0,2}}(?!{_LINK_WORDS}\b)[\w-]+"
    r"(?:\s*:\s*|\s+(?:(?:is|are|was|were)\s+)?)"
    r"(?:clear|normal|unremarkable|negative|within normal limits|wnl)\b", re.I)
_AFTER_FINDING = re.compile(r"\b(?:and|but|while|whereas|with|showed|shows|revealed)\b", re.I)


def sentences(note: str) -> list[tuple[int, int]]:
    """(start, end) spans of the note's sentences (split at full stops, semicolons and lines)."""
    return [m.span() for m in _SENTENCE.finditer(note)]


# A statement about a relative's health: a sentence whose subject is a relative ("Mother had breast
# cancer"; not one who tells the patient's story, "Mother reports fever since Monday"), or what
# follows "family history" up to a contrast word ("Family history: father with colon cancer").
# "No family history of interest" names no relative's condition.
_RELATIVE = (r"(?:mother|father|sister|brother|son|daughter|parents?|siblings?|grandmother|"
             r"grandfather|grandparents?|aunt|uncle|cousin)")
_RELATIVE_SUBJECT = re.compile(
    rf"^\W*(?:(?:his|her|their|the patient's|patient's)\s+)?(?:maternal\s+|paternal\s+)?{_RELATIVE}"
    rf"\b(?!\s+(?:reports?|reported|states?|stated|says|said|notes?|noted|noticed|brought|brings)\b)",
    re.I)
_FAMILY_HISTORY = re.compile(r"\b(?:family (?:medical )?history|family hx|fhx|fh:)", re.I)
_NEGATED_CUE = re.compile(r"\b(?:no|without|denies|negative)\W+(?:[a-z]+\W+)?$", re.I)
_CONTRAST_WORD = re.compile(rf"\b(?:{_CONTRAST})\b", re.I)


def family_history_statements(note: str) -> list[tuple[int, int]]:
    """(start, end) spans of the note's statements about a relative's health, not the patient's."""
    out = []
    for a, b in sentences(note):
        text = note[a:b]
        if _RELATIVE_SUBJECT.search(text):
            out.append((a, b))
        elif (cue := _FAMILY_HISTORY.search(text)) and not _NEGATED_CUE.search(text[:cue.start()]):
            stop = _CONTRAST_WORD.search(text, cue.end())
            out.append((a + cue.start(), a + (stop.start() if stop else len(text))))
    return out


def reports_family_history(wording: str) -> bool:
    """Is a code-set wording a "Family history of ..." code's (Z80-Z84)? Those report a relative's
    condition; every other wording is the patient's."""
    return wording.lower().startswith("family history of")


def without_family_history(note: str) -> str:
    """The note with its statements about relatives blanked (same length, so spans still hold)."""
    for a, b in family_history_statements(note):
        note = note[:a] + " " * (b - a) + note[b:]
    return note


def clauses(note: str):
    """(start, end) spans of the note's clauses, in order, negated ones excluded.

    A negation cue covers every item of the list after it in the same sentence: "Denies chest
    pain, dysphagia or weight loss" excludes all three, until a contrast word ("but", "however",
    "although", "except", ...), a clause or words that start anew ("and he reports cough", "who
    underwent ...", "presented with ...", any clause of more than six words) or the end of the
    sentence. A normal finding ("Lungs clear to auscultation", "Chest X-ray: normal") is negated
    too, up to an "and"/"with"/"showed" that starts a statement of its own.
    """
    return iter(_clause_spans(note))


@lru_cache(maxsize=1024)
def _clause_spans(note: str) -> tuple[tuple[int, int], ...]:
    # Cached: retrieval, evidence and the rules ask for the clauses of the same few texts about a
    # thousand times a note.
    return tuple(_walk_clauses(note))


def _walk_clauses(note: str):
    for sent in _SENTENCE.finditer(note):
        offset, negated = sent.start(), False
        for piece in _CLAUSE_SPLIT.split(sent.group()):
            idx = note.find(piece, offset)
            offset = idx + len(piece)
            if _CLAUSE_SPLIT.fullmatch(piece):
                negated = negated and piece == ","  # a contrast word ends the negation's reach
                continue
            if finding := _NORMAL_FINDING.match(piece):
                negated = False
                rest = _AFTER_FINDING.search(piece, finding.end())
                if rest is None or not key_words(piece[rest.end():]):
                    continue
                idx, piece = idx + rest.end(), piece[rest.end():]
            listed = negated and not _AFFIRMATION.match(piece) and len(
                WORD_RE.findall(piece.lower())) <= _LIST_ITEM_WORDS
            if VACCINE.search(piece):
                negated = True
                continue
            spans, negated = _affirmed(piece, listed)
            for a, b in spans:
                yield idx + a, idx + b


# A qualifier as the code set writes one: "Migraine without aura, not intractable", "Parkinson's
# disease without dyskinesia", "Chills (without fever)". What it says is negated reaches to the
# next comma, parenthesis or "with".
_QUALIFIER_WORDS = r"(?:without|with no|not)\b"
_QUALIFIER = re.compile(rf"\b{_QUALIFIER_WORDS}(.*?)(?=\bwith\b|[,;()]|$)", re.I)
_QUALIFIER_CUE = re.compile(rf"[ \t]*{_QUALIFIER_WORDS}", re.I)
# The course and severity the code set writes after a comma ("Major depressive disorder,
# recurrent, moderate", "Alcohol dependence, in remission", "Migraine, unspecified, intractable"),
# as a whole comma item of the note: "Major depressive disorder, recurrent, moderate" names F33.1.
_COURSE = r"(?:recurrent|single episode|mild|moderate|severe|in (?:full |partial )?remission|in relapse|" \
          r"intractable|uncomplicated|persistent|intermittent)"
_COURSE_ITEM = re.compile(rf"[ \t]*{_COURSE}(?:[ \t]+{_COURSE}){{0,2}}[ \t]*$", re.I)


@lru_cache(maxsize=262144)
def negated_stems(text: str) -> frozenset[str]:
    """The stems a text says are absent through a qualifier: "Migraine without aura, not
    intractable" -> aura, intractable. Boilerplate ("not elsewhere classified") says nothing."""
    return frozenset(stem(w) for m in _QUALIFIER.finditer(text) for w in content_words(m.group(1))
                     ) - _BOILERPLATE


@lru_cache(maxsize=262144)
def only_negated_stems(text: str) -> frozenset[str]:
    """What a text says is absent and nowhere says is present: "... without spontaneous rupture
    of ear drum, right ear" says no rupture, and says an ear."""
    return negated_stems(text) - stems(_QUALIFIER.sub(" ", text))


def qualified_end(note: str, end: int) -> int:
    """Where an affirmed clause's qualifiers end: past "without aura, episodic, not intractable,
    without status migrainosus" after "Migraine". The clause stops at the first "without"
    (negation), but the code set names a condition with its qualifiers, so a search for it reads
    them too. Later comma items count while they start with a qualifier or are a course or
    severity ("recurrent, moderate"), or are a word or two between two that do ("episodic"),
    also where the clause ends at a comma ("Type 1 diabetes mellitus with diabetic
    ketoacidosis, moderate, without coma"); `end` itself when no qualifier follows."""
    if _QUALIFIER_CUE.match(note, end):
        start = end
    elif note.startswith(",", end):
        start = end + 1  # no qualifier of its own: the items after the comma must earn it
    else:
        return end
    stop = _SENTENCE_END.search(note, end)
    stop = stop.start() if stop else len(note)
    reach, pos, pending = end, start, False
    for i, piece in enumerate(note[start:stop].split(",")):
        if (i == 0 and start == end) or _QUALIFIER_CUE.match(piece) or _COURSE_ITEM.match(piece):
            reach, pending = pos + len(piece), False
        elif len(WORD_RE.findall(piece.lower())) <= 2 and not pending:
            pending = True
        else:
            break
        pos += len(piece) + 1
    return reach


# A side written after the condition it qualifies: "Acute otitis externa, left ear", "Gout
# flare, right first MTP joint". The code set writes the side into the code's own wording.
_SIDE_AFTER = re.compile(r",[ \t]*(?:on the |the )?(?:left|right|bilateral)\b[^,.;:()\n]{0,40}?(?=[,.;:\n]|$)", re.I)


def sided_end(note: str, end: int) -> int:
    """Where a clause ends with the side written after it (", left ear"), for a search that
    reads the condition with its side; `end` itself when none follows."""
    m = _SIDE_AFTER.match(note, end)
    if not m or len(WORD_RE.findall(m.group().lower())) > 5:
        return end
    # and the qualifiers after the side: "..., right ear, without rupture of the eardrum"
    return qualified_end(note, m.end())


def clause_pairs(note: str, max_chars: int = 300):
    """Adjacent affirmed clauses of one sentence, as ((start, end), (start, end)): where a
    combination is written across a comma ("type 2 diabetes with nephropathy, CKD stage 4")."""
    spans = list(clauses(note))
    for (a1, b1), (a2, b2) in zip(spans, spans[1:]):
        if b2 - a1 <= max_chars and not _SENTENCE_END.search(note, b1, a2):
            yield (a1, b1), (a2, b2)


def _affirmed(piece: str, negated: bool) -> tuple[list[tuple[int, int]], bool]:
    """The affirmed (start, end) spans of one clause, and whether a negation reaches its end.
    `negated`: the clause is the next item of a negated list."""
    spans, pos = [], 0
    while True:
        rest = piece[pos:]
        if negated:
            start, end = 0, 0
        else:
            cue = _NEGATION_INSIDE.search(rest)
            before_cue = rest[:cue.start()] if cue else rest
            first = _NEGATION.match(before_cue) or _RULED_OUT.match(before_cue)
            if first:  # the words before a cue among the first are what it negates
                start, end = 0, first.end()
            elif cue:
                start, end = cue.start(), cue.end()
            else:
                start = end = len(rest)
            head = rest[:start]
            # "The patient denies ...", "There was no evidence of ...": no more than who
            if not set(WORD_RE.findall(head.lower())) <= _FILLER_WORDS:
                lead = len(head) - len(head.lstrip())
                if len(head.strip()) >= 3:
                    spans.append((pos + lead, pos + len(head.rstrip())))
            if start == len(rest):
                return spans, False
        restart = _RESTART.search(rest, end)
        if restart is None:
            # The list goes on after a cue written before a condition ("No fever, chills"), not
            # after one written at the end ("PE was ruled out, pneumonia confirmed") or before a
            # mere qualifier ("Type 2 diabetes without complications, hypertension").
            return spans, negated or bool(key_words(rest[end:]))
        pos, negated = pos + restart.start(), False


# Words that make what follows them a possibility, not a diagnosis ("probable tension-type
# headache", "rule out angina", "suspected appendicitis", "findings consistent with pneumonia").
# Not "likely": "bronchitis, likely viral" qualifies the cause. The possibility reaches to the end
# of its clause (a comma, a contrast word, the sentence's end).
_UNCERTAIN = re.compile(
    r"\b(?:probable|probably|possible|possibly|suspected|suspect|suspicion of|questionable|"
    r"rule out|r/o|presumed|presumptive|concern for|consistent with|compatible with|"
    r"working diagnosis of)\b", re.I)
_CLAUSE_END = re.compile(rf"[\n.;,]|\b(?:{_CONTRAST})\b", re.I)


def without_uncertain(note: str) -> str:
    """The note with what each uncertainty cue qualifies blanked out, cue included, to the end of
    its clause: "Headache, probable tension-type headache." keeps "Headache,". Same length, so
    spans found in it hold in the note."""
    out, pos = [], 0
    for cue in _UNCERTAIN.finditer(note):
        if cue.start() < pos:
            continue
        end = _CLAUSE_END.search(note, cue.end())
        end = end.start() if end else len(note)
        out += [note[pos:cue.start()], " " * (end - cue.start())]
        pos = end
    return "".join(out) + note[pos:]


def locate(note: str, quote: str) -> tuple[int, int] | None:
    """Span of `quote` in the note: exact, then case- and whitespace-insensitive."""
    quote = (quote or "").strip()
    if not quote:
        return None
    idx = note.find(quote)
    if idx >= 0:
        return idx, idx + len(quote)
    pattern = r"\s+".join(re.escape(w) for w in quote.split())
    m = re.search(pattern, note, flags=re.I)
    return (m.start(), m.end()) if m else None
