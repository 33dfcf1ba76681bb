"""`python -m builder verifier`: fine-tune the model to judge the retriever's candidates.

The model reads a CodiEsp train note and its candidates (models/contract.py, "verifier input")
and learns, at each candidate's decision slot, whether the note supports it: the loss is a
binary cross-entropy on logit(" yes") - logit(" no") at the slots and nowhere else, and the
vocabulary is projected only at the slots. LoRA through peft, NF4 QLoRA on CUDA (the same
`train.quantization` and `lora` settings as `builder train`), bf16 compute on CPUs with native bf16.
Or (`verifier.method = "head"`, the CPU default) the base stays frozen and only the decision is
fitted, on every train case at once and on synthetic notes that show the coding rules
(`head_synthetic`; builder/stages/verifier_head.py).

Every case is shown the candidates an unseen note would get: those of the retriever stage's
fold that never saw it (<run>/retriever/train_oof.jsonl). A part of train (`holdout_fraction`,
chosen by case id) is never trained on: the verifier scores it, and synthetic notes the ranker
never saw (`holdout_synthetic`), and the stacker (ranker logit + verifier margin -> probability)
and its threshold, shared by both kinds of note, are fitted there, so CodiEsp dev makes no
choice and its figures are held out.

Writes <run>/verifier/adapter and loss.png (LoRA) or head.npz and layers.png (head),
stacker.json, metrics.json. `builder merge` folds the
adapter into the base model, `export` makes the GGUF, `bundle` carries adapter's stacker along.
"""
from __future__ import annotations

import hashlib
import json
import math
import resource
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from builder.config import BuildConfig
from models.errors import CoderError

STACKER_FILE = "stacker.json"
from builder.stages.export import HOLDOUT_FILE  # noqa: E402 - the verifier's margins on held-out cases

# The stacker's inputs, chosen by cross-validated micro-F1 on the held-out cases: the ranker's
# logit and the verifier's margin alone (few weights for ~100 cases), or every ranker feature too.
STACKER_INPUT_SETS = (("ranker_logit", "verifier_margin", "margin_x_ranker"), None)


class VerifierError(CoderError, RuntimeError):
    pass


def is_holdout(case_id: str, fraction: float) -> bool:
    """Whether a train case is kept out of training (stable: by a hash of its id)."""
    digest = int(hashlib.sha256(case_id.encode()).hexdigest()[:8], 16)
    return digest / 0xFFFFFFFF < fraction


def load_cases(run_dir: Path, cs, max_cases: int = 0) -> list[dict]:
    """CodiEsp train cases with their out-of-fold candidates and labels."""
    from builder.evaluation.scoring import matched
    from builder.stages.data import codiesp
    from builder.stages.retriever import TRAIN_OOF_FILE
    from models.contract import Candidate

    oof_path = run_dir / "retriever" / TRAIN_OOF_FILE
    if not oof_path.exists():
        raise VerifierError(f"{oof_path} does not exist: run `python -m builder retriever` first "
                            "(the verifier is trained on its out-of-fold candidates).")
    oof = {}
    for line in oof_path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            oof[row["case_id"]] = row
    split = codiesp.read_split(codiesp.embedded_dir() / "train")
    cases = []
    for case in split.cases:
        row = oof.get(case.case_id)
        if row is None or not row["gold"]:
            continue  # a case without gold codes teaches nothing
        gold = row["gold"]
        candidates = [Candidate(c, cs.description(c), p, features=tuple(f))
                      for c, p, f in row["candidates"] if cs.is_billable(c)]
        labels = {c.code: float(matched(gold, [c.code])[0] in gold) for c in candidates}
        cases.append({"case_id": case.case_id, "text": case.text, "gold": gold,
                      "candidates": candidates, "labels": labels})
    return cases[:max_cases] if max_cases else cases


