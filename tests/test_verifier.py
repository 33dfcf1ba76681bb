"""The verifier: its input (decision slots), its scores in every local runtime, its training
stage, and its place in the pipeline through a coder bundle."""
import json
import math

import pytest

from models.contract import (
    VERIFIER_NO,
    VERIFIER_YES,
    Candidate,
    build_verifier_input,
    decision_token_ids,
    verifier_line,
)
from models.select import Stacker, VerifierSelector

NOTE = ("ASSESSMENT: 1. Essential hypertension. 2. Type 2 diabetes mellitus without complications. "
        "Patient denies chest pain.")
CANDIDATES = [Candidate("R07.9", "Chest pain, unspecified", 0.3),
              Candidate("E11.9", "Type 2 diabetes mellitus without complications", 0.8),
              Candidate("I10", "Essential (primary) hypertension", 0.9)]


@pytest.fixture(scope="module")
def hf_tokenize():
    from builder.base_model import load_tokenizer

    tok = load_tokenizer()
    return lambda text, bos=False: tok(text, add_special_tokens=bos).input_ids, tok


def test_candidates_are_listed_by_code_and_each_slot_ends_its_line(hf_tokenize):
    tokenize, tok = hf_tokenize
    inp = build_verifier_input(NOTE, CANDIDATES, tokenize)
    assert [c.code for c in inp.candidates] == ["E11.9", "I10", "R07.9"]  # not the ranker's order
    assert len(inp.slots) == 3 and inp.slots[-1] == len(inp.ids) - 1
    starts = [0] + [s + 1 for s in inp.slots[:-1]]
    # Each line's tokens, up to its slot, are exactly that line (the previous slot ends before it).
    for c, start, slot in zip(inp.candidates[1:], starts[1:], inp.slots[1:]):
        assert tok.decode(inp.ids[start:slot + 1]) == verifier_line(c)
    assert tok.decode(inp.ids[inp.slots[0]]).endswith("->")
    assert NOTE in tok.decode(inp.ids)


def test_a_long_note_is_cut_to_its_token_budget_and_says_so(hf_tokenize):
    tokenize, _ = hf_tokenize
    inp = build_verifier_input(NOTE * 50, CANDIDATES, tokenize, max_note_tokens=100)
    assert inp.note_tokens_cut > 0
    assert len(inp.ids) < 100 + 120


def test_yes_and_no_are_single_tokens(hf_tokenize):
    tokenize, _ = hf_tokenize
    yes, no = decision_token_ids(tokenize)
    assert yes != no and tokenize(VERIFIER_YES) == [yes] and tokenize(VERIFIER_NO) == [no]
    with pytest.raises(ValueError, match="one token"):
        decision_token_ids(lambda text, bos=False: [1, 2])


def test_stacker_probability_rises_with_either_signal():
    s = Stacker(("ranker_logit", "verifier_margin", "knn"), (1.0, 0.5, 2.0), -1.0, 0.4)
    low, high = Candidate("I10", "", 0.5), Candidate("I10", "", 0.9)
    assert s.probability(high, 2.0) > s.probability(low, 2.0) > s.probability(low, -2.0)
    # A ranker feature counts by its name (FEATURES order in Candidate.features).
    from models.retrieve import FEATURES

    with_knn = Candidate("I10", "", 0.5, features=tuple(1.0 if f == "knn" else 0.0 for f in FEATURES))
    assert s.probability(with_knn, 0.0) > s.probability(low, 0.0)
    assert Stacker.from_dict(s.to_dict()) == s
    assert 0.0 < s.probability(Candidate("I10", "", 0.0), -1e6) < 1e-6
    with pytest.raises(ValueError, match="not computed"):
        Stacker.from_dict({**s.to_dict(), "inputs": ["ranker_logit", "mystery", "knn"]})


