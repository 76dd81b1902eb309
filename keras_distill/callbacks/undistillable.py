"""TLLM: find the classes KD makes worse ("undistillable") and mask them."""

import json
import os

import numpy as np
import keras
import tensorflow as tf

REPORT_JSON = "undistillable_classes.json"
REPORT_PNG = "undistillable_classes.png"


def _split(batch):
    x, y = batch[0], batch[1]
    if isinstance(x, dict) and "inputs" in x:
        x = x["inputs"]
    return x, y


def _integer_labels(y):
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[-1] > 1:
        return np.argmax(y, axis=-1)
    return y.reshape(-1).astype("int64")


def per_class_accuracy(model, data, num_classes, batch_size=256):
    """Top-1 accuracy of `model` on each class of `data`.

    Args:
        model: A Keras model returning logits (or probabilities).
        data: `(x, y)` arrays (x in the model's input format) or a batched
            `tf.data.Dataset` of `(x, y)` (x may be `{"inputs": x, ...}`);
            labels integer or one-hot.
        num_classes: Number of classes `K`.
        batch_size: Prediction batch size for arrays.

    Returns:
        `(K,)` float array; `nan` for a class absent from `data`.
    """
    if isinstance(data, tf.data.Dataset):
        predictions, labels = [], []
        for batch in data:
            x, y = _split(batch)
            predictions.append(np.argmax(np.asarray(model(x, training=False)), axis=-1))
            labels.append(_integer_labels(y))
        predictions, labels = np.concatenate(predictions), np.concatenate(labels)
    else:
        x, y = data[0], data[1]
        predictions = np.argmax(model.predict(x, batch_size=batch_size, verbose=0), axis=-1)
        labels = _integer_labels(y)
    accuracy = np.full(num_classes, np.nan)
    for k in range(num_classes):
        members = labels == k
        if members.any():
            accuracy[k] = float(np.mean(predictions[members] == k))
    return accuracy


class PerClassAccuracyHistory(keras.callbacks.Callback):
    """Records a model's per-class accuracy on held-out data after every epoch.

    The trajectory it builds (`history[e]` = accuracies after epoch `e + 1`)
    is TLLM's reference: the distilled student is compared with the
    labels-only student *at the same epoch*, not early in training with a
    fully trained reference (which marks nearly every class undistillable).

    Args:
        validation_data: Held-out data (see `per_class_accuracy`).
        num_classes: `K`.
        batch_size: Prediction batch size for arrays.
        path: Optional JSON file the history is written to after every epoch
            and read back from on construction, so a resumed training keeps
            the rows of the epochs it finished before the interruption.
    """

    def __init__(self, validation_data, num_classes, batch_size=256, path=None):
        super().__init__()
        self.validation_data = validation_data
        self.num_classes = int(num_classes)
        self.batch_size = batch_size
        self.path = path
        self.history = []
        if path and os.path.exists(path):
            with open(path) as handle:
                self.history = [[np.nan if v is None else v for v in row]
                                for row in json.load(handle)]

    def on_epoch_end(self, epoch, logs=None):
        model = getattr(self.model, "student", self.model)
        accuracy = per_class_accuracy(model, self.validation_data, self.num_classes,
                                      self.batch_size).tolist()
        del self.history[epoch:]  # an epoch trained again replaces its row
        self.history.append(accuracy)
        if self.path:
            with open(self.path + ".tmp", "w") as handle:
                json.dump(_strict(self.history), handle)
            os.replace(self.path + ".tmp", self.path)