def load_synthetic_notes(cfg: BuildConfig, cs, count: int, skip: int = 0) -> list[dict]:
    """`count` synthetic notes the ranker never saw (those after the ones it was fitted on, less
    the first `skip` of them), with the final retriever's candidates. The first
    `holdout_synthetic` are judged beside the held-out train cases, so the stacker's threshold
    serves US-style notes too, as the ranker's does; the `head_synthetic` after them are read
    beside the train cases to fit the head. None is ever both."""
    from builder.stages.data import codiesp
    from builder.stages.data.synthetic import SyntheticNoteGenerator, codiesp_prior
    from builder.stages.retriever import SYNTHETIC_NOTES
    from models.retrieve import Retriever

    if count <= 0:
        return []
    run_dir = Path(cfg.run_dir)
    retriever = Retriever.load(cs, run_dir / "retriever" / "retriever.json.gz")
    metrics = run_dir / "retriever" / "metrics.json"
    first = (json.loads(metrics.read_text()).get("synthetic_notes") if metrics.exists() else None)
    first = min(cfg.data.synthetic_train, SYNTHETIC_NOTES) if first is None else int(first)
    prior = codiesp_prior((c.codes for c in codiesp.read_split(codiesp.embedded_dir() / "train").cases), cs)
    gen = SyntheticNoteGenerator(cs, seed=cfg.data.seed, prior=prior)
    out = []
    for i in range(first + skip, first + skip + count):
        note = gen.generate(i)
        gold = [item.code for item in note.items]
        candidates = [c for c in retriever.retrieve(note.text, k=60) if cs.is_billable(c.code)]
        out.append({"case_id": note.note_id, "text": note.text, "gold": gold, "kind": "synthetic",
                    "candidates": candidates,
                    "labels": {c.code: float(c.code in gold) for c in candidates}})
    return out


def encode(case: dict, tokenize, vc) -> dict:
    from models.contract import build_verifier_input
    from models.select import ranker_logit

    inp = build_verifier_input(case["text"], case["candidates"], tokenize,
                               max_note_tokens=vc.max_note_tokens, max_candidates=vc.candidates)
    return {"input_ids": inp.ids, "slots": inp.slots, "candidates": inp.candidates,
            "slot_labels": [case["labels"][c.code] for c in inp.candidates],
            "slot_offsets": [ranker_logit(c) if vc.residual else 0.0 for c in inp.candidates]}


def slot_loss(model, inputs: dict, choices: tuple[int, int], positive_weight: float):
    """Binary cross-entropy of logit(yes) - logit(no) at the decision slots only, added to each
    slot's offset (the ranker's logit when the verifier learns the ranker's residual)."""
    import torch
    import torch.nn.functional as F

    slot_batch, slot_pos = inputs["slot_batch"], inputs["slot_pos"]
    keep = torch.unique(slot_pos)  # sorted; the vocabulary is projected only here
    out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                use_cache=False, logits_to_keep=keep)
    col = torch.searchsorted(keep, slot_pos)
    logits = out.logits[slot_batch, col][:, list(choices)].float()
    margin = logits[:, 0] - logits[:, 1] + inputs["slot_offsets"].to(logits.device)
    weight = torch.tensor(positive_weight, device=margin.device)
    return F.binary_cross_entropy_with_logits(margin, inputs["slot_labels"].to(margin.device),
                                              pos_weight=weight), out