@pytest.fixture(scope="module")
def tiny_verifier_folder(tiny_llama_folder, tmp_path_factory, hf_tokenize):
    """The tiny random Llama with " yes" and " no" made likely everywhere (their tied embedding
    rows scaled up), as a trained verifier's are: a server's top log-probabilities then hold both."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenize, tok = hf_tokenize
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_folder, dtype=torch.float32)
    with torch.no_grad():
        for token in decision_token_ids(tokenize):
            model.get_output_embeddings().weight[token] *= 12.0
    folder = tmp_path_factory.mktemp("tiny-verifier")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_f16_gguf(tiny_verifier_folder, tmp_path_factory):
    """That model as an F16 GGUF (no quantization: scores comparable to fp32)."""
    import shutil

    from builder.config import BuildConfig
    from builder.stages import export

    run = tmp_path_factory.mktemp("tiny-f16")
    shutil.copytree(tiny_verifier_folder, run / "merged")
    export.run(BuildConfig(run_dir=str(run), model_kind="verifier"), ["gguf"], ["F16"])
    return export.gguf_path(run, "F16")


def test_llamacpp_and_transformers_give_the_same_scores(tiny_verifier_folder, tiny_f16_gguf):
    from models.runtimes.llamacpp_runtime import LlamaCppRuntime
    from models.runtimes.transformers_runtime import TransformersRuntime

    neutral = Stacker.verifier_alone()
    hf = VerifierSelector(TransformersRuntime(str(tiny_verifier_folder)), neutral)
    cpp = VerifierSelector(LlamaCppRuntime(str(tiny_f16_gguf), threads=1), neutral)
    note = NOTE + " " + "Follow-up in three months. " * 100  # longer than one llama.cpp batch of 512
    a, tokens_a = hf.judge(note, CANDIDATES)
    b, tokens_b = cpp.judge(note, CANDIDATES)
    assert tokens_a == tokens_b > 512
    assert [c.code for c, _, _ in a] == [c.code for c, _, _ in b]
    for (_, ma, _), (_, mb, _) in zip(a, b):
        assert math.isfinite(ma) and abs(ma - mb) < 0.02
    # A generation after scoring still works (scoring cleared llama.cpp's cache behind it).
    from models.runtimes import ModelRequest

    out = cpp.runtime.generate(ModelRequest([{"role": "user", "content": "hi"}], max_tokens=3))
    assert out.prompt_tokens > 0


def test_a_server_cannot_be_a_verifier():
    from models.select import NotAScorer

    class Server:
        name = "openai:http://127.0.0.1:1#m"

        def generate(self, request):
            raise AssertionError

    with pytest.raises(NotAScorer, match="no log-probabilities"):
        VerifierSelector(Server(), Stacker.verifier_alone())


def test_slot_loss_reads_only_the_decision_slots(tiny_llama_folder, hf_tokenize):
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    from builder.stages.verifier import collate, slot_loss

    tokenize, tok = hf_tokenize
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_folder, dtype=torch.float32)
    choices = decision_token_ids(tokenize)
    rows = []
    for note, labels in ((NOTE, [1.0, 1.0, 0.0]), ("Chest pain at rest.", [0.0, 0.0, 1.0])):
        inp = build_verifier_input(note, CANDIDATES, tokenize)
        rows.append({"input_ids": inp.ids, "slots": inp.slots, "slot_labels": labels,
                     "slot_offsets": [0.0] * len(labels)})
    loss, _ = slot_loss(model, collate(rows, tok.pad_token_id), choices, positive_weight=2.0)
    # The same loss from the full logits of each row on its own (no padding involved).
    margins, labels = [], []
    for r in rows:
        logits = model(input_ids=torch.tensor([r["input_ids"]])).logits[0]
        margins += (logits[r["slots"], choices[0]] - logits[r["slots"], choices[1]]).tolist()
        labels += r["slot_labels"]

    def bce(z):
        return F.binary_cross_entropy_with_logits(torch.tensor(z), torch.tensor(labels),
                                                  pos_weight=torch.tensor(2.0)).item()

    assert loss.item() == pytest.approx(bce(margins), rel=1e-4)
    # Learning the ranker's residual: the loss reads margin + the ranker's logit at each slot.
    rows[0]["slot_offsets"], rows[1]["slot_offsets"] = [2.0, 1.0, -3.0], [-2.0, -0.5, 1.5]
    residual, _ = slot_loss(model, collate(rows, tok.pad_token_id), choices, positive_weight=2.0)
    offsets = rows[0]["slot_offsets"] + rows[1]["slot_offsets"]
    assert residual.item() == pytest.approx(bce([m + o for m, o in zip(margins, offsets)]), rel=1e-4)
    assert residual.item() < loss.item()  # offsets that agree with the labels leave less to learn


def _retriever_stage_outputs(run, cs, n: int = 16):
    """What the verifier stage reads from the retriever stage, for the first `n` train cases:
    their candidates (from the shipped ranker) and the fitted ranker. Returns the cases."""
    from builder.stages.data import codiesp
    from builder.stages.data.codes import map_codes
    from builder.stages.retriever import TRAIN_OOF_FILE
    from models.bundle import embedded
    from models.retrieve import default_retriever

    retriever = default_retriever(cs)
    cases = codiesp.read_split(codiesp.embedded_dir() / "train").cases[:n]
    rows = []
    for case in cases:
        ranked = retriever.retrieve(case.text, k=12)
        rows.append({"case_id": case.case_id, "gold": map_codes(case.codes, cs)[0],
                     "candidates": [[c.code, c.score, list(c.features)] for c in ranked]})
    (run / "retriever").mkdir()
    (run / "retriever" / TRAIN_OOF_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    shipped = embedded()
    (run / "retriever" / "retriever.json.gz").write_bytes(shipped.path(shipped.retriever.path).read_bytes())
    return cases


def test_verifier_stage_trains_scores_the_holdout_and_fits_the_stacker(tiny_llama_folder, tmp_path, cs):
    """The stage on the tiny model and the real out-of-fold candidates of a few train cases."""
    from builder.config import load_config
    from builder.stages import verifier

    cases = _retriever_stage_outputs(tmp_path, cs)
    cfg = load_config(None, ["verifier.max_steps=2", "verifier.grad_accum=2", "verifier.candidates=12",
                             "verifier.max_note_tokens=128", "verifier.holdout_fraction=0.4",
                             "verifier.holdout_synthetic=0", "lora.r=4", "lora.alpha=8"])
    cfg.run_dir, cfg.base_model = str(tmp_path), str(tiny_llama_folder)
    metrics = verifier.run(cfg)
    assert metrics["steps"] == 2 and metrics["train_cases"] + metrics["holdout_cases"] == 16
    assert metrics["holdout_cases"] > 0 and metrics["train_cases"] > 0
    assert (tmp_path / "verifier/adapter/adapter_config.json").exists()
    stacker = json.loads((tmp_path / "verifier/stacker.json").read_text())
    assert stacker["contract"] == 1 and 0.0 < stacker["threshold"] < 1.0
    Stacker.from_dict(stacker)
    manifest = json.loads((tmp_path / "manifest.json").read_text())["stages"]["verifier"]
    assert "verifier/stacker.json" in manifest["outputs"] and (tmp_path / "verifier/loss.png").exists()
    # Held-out cases were never trained on: the split is by case id, the same every run.
    held = [c.case_id for c in cases if verifier.is_holdout(c.case_id, 0.4)]
    assert len(held) == metrics["holdout_cases"]


def test_a_llama_cpp_server_gives_the_verifier_the_same_scores(tiny_f16_gguf):
    """Server mode: one decision token per candidate through a real `llama_cpp.server`, its top
    log-probabilities read; the margins match llama.cpp in process."""
    import subprocess
    import sys

    from models.runtimes import open_runtime
    from models.runtimes.llamacpp_runtime import LlamaCppRuntime

    from .conftest import free_port, wait_for_http

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "models.runtimes.llamacpp_server", "--model", str(tiny_f16_gguf), "--model_alias",
         "tiny-verifier", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
         "--n_threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/v1/models", proc)
        served = VerifierSelector(open_runtime(f"openai:http://127.0.0.1:{port}/v1#tiny-verifier"),
                                  Stacker.verifier_alone())
        local = VerifierSelector(LlamaCppRuntime(str(tiny_f16_gguf), threads=1), Stacker.verifier_alone())
        a, _ = served.judge(NOTE, CANDIDATES)
        b, _ = local.judge(NOTE, CANDIDATES)
        assert not served.in_process and local.in_process
        assert [c.code for c, _, _ in a] == [c.code for c, _, _ in b]
        for (_, ma, _), (_, mb, _) in zip(a, b):
            assert ma != 0.0 and abs(ma - mb) < 0.02  # 0.0: neither choice among the top ones
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_ollama_gives_the_verifier_the_same_scores(tiny_f16_gguf, tmp_path):
    """Through Ollama's API (raw generate, top_logprobs: Ollama >= 0.12.11), after `register`."""
    from builder.distribution import register
    from models.runtimes import RuntimeUnavailable, open_runtime
    from models.runtimes.llamacpp_runtime import LlamaCppRuntime

    from .fake_ollama import FakeOllama

    local = VerifierSelector(LlamaCppRuntime(str(tiny_f16_gguf), threads=1), Stacker.verifier_alone())
    b, _ = local.judge(NOTE, CANDIDATES)
    with FakeOllama(tmp_path / "blobs", version="0.13.1") as server:
        register.register_ollama(tiny_f16_gguf, "tiny-verifier:f16", server.url, check=False)
        served = VerifierSelector(open_runtime(f"ollama:{server.url}#tiny-verifier:f16"),
                                  Stacker.verifier_alone())
        a, _ = served.judge(NOTE, CANDIDATES)
    for (_, ma, _), (_, mb, _) in zip(a, b):
        assert ma != 0.0 and abs(ma - mb) < 0.02
    with FakeOllama(tmp_path / "old", version="0.6.5") as server:  # no log-probabilities yet
        register.register_ollama(tiny_f16_gguf, "tiny-verifier:f16", server.url, check=False)
        old = VerifierSelector(open_runtime(f"ollama:{server.url}#tiny-verifier:f16"),
                               Stacker.verifier_alone())
        with pytest.raises(RuntimeUnavailable, match="0.12.11"):
            old.judge(NOTE, CANDIDATES)