def reference_per_class_accuracy(student_builder, train_data, validation_data, epochs,
                                 num_classes=None, batch_size=64, optimizer="adam",
                                 per_epoch=False, verbose=0):
    """Trains a reference student on labels only; returns its per-class accuracy.

    This is TLLM's reference: the student trained without distillation,
    measured on the same held-out split. It costs one full student training
    of `epochs` epochs; pass accuracies from a previous scratch run instead
    when you have them. Train it with the distilled student's own optimizer,
    schedule and batch size, so that the two are comparable epoch by epoch.

    Args:
        student_builder: `() -> keras.Model` returning a fresh, untrained
            student (e.g. `lambda: keras.models.clone_model(student)`).
        train_data: `(x, y)` arrays or a batched `tf.data.Dataset` of `(x, y)`.
        validation_data: Held-out data (see `per_class_accuracy`); never the
            test set.
        epochs: Training epochs.
        num_classes: `K`; default the student's output width.
        batch_size: Batch size for arrays.
        optimizer: Optimizer name, instance, or `() -> optimizer` (default
            Adam, fixed learning rate).
        per_epoch: If True, return the accuracies after every epoch
            (`epochs` lists of `K`), the trajectory `UndistillableClasses`
            compares epoch by epoch.
        verbose: Keras `fit` verbosity.

    Returns:
        List of `K` floats (`nan` for classes absent from `validation_data`),
        or with `per_epoch` a list of `epochs` such lists.
    """
    model = student_builder()
    labels_spec = (train_data.element_spec[1] if isinstance(train_data, tf.data.Dataset)
                   else np.asarray(train_data[1]))
    one_hot = len(labels_spec.shape) == 2 and labels_spec.shape[-1] not in (1, None)
    loss = (keras.losses.CategoricalCrossentropy(from_logits=True) if one_hot
            else keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    if callable(optimizer) and not isinstance(optimizer, keras.optimizers.Optimizer):
        optimizer = optimizer()
    model.compile(optimizer=optimizer, loss=loss)
    num_classes = num_classes or int(model.output_shape[-1])
    recorder = PerClassAccuracyHistory(validation_data, num_classes)
    if isinstance(train_data, tf.data.Dataset):
        model.fit(train_data, epochs=epochs, verbose=verbose, callbacks=[recorder])
    else:
        model.fit(train_data[0], train_data[1], batch_size=batch_size, epochs=epochs,
                  verbose=verbose, callbacks=[recorder])
    return recorder.history if per_epoch else recorder.history[-1]


class UndistillableClasses(keras.callbacks.Callback):
    """Re-estimates TLLM's undistillable classes and writes a `ClassMask`.

    Every `update_every` epochs it measures the distilled student's
    per-class accuracy `a_k` on held-out data and masks class `k` when
    `a_k < r_k - delta`, `r_k` the reference student's accuracy (trained on
    labels only). With a per-epoch reference (its trajectory, e.g. from
    `reference_per_class_accuracy(..., per_epoch=True)`) the student after
    epoch `e` is compared with the reference after epoch `e` (the last row
    beyond its end); with a single row, with that row at every epoch. Prefer
    the trajectory: early in training a student is behind a fully trained
    reference on nearly every class, and a fixed reference then masks them
    all. Masked classes get the hard-label loss only (see
    `keras_distill.losses.ClassMask`). It logs `undistillable_classes` (the
    count) every epoch, and at the end of training measures the student once
    more and writes a report (JSON + PNG bar chart of the per-class gain
    `a_k - r_k`) when `report_dir` is set.

    Args:
        mask: The `ClassMask` term, its `class_mask` variable, or the term's
            name in the `Distiller` being trained.
        validation_data: Held-out `(x, y)` arrays or batched dataset carved
            from the training set (never the test set).
        reference_accuracy: `K` per-class accuracies of the reference
            student, or its trajectory (one such list per epoch), or a
            `() -> list` computing either at the start of training (e.g.
            `reference_per_class_accuracy`).
        delta: Margin (default 0): a class must be worse by more than this.
        update_every: Epochs between updates (default 1).
        freeze_epoch: If set, no update after the end of this (1-based)
            epoch; the set is frozen.
        report_dir: Folder for `undistillable_classes.json` / `.png`, or None.
        class_names: Optional names of the classes, for the report.
        batch_size: Prediction batch size.
        verbose: Print each new set.

    Example:

    ```python
    term = ClassMask(KD(4.0), num_classes=10)
    tllm = UndistillableClasses(term, (x_val, y_val), reference_accuracy=scratch_acc,
                                report_dir="run/")
    distiller.fit(train, epochs=30, callbacks=[tllm])
    ```

    Reference:
        Zhu, Liu, Xu, Liu, Meng, Wang, Ou, Tang. "Teach Less, Learn More: On
        the Undistillable Classes in Knowledge Distillation". NeurIPS 2022.
    """

    def __init__(self, mask, validation_data, reference_accuracy, delta=0.0, update_every=1,
                 freeze_epoch=None, report_dir=None, class_names=None, batch_size=256,
                 verbose=False):
        super().__init__()
        if validation_data is None:
            raise ValueError("UndistillableClasses needs held-out validation data carved "
                             "from the training set (never the test set).")
        if reference_accuracy is None:
            raise ValueError("UndistillableClasses needs the reference student's per-class "
                             "accuracy (a list, or a callable such as "
                             "reference_per_class_accuracy).")
        if int(update_every) < 1:
            raise ValueError(f"update_every must be >= 1, got {update_every!r}.")
        if freeze_epoch is not None and int(freeze_epoch) < 0:
            raise ValueError(f"freeze_epoch must be >= 0 or None, got {freeze_epoch!r}.")
        if not delta >= 0:
            raise ValueError(f"delta must be >= 0, got {delta!r}.")
        self.mask = mask
        self.validation_data = validation_data
        self.reference_accuracy = reference_accuracy
        self.delta = float(delta)
        self.update_every = int(update_every)
        self.freeze_epoch = None if freeze_epoch is None else int(freeze_epoch)
        self.report_dir = report_dir
        self.class_names = class_names
        self.batch_size = batch_size
        self.verbose = verbose
        self.history = []
        self.final_accuracy = None

    # ---------------------------------------------------------------- pieces
    def _variable(self):
        mask = self.mask
        if isinstance(mask, str):
            if not hasattr(self.model, "get_term"):
                raise TypeError(f"mask {mask!r} names a term, but the model being trained is "
                                f"a {type(self.model).__name__}, not a Distiller: pass the "
                                "ClassMask term or its class_mask variable.")
            mask = self.model.get_term(mask)
        mask = getattr(mask, "class_mask", mask)
        if not isinstance(mask, keras.Variable):
            raise TypeError(f"mask must be a built ClassMask, its class_mask variable or a term "
                            f"name; got {type(self.mask).__name__}.")
        return mask

    def _student(self):
        return getattr(self.model, "student", self.model)

    @property
    def undistillable(self):
        """Indices of the currently masked classes."""
        return [int(k) for k in np.flatnonzero(np.asarray(self._variable()) > 0.5)]

    def select(self, student_accuracy, reference=None):
        """Classes with `a_k < r_k - delta` (classes absent from the data: never).

        `reference` defaults to the reference's final accuracies.
        """
        reference = self.reference if reference is None else reference
        with np.errstate(invalid="ignore"):
            worse = np.asarray(student_accuracy) < reference - self.delta
        return [int(k) for k in np.flatnonzero(worse)]

    # -------------------------------------------------------------- callbacks
    def on_train_begin(self, logs=None):
        variable = self._variable()
        reference = self.reference_accuracy
        if callable(reference):
            reference = self.reference_accuracy = reference()
        trajectory = np.asarray(reference, dtype="float64")
        self.trajectory = trajectory if trajectory.ndim == 2 else trajectory[None]
        self.num_classes = int(variable.shape[0])
        if self.trajectory.ndim != 2 or self.trajectory.shape[1] != self.num_classes:
            raise ValueError(f"reference_accuracy has {trajectory.shape[-1]} values per row; the "
                             f"mask has {self.num_classes} classes.")
        if np.any((self.trajectory < 0) | (self.trajectory > 1)):
            raise ValueError(f"reference_accuracy holds accuracies in [0, 1] (nan for an "
                             f"absent class), got {trajectory.tolist()}.")
        self.reference = self.trajectory[-1]

    def reference_at(self, epoch):
        """The reference's per-class accuracy after (0-based) `epoch`."""
        return self.trajectory[min(epoch, len(self.trajectory) - 1)]

    def on_epoch_end(self, epoch, logs=None):
        frozen = self.freeze_epoch is not None and epoch + 1 > self.freeze_epoch
        if not frozen and (epoch + 1) % self.update_every == 0:
            accuracy = per_class_accuracy(self._student(), self.validation_data,
                                          self.num_classes, self.batch_size)
            chosen = self.select(accuracy, self.reference_at(epoch))
            mask = np.zeros(self.num_classes, "float32")
            mask[chosen] = 1.0
            self._variable().assign(mask)
            self.history.append({"epoch": epoch + 1, "undistillable": chosen,
                                 "student_accuracy": accuracy.tolist(),
                                 "reference_accuracy": self.reference_at(epoch).tolist()})
            if self.verbose:
                print(f"\nUndistillableClasses: epoch {epoch + 1}: {len(chosen)} classes "
                      f"masked {chosen}")
        if logs is not None:
            logs["undistillable_classes"] = float(len(self.undistillable))

    def on_train_end(self, logs=None):
        self.final_accuracy = per_class_accuracy(self._student(), self.validation_data,
                                                 self.num_classes, self.batch_size)
        if self.report_dir:
            self.write_report(self.report_dir)

    # ----------------------------------------------------------------- report
    def report(self):
        """Dict: reference / final student per-class accuracy, gain, the set, history."""
        student = self.final_accuracy
        gain = None if student is None else (student - self.reference).tolist()
        return {
            "delta": self.delta, "update_every": self.update_every,
            "freeze_epoch": self.freeze_epoch,
            "class_names": list(self.class_names) if self.class_names is not None else None,
            "reference_accuracy": self.reference.tolist(),
            "student_accuracy": None if student is None else student.tolist(),
            "gain": gain, "undistillable": self.undistillable, "history": self.history,
        }

    def write_report(self, directory):
        """Writes `undistillable_classes.json` and `.png` into `directory`; returns paths."""
        os.makedirs(directory, exist_ok=True)
        report = self.report()
        json_path = os.path.join(directory, REPORT_JSON)
        with open(json_path, "w") as handle:
            json.dump(_strict(report), handle, indent=2)
        png_path = os.path.join(directory, REPORT_PNG)
        plot_gain(report, png_path)
        return json_path, png_path


def _strict(value):
    """Replaces nan by None (strict JSON) in nested lists / dicts."""
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def plot_gain(report, path):
    """Bar chart of the per-class gain (distilled - reference), undistillable set marked.

    Drawn on matplotlib's Agg canvas directly (no pyplot, no global backend change).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    gain = np.asarray([np.nan if g is None else g for g in report["gain"]], dtype="float64")
    masked = set(report["undistillable"])
    classes = np.arange(len(gain))
    colors = ["tab:red" if k in masked else "tab:blue" for k in classes]
    figure = Figure(figsize=(max(6.0, 0.12 * len(gain) + 2.0), 3.5))
    FigureCanvasAgg(figure)
    axis = figure.add_subplot()
    axis.bar(classes, np.nan_to_num(100.0 * gain), color=colors)
    axis.axhline(0.0, color="black", linewidth=0.8)
    if report["delta"]:
        axis.axhline(-100.0 * report["delta"], color="gray", linestyle="--", linewidth=0.8)
    names = report.get("class_names")
    if names is not None and len(names) <= 30:
        axis.set_xticks(classes, names, rotation=60, ha="right", fontsize=7)
    elif len(gain) <= 30:
        axis.set_xticks(classes, [str(k) for k in classes])
    axis.set_xlabel("class")
    axis.set_ylabel("accuracy gain (points)")
    axis.set_title(f"Distilled - reference per class; {len(masked)} undistillable")
    axis.legend(handles=[Patch(color="tab:red", label="undistillable (masked)"),
                         Patch(color="tab:blue", label="other classes")], fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
