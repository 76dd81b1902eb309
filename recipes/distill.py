"""Distil a student from a teacher; the main job of keras_distill.

With no flags it runs the Fashion-MNIST main job: it trains (or reuses) the
teacher, trains the student from scratch and with KD, and prints a
three-row table:

    python -m recipes.distill

Other runs, e.g. the standard CIFAR-100 benchmark (needs the data and a GPU):

    python -m recipes.distill --dataset=cifar100 --teacher=resnet32x4 \
        --teacher_weights=teacher.keras --student=resnet8x4 --method=dkd

Writes into --model_dir: config.json, results.json (teacher / scratch /
distilled accuracy, best and last epoch, teacher-student agreement),
TensorBoard logs, history.csv, BackupAndRestore state (rerun the same
command to resume), checkpoints/, student.keras and export/.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from absl import app

from recipes import common
from recipes.config import RunConfig
from recipes.flags import FLAGS, config_from_flags, define_flags
from recipes.train import supervised_loss, train_model


def teacher_cache_path(config):
    limit = f"-limit{config.limit}" if config.limit else ""
    if config.label_noise:  # the teacher learns from the same corrupted training set
        limit += f"-{config.label_noise_type}{config.label_noise:g}"
    if config.imbalance_ratio != 1.0:
        limit += f"-{config.imbalance_profile}{config.imbalance_ratio:g}"
    if config.augment not in (None, "none"):
        limit += f"-{config.augment}"
    name = (f"{config.dataset}-{config.teacher}-e{config.teacher_epochs}"
            f"-seed{config.teacher_seed}{limit}")
    return os.path.join(config.teacher_dir, name, "model.keras")


def get_teacher(config, splits, strategy):
    """Loads the teacher, or trains it once and caches it under --teacher_dir.

    Returns:
        `(teacher, info)` with where it came from and its training summary.
    """
    import keras

    if config.teacher_weights:
        path = config.teacher_weights
        if not os.path.exists(path):
            raise common.ConfigError(f"--teacher_weights {path!r} does not exist.")
        with strategy.scope():
            if path.endswith(".weights.h5"):
                teacher = common.build_model(config.teacher, splits, "teacher")
                try:
                    teacher.load_weights(path)
                except Exception as error:  # noqa: BLE001
                    raise common.ConfigError(
                        f"--teacher_weights {path!r} does not fit --teacher={config.teacher} "
                        f"({error}). Pass weights saved from the same architecture, or a "
                        ".keras file.") from error
            else:
                teacher = common.build_model(path, splits, "teacher")
        return teacher, {"source": path}
    if config.teacher and (config.teacher.endswith(".keras") or os.path.sep in config.teacher):
        with strategy.scope():
            return common.build_model(config.teacher, splits, "teacher"), \
                {"source": config.teacher}
    cached = teacher_cache_path(config)
    # Several processes sharing a --teacher_dir (e.g. `benchmarks.accuracy --jobs=2`) must not
    # train the same teacher at once into the same folder: the first trains it, the others wait
    # for it and then load it.
    with common.exclusive(os.path.dirname(cached) + ".lock",
                          waiting=f"Another process is training the teacher cached at {cached}; "
                                  "waiting for it."):
        if os.path.exists(cached):
            return _load_cached_teacher(cached, splits, strategy)
        return _train_teacher(config, cached, splits, strategy)


def _load_cached_teacher(cached, splits, strategy):
    import keras

    print(f"Reusing the teacher trained earlier: {cached}")
    with strategy.scope():
        try:
            teacher = keras.saving.load_model(cached, compile=False)
        except Exception as error:  # noqa: BLE001 - any load failure means the same
            raise common.ConfigError(
                f"The teacher cached at {cached} cannot be loaded ({type(error).__name__}: "
                f"{error}). Delete {os.path.dirname(cached)} to train it again, or pass "
                "--teacher_weights.") from error
    common.check_model_fits_data(teacher, splits, "teacher")
    return teacher, {"source": cached, "reused": True,
                     **_read_json(os.path.join(os.path.dirname(cached), "summary.json"))}


def _train_teacher(config, cached, splits, strategy):
    import keras

    from keras_distill.distribute import is_chief

    print(f"Training the teacher {config.teacher} for {config.teacher_epochs} epochs "
          f"(cached at {cached} for later runs).")
    folder = os.path.dirname(cached)
    common.prepare_model_dir(folder)
    # The teacher is trained once per --teacher_seed and reused by every student seed.
    keras.utils.set_random_seed(config.teacher_seed)
    teacher_config = dataclasses.replace(config, seed=config.teacher_seed)
    teacher, summary = train_model(config.teacher, teacher_config, splits, strategy,
                                   config.teacher_epochs, folder, role="teacher")
    keras.utils.set_random_seed(config.seed)
    if is_chief():  # on a cluster only the chief writes the shared teacher cache
        temporary = cached + ".partial.keras"
        teacher.save(temporary)
        os.replace(temporary, cached)  # a half-written teacher is never reused
        common.write_json(os.path.join(folder, "summary.json"), summary)
    return teacher, {"source": cached, "reused": False, **summary}


def _read_json(path):
    import json

    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def per_class_recorder(splits, config, model_dir):
    """A per-class validation-accuracy recorder for a labels-only training (or None).

    Attached to the scratch student it gives TLLM its reference trajectory
    (compared with the distilled student epoch by epoch); it persists in
    `model_dir/reference_per_class_accuracy.json`, so a resumed run keeps it.
    """
    from keras_distill.callbacks import PerClassAccuracyHistory

    if splits.validation is None:
        return None
    _, validation, _ = common.pipelines(config, splits)
    os.makedirs(model_dir, exist_ok=True)
    return PerClassAccuracyHistory(
        validation, splits.num_classes,
        path=os.path.join(model_dir, "reference_per_class_accuracy.json"))


def reference_trainer(config, splits, strategy, model_dir):
    """`() -> trajectory`: trains the student on labels with the run's recipe when called."""
    def train():
        recorder = per_class_recorder(splits, config, model_dir)
        train_model(config.student, config, splits, strategy, config.epochs, model_dir,
                    extra_callbacks=[recorder])
        return recorder.history

    return train