def collate(rows: list[dict], pad_id: int) -> dict:
    import torch

    n = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), n), dtype=torch.long)
    sb, sp, sl, so = [], [], [], []
    for b, r in enumerate(rows):
        ids[b, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
        mask[b, : len(r["input_ids"])] = 1
        sb += [b] * len(r["slots"])
        sp += r["slots"]
        sl += r["slot_labels"]
        so += r["slot_offsets"]
    return {"input_ids": ids, "attention_mask": mask, "slot_batch": torch.tensor(sb),
            "slot_pos": torch.tensor(sp), "slot_labels": torch.tensor(sl, dtype=torch.float32),
            "slot_offsets": torch.tensor(so, dtype=torch.float32)}


def _trainer_class(choices: tuple[int, int], positive_weight: float):
    from transformers import Trainer

    class VerifierTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, outputs = slot_loss(model, inputs, choices, positive_weight)
            return (loss, outputs) if return_outputs else loss

    return VerifierTrainer


def fit_stacker(rows: list[dict], gold: list[list[str]], inputs: tuple[str, ...],
                kinds: list[str] | None = None, folds: int = 5, l2: float = 1e-3) -> tuple[dict, dict]:
    """The stacker fitted on every row, and its micro-F1 when each fold is predicted by a stacker
    and threshold fitted on the other folds (the honest figure for these cases). A row: one
    case's candidates (Candidate) and the verifier's margins. `kinds` (codiesp, synthetic) share
    one threshold, the best for their mean micro-F1, as the ranker's does; the figures returned
    are those of the CodiEsp rows, with every kind's F1 in "by_kind"."""
    from builder.evaluation.scoring import score, shared_threshold

    kinds = kinds or ["codiesp"] * len(rows)
    from builder.stages.retriever import fit_logistic
    from models.select import Stacker

    def features(r):
        return np.array([[Stacker.row(c, m).get(name, 0.0) for name in inputs]
                         for c, m in zip(r["candidates"], r["margins"])]).reshape(-1, len(inputs))

    def probs(stacker, r):
        return [(c.code, stacker.probability(c, m)) for c, m in zip(r["candidates"], r["margins"])]

    def fit(idx):
        x = np.vstack([features(rows[i]) for i in idx])
        y = np.concatenate([rows[i]["slot_labels"] for i in idx])
        w, b = fit_logistic(x, y, l2=l2)
        stacker = Stacker(inputs, tuple(float(v) for v in w), b, 0.5)
        groups = {}
        for i in idx:
            group = groups.setdefault(kinds[i], ([], []))
            group[0].append(probs(stacker, rows[i]))
            group[1].append(gold[i])
        threshold, _ = shared_threshold(list(groups.values()))
        return Stacker(inputs, stacker.weights, b, threshold)

    predicted = [None] * len(rows)
    for fold in range(folds):
        held = [i for i in range(len(rows)) if i % folds == fold]
        stacker = fit([i for i in range(len(rows)) if i % folds != fold])
        for i in held:
            predicted[i] = [c for c, p in probs(stacker, rows[i]) if p >= stacker.threshold]
    by_kind = {kind: score([{"gold": gold[i], "predicted": predicted[i]}
                            for i in range(len(rows)) if kinds[i] == kind]) for kind in dict.fromkeys(kinds)}
    cv = by_kind.get("codiesp") or next(iter(by_kind.values()))
    final = fit(list(range(len(rows))))
    return final.to_dict(), {**{k: cv[k] for k in ("micro_precision", "micro_recall", "micro_f1")},
                             "by_kind": {kind: round(v["micro_f1"], 4) for kind, v in by_kind.items()}}


def choose_stacker(rows: list[dict], gold: list[list[str]],
                   kinds: list[str] | None = None) -> tuple[dict, dict, dict]:
    """The stacker whose inputs cross-validate best on the CodiEsp cases (None: all
    STACKER_INPUTS), fitted on every row with one threshold for every kind of note."""
    from models.select import STACKER_INPUTS

    tried = {}
    for inputs in STACKER_INPUT_SETS:
        inputs = inputs or STACKER_INPUTS
        tried[inputs] = fit_stacker(rows, gold, inputs, kinds)
    best = max(tried, key=lambda k: tried[k][1]["micro_f1"])
    return tried[best][0], tried[best][1], {"+".join(k) if len(k) < 5 else "all": v[1]["micro_f1"]
                                            for k, v in tried.items()}


def calibrate(run_dir: str | Path, model: str | Path, **runtime_options) -> dict:
    """The stacker refitted on the margins of `model` as it runs (a quantized GGUF shifts the
    verifier's margins from the fp32 ones the stage measured): the held-out train cases are
    judged through the same VerifierSelector as in the app, whole notes included. Returns
    {"stacker", "cv_micro_f1", "inputs_tried", "cases"}."""
    from builder.stages.data import codiesp
    from models import codeset as codeset_mod
    from models.contract import Candidate
    from models.runtimes import open_runtime
    from models.select import Stacker, VerifierSelector

    path = Path(run_dir) / "verifier" / HOLDOUT_FILE
    if not path.exists():
        raise VerifierError(f"{path} does not exist: run `python -m builder verifier` first.")
    cs = codeset_mod.load()
    texts = {c.case_id: c.text for c in codiesp.read_split(codiesp.embedded_dir() / "train").cases}
    held = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    selector = VerifierSelector(open_runtime(str(model), **runtime_options), Stacker.verifier_alone())
    rows = []
    try:
        for case in held:
            candidates = [Candidate(c, cs.description(c), p, features=tuple(f)) for c, p, f in case["candidates"]]
            judged, _ = selector.judge(case.get("text") or texts[case["case_id"]], candidates)
            listed = {c.code: m for c, m, _ in judged}
            rows.append({"candidates": candidates, "margins": [listed[c.code] for c in candidates],
                         "slot_labels": []})
    finally:
        selector.close()
    from builder.evaluation.scoring import matched

    gold = [case["gold"] for case in held]
    for r, g in zip(rows, gold):
        r["slot_labels"] = [float(matched(g, [c.code])[0] in g) for c in r["candidates"]]
    kinds = [case.get("kind", "codiesp") for case in held]
    stacker, cv, tried = choose_stacker(rows, gold, kinds)
    return {"stacker": stacker, "cv_micro_f1": cv["micro_f1"], "cv_micro_f1_by_kind": cv["by_kind"],
            "inputs_tried": tried, "cases": kinds.count("codiesp"),
            "synthetic_notes": kinds.count("synthetic")}


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (rank statistic)."""
    order = np.argsort(scores)
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    pos = labels > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return float("nan")
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def run(cfg: BuildConfig) -> dict:
    import torch
    from datasets import Dataset
    from peft import get_peft_model, prepare_model_for_kbit_training
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, TrainingArguments

    from builder.base_model import ensure_base_model
    from builder.stages.train import (
        _HOW_LONG,
        _StopCallback,
        lora_config,
        mean_train_loss,
        plot_loss,
        precision,
        resolve_quantization,
        resumable_checkpoint,
    )
    from models import codeset as codeset_mod
    from models.contract import decision_token_ids
    from models.files import atomic_dir
    from models.runtimes.transformers_runtime import slot_margins

    started = time.perf_counter()
    vc = cfg.verifier
    run_dir = Path(cfg.run_dir)
    out_dir = run_dir / "verifier"
    ckpt_dir = out_dir / "checkpoints"
    cs = codeset_mod.load()
    cases = load_cases(run_dir, cs, vc.max_cases)
    train_cases = [c for c in cases if not is_holdout(c["case_id"], vc.holdout_fraction)]
    holdout = [c for c in cases if is_holdout(c["case_id"], vc.holdout_fraction)]
    if not train_cases or not holdout:
        raise VerifierError(f"{len(cases)} cases split into {len(train_cases)} to train on and "
                            f"{len(holdout)} held out: both need some (verifier.holdout_fraction).")

    quant = resolve_quantization(cfg.train.quantization)
    base = ensure_base_model(cfg.base_model)
    dtype, bf16 = precision(cfg.train.dtype)
    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    def tokenize(text: str, bos: bool = False) -> list[int]:
        return tokenizer(text, add_special_tokens=bos).input_ids

    choices = decision_token_ids(tokenize)
    holdout = holdout + load_synthetic_notes(cfg, cs, vc.holdout_synthetic)
    if vc.method == "head":
        return _run_head(cfg, cs, base, tokenize, choices, train_cases, holdout, started)
    if vc.method != "lora":
        raise VerifierError(f"verifier.method is {vc.method!r}: use \"lora\" or \"head\".")
    model_kwargs = {"dtype": dtype}
    if quant == "nf4":
        model_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype if dtype != torch.float32 else torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(base, **model_kwargs)
    if quant == "nf4":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model = get_peft_model(model, lora_config(cfg))

    rows = [encode(c, tokenize, vc) for c in tqdm(train_cases, desc="verifier: encode")]
    ds = Dataset.from_list([{k: r[k] for k in ("input_ids", "slots", "slot_labels", "slot_offsets")}
                           for r in rows])
    ds = ds.shuffle(seed=cfg.train.seed)
    optim = cfg.train.optim if cfg.train.optim != "auto" else (
        "paged_adamw_32bit" if quant == "nf4" else "adamw_torch")
    args = TrainingArguments(
        output_dir=str(ckpt_dir), per_device_train_batch_size=vc.batch_size,
        gradient_accumulation_steps=vc.grad_accum, learning_rate=vc.learning_rate,
        warmup_ratio=0.05, lr_scheduler_type="cosine", num_train_epochs=vc.epochs,
        max_steps=vc.max_steps, optim=optim, save_strategy="steps", save_steps=10,
        save_total_limit=1, logging_steps=1, report_to="none", seed=cfg.train.seed, bf16=bf16,
        use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
        remove_unused_columns=False, group_by_length=True, length_column_name="length",
        disable_tqdm=False)
    ds = ds.map(lambda r: {"length": len(r["input_ids"])})
    stop = _StopCallback(vc.time_budget_minutes * 60)
    trainer = _trainer_class(choices, vc.positive_weight)(
        model=model, args=args, train_dataset=ds, callbacks=[stop],
        data_collator=lambda batch: collate(batch, tokenizer.pad_token_id))
    last = resumable_checkpoint(ckpt_dir, {
        "train": [[r["input_ids"], r["slots"], r["slot_labels"], r["slot_offsets"]] for r in rows],
        "settings": {k: v for k, v in asdict(vc).items() if k not in _HOW_LONG},
        "train_settings": {k: v for k, v in asdict(cfg.train).items() if k not in _HOW_LONG},
        "lora": asdict(cfg.lora), "base": str(base), "quantization": quant})
    t0 = time.perf_counter()
    try:
        result = trainer.train(resume_from_checkpoint=last)
    finally:
        stop.restore()
    train_seconds = time.perf_counter() - t0
    state = trainer.state
    # Tokens read in this run's steps (a resumed run counts only its own).
    resumed_step = int(Path(last).name.rsplit("-", 1)[1]) if last else 0
    mean_tokens = float(np.mean([len(r["input_ids"]) for r in rows]))
    tokens_trained = mean_tokens * (state.global_step - resumed_step) * vc.batch_size * vc.grad_accum

    # The held-out part: the verifier's margins, then the stacker fitted (and judged) there.
    model.eval()
    scored = []
    for case in tqdm(holdout, desc="verifier: score held-out train cases"):
        r = encode(case, tokenize, vc)
        r["margins"] = slot_margins(model, r["input_ids"], r["slots"], choices)
        scored.append(r)
    adapter = out_dir / "adapter"
    with atomic_dir(adapter) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    history = list(state.log_history)
    (out_dir / "log_history.json").write_text(json.dumps(history, indent=1))
    plot = plot_loss(out_dir / "loss.png", history, "loss (decision slots)", "Verifier training loss")
    training = {
        "method": "lora", "quantization": quant, "bf16_compute": bf16, "optim": optim,
        "train_cases": len(train_cases),
        "steps": state.global_step, "max_steps": state.max_steps, "stopped_early": stop.reason,
        "resumed_from_step": resumed_step,
        "train_loss": mean_train_loss(state.log_history, result.training_loss),
        "train_seconds": round(train_seconds, 1),
        "tokens_per_second": round(tokens_trained / max(train_seconds, 1e-9), 1),
        "mean_tokens_per_case": round(float(np.mean([len(r["input_ids"]) for r in rows])), 1),
    }
    outputs = sorted(p for p in adapter.iterdir() if p.is_file()) + [plot]
    return _report(cfg, cs, base, holdout, scored, training, outputs, started)


def _run_head(cfg: BuildConfig, cs, base: str, tokenize, choices: tuple[int, int],
              train_cases: list[dict], holdout: list[dict], started: float) -> dict:
    """`verifier.method = "head"`: the decision head fitted on the frozen base model, its layer
    chosen out of fold on the train cases (builder/stages/verifier_head.py)."""
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM

    from builder.stages.train import precision
    from builder.stages.verifier_head import (
        HEAD_FILE,
        choose_layer,
        fit_head,
        plot_layers,
        save_head,
        server_lift,
        slot_features,
    )
    from models.contract import VERIFIER_NOTE_TOKENS, build_verifier_input
    from models.select import ranker_logit

    vc = cfg.verifier
    out_dir = Path(cfg.run_dir) / "verifier"
    dtype, bf16 = precision(cfg.train.dtype)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype).eval()
    depth = model.config.num_hidden_layers
    layers = sorted({int(v) for v in str(vc.head_layers).split(",") if v.strip()})
    if not layers or layers[0] < 1 or layers[-1] > depth:
        raise VerifierError(f"verifier.head_layers is {vc.head_layers!r}: give layers from 1 to "
                            f"{depth}, the depth of {base}, separated by commas.")
    model.model.layers = model.model.layers[: layers[-1]]  # nothing above the last is read
    device = next(model.parameters()).device.type

    def read(case: dict, layers: list[int]) -> dict:
        """The head's inputs for one case, as the app lays them out (whole notes)."""
        inp = build_verifier_input(case["text"], case["candidates"], tokenize,
                                   max_note_tokens=VERIFIER_NOTE_TOKENS, max_candidates=vc.candidates)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            features = slot_features(model, inp.ids, inp.slots, layers)
        return {"candidates": inp.candidates, "features": features, "tokens": len(inp.ids),
                "slot_labels": [case["labels"][c.code] for c in inp.candidates],
                "ranker": np.array([ranker_logit(c) for c in inp.candidates])}

    # Synthetic notes after the held-out ones: what the coding rules look like in US-style notes
    # (negated lists, symptoms a diagnosis explains, combination codes), which CodiEsp's case
    # reports rarely show. Read for every fit, never judged: the layer is chosen on CodiEsp alone.
    synthetic = load_synthetic_notes(cfg, cs, vc.head_synthetic, skip=vc.holdout_synthetic)
    t0 = time.perf_counter()
    rows = [read(case, layers) for case in tqdm(train_cases, desc="verifier head: read train cases")]
    extra = [read(case, layers) for case in tqdm(synthetic, desc="verifier head: read synthetic notes")]
    read_seconds = time.perf_counter() - t0
    labels = [np.array(r["slot_labels"]) for r in rows]
    ranker = [r["ranker"] for r in rows]
    t0 = time.perf_counter()
    layer, tried = choose_layer({layer: [r["features"][layer] for r in rows] for layer in layers},
                                ranker, labels, [[c.code for c in r["candidates"]] for r in rows],
                                [c["gold"] for c in train_cases], vc.head_components, vc.head_l2,
                                also_fit={layer: [r["features"][layer] for r in extra] for layer in layers},
                                also_ranker=[r["ranker"] for r in extra],
                                also_labels=[np.array(r["slot_labels"]) for r in extra])
    every = rows + extra
    features = np.vstack([r["features"][layer] for r in every])
    direction, bias = fit_head(features, np.concatenate([r["ranker"] for r in every]),
                               np.concatenate([r["slot_labels"] for r in every]),
                               vc.head_components, vc.head_l2)
    fit_seconds = time.perf_counter() - t0
    lift = server_lift(features, model.get_output_embeddings().weight.detach().float().numpy(),
                       choices, direction)
    save_head(out_dir / HEAD_FILE, layer, direction, bias, lift, tried)
    plot = plot_layers(out_dir / "layers.png", tried, layer, depth)

    model.model.layers = model.model.layers[:layer]  # the head model's depth
    scored = []
    for case in tqdm(holdout, desc="verifier head: score held-out train cases"):
        r = read(case, [layer])
        # What the head model's output layer gives: logit(yes) - logit(no), no intercept.
        r["margins"] = (r.pop("features")[layer] @ direction).tolist()
        scored.append(r)
    tokens = sum(r["tokens"] for r in every)
    training = {
        "method": "head", "bf16_compute": bf16, "train_cases": len(train_cases),
        "train_synthetic_notes": len(extra),
        "layer": layer, "of_layers": depth, "layers_cross_validated_micro_f1": tried,
        "components": vc.head_components, "l2": vc.head_l2, "server_lift": round(float(np.linalg.norm(lift)), 3),
        "read_seconds": round(read_seconds, 1), "fit_seconds": round(fit_seconds, 1),
        "train_seconds": round(read_seconds + fit_seconds, 1),
        "tokens_per_second": round(tokens / max(read_seconds, 1e-9), 1),
        "mean_tokens_per_case": round(tokens / max(1, len(every)), 1),
    }
    return _report(cfg, cs, base, holdout, scored, training, [out_dir / HEAD_FILE, plot], started)


def _report(cfg: BuildConfig, cs, base: str, holdout: list[dict], scored: list[dict],
            training: dict, outputs: list[Path], started: float) -> dict:
    """The stacker fitted (and judged, out of fold) on the held-out cases' margins; metrics,
    the held-out margins and the stacker written; the stage recorded."""
    from builder.evaluation.scoring import f1_at, score
    from builder.manifest import record_stage
    from models.contract import VERIFIER_CONTRACT
    from models.files import write_json_atomic, write_jsonl_atomic
    from models.retrieve import Retriever

    run_dir = Path(cfg.run_dir)
    out_dir = run_dir / "verifier"
    gold = [c["gold"] for c in holdout]
    kinds = [c.get("kind", "codiesp") for c in holdout]
    write_jsonl_atomic(out_dir / HOLDOUT_FILE, [
        {"case_id": case["case_id"], "gold": g, "margins": [round(m, 4) for m in r["margins"]],
         "candidates": [[c.code, c.score, list(c.features)] for c in r["candidates"]],
         **({"kind": kind, "text": case["text"]} if kind != "codiesp" else {})}
        for case, g, r, kind in zip(holdout, gold, scored, kinds)])
    stacker, cv, inputs_tried = choose_stacker(scored, gold, kinds)
    _, cv_ranker_features = fit_stacker(  # the same stacker without the verifier: what it adds
        scored, gold, tuple(i for i in stacker["inputs"] if i not in ("verifier_margin", "margin_x_ranker")),
        kinds)
    ranker_threshold = Retriever.load(cs, run_dir / "retriever" / "retriever.json.gz").threshold
    ranker_alone = {kind: round(f1_at([[(c.code, c.score) for c in r["candidates"]]
                                       for r, k in zip(scored, kinds) if k == kind],
                                      [g for g, k in zip(gold, kinds) if k == kind], ranker_threshold), 4)
                    for kind in dict.fromkeys(kinds)}
    # The figures below are the CodiEsp cases' (the synthetic notes' are in their own entry).
    holdout, scored, gold = ([x for x, k in zip(xs, kinds) if k == "codiesp"] for xs in (holdout, scored, gold))
    labels = np.concatenate([r["slot_labels"] for r in scored])
    ranker_p = np.array([c.score for r in scored for c in r["candidates"]])
    margins = np.concatenate([r["margins"] for r in scored])

    write_json_atomic(out_dir / STACKER_FILE, {"contract": VERIFIER_CONTRACT, **stacker})
    metrics = {
        "base_model": base, **training, "holdout_cases": len(holdout),
        "holdout_synthetic_notes": kinds.count("synthetic"),
        "positive_rate": round(float(labels.mean()), 4),
        "holdout_auc": {"ranker": round(auc(ranker_p, labels), 4),
                        "verifier": round(auc(margins, labels), 4),
                        "correlation": round(float(np.corrcoef(ranker_p, margins)[0, 1]), 4)},
        "holdout_micro_f1": {"ranker_alone_at_its_threshold": ranker_alone["codiesp"],
                             "stacked_without_verifier_cross_validated": cv_ranker_features["micro_f1"],
                             "stacked_cross_validated": cv["micro_f1"],
                             "stacked_precision": cv["micro_precision"],
                             "stacked_recall": cv["micro_recall"]},
        # One threshold serves both kinds of note; these are the synthetic notes' figures.
        "holdout_synthetic_micro_f1": {
            "ranker_alone_at_its_threshold": ranker_alone.get("synthetic"),
            "stacked_without_verifier_cross_validated": cv_ranker_features["by_kind"].get("synthetic"),
            "stacked_cross_validated": cv["by_kind"].get("synthetic")},
        "stacker": stacker, "stacker_inputs_tried": inputs_tried,
        "choices_made_on": f"codiesp train held-out part ({len(holdout)} cases)" + (
            f" and {kinds.count('synthetic')} synthetic notes the ranker never saw" if "synthetic" in kinds else ""),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "recall_of_candidates": round(float(score([{"gold": g, "predicted": [c.code for c in r["candidates"]]}
                                                    for g, r in zip(gold, scored)])["micro_recall"]), 4),
    }
    write_json_atomic(out_dir / "metrics.json", metrics)
    outputs = outputs + [out_dir / STACKER_FILE, out_dir / "metrics.json", out_dir / HOLDOUT_FILE]
    record_stage(run_dir, "verifier", {"verifier": cfg.to_dict()["verifier"], "lora": cfg.to_dict()["lora"],
                                       "base_model": cfg.base_model},
                 {"base_model": base}, outputs, time.perf_counter() - started, {"metrics": metrics})
    if math.isnan(metrics["holdout_auc"]["verifier"]):
        print("note: the held-out part has no positive or no negative slot; its AUC is undefined.")
    return metrics