def test_a_verifier_run_becomes_a_bundle_whose_gguf_has_its_own_stacker(tiny_verifier_folder, tmp_path, cs,
                                                                       monkeypatch):
    """merge -> export (the GGUF's stacker refitted on its own margins) -> bundle -> the pipeline
    the app and the server build from it judges with the verifier and that stacker."""
    import shutil

    from builder.config import load_config
    from builder.manifest import record_stage
    from builder.stages import bundle as bundle_stage
    from builder.stages import export
    from builder.stages.data import codiesp
    from builder.stages.data.codes import map_codes
    from builder.stages.verifier import HOLDOUT_FILE
    from models import bundle as bundle_mod
    from models.pipeline import Pipeline
    from models.retrieve import default_retriever

    run = tmp_path / "run"
    shipped = bundle_mod.embedded()
    (run / "retriever").mkdir(parents=True)
    fitted = run / "retriever" / bundle_mod.RETRIEVER_FILE
    shutil.copyfile(shipped.path(shipped.retriever.path), fitted)
    record_stage(run, "retriever", {}, {}, [fitted], 0.1, {"metrics": {"threshold": 0.3}})
    # The verifier stage's outputs: a stacker and the held-out cases' candidates.
    (run / "verifier").mkdir()
    stacker = run / "verifier" / "stacker.json"
    stacker.write_text(json.dumps({"contract": 1, **Stacker(("ranker_logit", "verifier_margin"),
                                                            (1.0, 0.5), -1.0, 0.4).to_dict()}))
    retriever = default_retriever(cs)
    held = []
    for case in codiesp.read_split(codiesp.embedded_dir() / "train").cases[:8]:
        held.append({"case_id": case.case_id, "gold": map_codes(case.codes, cs)[0], "margins": [],
                     "candidates": [[c.code, c.score, list(c.features)] for c in retriever.retrieve(case.text, k=10)]})
    (run / "verifier" / HOLDOUT_FILE).write_text("".join(json.dumps(h) + "\n" for h in held))
    record_stage(run, "verifier", {"base_model": "tiny"}, {}, [stacker, run / "verifier" / HOLDOUT_FILE], 0.1,
                 {"metrics": {"train_cases": 8, "choices_made_on": "codiesp train held-out part (8 cases)"}})
    shutil.copytree(tiny_verifier_folder, run / "merged")
    record_stage(run, "merge", {"model_kind": "verifier"}, {},
                 sorted(p for p in (run / "merged").rglob("*") if p.is_file()), 0.1)
    cfg = load_config(None, [])
    cfg.run_dir = str(run)
    cfg.default_system = "model"  # what "auto" picks is checked below
    report = export.run(cfg, ["gguf"], ["Q8_0"])
    entry = report["gguf"]["icd10-coder-Q8_0.gguf"]
    assert entry["stacker"]["cases"] == 8 and "margins" in entry["verify"]
    bundle_stage.run(cfg)
    made = bundle_mod.load(run / "bundle", cs)
    assert made.verifier is not None and made.verifier.contract == 1
    own = made.verifier.stackers["gguf/icd10-coder-Q8_0.gguf"]
    assert own != made.verifier.stacker  # refitted on the GGUF's margins
    # (On a CPU with AMX the builder runs the merged model instead: tests/test_bundle.py.)
    import models.runtimes

    monkeypatch.setattr(models.runtimes, "cpu_flags", lambda: ["avx2", "fma"])
    pipeline = Pipeline.from_bundle(made, None, cs)
    assert isinstance(pipeline.selector, VerifierSelector)
    assert pipeline.selector.stacker == Stacker.from_dict(own)
    result = pipeline.suggest(NOTE)
    assert result.runtime.startswith("verifier:llama.cpp:") and result.prompt_tokens > 0
    for s in result.suggestions:
        assert cs.is_billable(s.code) and 0.0 <= s.confidence <= 1.0
    # A server said to serve the bundle's GGUF gets that GGUF's stacker; any other server is
    # taken for a generative model; retrieval gets none.
    assert made.stacker("openai:http://127.0.0.1:1/v1#x", served_verifier=True) == Stacker.from_dict(own)
    # A server that names the file it serves (llama.cpp's server: the --model path) is read with
    # that GGUF's stacker; a name that is no file of the bundle gets the GGUF the bundle runs here.
    import dataclasses

    other = Stacker(("ranker_logit", "verifier_margin"), (0.3, 2.0), 0.5, 0.61).to_dict()
    two = dataclasses.replace(
        made, models=made.models + [bundle_mod.BundleModel("gguf/icd10-coder-BF16.gguf", "gguf", "BF16", "llama.cpp")],
        verifier=dataclasses.replace(made.verifier, stackers={**made.verifier.stackers,
                                                              "gguf/icd10-coder-BF16.gguf": other}))
    server = "openai:http://127.0.0.1:1/v1"
    assert two.stacker(server, True, "/srv/models/icd10-coder-Q8_0.gguf") == Stacker.from_dict(own)
    assert two.stacker(server, True, "C:\\models\\icd10-coder-BF16.gguf") == Stacker.from_dict(other)
    assert two.stacker(server, True, "icd10-coder:q8_0") == two.stacker(server, True)
    assert made.stacker("ollama:icd10-coder:q4_k_m") is None
    assert made.stacker("retrieval") is None

    # Where the verifier did not beat retrieval alone on its held-out cases, the bundle runs the
    # ranker alone by default (app, server, `evaluate --system bundle`); the GGUF stays selectable.
    from desktop.model_choice import ModelChoice, default_choice

    record_stage(run, "verifier", {"base_model": "tiny"}, {}, [stacker, run / "verifier" / HOLDOUT_FILE], 0.1,
                 {"metrics": {"train_cases": 8, "holdout_cases": 8,
                              "holdout_micro_f1": {"ranker_alone_at_its_threshold": 0.99}}})
    cfg.default_system = "auto"
    bundle_stage.run(cfg)
    made = bundle_mod.load(run / "bundle", cs)
    assert made.default_system == "retrieval" and "0.9900" in made.provenance["default_system"]["why"]
    assert Pipeline.from_bundle(made, None, cs).selector.name == "retrieval"
    assert made.runtime_spec("gguf") == str(run / "bundle" / "gguf" / "icd10-coder-Q8_0.gguf")
    assert made.stacker(made.runtime_spec("gguf")) == Stacker.from_dict(own)
    assert default_choice([run]) == ModelChoice("retrieval", bundle=str((run / "bundle").resolve()))


