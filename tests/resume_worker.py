"""A short distillation through the recipe's own code, killed and resumed by tests.

Runs `recipes.distill.distill_student` (the recipe's Distiller, callbacks,
NaN guard, checkpoints and `AtomicBackupAndRestore`, with its data order
tracking) on tiny synthetic 8x8 images with seeded shuffling and
`crop_flip` augmentation, then writes the student's weights to
`<model_dir>/final.npz` and the run summary to `<model_dir>/final.json`.

`--pause=WHERE:EPOCH` makes the process write `<model_dir>/paused` and
sleep at one point, so the test can SIGKILL it there:

- `mid_epoch:k`     - during training, in the middle of epoch k (1-based),
                      after epoch k-1's backup was committed;
- `before_commit:k` - while saving epoch k's backup: the weights file is
                      written but `backup.json` is not yet renamed over;
- `partial_write:k` - while saving epoch k's backup: the weights file is
                      half written (truncated), nothing committed;
- `after_commit:k`  - right after epoch k's backup was committed.

Usage:
    python tests/resume_worker.py --model_dir /tmp/run [--pause mid_epoch:2] [--epochs 3]
    python tests/resume_worker.py --recipe --model_dir /tmp/run --teacher_dir /tmp/t ...
      (the full `python -m recipes.distill` run instead, same pause points)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

NUM_CLASSES = 3


def _pause(model_dir, what):
    with open(os.path.join(model_dir, "paused"), "w") as handle:
        handle.write(what)
    while True:  # the test kills us here
        time.sleep(1)


def install_pause(spec, model_dir):
    """Monkeypatches the recipe's callbacks so the process stops at `spec`."""
    if not spec:
        return
    from keras_distill.callbacks import guards

    where, epoch = spec.split(":")
    epoch = int(epoch)
    backup = guards.AtomicBackupAndRestore
    if where == "mid_epoch":
        original = backup.on_train_batch_end

        def on_train_batch_end(self, batch, logs=None):
            original(self, batch, logs)
            if self._current_epoch == epoch - 1 and batch == 1:
                _pause(model_dir, spec)
        backup.on_train_batch_end = on_train_batch_end
    elif where in ("before_commit", "partial_write"):
        original = backup._write_weights

        def _write_weights(self, path):
            original(self, path)
            if self._current_epoch == epoch:
                if where == "partial_write":
                    size = os.path.getsize(path)
                    with open(path, "r+b") as handle:
                        handle.truncate(size // 2)
                _pause(model_dir, spec)
        backup._write_weights = _write_weights
    elif where == "after_commit":
        original = backup._commit

        def _commit(self, state):
            original(self, state)
            if state["epoch"] == epoch:
                _pause(model_dir, spec)
        backup._commit = _commit
    else:
        raise SystemExit(f"unknown pause point {where!r}")


def tiny_run(model_dir, epochs):
    """The recipe's distill_student on synthetic data and tiny saved models."""
    import numpy as np
    import keras

    from keras_distill import data
    from keras_distill.testing import conv_net
    from recipes import common, distill
    from recipes.config import RunConfig

    os.makedirs(model_dir, exist_ok=True)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(60, 8, 8, 1), dtype=np.uint8)
    y = np.arange(60) % NUM_CLASSES
    splits = data.from_arrays(x[:48], y[:48], x[48:], y[48:], validation_split=0.0,
                              num_classes=NUM_CLASSES)
    models_dir = os.path.join(model_dir, "models")
    os.makedirs(models_dir, exist_ok=True)
    paths = {}
    for role, width, seed in (("teacher", 8, 1), ("student", 4, 2)):
        paths[role] = os.path.join(models_dir, f"{role}.keras")
        if not os.path.exists(paths[role]):  # the same initial weights in every run
            conv_net(role, width, NUM_CLASSES, seed=seed).save(paths[role] + ".tmp.keras")
            os.replace(paths[role] + ".tmp.keras", paths[role])
    config = RunConfig(
        dataset="arrays", teacher=paths["teacher"], student=paths["student"], epochs=epochs,
        batch_size=16, optimizer="sgd", learning_rate=0.1, weight_decay=0.0,
        lr_schedule="cosine", lr_decay_epochs=(), lr_decay_rate=0.1, augment="crop_flip",
        teacher_cache="auto", verbose=0, model_dir=model_dir, seed=0).resolve()
    strategy = common.setup(config)
    teacher = common.build_model(paths["teacher"], splits, "teacher")
    trained = []  # epochs this process trains (a resumed run's history also holds earlier ones)
    record = common.EpochAccuracy.on_epoch_end

    def counting(self, epoch, logs=None):
        trained.append(epoch)
        record(self, epoch, logs)

    common.EpochAccuracy.on_epoch_end = counting
    student, summary = distill.distill_student(config, splits, strategy, teacher, model_dir)
    np.savez(os.path.join(model_dir, "final.npz"), *student.get_weights())
    history = summary["test_accuracy"]["per_epoch"]
    with open(os.path.join(model_dir, "final.json"), "w") as handle:
        json.dump({"epochs_run": len(trained), "test_accuracy": history}, handle)
    del keras


def recipe_run(argv):
    """The full `python -m recipes.distill` command (teacher, data, export...)."""
    from absl import app

    from recipes import distill
    from recipes.flags import define_flags

    define_flags()
    app.run(distill.main, argv=[sys.argv[0]] + argv)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--pause", default="")
    parser.add_argument("--recipe", action="store_true",
                        help="run recipes.distill with the remaining arguments")
    args, rest = parser.parse_known_args()
    install_pause(args.pause, args.model_dir)
    if args.recipe:
        recipe_run(rest + [f"--model_dir={args.model_dir}", f"--epochs={args.epochs}"])
    else:
        tiny_run(args.model_dir, args.epochs)


if __name__ == "__main__":
    main()
