"""Export a trained student to SavedModel / TFLite with a parity check.

Usage:

```
python -m recipes.export --model=runs/kd --dataset=fashion_mnist
python -m recipes.export --model=student.keras --dataset=fashion_mnist \
    --formats=saved_model,tflite_int8 --output_dir=/tmp/export --overwrite
```

`--model` is a `.keras` file or a run's model_dir (holding `student.keras`).
Calibration examples come from the dataset's training split, the parity
check and accuracies from its test split, both preprocessed as the training
recipes feed the student (`--normalize=scale`: pixels to [0, 1], the
default of `keras_distill.data.make_dataset`; `--normalize=none` for a
student that normalises inside). The recipe prints a Markdown
table (also written to `<output_dir>/table.md`) and exits non-zero when an
artifact fails its parity check (2) or the arguments are refused (1).
"""

from __future__ import annotations

import dataclasses
import os
import sys

from absl import app, flags, logging

FLAGS = flags.FLAGS
STUDENT_FILE = "student.keras"
TABLE_FILE = "table.md"
EXIT_REFUSED = 1
EXIT_PARITY_FAILED = 2


class RecipeError(ValueError):
    """Arguments the recipe refuses before doing any work."""


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """Everything one export run needs; `run(config)` is the whole recipe.

    Attributes:
        model: A `.keras` file or a model_dir holding `student.keras`.
            May be `None` when `run` receives the student directly.
        output_dir: Export directory; `None` means `<model_dir>/export`.
        formats: Export formats (see `keras_distill.export.FORMATS`).
        num_calibration: Training examples calibrating `tflite_int8`.
        overwrite: Replace an existing export in `output_dir`.
        dataset: Dataset name for `keras_distill.data.load`.
        data_dir: Where the dataset lives (passed to the loader).
        limit: Examples per split to load (smoke runs); `None` for all.
        normalize: `"scale"` (pixels to [0, 1], as the training recipes feed
            the student) or `"none"` (the student normalises inside).
        max_eval_examples: Evaluate on the first N test examples only.
        float_threshold: Minimum top-1 agreement of float formats.
        int8_threshold: Minimum top-1 agreement of int8 formats.
        num_threads: TFLite interpreter threads for the latency measure.
        latency_runs: Timed batch-1 calls per artifact.
        seed: Seed of the data split and the calibration sample.
    """

    model: str | None = None
    output_dir: str | None = None
    formats: tuple[str, ...] = (
        "saved_model",
        "tflite_float32",
        "tflite_float16",
        "tflite_dynamic_int8",
        "tflite_int8",
    )
    num_calibration: int = 200
    overwrite: bool = False
    dataset: str | None = None
    data_dir: str | None = None
    limit: int | None = None
    normalize: str = "scale"
    max_eval_examples: int | None = None
    float_threshold: float = 0.99
    int8_threshold: float = 0.97
    num_threads: int = 1
    latency_runs: int = 50
    seed: int = 0

    def thresholds(self):
        """Per-format minimum top-1 agreement."""
        return {
            format: self.int8_threshold if "int8" in format else self.float_threshold
            for format in ExportConfig.formats
        }


