"""Processes sharing a --teacher_dir take turns: one trains a teacher, the others reuse it."""

import os
import subprocess
import sys
import textwrap
import threading

from recipes import common, distill
from recipes.config import RunConfig

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Holds the lock, announces it, waits to be told to go on, then (optionally) writes a file
# inside the locked section and releases.
HOLDER = textwrap.dedent("""
    import os, sys, time
    from recipes import common
    lock, held, go, write = sys.argv[1:5]
    with common.exclusive(lock):
        open(held, "w").close()
        deadline = time.time() + 120  # never outlive a failed test for long
        while not os.path.exists(go) and time.time() < deadline:
            time.sleep(0.05)
        if write != "-":
            from keras_distill import models
            os.makedirs(os.path.dirname(write), exist_ok=True)
            models.get("fmnist_teacher_small", num_classes=10).save(write)
        open(held + ".released", "w").close()
""")


def _go_later(go, seconds=0.5):
    """Lets the holder go on a moment after we start waiting for the lock."""
    threading.Timer(seconds, go.touch).start()


def _hold(tmp_path, lock, write="-"):
    held, go = tmp_path / "held", tmp_path / "go"
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock), str(held), str(go),
                                str(write)], cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO))
    while not held.exists():
        assert process.poll() is None, "the lock holder died"
    return process, go


def test_exclusive_waits_for_the_holder_and_is_released_when_it_exits(tmp_path, capsys):
    lock = tmp_path / "cache.lock"
    process, go = _hold(tmp_path, lock)
    _go_later(go)
    with common.exclusive(str(lock), waiting="another process holds it"):
        # Without waiting we would be here at once, long before the holder is let go.
        assert (tmp_path / "held.released").exists()
    assert process.wait(timeout=60) == 0
    assert "another process holds it" in capsys.readouterr().out
    with common.exclusive(str(lock)):  # free again once the holder has exited
        pass


def test_a_run_waits_for_the_teacher_another_process_is_training_and_reuses_it(tmp_path,
                                                                              monkeypatch):
    config = RunConfig(limit=200, epochs=1, teacher_epochs=1, batch_size=64, verbose=0,
                       baseline=False, model_dir=str(tmp_path / "run"),
                       teacher_dir=str(tmp_path / "teachers")).resolve()
    cached = distill.teacher_cache_path(config)
    process, go = _hold(tmp_path, os.path.dirname(cached) + ".lock", write=cached)
    real_exclusive = common.exclusive

    def exclusive(*args, **kwargs):  # the holder writes the teacher once we are waiting
        _go_later(go)
        return real_exclusive(*args, **kwargs)

    def train_teacher(*args):
        raise AssertionError("trained a second teacher instead of waiting for the first")

    monkeypatch.setattr(common, "exclusive", exclusive)
    monkeypatch.setattr(distill, "_train_teacher", train_teacher)
    results = distill.run(config)
    assert process.wait(timeout=120) == 0
    assert results["teacher"]["reused"] is True
    assert results["teacher"]["source"] == cached
