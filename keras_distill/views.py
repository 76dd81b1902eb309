"""Input views: extra inputs a distillation term is computed on.

A term whose `input_view` is set is computed on the view's inputs instead of
the batch: the Distiller builds the view, runs the teacher (inference) and
the student on it together with the batch (one concatenated forward each),
and hands the term the outputs on the view. This is how KD+ distils beyond
the training points, and how any term gets the same "+".

A view returns `(inputs, labels)`; `labels` is `None` when the view has no
hard labels (mixup between samples, unlabeled data), in which case terms that
read labels receive the teacher's top-1 prediction instead. It may return a
third element, per-example sample weights of its inputs (e.g. 0 for padding
slots), which the Distiller passes to the terms computed on it.

A view that crafts its inputs with a network (BSS attacks the teacher)
declares `needs_teacher = True` / `needs_student = True`; the Distiller then
calls it with `teacher=` / `student=` the model.

Views are known by name (`keras_distill.terms.WeightedTerms.views`: the
layer's name, made unique): terms sharing one view object share its inputs
and its forward pass.
"""

import keras
import tensorflow as tf
from keras import ops

from keras_distill.features import single_output


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


@keras.saving.register_keras_serializable(package="keras_distill")
class CutMix(InputView):
    """Pastes a box of another example: `x_cut = (1 - M) * x_i + M * x_j`.

    `M` is a rectangle of height `round(H * sqrt(1 - lam))` and width
    `round(W * sqrt(1 - lam))`, `lam ~ Beta(alpha, alpha)` (one `lam` and
    one box per example), `j` a permutation of the batch. The box is placed
    uniformly at random *inside* the image, so its area is `(1 - lam) * H * W`
    up to rounding (original CutMix clips the box at the border and then
    corrects `lam`; here the view has no label to correct). Inputs are images
    `(batch, height, width, channels)` (channels last). The view has no hard
    label.

    Args:
        alpha: Beta distribution parameter (default 1.0: `lam` uniform).
        fixed_lambda: If set, use this `lam` for every example.
        seed: Random seed.

    Reference:
        Yun et al. "CutMix: Regularization Strategy to Train Strong
        Classifiers with Localizable Features". ICCV 2019.
    """

    def __init__(self, alpha=1.0, fixed_lambda=None, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not alpha > 0:
            raise ValueError(f"CutMix alpha must be > 0, got {alpha}.")
        if fixed_lambda is not None and not 0.0 <= fixed_lambda <= 1.0:
            raise ValueError(f"CutMix fixed_lambda must be in [0, 1], got {fixed_lambda}.")
        self.alpha = float(alpha)
        self.fixed_lambda = fixed_lambda

    def box_mask(self, inputs):
        """The `(batch, H, W, 1)` 0/1 mask of the pasted boxes."""
        if len(inputs.shape) != 4:
            raise ValueError(
                f"CutMix needs image inputs (batch, height, width, channels), got shape "
                f"{tuple(inputs.shape)}. Use Mixup or GaussianNoise for other inputs.")
        shape = ops.shape(inputs)
        batch, height, width = shape[0], shape[1], shape[2]
        if self.fixed_lambda is not None:
            lam = ops.full((batch,), float(self.fixed_lambda), dtype="float32")
        else:
            g1 = keras.random.gamma((batch,), self.alpha, seed=self.seed_generator)
            g2 = keras.random.gamma((batch,), self.alpha, seed=self.seed_generator)
            lam = g1 / (g1 + g2)
        side = ops.sqrt(1.0 - lam)
        box_h = ops.round(side * ops.cast(height, "float32"))
        box_w = ops.round(side * ops.cast(width, "float32"))
        u = keras.random.uniform((2, batch), seed=self.seed_generator)
        top = ops.floor(u[0] * (ops.cast(height, "float32") - box_h + 1.0))
        left = ops.floor(u[1] * (ops.cast(width, "float32") - box_w + 1.0))
        top = ops.minimum(top, ops.cast(height, "float32") - box_h)
        left = ops.minimum(left, ops.cast(width, "float32") - box_w)
        rows = ops.cast(ops.arange(height), "float32")[None, :, None]
        cols = ops.cast(ops.arange(width), "float32")[None, None, :]
        inside = ((rows >= top[:, None, None]) & (rows < (top + box_h)[:, None, None])
                  & (cols >= left[:, None, None]) & (cols < (left + box_w)[:, None, None]))
        return ops.cast(inside, inputs.dtype)[..., None]

    def call(self, inputs, labels, side_inputs, training=None):
        mask = self.box_mask(inputs)
        permutation = keras.random.shuffle(ops.arange(ops.shape(inputs)[0]),
                                           seed=self.seed_generator)
        other = ops.take(inputs, permutation, axis=0)
        return (1.0 - mask) * inputs + mask * other, None

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha,
                "fixed_lambda": self.fixed_lambda}