def define_flags(flag_values=FLAGS):
    """Defines the recipe's flags (by `__main__`, or by tests on their own `FlagValues`)."""
    defaults, on = ExportConfig(), {"flag_values": flag_values}
    flags.DEFINE_string("model", None, "A .keras file, or a model_dir holding student.keras.", **on)
    flags.DEFINE_string("output_dir", None, "Export directory (default <model_dir>/export).", **on)
    flags.DEFINE_list("formats", list(defaults.formats), "Comma-separated export formats.", **on)
    flags.DEFINE_integer("num_calibration", defaults.num_calibration,
                         "Calibration examples for tflite_int8.", lower_bound=1, **on)
    flags.DEFINE_bool("overwrite", False, "Replace an existing export in --output_dir.", **on)
    flags.DEFINE_string("dataset", None,
                        "Dataset: calibration from its train split, evaluation on its test split.",
                        **on)
    flags.DEFINE_string("data_dir", None, "Where the dataset lives.", **on)
    flags.DEFINE_integer("limit", None, "Examples per split to load (smoke runs).", **on)
    flags.DEFINE_enum("normalize", defaults.normalize, ["scale", "none"],
                      "Preprocessing the student was trained with: scale = pixels to [0, 1], "
                      "none = the student normalises inside.", **on)
    flags.DEFINE_integer("max_eval_examples", None, "Evaluate on the first N test examples.", **on)
    flags.DEFINE_float("float_threshold", defaults.float_threshold,
                       "Minimum top-1 agreement of float formats.", lower_bound=0.0,
                       upper_bound=1.0, **on)
    flags.DEFINE_float("int8_threshold", defaults.int8_threshold,
                       "Minimum top-1 agreement of int8 formats.", lower_bound=0.0,
                       upper_bound=1.0, **on)
    flags.DEFINE_integer("num_threads", defaults.num_threads,
                         "TFLite interpreter threads for the latency measure.", **on)
    flags.DEFINE_integer("latency_runs", defaults.latency_runs,
                         "Timed batch-1 calls per artifact.", lower_bound=1, **on)
    flags.DEFINE_integer("seed", defaults.seed, "Seed of the data split and calibration sample.",
                         **on)


def config_from_flags(flag_values=FLAGS):
    """Builds an `ExportConfig` from parsed flags."""
    names = [field.name for field in dataclasses.fields(ExportConfig)]
    values = {name: flag_values[name].value for name in names}
    values["formats"] = tuple(values["formats"])
    return ExportConfig(**values)


def student_path(model):
    """The `.keras` file `--model` names (itself, or `<model_dir>/student.keras`)."""
    if os.path.isdir(model):
        return os.path.join(model, STUDENT_FILE)
    return model


def resolve_output_dir(config):
    """`config.output_dir`, or `export/` next to the student file."""
    if config.output_dir:
        return config.output_dir
    if not config.model:
        raise RecipeError("Pass --output_dir (no --model to place the export next to).")
    return os.path.join(os.path.dirname(os.path.abspath(student_path(config.model))), "export")


def load_student(config):
    """Loads the student `.keras` file (compile=False: only inference is needed)."""
    import keras

    if not config.model:
        raise RecipeError(
            "--model is required: a .keras file or a model_dir holding student.keras."
        )
    path = student_path(config.model)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No student at {path}: --model must be a .keras file or a model_dir holding "
            f"{STUDENT_FILE}."
        )
    try:
        return keras.saving.load_model(path, compile=False)
    except (TypeError, ValueError):
        # Custom layers of the model zoo register when it is imported.
        import keras_distill.models  # noqa: F401  pylint: disable=unused-import

        return keras.saving.load_model(path, compile=False)


def load_dataset(config):
    """`(train, test)` `(x, y)` pairs from `keras_distill.data.load`."""
    if not config.dataset:
        raise RecipeError(
            "--dataset is required: the export calibrates int8 on its training split and checks "
            "parity and accuracy on its test split (e.g. --dataset=fashion_mnist)."
        )
    from keras_distill import data as data_lib

    kwargs = {"data_dir": config.data_dir, "seed": config.seed}
    if config.limit is not None:
        kwargs["limit"] = config.limit
    dataset = data_lib.load(config.dataset, **kwargs)
    if not dataset.in_memory:
        raise RecipeError(
            f"{config.dataset} is streamed; the export recipe needs in-memory arrays."
        )
    return tuple(dataset.train), tuple(dataset.test)


def preprocess(x, normalize, value_range=None):
    """Inputs as the student takes them; returns `(x, description)`.

    Args:
        x: Raw images (uint8 0-255, or float).
        normalize: `"scale"`: `(x - low) / (high - low)`, as
            `keras_distill.data.make_dataset` feeds the training recipes'
            students; `"none"`: unchanged.
        value_range: `(low, high)`; default inferred as `make_dataset` does
            (0-255 for integer images, else 0-1 or 0-255 from the values).
    """
    import numpy as np

    if normalize == "none":
        return x, "none: raw pixels, the student normalises inside"
    if normalize != "scale":
        raise RecipeError(f"Unknown --normalize={normalize!r}; use scale or none.")
    if value_range is None:
        from keras_distill.data.pipeline import infer_value_range

        value_range = infer_value_range(x)
    low, high = value_range
    scaled = (np.asarray(x, np.float32) - low) / (high - low)
    return scaled, f"scale: (x - {low:g}) / {high - low:g}, pixels to [0, 1]"


