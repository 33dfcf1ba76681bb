"""The run manifest under concurrent stages: real processes recording at once."""
import json
import multiprocessing

from builder.manifest import read, record_stage

PROCESSES = 6
STAGES_EACH = 8


def _record_stages(run_dir: str, worker: int, start) -> None:
    from pathlib import Path

    run = Path(run_dir)
    output = run / f"out-{worker}.txt"
    output.write_text(f"written by worker {worker}\n")
    start.wait()  # every process reads and writes the manifest at the same moment
    for n in range(STAGES_EACH):
        record_stage(run, f"evaluate:w{worker}-{n}", {"worker": worker}, {}, [output], 0.1,
                     {"metrics": {"n": n}})


def test_parallel_evaluations_keep_every_manifest_entry(tmp_path):
    ctx = multiprocessing.get_context("spawn")  # separate interpreters, as separate commands are
    start = ctx.Barrier(PROCESSES)
    procs = [ctx.Process(target=_record_stages, args=(str(tmp_path), w, start))
             for w in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    stages = read(tmp_path)["stages"]
    expected = {f"evaluate:w{w}-{n}" for w in range(PROCESSES) for n in range(STAGES_EACH)}
    assert set(stages) == expected  # no stage's entry lost to another's write
    assert stages["evaluate:w3-5"]["metrics"] == {"n": 5}
    assert stages["evaluate:w3-5"]["outputs"]["out-3.txt"]["bytes"] == len("written by worker 3\n")
    json.loads((tmp_path / "manifest.json").read_text())  # one whole JSON document