@keras.saving.register_keras_serializable(package="keras_distill")
class GaussianNoise(InputView):
    """`x_noisy = x + stddev * eps`, `eps ~ N(0, 1)` per input element.

    The noise is absolute: pick `stddev` on the scale of the model's inputs
    (e.g. 0.1 for images in [0, 1]). The view has no hard label.

    Args:
        stddev: Standard deviation of the noise (default 0.1), >= 0.
        seed: Random seed.
    """

    def __init__(self, stddev=0.1, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not stddev >= 0:
            raise ValueError(f"GaussianNoise stddev must be >= 0, got {stddev}.")
        self.stddev = float(stddev)

    def call(self, inputs, labels, side_inputs, training=None):
        noise = keras.random.normal(ops.shape(inputs), stddev=self.stddev,
                                    dtype=inputs.dtype, seed=self.seed_generator)
        return inputs + noise, None

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev}


@keras.saving.register_keras_serializable(package="keras_distill")
class BoundarySupportingSamples(InputView):
    """Adversarial samples of the teacher near its decision boundary (BSS).

    From each selected base example, an iterative targeted attack on the
    TEACHER moves the input from the teacher's top-1 class `b` toward a
    target class `k`:

        x <- x + eta * (z_b(x) - z_k(x) + eps) * g / ||g||_2,
        g = grad_x (z_k(x) - z_b(x)),

    (`z` the teacher's logits, inference mode) for at most `num_steps`
    steps, each example stopping as soon as the teacher's top-1 is no longer
    `b`: the sample then lies just across the boundary between `b` and `k`.
    The target `k` is sampled from the teacher's softmax renormalised over
    the classes other than `b` (`target_class="sample"`), or is the teacher's
    second class (`"second"`).

    Base examples (as in the reference code): those both the teacher and the
    student classify correctly (with no labels: those the student classifies
    as the teacher does), ranked by how much the two disagree off the true
    class, `sum_{c != y} (p_t,c - p_s,c)^2`, and the top `sample_fraction` of
    the batch kept. The view has a fixed size, `ceil(sample_fraction * batch)`:
    when fewer bases qualify, the remaining slots hold other examples with
    weight 0. It returns `(samples, None, weights)`: a term using it
    (`keras_distill.losses.BSS`, i.e. KD on these samples) gets `weights` as
    its sample weights, so its value is `sum(w_i L_i) / num_samples`.

    The Distiller gives the view the teacher (and, with `select_by_student`,
    the student) because it declares `needs_teacher` / `needs_student`.
    Samples are constants for the student's loss: no gradient flows back
    through the attack into the teacher.

    Cost per train step: one teacher and one student forward on the batch
    (selection; the student in inference mode), then up to `num_steps`
    teacher forward+backward passes on `ceil(sample_fraction * batch)`
    examples, then both networks on those examples with the batch. With the
    defaults (10 steps, 25%) that is at most about 9 extra teacher-forward
    equivalents per step (a backward costs ~2 forwards); the early stop
    usually ends the loop sooner. Set `max_steps` to 0 (a variable; e.g. by
    a callback once the BSS weight reaches 0) to skip the attack.

    Args:
        num_steps: Maximum attack steps (reference: 10).
        step_size: `eta`, in input units (reference: 0.3, on inputs
            normalised per channel).
        epsilon: `eps` added to the logit margin (reference: 1e-4).
        sample_fraction: Share of the batch attacked (reference: 64 of 256).
            With several replicas the top share is taken in each replica's
            part of the batch.
        target_class: `"sample"` (reference) or `"second"`.
        select_by_student: Rank and filter bases with the student's
            predictions (reference). If False the student is not run and
            eligible bases are taken in random order.
        clip_range: Optional `(min, max)` the samples are clipped to after
            each step (the reference clips normalised CIFAR inputs to
            [-2.5, 2.5]); None for no clipping.
        seed: Random seed (target sampling, random ranking).

    Reference:
        Heo, Lee, Yun, Choi. "Knowledge Distillation with Adversarial Samples
        Supporting Decision Boundary". AAAI 2019. arXiv:1805.05532;
        github.com/bhheo/BSS_distillation (attacks/attack_BSS.py).
    """

    needs_teacher = True
    TARGETS = ("sample", "second")

    def __init__(self, num_steps=10, step_size=0.3, epsilon=1e-4, sample_fraction=0.25,
                 target_class="sample", select_by_student=True, clip_range=None, seed=None,
                 **kwargs):
        super().__init__(seed=seed, **kwargs)
        if int(num_steps) < 0 or int(num_steps) != num_steps:
            raise ValueError(f"num_steps must be an integer >= 0, got {num_steps!r}.")
        if not step_size > 0:
            raise ValueError(f"step_size must be > 0, got {step_size!r}.")
        if not 0.0 < sample_fraction <= 1.0:
            raise ValueError(f"sample_fraction must be in (0, 1], got {sample_fraction!r}.")
        if target_class not in self.TARGETS:
            raise ValueError(f"target_class must be one of {self.TARGETS}, got {target_class!r}.")
        if clip_range is not None and not (len(clip_range) == 2 and clip_range[0] < clip_range[1]):
            raise ValueError(f"clip_range must be (min, max) with min < max, got {clip_range!r}.")
        self.num_steps = int(num_steps)
        self.step_size = float(step_size)
        self.epsilon = float(epsilon)
        self.sample_fraction = float(sample_fraction)
        self.target_class = target_class
        self.select_by_student = bool(select_by_student)
        self.needs_student = self.select_by_student
        self.clip_range = tuple(float(c) for c in clip_range) if clip_range is not None else None
        self.max_steps = keras.Variable(float(num_steps), trainable=False, dtype="float32",
                                        name="max_steps")

    def call(self, inputs, labels, side_inputs, training=None, teacher=None, student=None):
        if teacher is None:
            raise ValueError(
                "BoundarySupportingSamples attacks the teacher: call it with teacher=<model> "
                "(the Distiller does so for views whose needs_teacher is True).")
        teacher_logits = ops.cast(single_output(teacher(inputs, training=False), "teacher"),
                                  "float32")
        teacher_top = ops.cast(ops.argmax(teacher_logits, axis=-1), "int32")
        reference = teacher_top if labels is None else ops.reshape(ops.cast(labels, "int32"), (-1,))
        eligible = ops.equal(teacher_top, reference)
        batch = ops.shape(inputs)[0]
        if self.select_by_student and student is not None:
            student_logits = ops.cast(
                single_output(student(inputs, training=False), "student"), "float32")
            eligible = eligible & ops.equal(
                ops.cast(ops.argmax(student_logits, axis=-1), "int32"), reference)
            diff = ops.square(ops.softmax(teacher_logits) - ops.softmax(student_logits))
            score = ops.sum(diff * (1.0 - ops.one_hot(reference, ops.shape(diff)[-1])), axis=-1)
        else:
            score = keras.random.uniform((batch,), seed=self.seed_generator)
        count = ops.maximum(1, ops.cast(ops.ceil(
            self.sample_fraction * ops.cast(batch, "float32")), "int32"))
        _, index = tf.math.top_k(ops.where(eligible, score, -1.0), k=count)
        weights = ops.cast(ops.take(eligible, index), "float32")
        source = ops.take(teacher_top, index)
        target = self.target_classes(ops.take(teacher_logits, index, axis=0), source)
        crafted = self.craft(teacher, ops.take(inputs, index, axis=0), source, target)
        return tf.stop_gradient(crafted), None, weights

    def target_classes(self, logits, source):
        """Target class per example: sampled from softmax(logits) without `source`, or the 2nd."""
        is_source = ops.one_hot(source, ops.shape(logits)[-1]) > 0
        others = ops.where(is_source, -1e9, logits)  # softmax over the non-top-1 classes
        if self.target_class == "second":
            return ops.cast(ops.argmax(others, axis=-1), "int32")
        drawn = keras.random.categorical(others, 1, seed=self.seed_generator)
        return ops.cast(drawn[:, 0], "int32")

    def craft(self, teacher, inputs, source, target):
        """Runs the attack from `inputs` (class `source`) toward class `target`.

        Args:
            teacher: The model attacked (logits output, run in inference mode).
            inputs: `(n, ...)` base examples.
            source: `(n,)` the teacher's top-1 classes on `inputs`.
            target: `(n,)` target classes.

        Returns:
            `(n, ...)` crafted samples.
        """
        inputs = ops.convert_to_tensor(inputs)
        source, target = ops.cast(source, "int32"), ops.cast(target, "int32")
        reduce_axes = list(range(1, len(inputs.shape)))
        broadcast = (-1,) + (1,) * (len(inputs.shape) - 1)

        def body(step, x, any_active):
            with tf.GradientTape() as tape:
                tape.watch(x)
                logits = ops.cast(single_output(teacher(x, training=False), "teacher"),
                                  "float32")
                classes = ops.shape(logits)[-1]
                gap = ops.sum(logits * (ops.one_hot(target, classes)  # z_k - z_b
                                        - ops.one_hot(source, classes)), axis=-1)
                objective = ops.sum(gap)
            gradient = tape.gradient(objective, x)
            active = ops.equal(ops.cast(ops.argmax(logits, axis=-1), "int32"), source)
            norm = ops.sqrt(ops.sum(ops.square(gradient), axis=reduce_axes))
            scale = ops.where(active, self.step_size * (self.epsilon - gap) / (norm + 1e-12), 0.0)
            x = x + ops.reshape(ops.cast(scale, x.dtype), broadcast) * gradient
            if self.clip_range is not None:
                x = ops.clip(x, *self.clip_range)
            return step + 1, x, ops.any(active)

        def keep_going(step, x, any_active):
            return (step < ops.cast(self.max_steps, "int32")) & any_active

        _, crafted, _ = tf.while_loop(
            keep_going, body, (tf.constant(0), inputs, tf.constant(True)))
        return crafted

    def get_config(self):
        return {**super().get_config(), "num_steps": self.num_steps,
                "step_size": self.step_size, "epsilon": self.epsilon,
                "sample_fraction": self.sample_fraction, "target_class": self.target_class,
                "select_by_student": self.select_by_student, "clip_range": self.clip_range}