def run(config, student=None, train_data=None, eval_data=None):
    """Exports the student and returns `dict[format, report]`.

    Args:
        config: An `ExportConfig`.
        student: The Keras student; loaded from `config.model` if `None`.
        train_data: Raw `(x, y)` to draw calibration examples from; loaded
            with `eval_data` from `config.dataset` if either is `None`.
        eval_data: Raw held-out `(x, y)` for the parity check and
            accuracies. Both are preprocessed with `config.normalize`.

    Returns:
        The reports of `keras_distill.export.export_student`.

    Raises:
        FileExistsError: The output directory holds an export and not
            `config.overwrite` (checked before anything is loaded).
        FileNotFoundError: No student at `config.model`.
        RecipeError: Missing `--model`/`--dataset`, or an unknown format.
        keras_distill.export.ExportParityError: An artifact failed its
            parity check; the table was still printed and written.

    Example:

    ```python
    reports = run(ExportConfig(output_dir="/tmp/export", formats=("tflite_int8",)),
                  student=student, train_data=(x_train, y_train), eval_data=(x_test, y_test))
    ```
    """
    from keras_distill import export

    unknown = sorted(set(config.formats) - set(export.FORMATS))
    if unknown or not config.formats:
        raise RecipeError(
            f"Unknown or no --formats {unknown}; choose from {','.join(export.FORMATS)}."
        )
    output_dir = resolve_output_dir(config)
    export.prepare_output_dir(output_dir, overwrite=config.overwrite)  # fail fast
    if student is None:
        student = load_student(config)
    if train_data is None or eval_data is None:
        train_data, eval_data = load_dataset(config)
    train_x, _ = train_data
    eval_x, eval_y = eval_data
    value_range = None
    if config.normalize == "scale":  # one range for both splits, from the training data
        from keras_distill.data.pipeline import infer_value_range

        value_range = infer_value_range(train_x)
    train_x, description = preprocess(
        _calibration_pool(train_x, config), config.normalize, value_range
    )
    eval_x, _ = preprocess(eval_x, config.normalize, value_range)
    try:
        reports = export.export_student(
            student,
            output_dir,
            formats=config.formats,
            calibration_data=train_x,
            eval_data=(eval_x, eval_y),
            overwrite=True,  # refusal was decided above; this removes nothing new
            thresholds=config.thresholds(),
            num_calibration=config.num_calibration,
            max_eval_examples=config.max_eval_examples,
            num_threads=config.num_threads,
            latency_runs=config.latency_runs,
            seed=config.seed,
            preprocessing=description,
        )
    except export.ExportParityError as error:
        _print_table(error.reports, output_dir)
        raise
    _print_table(reports, output_dir)
    return reports


def _calibration_pool(train_x, config):
    """The calibration candidates: a seeded sample, so all of train is never copied."""
    import numpy as np

    count = min(len(train_x), config.num_calibration)
    indices = np.sort(np.random.default_rng(config.seed).choice(len(train_x), count, replace=False))
    return train_x[indices]


def _print_table(reports, output_dir):
    from keras_distill import export

    table = export.format_table(reports)
    with open(os.path.join(output_dir, TABLE_FILE), "w") as file:
        file.write(table + "\n")
    print(f"Export in {output_dir}:\n{table}")


def main(argv, flag_values=FLAGS):
    """Thin entry point: flags -> config -> `run`; returns the exit code."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if "verbosity" in flag_values and not flag_values["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # TF's SavedModel INFO lines drown the table
    from keras_distill.export import ExportParityError

    config = config_from_flags(flag_values)
    try:
        run(config)
    except ExportParityError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return EXIT_PARITY_FAILED
    except (FileExistsError, FileNotFoundError, RecipeError) as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return EXIT_REFUSED
    return 0


if __name__ == "__main__":
    define_flags()
    flags.mark_flag_as_required("model")
    app.run(main)
