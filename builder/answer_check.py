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
        result = Pipeline(runtime, max_tokens=128).suggest(CHECK_NOTES[0])
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
