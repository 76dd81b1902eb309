"""Input views: extra inputs a distillation term is computed on.

A term whose `input_view` is set is computed on the view's inputs instead of
the batch: the Distiller builds the view, runs the teacher (inference) and
the student on it together with the batch (one concatenated forward each),
and hands the term the outputs on the view. This is how KD+ distils beyond
the training points, and how any term gets the same "+".

A view returns `(inputs, labels)`; `labels` is `None` when the view has no
hard labels (mixup between samples, unlabeled data), in which case terms that
read labels receive the teacher's top-1 prediction instead.
"""

import keras
from keras import ops


class InputView(keras.layers.Layer):
    """Base class: builds new inputs from a batch.

    Subclasses implement `call(inputs, labels, side_inputs, training)`
    returning `(view_inputs, view_labels_or_None)`.

    Args:
        seed: Seed of the view's random generator (a tracked
            `keras.random.SeedGenerator`, so the stream is checkpointed).
        **kwargs: `keras.layers.Layer` arguments.
    """

    side_inputs = ()

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.built = True

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="keras_distill")
class SideInput(InputView):
    """Takes the view from a side input of the batch (e.g. unlabeled data).

    Zip a labeled and an unlabeled dataset so batches look like
    `({"inputs": x, "unlabeled": u}, y)` and use `SideInput("unlabeled")`.

    Args:
        key: The side-input key holding the view's inputs.
    """

    def __init__(self, key="unlabeled", **kwargs):
        super().__init__(**kwargs)
        self.key = key
        self.side_inputs = (key,)

    def call(self, inputs, labels, side_inputs, training=None):
        return side_inputs[self.key], None

    def get_config(self):
        return {**super().get_config(), "key": self.key}


@keras.saving.register_keras_serializable(package="keras_distill")
class Mixup(InputView):
    """`x_mix = lam * x_i + (1 - lam) * x_j`, `lam ~ Beta(alpha, alpha)`, `j` a permutation.

    One `lam` per example. The mixed batch has no hard label.

    Args:
        alpha: Beta distribution parameter (default 1.0: `lam` uniform).
        fixed_lambda: If set, use this `lam` for every example (tests,
            ablations) instead of sampling.
        seed: Random seed.

    Reference:
        Zhang et al. "mixup: Beyond Empirical Risk Minimization". ICLR 2018.
    """

    def __init__(self, alpha=1.0, fixed_lambda=None, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not alpha > 0:
            raise ValueError(f"Mixup alpha must be > 0, got {alpha}.")
        self.alpha = float(alpha)
        self.fixed_lambda = fixed_lambda

    def call(self, inputs, labels, side_inputs, training=None):
        batch = ops.shape(inputs)[0]
        if self.fixed_lambda is not None:
            lam = ops.full((batch,), float(self.fixed_lambda), dtype=inputs.dtype)
        else:
            g1 = keras.random.gamma((batch,), self.alpha, seed=self.seed_generator)
            g2 = keras.random.gamma((batch,), self.alpha, seed=self.seed_generator)
            lam = ops.cast(g1 / (g1 + g2), inputs.dtype)
        permutation = keras.random.shuffle(ops.arange(batch), seed=self.seed_generator)
        lam = ops.reshape(lam, (-1,) + (1,) * (len(inputs.shape) - 1))
        mixed = lam * inputs + (1.0 - lam) * ops.take(inputs, permutation, axis=0)
        return mixed, None

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha,
                "fixed_lambda": self.fixed_lambda}
