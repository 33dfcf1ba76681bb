"""The check every built model passes (after merge, after each export): it loads, answers a
sample note through the pipeline, and the answer parses as the contract's JSON."""
from __future__ import annotations

import time

from models.errors import CoderError

# Fixed notes: a short problem list, a negation, and a longer narrative. The first is the one
# answered; all three are the prompts on which ONNX must match PyTorch token for token.
CHECK_NOTES = (
    "ASSESSMENT: 1. Essential hypertension, well controlled. 2. Type 2 diabetes mellitus without "
    "complications. Patient denies chest pain.",
    "62-year-old man admitted with community-acquired pneumonia of the right lower lobe. History of "
    "chronic obstructive pulmonary disease and atrial fibrillation on anticoagulation.",
    "Follow-up for major depressive disorder, recurrent, moderate. No suicidal ideation. Also "
    "hypothyroidism on levothyroxine and obesity (BMI 32).",
)


class AnswerCheckFailed(CoderError, RuntimeError):
    pass


def check_answers(model: str, **options) -> dict:
    """Load `model`, answer CHECK_NOTES[0], parse. Raises AnswerCheckFailed with the reason.
    `options` go to open_runtime (e.g. allow_remote: the check note is not a patient's)."""
    from models.contract import parse_answer
    from models.pipeline import Pipeline
    from models.runtimes import RuntimeUnavailable, open_runtime

    started = time.perf_counter()
    try:
        runtime = open_runtime(model, **options)
    except RuntimeUnavailable as exc:
        raise AnswerCheckFailed(f"{model} does not load: {exc}") from exc
    load_s = time.perf_counter() - started
    try:
        # The model's own answer, validated: the coding rules would add what the note's
        # assessment states whatever the model wrote.
        result = Pipeline(runtime, max_tokens=128, coding_rules=False).suggest(CHECK_NOTES[0])
    except RuntimeUnavailable as exc:
        raise AnswerCheckFailed(f"{model} loaded but did not answer: {exc}") from exc
    finally:
        runtime.close()
    answer = result.raw_answers[0]
    parsed = parse_answer(answer)
    if parsed.mode not in ("json", "repaired"):
        raise AnswerCheckFailed(f"{model}'s answer does not follow the contract: {answer[:200]!r}")
    return {"load_seconds": round(load_s, 2), "answer_seconds": round(result.seconds, 2),
            "answer": answer[:500], "parse_mode": parsed.mode, "codes": result.codes}


def check_scores(model: str, **options) -> dict:
    """Load `model` as a verifier and judge CHECK_NOTES[0]'s candidates: one finite margin per
    candidate. Raises AnswerCheckFailed with the reason."""
    import math

    from models.pipeline import Pipeline
    from models.runtimes import RuntimeUnavailable, open_runtime
    from models.select import Stacker, VerifierSelector

    started = time.perf_counter()
    try:
        runtime = open_runtime(model, **options)
        selector = VerifierSelector(runtime, Stacker.verifier_alone())  # the verifier alone
    except (RuntimeUnavailable, ValueError) as exc:
        raise AnswerCheckFailed(f"{model} does not load as a verifier: {exc}") from exc
    load_s = time.perf_counter() - started
    try:
        note = CHECK_NOTES[0]
        judged, tokens = selector.judge(note, Pipeline(selector).retrieve(note))
    finally:
        runtime.close()
    margins = [m for _, m, _ in judged]
    if not margins or not all(math.isfinite(m) for m in margins):
        raise AnswerCheckFailed(f"{model} gave no usable verifier scores: {margins[:5]}")
    return {"load_seconds": round(load_s, 2), "tokens": tokens,
            "margins": {c.code: round(m, 3) for c, m, _ in judged},
            "codes": [c.code for c, m, _ in judged if m > 0]}


def check_model(model: str, kind: str, **options) -> dict:
    """The check for a model of this kind: `verifier` (scores) or `generative` (an answer)."""
    return check_scores(model, **options) if kind == "verifier" else check_answers(model, **options)
