"""Learned regressors that map student features onto teacher features.

Training-only layers owned by a distillation term (and so by the
Distiller): trained and checkpointed with the student, never exported.

* `HintRegressor`: FitNet's hint regressor, a port of RepDistiller's
  `ConvReg` (convolution + BatchNorm + ReLU, with the convolution chosen
  from the two spatial sizes).
* `VariationalRegressor`: VID's Gaussian head, a port of RepDistiller's
  `VIDLoss` regressor (three 1x1 convolutions) and its per-channel
  learnable variance `softplus(log_scale) + eps`.
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops


def _spatial(shape):
    return tuple(shape[1:3])


@keras.saving.register_keras_serializable(package="keras_distill")
class HintRegressor(keras.layers.Layer):
    """FitNet's hint regressor: student feature map -> teacher feature shape.

    For 4-D features `(batch, H, W, C)` the convolution follows the
    reference `ConvReg`, from the student's height `H_s` and the teacher's
    `H_t` (widths likewise):

    * `H_s == 2 H_t`: 3x3 convolution, stride 2, padding 1;
    * `2 H_s == H_t`: 4x4 transposed convolution, stride 2, padding 1;
    * `H_s >= H_t`: "valid" convolution of kernel `(1 + H_s - H_t, 1 + W_s - W_t)`
      (a 1x1 convolution for equal sizes);
    * otherwise an error.

    then BatchNorm (PyTorch's eps 1e-5, momentum 0.1) and ReLU. For 2-D
    features `(batch, C)` it is Dense + BatchNorm + ReLU.

    Args:
        teacher_shape: The teacher feature's shape without the batch
            dimension, e.g. `(8, 8, 256)`.
        use_relu: Apply the final ReLU (the reference does for FitNet).
        batch_norm: Apply BatchNorm after the convolution.
        synchronized_batch_norm: Compute BatchNorm statistics over all
            replicas (identical results on 1 and N replicas; TF backend).
        **kwargs: `keras.layers.Layer` arguments.

    Reference:
        Romero et al. "FitNets: Hints for Thin Deep Nets". ICLR 2015;
        `ConvReg` in HobbitLong/RepDistiller `models/util.py`.
    """

    def __init__(self, teacher_shape, use_relu=True, batch_norm=True,
                 synchronized_batch_norm=True, **kwargs):
        super().__init__(**kwargs)
        if any(d is None for d in teacher_shape):
            raise ValueError(
                f"HintRegressor needs a fully known teacher feature shape, got "
                f"{tuple(teacher_shape)}; give the models a fixed input size.")
        self.teacher_shape = tuple(int(d) for d in teacher_shape)
        if len(self.teacher_shape) not in (1, 3):
            raise ValueError(
                f"HintRegressor maps onto 2-D (batch, C) or 4-D (batch, H, W, C) teacher "
                f"features, got teacher shape {self.teacher_shape} (batch excluded).")
        self.use_relu = bool(use_relu)
        self.batch_norm = bool(batch_norm)
        self.synchronized_batch_norm = bool(synchronized_batch_norm)
        self.padding = None
        self.projection = None
        self.normalization = None

    def _make_projection(self, student_shape):
        channels, dtype = self.teacher_shape[-1], self.dtype_policy
        if len(self.teacher_shape) == 1:
            if len(student_shape) != 2:
                raise ValueError(
                    f"HintRegressor: the teacher feature is a vector {self.teacher_shape} "
                    f"but the student feature has shape {tuple(student_shape)}; tap features "
                    "of the same rank.")
            return None, layers.Dense(channels, name="dense", dtype=dtype)
        if len(student_shape) != 4:
            raise ValueError(
                f"HintRegressor: the teacher feature is a map {self.teacher_shape} but the "
                f"student feature has shape {tuple(student_shape)}; tap features of the "
                "same rank.")
        (s_h, s_w), (t_h, t_w) = _spatial(student_shape), self.teacher_shape[:2]
        if s_h == 2 * t_h and s_w == 2 * t_w:
            # PyTorch's padding=1 on both sides (Keras "same" would pad bottom/right only).
            return (layers.ZeroPadding2D(1, name="pad", dtype=dtype),
                    layers.Conv2D(channels, 3, strides=2, name="conv", dtype=dtype))
        if 2 * s_h == t_h and 2 * s_w == t_w:
            # k=4, s=2: "same" crops 1 on each side, as PyTorch's padding=1.
            return None, layers.Conv2DTranspose(channels, 4, strides=2, padding="same",
                                                name="conv", dtype=dtype)
        if s_h >= t_h and s_w >= t_w:
            return None, layers.Conv2D(channels, (1 + s_h - t_h, 1 + s_w - t_w), name="conv",
                                       dtype=dtype)
        raise ValueError(
            f"HintRegressor cannot map a student feature of spatial size {(s_h, s_w)} onto "
            f"a teacher feature of size {(t_h, t_w)}: the student map must be twice, half, "
            "or at least the teacher's size (as RepDistiller's ConvReg). Tap a deeper "
            "teacher stage or a shallower student stage.")

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self.padding, self.projection = self._make_projection(input_shape)
        shape = input_shape
        if self.padding is not None:
            shape = self.padding.compute_output_shape(shape)
        self.projection.build(shape)
        output_shape = self.projection.compute_output_shape(shape)
        if tuple(output_shape[1:]) != self.teacher_shape:
            raise ValueError(
                f"HintRegressor maps {input_shape[1:]} to {tuple(output_shape[1:])}, not the "
                f"teacher's {self.teacher_shape}; give student and teacher maps whose sizes "
                "are equal, twice or half each other.")
        if self.batch_norm:
            self.normalization = layers.BatchNormalization(
                momentum=0.9, epsilon=1e-5, synchronized=self.synchronized_batch_norm,
                name="bn", dtype=self.dtype_policy)
            self.normalization.build(output_shape)
        self.built = True

    def call(self, inputs, training=False):
        outputs = inputs if self.padding is None else self.padding(inputs)
        outputs = self.projection(outputs)
        if self.normalization is not None:
            outputs = self.normalization(outputs, training=training)
        if self.use_relu:
            outputs = ops.relu(outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self.teacher_shape

    def get_config(self):
        return {**super().get_config(), "teacher_shape": list(self.teacher_shape),
                "use_relu": self.use_relu, "batch_norm": self.batch_norm,
                "synchronized_batch_norm": self.synchronized_batch_norm}


@keras.saving.register_keras_serializable(package="keras_distill")
class VariationalRegressor(keras.layers.Layer):
    """VID's Gaussian head: mean `mu(F_s)` and a per-channel variance.

        mu = W3 relu(W2 relu(W1 F_s)),   sigma^2_c = softplus(log_scale_c) + eps

    with `W1, W2, W3` 1x1 convolutions without bias (on maps) or Dense
    layers without bias (on vectors) and `log_scale` initialised so that
    `sigma^2 = init_variance` at the start.

    Args:
        target_channels: Channels of the teacher feature.
        mid_channels: Width of the hidden layers (default: `target_channels`,
            as the reference).
        init_variance: Initial `sigma^2` (reference 5.0).
        eps: Floor added to the variance (reference 1e-5).
        **kwargs: `keras.layers.Layer` arguments.

    Reference:
        Ahn et al. "Variational Information Distillation for Knowledge
        Transfer". CVPR 2019; `VIDLoss` in HobbitLong/RepDistiller.
    """

    def __init__(self, target_channels, mid_channels=None, init_variance=5.0, eps=1e-5,
                 **kwargs):
        super().__init__(**kwargs)
        if not init_variance > eps:
            raise ValueError(
                f"VariationalRegressor init_variance must be > eps ({eps}), got "
                f"{init_variance!r}. The reference uses 5.0.")
        self.target_channels = int(target_channels)
        self.mid_channels = int(mid_channels or target_channels)
        self.init_variance = float(init_variance)
        self.eps = float(eps)
        widths = (self.mid_channels, self.mid_channels, self.target_channels)
        self.projections = [
            layers.Dense(w, use_bias=False, name=f"conv{i + 1}", dtype=self.dtype_policy)
            for i, w in enumerate(widths)]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for projection in self.projections:
            projection.build(shape)
            shape = projection.compute_output_shape(shape)
        # softplus^-1(init_variance - eps), as the reference.
        inverse = math.log(math.expm1(self.init_variance - self.eps))
        self.log_scale = self.add_weight(
            shape=(self.target_channels,), name="log_scale",
            initializer=keras.initializers.Constant(inverse))
        self.built = True

    def variance(self):
        """`softplus(log_scale) + eps`, shape `(target_channels,)`."""
        return ops.softplus(ops.cast(self.log_scale, "float32")) + self.eps

    def call(self, inputs):
        hidden = inputs
        for index, projection in enumerate(self.projections):
            hidden = projection(hidden)
            if index < len(self.projections) - 1:
                hidden = ops.relu(hidden)
        return hidden

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.target_channels,)

    def get_config(self):
        return {**super().get_config(), "target_channels": self.target_channels,
                "mid_channels": self.mid_channels, "init_variance": self.init_variance,
                "eps": self.eps}