# --- the decision head on a frozen base (verifier.method = "head") ---------------------------

def test_the_head_learns_what_the_ranker_does_not_know():
    """Labels that follow one direction of the hidden state and the ranker's logit: the head's
    direction ranks unseen rows by the part the ranker misses, and carries no ranker weight."""
    import numpy as np

    from builder.stages.verifier import auc
    from builder.stages.verifier_head import fit_head

    rng = np.random.default_rng(0)
    truth = rng.normal(size=32)

    def rows(n):
        x = rng.normal(size=(n, 32)) * rng.uniform(0.5, 3.0, size=32) + 5.0  # scaled, offset
        ranker = rng.normal(size=n)
        y = (rng.random(n) < 1 / (1 + np.exp(-(x - 5.0) @ truth / 3 - 2 * ranker))).astype(float)
        return x, ranker, y

    x, ranker, y = rows(4000)
    direction, bias = fit_head(x, ranker, y, components=32, l2=1e-3)
    x2, ranker2, y2 = rows(2000)
    assert np.corrcoef(x2 @ direction, x2 @ truth)[0, 1] > 0.95  # the direction that decides
    assert auc(x2 @ direction + bias, y2) > 0.6
    assert abs(np.corrcoef(x2 @ direction, ranker2)[0, 1]) < 0.1  # the ranker's part left out


