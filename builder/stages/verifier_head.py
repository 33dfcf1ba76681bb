"""The verifier's decision head fitted on a frozen base model (`verifier.method = "head"`).

The base model reads a note and its candidates exactly as the verifier input lays them out
(models/contract.py). At each candidate's decision slot, the hidden state after `layer` layers,
through the model's final norm, describes what the model read about that candidate in that note.
A logistic regression over those vectors (standardized, whitened onto their main components, L2)
with the ranker's logit beside them learns what the model reads that the ranker does not know.
It is fitted on the CodiEsp train cases and on synthetic notes the ranker never saw, whose gold
follows US coding rules (a negated list, symptoms a diagnosis explains, combination codes); the
layer is chosen by the CodiEsp cases alone.

Its weights, mapped back onto the hidden state, become the difference of the " yes" and " no"
rows of an untied output layer on the base model cut after `layer` layers. So the head model is an
ordinary causal LM: every runtime that reads logit(" yes") - logit(" no") at the slots (llama.cpp,
ONNX Runtime, transformers) runs it unchanged, and it reads a prompt in layer/30 of the time.

Why not only LoRA: in 25 CPU minutes the LoRA verifier makes ~40 steps over ~320 cases and adds
nothing to the ranker (README, "The verifier"); the head reads every train case once (~8 minutes),
and its weights are the exact optimum of a convex loss, chosen out of fold.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HEAD_FILE = "head.npz"  # <run>/verifier/head.npz: layer, direction (and what chose them)


def slot_features(model, ids: list[int], slots: list[int], layers: list[int]) -> dict[int, np.ndarray]:
    """Hidden states at the slots after each of `layers` layers, through the final norm (what
    the cut model's output layer reads): {layer: (len(slots), hidden) float32}."""
    import torch

    device = next(model.parameters()).device
    with torch.inference_mode():
        out = model.model(input_ids=torch.tensor([ids], device=device), use_cache=False,
                          output_hidden_states=True)
        index = torch.tensor(slots, device=device)
        last = len(out.hidden_states) - 1  # hidden_states[last] is already normed
        return {layer: (out.hidden_states[layer][0, index] if layer == last else
                        model.model.norm(out.hidden_states[layer][0, index])).float().cpu().numpy()
                for layer in layers}


def fit_head(x: np.ndarray, ranker: np.ndarray, y: np.ndarray, components: int, l2: float,
             ) -> tuple[np.ndarray, float]:
    """Logistic regression of y on the ranker's logit and x (standardized, projected onto its
    first `components` principal directions, each scaled to unit variance). Returns the weights
    mapped back onto x (the head's direction) and the intercept; the ranker's weight is not
    returned: the stacker fitted after the head weighs the ranker and the head together."""
    from builder.stages.retriever import fit_logistic

    mean, scale = x.mean(0), x.std(0) + 1e-4
    z = (x - mean) / scale
    sample = z[:: max(1, len(z) // 8000)]  # the components of ~8,000 rows are as good as of all
    _, s, vt = np.linalg.svd(sample, full_matrices=False)
    k = min(components, len(s))
    project = vt[:k].T / s[:k] * np.sqrt(len(sample))  # whitened: each component of unit variance
    w, b = fit_logistic(np.hstack([ranker[:, None], z @ project]), y, l2=l2)
    direction = (project @ w[1:]) / scale
    return direction.astype(np.float32), float(b - mean @ direction)


def choose_layer(features: dict[int, list[np.ndarray]], ranker: list[np.ndarray],
                 labels: list[np.ndarray], codes: list[list[str]], gold: list[list[str]],
                 components: int, l2: float, folds: int = 5,
                 also_fit: dict[int, list[np.ndarray]] | None = None,
                 also_ranker: list[np.ndarray] = (), also_labels: list[np.ndarray] = (),
                 ) -> tuple[int, dict[int, float]]:
    """The layer whose head, fitted on the other folds, ranks each fold's candidates best
    (micro-F1 over all folds at the best shared threshold). Cases are split by index. Notes in
    `also_fit` (per layer, with `also_ranker` and `also_labels`) join every fold's fit and are
    never judged."""
    from builder.evaluation.scoring import best_threshold

    n = len(labels)
    tried = {}
    for layer, per_case in features.items():
        extra = (also_fit or {}).get(layer, [])
        scored = [None] * n
        for fold in range(folds):
            fit_idx = [i for i in range(n) if i % folds != fold]
            direction, bias = fit_head(np.vstack([per_case[i] for i in fit_idx] + list(extra)),
                                       np.concatenate([ranker[i] for i in fit_idx] + list(also_ranker)),
                                       np.concatenate([labels[i] for i in fit_idx] + list(also_labels)),
                                       components, l2)
            for i in range(fold, n, folds):
                # The ranker is not in `direction`: rank by head + ranker as the stacker will.
                margin = per_case[i] @ direction + bias + ranker[i]
                scored[i] = list(zip(codes[i], (1 / (1 + np.exp(-margin))).tolist()))
        tried[layer] = round(float(best_threshold(scored, gold)[1]), 4)
    return max(tried, key=tried.get), tried


def server_lift(features: np.ndarray, output_rows: np.ndarray, choices: tuple[int, int],
                direction: np.ndarray, room: float = 5.0, sample: int = 512) -> np.ndarray:
    """A vector added to both the " yes" and " no" rows so that at every slot both lead the
    vocabulary by `room` nats: a server (llama.cpp's, Ollama, LM Studio) returns only the top
    log-probabilities of the token it generates, and its margin needs both there. Adding the
    same vector to both rows leaves logit(yes) - logit(no) as it was. The slots' hidden states
    share one direction (their mean's cosine with each is ~0.97 in SmolLM2), so the lift is
    along it; a zero vector where some slot does not point that way at all."""
    mean = features.mean(0)
    unit = mean / (np.linalg.norm(mean) + 1e-12)
    along = features @ unit
    if along.min() <= 0:
        return np.zeros_like(direction)
    rows = features[:: max(1, len(features) // sample)]
    logits = rows @ output_rows.T
    no = logits[:, choices[1]]
    yes = no + rows @ direction
    others = np.delete(logits, list(choices), axis=1).max(1)
    need = float((others - np.minimum(yes, no)).max()) + room
    return (unit * max(0.0, need) / float(along.min())).astype(np.float32)


def build_head_model(base: str | Path, layer: int, direction: np.ndarray, choices: tuple[int, int],
                     out: Path, lift: np.ndarray | None = None) -> None:
    """The base model cut after `layer` layers, its output layer untied from the embeddings and
    its " yes" row set to the " no" row plus `direction`: logit(yes) - logit(no) at a slot is then
    the head's score (without intercept; the stacker has its own). `lift` is added to both rows
    (server_lift). Saved with the tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    model.model.layers = model.model.layers[:layer]
    model.config.num_hidden_layers = layer
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:layer]
    head = model.model.embed_tokens.weight.detach().clone()
    yes, no = choices
    if lift is not None:
        head[no] += torch.from_numpy(lift).to(head.dtype)
    head[yes] = head[no] + torch.from_numpy(direction).to(head.dtype)
    model.lm_head = torch.nn.Linear(head.shape[1], head.shape[0], bias=False)
    model.lm_head.weight = torch.nn.Parameter(head)
    model.config.tie_word_embeddings = False
    if hasattr(model, "_tied_weights_keys"):
        model._tied_weights_keys = []
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(out)


def save_head(path: Path, layer: int, direction: np.ndarray, bias: float, lift: np.ndarray,
              tried: dict) -> None:
    from models.files import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, layer=np.array(layer), direction=direction, bias=np.array(bias), lift=lift,
                 tried=np.array(json.dumps({str(k): v for k, v in tried.items()})))


def load_head(path: Path) -> tuple[int, np.ndarray, float, np.ndarray]:
    """layer, direction, intercept, lift of a head written by save_head."""
    with np.load(path) as d:
        return (int(d["layer"]), d["direction"].astype(np.float32), float(d["bias"]),
                d["lift"].astype(np.float32))


def plot_layers(path: Path, tried: dict[int, float], chosen: int, depth: int) -> Path:
    """Cross-validated micro-F1 of the head at each layer tried, the chosen one marked."""
    from builder.plots import pyplot, save_png

    plt = pyplot()
    layers = sorted(tried)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar([str(layer) for layer in layers], [tried[layer] for layer in layers],
           color=["tab:blue" if layer == chosen else "tab:gray" for layer in layers])
    low = min(tried.values())
    ax.set_ylim(low - 0.01, max(tried.values()) + 0.005)
    ax.set(xlabel=f"layer the head reads (of {depth})", ylabel="micro-F1, 5-fold on train cases",
           title="Verifier head: ranker + head, out of fold")
    for i, layer in enumerate(layers):
        ax.text(i, tried[layer] + 0.0005, f"{tried[layer]:.4f}", ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)
