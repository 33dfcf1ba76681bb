"""Fitting the candidate ranker: honest features, a correct optimiser."""
from collections import Counter

import numpy as np

from builder.evaluation.scoring import best_threshold, recall_at, shared_threshold
from builder.stages.retriever import cross_fitted, fit_logistic, synthetic_cases
from models.retrieve import FEATURES, NeighbourIndex


def test_logistic_regression_recovers_known_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20000, 3))
    true_w, true_b = np.array([2.0, -1.0, 0.5]), -1.5
    y = (rng.random(20000) < 1 / (1 + np.exp(-(x @ true_w + true_b)))).astype(float)
    w, b = fit_logistic(x, y, l2=0.0)
    assert np.allclose(w, true_w, atol=0.1) and abs(b - true_b) < 0.1


def test_cross_fitting_never_lets_a_case_see_itself():
    texts = [f"patient {i} with fever and cough number{i} token{i}" for i in range(10)]
    gold = [[f"X{i:02d}"] for i in range(10)]  # each code belongs to exactly one case
    for held, model in cross_fitted(texts, gold, folds=5):
        for i in held:
            assert gold[i][0] not in model["prior"]
            assert gold[i][0] not in model["neighbours"]["centroids"]
            assert gold[i] not in model["neighbours"]["codes"]


def test_neighbours_find_the_similar_case_and_skip_the_identical_one():
    notes = ["acute appendicitis with fever and abdominal pain in the right lower quadrant",
             "type 2 diabetes mellitus with poor glycemic control and neuropathy",
             "community acquired pneumonia with productive cough and fever"]
    index = NeighbourIndex.fit(notes + notes, [["K35.80"], ["E11.40"], ["J18.9"]] * 2)
    weighted, _ = index.scores("right lower quadrant abdominal pain, suspected appendicitis", k=2)
    assert max(weighted, key=weighted.get) == "K35.80"
    # A note identical to a training case (the case itself, in training) is not its own neighbour.
    assert "K35.80" not in index.scores(notes[0], k=2)[0]
    assert index.centroid_scores(notes[1])["E11.40"] > 0.9


def test_recall_and_threshold_helpers():
    ranked, gold = [["A", "B", "C"], ["D"]], [["A", "C"], ["E"]]
    assert recall_at(ranked, gold, 1) == round(1 / 3, 4) and recall_at(ranked, gold, 3) == round(2 / 3, 4)
    threshold, f1 = best_threshold([[("A", 0.9), ("B", 0.2)]], [["A"]])
    assert 0.2 < threshold <= 0.9 and f1 == 1.0


def test_a_phrase_the_code_set_lacks_votes_for_the_code_training_notes_give_it():
    # "Dyslipidemia" is not in E78.5's wording; the training notes that say it carry E78.5.
    notes = ["obese man with dyslipidemia on statin", "woman with dyslipidemia and gout",
             "dyslipidemia, hypertension", "fracture of the wrist after a fall"]
    codes = [["E78.5"], ["E78.5", "M10.9"], ["E78.5", "I10"], ["S52.501A"]]
    index = NeighbourIndex.fit(notes, codes)
    scores = index.phrase_scores("He has dyslipidemia.")
    assert scores["E78.5"] == (3 / 5, 3, 3 / 5)  # 3 of the 3 notes holding the word, k / (n + 2)
    assert "S52.501A" not in scores  # no shared phrase
    assert "M10.9" not in scores or scores["M10.9"][0] < scores["E78.5"][0]
    # Phrases of a single training note are not kept (they would memorise that note).
    assert "gout" not in index.phrase_notes
    # A denied condition is what the case is about, not what it states.
    assert index.phrase_scores("He denies dyslipidemia.")["E78.5"][2] == 0.0


def test_equal_phrase_shares_give_the_same_vote_in_every_process():
    # "gout" 1 of 2 notes with M10.9 and "tophus" 2 of 6: both share 1/4; the larger k is kept,
    # whatever order the set of phrases comes in (it differs between Python processes).
    notes = ["gout", "gout"] + ["tophus"] * 6
    codes = [["M10.9"], [], ["M10.9"], ["M10.9"], [], [], [], []]
    index = NeighbourIndex.fit(notes, codes)
    assert index.phrase_scores("gout and tophus")["M10.9"][:2] == (0.25, 2)