def distill_student(config, splits, strategy, teacher, model_dir, baseline_student=None,
                    reference_history=None):
    """Builds the method's terms and trains the student with them.

    Returns:
        `(student, summary)`.
    """
    from keras_distill import Distiller, methods

    steps = common.steps_per_epoch(config, splits)
    validation_data = tuple(splits.validation) if splits.validation is not None else None
    with strategy.scope():
        student = common.build_model(config.student, splits, "student")
        context = methods.MethodContext(
            teacher=teacher, student=student, num_classes=splits.num_classes,
            steps_per_epoch=steps, epochs=config.epochs,
            teacher_taps=common.feature_taps(teacher), student_taps=common.feature_taps(student),
            options=methods.parse_options(config.method, config.method_options),
            num_train_examples=len(splits.train),
            validation_data=validation_data, seed=config.seed,
            train_data=tuple(splits.train), model_dir=model_dir,
            baseline_student=baseline_student, reference_history=reference_history)
        spec = methods.build(config.method, context)
    check_labels_for_terms(config, spec)
    if config.unlabeled_data and not set(spec.side_inputs) - {"index"}:
        raise common.ConfigError(
            f"--unlabeled_data is given, but --method={config.method} reads no unlabeled images; "
            "use a '+' method with them, e.g. --method=kd_plus --method_options "
            "plus_source=unlabeled, or drop --unlabeled_data.")
    cache = teacher_cache(config, splits, teacher, spec) if teacher is not None else None
    side_inputs = tuple(spec.side_inputs) + (("index",) if cache is not None else ())
    train, validation, test = common.pipelines(config, splits, tuple(dict.fromkeys(side_inputs)))
    if cache is not None:
        train = cache.attach(train)
    with strategy.scope():
        if spec.model_builder is not None:
            model = spec.model_builder(context, spec)
        else:
            model = Distiller(teacher=teacher, student=student, distillation_losses=spec.terms,
                              distillation_loss_weights=spec.weights,
                              student_loss_weight=spec.student_loss_weight)
        model.compile(optimizer=common.make_optimizer(config, steps, config.epochs),
                      loss=supervised_loss(train), metrics=["accuracy"],
                      jit_compile=config.jit_compile)
    callbacks, tracker = common.standard_callbacks(config, model_dir, test, lambda: student,
                                                   extra=list(spec.callbacks))
    train = common.resumable(train, callbacks)
    with common.Timer() as timer:
        model.fit(train, validation_data=validation, epochs=config.epochs,
                  callbacks=callbacks, verbose=config.verbose)
    summary = {"test_accuracy": common.accuracy_summary(tracker, student, test),
               "params": int(student.count_params()), "seconds": round(timer.seconds, 1),
               "notes": spec.notes}
    if teacher is not None and test is not None:
        summary["agreement_with_teacher"] = common.agreement(teacher, student, test)
    return student, summary


