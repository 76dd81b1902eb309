"""Teacher-output cache: offline distillation without the teacher's forward pass.

The teacher's forward pass dominates distillation on small students (4.4x the
student's step on this machine). When the training inputs are the same every
epoch (no random augmentation), the teacher's outputs can be computed once:

    cache = TeacherCache.compute(teacher, x_train, taps=())
    cache.verify(teacher, x_train)              # a sample against the live teacher
    train_ds = cache.attach(make_dataset(x_train, y_train, training=True, with_index=True))
    distiller.fit(train_ds, ...)               # the teacher is skipped for the batch

Batches then carry `{"inputs": x, "teacher_outputs": {...}}`; the Distiller uses those
outputs instead of running the teacher (it still runs the teacher on input views such as
KD+'s mixup batch, which are new every step). Outputs are held in memory, or saved as one
`.npy` file per output (shards of `shard_size` rows) and memory-mapped back.
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from keras_distill import features


class TeacherCacheError(ValueError):
    """The cache cannot be used as asked; the message says why and what to do."""


class TeacherCache:
    """Precomputed teacher outputs for every example of a training array.

    Args:
        outputs: Dict name -> array `(num_examples, ...)` (`"logits"` and taps).
    """

    def __init__(self, outputs):
        if "logits" not in outputs:
            raise TeacherCacheError("A teacher cache needs 'logits'.")
        sizes = {name: len(value) for name, value in outputs.items()}
        if len(set(sizes.values())) != 1:
            raise TeacherCacheError(f"Cached outputs have different lengths: {sizes}.")
        self.outputs = outputs

    def __len__(self):
        return len(self.outputs["logits"])

    # ---------------------------------------------------------------- build
    @classmethod
    def compute(cls, teacher, x, taps=(), batch_size=256, normalize=None, verbose=True):
        """Runs the teacher once over the training inputs in inference mode.

        Args:
            teacher: The teacher model.
            x: Either an array of training inputs (optionally with `normalize`), or
                an UNSHUFFLED, unaugmented `tf.data.Dataset` of batches `(x, ...)` in
                training-array order, e.g. `make_dataset(x, y, training=False)`, so
                the cache sees exactly what the training pipeline feeds the model.
            taps: Teacher taps to cache besides the logits (feature maps can be
                large: 60k examples x 28x28x32 floats is 6 GB).
            batch_size: Inference batch size for arrays.
            normalize: For arrays: a function applied to each batch first.
            verbose: Show a progress bar.

        Returns:
            A `TeacherCache`.
        """
        import keras

        extractor = features.build_extractor(teacher, taps, "teacher")

        @tf.function
        def forward(batch):
            return extractor(batch, training=False)

        if isinstance(x, tf.data.Dataset):
            batches = (batch[0] if isinstance(batch, tuple) else batch for batch in x)
            total = None
        else:
            if len(x) == 0:
                raise TeacherCacheError("Cannot cache the teacher on an empty training set.")
            total = len(x)

            def array_batches():
                for start in range(0, total, batch_size):
                    batch = np.asarray(x[start:start + batch_size])
                    yield normalize(batch) if normalize is not None else batch.astype("float32")
            batches = array_batches()
        chunks = {}
        progress = keras.utils.Progbar(total, unit_name="example") if verbose else None
        seen = 0
        for batch in batches:
            if isinstance(batch, dict):
                batch = batch["inputs"]
            for name, value in forward(batch).items():
                chunks.setdefault(name, []).append(np.asarray(value, dtype="float32"))
            seen += int(batch.shape[0])
            if progress is not None:
                progress.update(seen)
        if not seen:
            raise TeacherCacheError("Cannot cache the teacher on an empty training set.")
        return cls({name: np.concatenate(parts) for name, parts in chunks.items()})

    # ------------------------------------------------------------- disk I/O
    def save(self, directory, shard_size=65536):
        """Writes one `.npy` per output and shard, plus `index.json` last (atomic)."""
        os.makedirs(directory, exist_ok=True)
        index = {"num_examples": len(self), "outputs": {}}
        for name, value in self.outputs.items():
            shards = []
            for number, start in enumerate(range(0, len(value), shard_size)):
                filename = f"{name.replace('/', '__')}-{number:05d}.npy"
                temporary = os.path.join(directory, filename + ".partial")
                with open(temporary, "wb") as handle:
                    np.save(handle, value[start:start + shard_size])
                os.replace(temporary, os.path.join(directory, filename))
                shards.append(filename)
            index["outputs"][name] = shards
        temporary = os.path.join(directory, "index.json.partial")
        with open(temporary, "w") as handle:
            json.dump(index, handle)
        os.replace(temporary, os.path.join(directory, "index.json"))

    @classmethod
    def load(cls, directory, mmap=True):
        """Reads a cache written by `save` (memory-mapped shards by default)."""
        path = os.path.join(directory, "index.json")
        if not os.path.exists(path):
            raise TeacherCacheError(
                f"No complete teacher cache in {directory!r} (index.json is written last, "
                "so an interrupted save leaves none). Recompute it with TeacherCache.compute.")
        with open(path) as handle:
            index = json.load(handle)
        outputs = {}
        for name, shards in index["outputs"].items():
            parts = [np.load(os.path.join(directory, s), mmap_mode="r" if mmap else None)
                     for s in shards]
            outputs[name] = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return cls(outputs)

    # -------------------------------------------------------------- checks
    def verify(self, teacher, x, sample_size=256, atol=1e-3, seed=0, normalize=None):
        """Compares a random sample of the cache against the live teacher.

        Returns:
            The max absolute difference of the logits.

        Raises:
            TeacherCacheError: when it exceeds `atol` (a stale cache, another teacher, or
                a pipeline that changes the inputs).
        """
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(len(self), size=min(sample_size, len(self)), replace=False))
        batch = np.asarray(x[rows])
        batch = normalize(batch) if normalize is not None else batch.astype("float32")
        live = np.asarray(teacher(batch, training=False), dtype="float32")
        difference = float(np.max(np.abs(live - np.asarray(self.outputs["logits"][rows]))))
        if difference > atol:
            raise TeacherCacheError(
                f"The cached teacher logits differ from the live teacher by {difference:.3g} "
                f"(> {atol}) on {len(rows)} sampled examples: the cache is stale, belongs to "
                "another teacher, or the pipeline changes the inputs. Recompute it.")
        return difference

    @staticmethod
    def check_pipeline(augment):
        """Refuses augmentation that makes cached outputs wrong.

        Args:
            augment: The pipeline's augmentation name or object.

        Raises:
            TeacherCacheError: for any random augmentation.
        """
        from keras_distill.data import is_deterministic

        if not is_deterministic(augment):
            raise TeacherCacheError(
                f"The training pipeline augments its inputs ({augment!r}), so each epoch "
                "the teacher would see different images than the cached ones and the cache "
                "would be wrong. Use augment='none' with the cache, or distil with the live "
                "teacher (no cache).")

    # ------------------------------------------------------------- pipeline
    def attach(self, dataset):
        """Adds the cached outputs to a dataset whose batches carry `"index"`.

        Args:
            dataset: Batches `({"inputs": x, "index": i, ...}, y[, w])` (from
                `make_dataset(..., with_index=True)`).

        Returns:
            The dataset with `x["teacher_outputs"]` holding the cached outputs of
            each example; `"index"` stays for other terms that read it.
        """
        spec = dataset.element_spec
        if not (isinstance(spec, tuple) and isinstance(spec[0], dict) and "index" in spec[0]):
            raise TeacherCacheError(
                "TeacherCache.attach needs batches ({'inputs': x, 'index': i}, y): build the "
                "pipeline with make_dataset(..., with_index=True).")
        tables = {name: tf.constant(np.asarray(value)) for name, value in self.outputs.items()}

        def add(x, *rest):
            x = dict(x)
            x["teacher_outputs"] = {name: tf.gather(table, x["index"])
                                    for name, table in tables.items()}
            return (x, *rest)

        return dataset.map(add, num_parallel_calls=tf.data.AUTOTUNE)