def test_a_row_weighted_twice_counts_as_two_rows():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 2))
    y = (rng.random(400) < 1 / (1 + np.exp(-(x @ np.array([1.5, -0.5]))))).astype(float)
    twice = np.r_[np.ones(200), np.full(200, 2.0)]
    w_weighted, b_weighted = fit_logistic(x, y, l2=0.0, sample_weight=twice)
    w_copied, b_copied = fit_logistic(np.vstack([x, x[200:]]), np.r_[y, y[200:]], l2=0.0)
    assert np.allclose(w_weighted, w_copied, atol=1e-6) and abs(b_weighted - b_copied) < 1e-6


def test_one_threshold_serves_both_kinds_of_notes():
    # Long notes whose true codes score 0.6, short ones whose true codes score 0.3 (and a wrong code
    # 0.2): a threshold for the long notes alone (0.6) would lose every short note's code.
    long_notes = ([[("A", 0.6), ("B", 0.25)]] * 4, [["A"]] * 4)
    short_notes = ([[("C", 0.3), ("D", 0.2)]] * 4, [["C"]] * 4)
    threshold, (f1_long, f1_short) = shared_threshold([long_notes, short_notes])
    assert 0.25 < threshold <= 0.3 and f1_long == 1.0 and f1_short == 1.0


def test_the_ranker_also_learns_from_synthetic_notes_as_an_unseen_note_gets_them():
    from builder.config import load_config
    from models import codeset
    from models.retrieve import default_retriever

    cs = codeset.load()
    cfg = load_config(None, ["data.synthetic_train=3"])
    cases, gold, texts = synthetic_cases(cfg, cs, default_retriever(cs), Counter(default_retriever(cs).prior))
    assert len(cases) == len(gold) == len(texts) == 3
    for (codes, x, labels), true_codes in zip(cases, gold):
        assert x.shape == (len(codes), len(FEATURES)) and set(true_codes) <= set(cs.all_codes())
        assert labels.sum() == len(set(codes) & set(true_codes)) > 0  # named in the note, found


def test_the_retriever_stage_fits_on_train_alone_and_never_reads_dev(small_codiesp, tmp_path):
    """Every choice of the stage is made out of fold on train: a CodiEsp folder without its dev
    split fits all the same, and each train case gets the candidates of a fold that never saw it."""
    import json
    import shutil

    from builder.config import load_config
    from builder.stages import retriever as stage

    shutil.rmtree(small_codiesp / "dev")
    cfg = load_config(None, [f"data.codiesp={small_codiesp}", "data.synthetic_train=5",
                             f"run_dir={tmp_path / 'run'}"])
    metrics = stage.run(cfg)
    assert metrics["train_cases"] == 6 and metrics["synthetic_notes"] == 5
    assert not any(k.startswith("dev") for k in metrics) and 0.0 < metrics["threshold"] < 1.0
    oof = [json.loads(line) for line in (tmp_path / "run/retriever" / stage.TRAIN_OOF_FILE).read_text().splitlines()]
    assert len(oof) == 6 and all(len(row["candidates"]) <= stage.OOF_KEEP for row in oof)


def test_a_code_the_note_states_is_as_sure_as_such_codes_proved_on_train(cs):
    """The confidence of a code the assessment states in the code set's words is measured on
    notes no fold saw: right where the gold has it, wrong where not; none stated, no figure."""
    from builder.stages.retriever import stated_precision

    note = "HPI: palpitations.\nAssessment:\n1. Permanent atrial fibrillation.\n2. Chest pain, resolved."
    ranked = [[("I48.21", 0.05), ("R00.2", 0.6), ("I48.91", 0.04)]]  # I48.21 below the threshold
    assert stated_precision(cs, [note], ranked, [["I48.21"]], threshold=0.3) == (1.0, 1)
    assert stated_precision(cs, [note] * 2, ranked * 2, [["I48.21"], ["I48.91"]], threshold=0.3) == (0.5, 2)
    assert stated_precision(cs, ["Palpitations, resolved."], ranked, [["R00.2"]], threshold=0.3) == (None, 0)