def check_labels_for_terms(config, spec):
    """Refuses soft-label augmentation (MixUp / CutMix) for terms that read integer labels."""
    from keras_distill.data import get_augmentation

    if not getattr(get_augmentation(config.augment), "soft_labels", False):
        return
    readers = [getattr(t, "name", type(t).__name__) for t in _terms(spec)
               if getattr(t, "requires_labels", False) and getattr(t, "input_view", None) is None]
    if readers:
        raise common.ConfigError(
            f"--augment={config.augment} mixes labels into soft one-hot targets, but "
            f"--method={config.method}'s term(s) {readers} read integer class labels. Use an "
            "augmentation that keeps labels (none, flip, crop_flip, randaugment) with this "
            "method, or a method whose terms read no labels (e.g. kd).")


def check_flags(config):
    """Refuses flag combinations that cannot do what they ask, before any work.

    - `--teacher_cache=on` with a random augmentation (the cached outputs would
      describe other images than the student sees), or with a method that
      distils from no teacher (nothing to cache);
    - `--teacher_weights` with a method that uses no teacher at all (`dml`);
    - `--export` with an unknown format, or into an export folder that already
      holds an artifact without `--overwrite` (checked again, and replaced with
      `--overwrite`, only after training).

    `--export` with `--method=scratch` is allowed: it exports the scratch student.
    """
    from keras_distill import export as export_lib, methods
    from keras_distill.teacher_cache import TeacherCache, TeacherCacheError

    distils = methods.needs_teacher(config.method)
    if config.teacher_cache == "on":
        if not distils:
            raise common.ConfigError(
                f"--teacher_cache=on, but --method={config.method} distils from no teacher: "
                "there are no teacher outputs to cache. Drop --teacher_cache.")
        try:
            TeacherCache.check_pipeline(config.augment)
        except TeacherCacheError as error:
            raise common.ConfigError(f"--teacher_cache=on with --augment={config.augment}: "
                                     f"{error}") from error
    if config.teacher_weights and not distils and config.method != "scratch":
        raise common.ConfigError(
            f"--teacher_weights is given, but --method={config.method} uses no teacher; drop "
            "--teacher_weights.")
    if config.export:
        unknown = sorted(set(config.export) - set(export_lib.FORMATS))
        if unknown:
            raise common.ConfigError(f"--export: unknown format(s) {unknown}; choose from "
                                     f"{','.join(export_lib.FORMATS)}.")
        if not config.overwrite:
            try:
                export_lib.prepare_output_dir(os.path.join(config.model_dir, "export"))
            except FileExistsError as error:
                raise common.ConfigError(f"--export: {error}") from error


def teacher_cache(config, splits, teacher, spec):
    """The teacher-output cache when --teacher_cache allows it (see keras_distill.teacher_cache).

    `auto` caches the logits when the pipeline does not augment, the method reads no teacher
    features on the batch and trains with the Distiller; `on` insists (and refuses an
    augmented pipeline with the reason); `off` always runs the live teacher.
    """
    from keras_distill.data import is_deterministic
    from keras_distill.teacher_cache import TeacherCache, TeacherCacheError

    if config.teacher_cache == "off" or spec.model_builder is not None:
        return None
    taps = sorted({t for term in _terms(spec) if term.input_view is None
                   for t in term.teacher_taps})
    if config.teacher_cache == "auto" and (taps or not is_deterministic(config.augment)):
        return None
    try:
        TeacherCache.check_pipeline(config.augment)
    except TeacherCacheError as error:
        raise common.ConfigError(f"--teacher_cache=on: {error}") from error
    from keras_distill.data import make_dataset

    ordered = make_dataset(*splits.train, batch_size=max(config.batch_size, 256),
                           num_classes=splits.num_classes)
    print(f"Caching the teacher's outputs {['logits'] + taps} on {len(splits.train)} "
          "training examples (one inference pass instead of one per epoch).")
    return TeacherCache.compute(teacher, ordered, taps=taps, verbose=config.verbose == 1)


def _terms(spec):
    return list(spec.terms.values()) if isinstance(spec.terms, dict) else list(spec.terms)