def test_notes_read_beside_a_few_train_cases_sharpen_the_head():
    """`choose_layer(also_fit=...)`: a few train cases leave the deciding direction vague;
    many notes that show it plainly, added to every fold's fit, make the cross-validated F1 of
    the same cases rise."""
    import numpy as np

    from builder.stages.verifier_head import choose_layer

    rng = np.random.default_rng(5)
    truth = rng.normal(size=32)

    def cases(n, noise):
        x = [rng.normal(size=(8, 32)) for _ in range(n)]
        y = [((c @ truth + rng.normal(size=8) * noise) > 1.5).astype(float) for c in x]
        return x, y

    x, y = cases(8, noise=1.0)  # 64 rows for 32 dimensions
    codes = [[f"A{i:02d}.{j}" for j in range(8)] for i in range(len(x))]
    gold = [[c for c, label in zip(cs_, ys) if label] for cs_, ys in zip(codes, y)]
    zeros = [np.zeros(8) for _ in x]
    _, alone = choose_layer({3: x}, zeros, y, codes, gold, components=32, l2=0.03)
    extra_x, extra_y = cases(300, noise=0.0)
    _, helped = choose_layer({3: x}, zeros, y, codes, gold, components=32, l2=0.03,
                             also_fit={3: extra_x}, also_ranker=[np.zeros(8) for _ in extra_x],
                             also_labels=extra_y)
    assert helped[3] > alone[3] + 0.1


