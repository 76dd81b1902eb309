"""Train a model on labels only: teachers, and the from-scratch student baseline.

    python -m recipes.train --student=fmnist_teacher --epochs=15 --model_dir=runs/teacher

Writes into --model_dir: config.json, model.keras, results.json, history.csv,
TensorBoard logs, and a BackupAndRestore folder so an interrupted run resumes.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from absl import app

from recipes import common
from recipes.config import RunConfig
from recipes.flags import FLAGS, config_from_flags, define_flags


def supervised_loss(dataset):
    """Sparse CE for integer labels, CE for one-hot / soft (mixup) labels."""
    import keras

    labels_rank = len(dataset.element_spec[1].shape)
    return keras.losses.CategoricalCrossentropy(from_logits=True) if labels_rank == 2 else \
        keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def train_model(model_name, config, splits, strategy, epochs, model_dir, role="student",
                extra_callbacks=()):
    """Builds `model_name` under the strategy and trains it on labels.

    `extra_callbacks` run with the standard ones (e.g. a per-class recorder).

    Returns:
        `(model, summary)`: the trained model and `{"test_accuracy": {...}, "params",
        "seconds"}`.
    """
    train, validation, test = common.pipelines(config, splits)
    steps = common.steps_per_epoch(config, splits)
    with strategy.scope():
        model = common.build_model(model_name, splits, role)
        model.compile(optimizer=common.make_optimizer(config, steps, epochs),
                      loss=supervised_loss(train), metrics=["accuracy"],
                      jit_compile=config.jit_compile)
    callbacks, tracker = common.standard_callbacks(config, model_dir, test, lambda: model,
                                                   extra=list(extra_callbacks))
    train = common.resumable(train, callbacks)
    with common.Timer() as timer:
        model.fit(train, validation_data=validation, epochs=epochs, callbacks=callbacks,
                  verbose=config.verbose)
    summary = {"test_accuracy": common.accuracy_summary(tracker, model, test),
               "params": int(model.count_params()), "seconds": round(timer.seconds, 1)}
    return model, summary


def run(config: RunConfig):
    """Trains `config.student` on labels and returns the results dict."""
    config = config.resolve()
    common.validate(config, roles=("student",))
    common.prepare_model_dir(config.model_dir)
    common.write_json(os.path.join(config.model_dir, "config.json"), dataclasses.asdict(config))
    strategy = common.setup(config)
    splits, transforms = common.load_data(config)
    model, summary = train_model(config.student, config, splits, strategy, config.epochs,
                                 config.model_dir)
    model.save(os.path.join(config.model_dir, "model.keras"))
    results = {"model": config.student, "dataset": splits.describe(), "transforms": transforms,
               **summary}
    common.write_json(os.path.join(config.model_dir, "results.json"), results)
    common.print_table([{"model": config.student, "params": summary["params"],
                         "best": summary["test_accuracy"]["best"],
                         "last": summary["test_accuracy"]["last"]}],
                       ["model", "params", "best", "last"])
    return results


def main(argv):
    del argv
    try:
        run(config_from_flags())
    except common.user_errors() as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