def run(config: RunConfig):
    """Runs teacher (train or reuse), scratch baseline and distillation; returns results."""
    from keras_distill import methods

    config = config.resolve()
    try:
        methods.needs_teacher(config.method)  # unknown names fail before any work
    except ValueError as error:
        raise common.ConfigError(f"--method: {error}") from error
    try:  # options the method does not take, or bad values, fail before any work too
        methods.parse_options(config.method, config.method_options)
    except methods.OptionError as error:
        raise common.ConfigError(str(error)) from error
    common.validate(config)
    common.prepare_model_dir(config.model_dir)
    check_flags(config)
    common.write_json(os.path.join(config.model_dir, "config.json"), dataclasses.asdict(config))
    strategy = common.setup(config)
    splits, transforms = common.load_data(config)
    _, _, test = common.pipelines(config, splits)

    rows, results = [], {"method": config.method, "dataset": splits.describe(),
                         "transforms": transforms}
    teacher = scratch = None
    if methods.needs_teacher(config.method) or config.method == "scratch":
        teacher, info = get_teacher(config, splits, strategy)
        # Loading a teacher draws from the global RNG (layer initializers run before the weights
        # are read): reseed so the students start the same whether the teacher was trained or
        # loaded (a killed run that reuses the teacher then resumes to the same result).
        import keras

        keras.utils.set_random_seed(config.seed)
        accuracy = common.evaluate_accuracy(teacher, test)
        results["teacher"] = {**info, "name": config.teacher, "test_accuracy": accuracy,
                              "training_test_accuracy": info.get("test_accuracy"),
                              "params": int(teacher.count_params())}
        rows.append({"model": f"teacher {config.teacher}", "params": int(teacher.count_params()),
                     "best": info.get("test_accuracy", {}).get("best"), "last": accuracy,
                     "agreement": 1.0})
    reference_history = None
    if config.baseline or config.method == "scratch":
        scratch_dir = os.path.join(config.model_dir, "scratch")
        recorder = per_class_recorder(splits, config, scratch_dir)
        scratch, summary = train_model(config.student, config, splits, strategy, config.epochs,
                                       scratch_dir, extra_callbacks=[recorder] if recorder else ())
        reference_history = recorder.history if recorder else None
        if teacher is not None:
            summary["agreement_with_teacher"] = common.agreement(teacher, scratch, test)
        summary["per_class_test_accuracy"] = common.per_class_accuracy(
            scratch, test, splits.num_classes)
        results["scratch"] = summary
        rows.append({"model": f"scratch {config.student}", "params": summary["params"],
                     "best": summary["test_accuracy"]["best"],
                     "last": summary["test_accuracy"]["last"],
                     "agreement": summary.get("agreement_with_teacher")})
        student = scratch
    if config.method != "scratch":
        if reference_history is None and splits.validation is not None:
            reference_history = reference_trainer(  # trained only if the method asks
                config, splits, strategy, os.path.join(config.model_dir, "reference"))
        student, summary = distill_student(config, splits, strategy, teacher, config.model_dir,
                                           baseline_student=scratch,
                                           reference_history=reference_history)
        summary["per_class_test_accuracy"] = common.per_class_accuracy(
            student, test, splits.num_classes)
        results["student"] = summary
        rows.append({"model": f"{config.method} {config.student}", "params": summary["params"],
                     "best": summary["test_accuracy"]["best"],
                     "last": summary["test_accuracy"]["last"],
                     "agreement": summary.get("agreement_with_teacher")})
    student.save(os.path.join(config.model_dir, "student.keras"))
    if config.export:
        results["export"] = export(config, splits, student)
    common.write_json(os.path.join(config.model_dir, "results.json"), results)
    print()
    common.print_table(rows, ["model", "params", "best", "last", "agreement"])
    print(f"\nResults: {os.path.join(config.model_dir, 'results.json')}")
    return results


def export(config, splits, student):
    """Exports the student with the parity check (keras_distill.export)."""
    import numpy as np

    from keras_distill.export import export_student

    x_train = splits.train.x[: 512]
    scale = 255.0 if x_train.dtype == np.uint8 else 1.0
    return export_student(
        student, os.path.join(config.model_dir, "export"), formats=config.export,
        calibration_data=x_train.astype("float32") / scale,
        eval_data=(splits.test.x.astype("float32") / scale, splits.test.y),
        overwrite=config.overwrite,
        preprocessing="x / 255 (float32 in [0, 1])" if scale == 255.0 else None)


def main(argv):
    del argv
    if FLAGS.list_methods:
        from keras_distill import methods

        print(methods.listing())
        return
    try:
        run(config_from_flags())
    except common.user_errors() as error:
        sys.exit(f"error: {error}")


def console_main():
    """Entry point of the `keras-distill` console script."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    console_main()