def test_the_head_model_scores_what_the_head_says_in_transformers_and_llama_cpp(
        tiny_llama_folder, hf_tokenize, tmp_path):
    """The base cut after a layer with the head in its untied output layer: logit(yes) -
    logit(no) at each slot is the head's score of that slot's hidden state, in transformers and
    in its GGUF through llama.cpp; the other tokens' rows are the embeddings as before."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    from builder.config import BuildConfig
    from builder.stages import export
    from builder.stages.verifier_head import build_head_model, slot_features
    from models.runtimes.llamacpp_runtime import LlamaCppRuntime
    from models.runtimes.transformers_runtime import slot_margins

    tokenize, _ = hf_tokenize
    choices = decision_token_ids(tokenize)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_folder, dtype=torch.float32).eval()
    inp = build_verifier_input(NOTE, CANDIDATES, tokenize)
    hidden = slot_features(base, inp.ids, inp.slots, [1])[1]
    direction = np.random.default_rng(1).normal(size=hidden.shape[1]).astype(np.float32)
    run = tmp_path / "run"
    build_head_model(tiny_llama_folder, 1, direction, choices, run / "merged")

    head = AutoModelForCausalLM.from_pretrained(run / "merged", dtype=torch.float32).eval()
    assert head.config.num_hidden_layers == 1 and not head.config.tie_word_embeddings
    margins = slot_margins(head, inp.ids, inp.slots, choices)
    assert np.allclose(margins, hidden @ direction, atol=1e-3)
    assert torch.equal(head.lm_head.weight[5], base.lm_head.weight[5])

    export.run(BuildConfig(run_dir=str(run), model_kind="verifier"), ["gguf"], ["F16"])
    judged, _ = VerifierSelector(LlamaCppRuntime(str(export.gguf_path(run, "F16")), threads=1),
                                 Stacker.verifier_alone()).judge(NOTE, CANDIDATES)
    by_code = dict(zip([c.code for c in inp.candidates], hidden @ direction))
    for candidate, margin, _ in judged:
        assert abs(margin - by_code[candidate.code]) < 0.05 * max(1.0, abs(by_code[candidate.code]))


def test_verifier_stage_fits_a_head_whose_merged_model_gives_its_held_out_margins(
        tiny_llama_folder, tmp_path, cs):
    """`verifier.method=head`: the layer chosen out of fold, the head and stacker written, and
    `merge` builds the cut model whose margins are those the stage fitted the stacker on."""
    import numpy as np

    from builder.config import load_config
    from builder.stages import merge, verifier
    from builder.stages.verifier_head import HEAD_FILE, load_head
    from models.runtimes.transformers_runtime import TransformersRuntime

    cases = _retriever_stage_outputs(tmp_path, cs)
    # A final norm whose weights are not all 1, as in a trained model: the head reads the norm's
    # output at every layer, and the cut model applies the same norm.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(tiny_llama_folder, dtype=torch.float32)
    with torch.no_grad():
        base.model.norm.weight.uniform_(0.5, 2.0)
    base.save_pretrained(tmp_path / "base")
    AutoTokenizer.from_pretrained(tiny_llama_folder).save_pretrained(tmp_path / "base")
    cfg = load_config(None, ["verifier.method=head", "verifier.head_layers=1,2", "verifier.candidates=12",
                             "verifier.holdout_fraction=0.4", "verifier.head_components=8",
                             "verifier.holdout_synthetic=4", "verifier.head_synthetic=3"])
    cfg.run_dir, cfg.base_model = str(tmp_path), str(tmp_path / "base")
    metrics = verifier.run(cfg)
    assert metrics["method"] == "head" and metrics["layer"] in (1, 2)
    assert set(metrics["layers_cross_validated_micro_f1"]) == {1, 2}
    assert metrics["train_cases"] + metrics["holdout_cases"] == 16
    # Synthetic notes the ranker never saw are judged beside the held-out cases, text included
    # (the export refits each GGUF's stacker on both), and share the stacker's threshold.
    assert metrics["holdout_synthetic_notes"] == 4
    assert metrics["holdout_synthetic_micro_f1"]["stacked_cross_validated"] is not None
    held_rows = [json.loads(line) for line in (tmp_path / "verifier" / verifier.HOLDOUT_FILE).read_text().splitlines()]
    synthetic = [r for r in held_rows if r.get("kind") == "synthetic"]
    assert len(synthetic) == 4 and all(r["text"] and r["gold"] for r in synthetic)
    assert len(held_rows) == metrics["holdout_cases"] + 4
    # The head also read synthetic notes: the ones after those held out, never the same.
    assert metrics["train_synthetic_notes"] == 3
    fitted_on = {n["case_id"] for n in verifier.load_synthetic_notes(cfg, cs, 3, skip=4)}
    assert len(fitted_on) == 3 and not fitted_on & {r["case_id"] for r in synthetic}
    layer, direction, _, lift = load_head(tmp_path / "verifier" / HEAD_FILE)
    assert layer == metrics["layer"] and direction.shape == (64,)
    Stacker.from_dict(json.loads((tmp_path / "verifier/stacker.json").read_text()))
    assert (tmp_path / "verifier/layers.png").stat().st_size > 1000

    merge.run(cfg)
    model = TransformersRuntime(str(tmp_path / "merged"))
    assert model.model.config.num_hidden_layers == layer
    held = json.loads((tmp_path / "verifier" / verifier.HOLDOUT_FILE).read_text().splitlines()[0])
    text = next(c.text for c in cases if c.case_id == held["case_id"])
    listed = [Candidate(c, cs.description(c), p, features=tuple(f)) for c, p, f in held["candidates"]]
    judged, _ = VerifierSelector(model, Stacker.verifier_alone()).judge(text, listed)
    assert np.allclose([m for _, m, _ in judged], held["margins"], atol=0.05)

    assert np.allclose([m for _, m, _ in judged], held["margins"], rtol=0.05, atol=0.05)

    deeper = load_config(None, ["verifier.method=head", "verifier.head_layers=3"])
    deeper.run_dir, deeper.base_model = str(tmp_path), str(tmp_path / "base")
    with pytest.raises(verifier.VerifierError, match="head_layers"):
        verifier.run(deeper)  # the tiny model has 2 layers


def test_the_server_lift_puts_yes_and_no_first_without_moving_the_margin():
    """A server shows only the top log-probabilities of the token it generates: after the lift,
    " yes" and " no" lead every other token at every slot, and their difference is the head's."""
    import numpy as np

    from builder.stages.verifier_head import server_lift

    rng = np.random.default_rng(2)
    common = rng.normal(size=48)
    features = 6.0 * common / np.linalg.norm(common) + rng.normal(size=(3000, 48)) * 0.3
    rows = rng.normal(size=(400, 48))
    direction = rng.normal(size=48).astype(np.float32) * 0.5
    choices = (7, 9)
    lift = server_lift(features, rows, choices, direction, room=5.0)
    head = rows.copy()
    head[9] += lift
    head[7] = head[9] + direction
    logits = features @ head.T
    others = np.delete(logits, list(choices), axis=1).max(1)
    assert (np.minimum(logits[:, 7], logits[:, 9]) > others + 4.0).all()
    assert np.allclose(logits[:, 7] - logits[:, 9], features @ direction, atol=1e-6)
    # Hidden states that share no direction: no lift rather than a wrong one.
    assert not server_lift(rng.normal(size=(300, 48)), rows, choices, direction).any()


def test_the_stacker_reports_each_kind_of_note_and_judges_by_codiesp():
    """Held-out CodiEsp cases and synthetic notes fitted together: each kind's cross-validated
    F1 is reported, and the figure the build compares with retrieval alone is the CodiEsp one."""
    from builder.stages.verifier import fit_stacker

    def rows(kind, n, right):
        out, gold = [], []
        for i in range(n):
            cands = [Candidate(f"A{i:02d}.{j}", "", 0.5, features=()) for j in range(6)]
            labels = [float(j in right) for j in range(6)]
            out.append({"candidates": cands, "margins": [float(j) for j in range(6)], "slot_labels": labels})
            gold.append([c.code for c, y in zip(cands, labels) if y])
        return out, gold, [kind] * n

    a, ga, ka = rows("codiesp", 20, {4, 5})
    b, gb, kb = rows("synthetic", 10, {1, 5})  # the margin ranks these worse
    stacker, cv = fit_stacker(a + b, ga + gb, ("verifier_margin",), ka + kb)
    assert set(cv["by_kind"]) == {"codiesp", "synthetic"}
    assert cv["micro_f1"] == cv["by_kind"]["codiesp"] == 1.0 > cv["by_kind"]["synthetic"]
    alone, cv_alone = fit_stacker(a, ga, ("verifier_margin",))
    assert set(cv_alone["by_kind"]) == {"codiesp"} and 0.0 < alone["threshold"] < 1.0


def test_a_bf16_transformers_runtime_scores_as_fp32_does(tiny_verifier_folder, monkeypatch):
    """On a CPU with AMX a merged model runs in bf16 (`open_runtime`'s "auto"); its margins
    stay those of fp32 within bf16's rounding, where the difference of two bf16 logits would not."""
    import numpy as np

    import models.runtimes
    from models.runtimes import RuntimeUnavailable, open_runtime
    from models.runtimes.transformers_runtime import TransformersRuntime

    neutral = Stacker.verifier_alone()
    note = NOTE + " " + "Follow-up in three months. " * 20
    fp32, _ = VerifierSelector(TransformersRuntime(str(tiny_verifier_folder)), neutral).judge(note, CANDIDATES)
    monkeypatch.setattr(models.runtimes, "cpu_flags", lambda: ["avx512f", "avx512_bf16", "amx_bf16"])
    runtime = open_runtime(str(tiny_verifier_folder))
    assert runtime.dtype == "bf16" and runtime.name.startswith("transformers bf16:")
    bf16, _ = VerifierSelector(runtime, neutral).judge(note, CANDIDATES)
    a = np.array([m for _, m, _ in fp32])
    b = np.array([m for _, m, _ in bf16])
    assert [c.code for c, _, _ in fp32] == [c.code for c, _, _ in bf16]
    assert np.abs(a - b).max() < 0.05 * max(1.0, np.abs(a).max()), (a, b)
    monkeypatch.setattr(models.runtimes, "cpu_flags", lambda: ["avx512f", "avx512_bf16"])
    assert open_runtime(str(tiny_verifier_folder)).dtype == "fp32"  # no AMX: fp32
    with pytest.raises(RuntimeUnavailable, match="Unknown dtype"):
        TransformersRuntime(str(tiny_verifier_folder), dtype="fp8")
