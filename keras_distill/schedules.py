"""Step schedules for loss weights and other scalars.

Any `keras.optimizers.schedules.LearningRateSchedule` can be a loss weight
of the Distiller (evaluated at the optimizer's step every train step); this
module adds the ones distillation papers use.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_distill")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """`value * min(1, step / warmup_steps)`: a linear warm-up, then constant.

    DKD warms its distillation terms up over 20 epochs this way.

    Args:
        value: The value reached after warm-up.
        warmup_steps: Steps to reach it (e.g. `20 * steps_per_epoch`).

    Example:

    ```python
    weight = LinearWarmup(1.0, warmup_steps=20 * steps_per_epoch)
    Distiller(..., distillation_loss_weights=[weight])
    ```

    Reference:
        Zhao et al. "Decoupled Knowledge Distillation". CVPR 2022.
    """

    def __init__(self, value, warmup_steps):
        self.value = float(value)
        self.warmup_steps = int(warmup_steps)
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}.")

    def __call__(self, step):
        if self.warmup_steps == 0:
            return ops.convert_to_tensor(self.value, "float32")
        fraction = ops.minimum(ops.cast(step, "float32") / float(self.warmup_steps), 1.0)
        return self.value * fraction

    def get_config(self):
        return {"value": self.value, "warmup_steps": self.warmup_steps}


@keras.saving.register_keras_serializable(package="keras_distill")
class SigmoidRampUp(keras.optimizers.schedules.LearningRateSchedule):
    """`value * exp(-5 (1 - min(step, ramp_steps) / ramp_steps)^2)`: a sigmoid-shaped ramp-up.

    Starts at `value * exp(-5)` (0.7 % of it) and reaches `value` at
    `ramp_steps`, then stays there. ONE's reference code ramps its
    distillation weight up this way over the first 80 of 300 epochs.

    Args:
        value: The value reached after the ramp-up.
        ramp_steps: Steps of the ramp-up (0: constant `value`).

    Example:

    ```python
    weight = SigmoidRampUp(1.0, ramp_steps=80 * steps_per_epoch)
    ```

    Reference:
        Laine, Aila. "Temporal Ensembling for Semi-Supervised Learning". ICLR 2017.
    """

    def __init__(self, value, ramp_steps):
        self.value = float(value)
        self.ramp_steps = int(ramp_steps)
        if self.ramp_steps < 0:
            raise ValueError(f"ramp_steps must be >= 0, got {ramp_steps}.")

    def __call__(self, step):
        if self.ramp_steps == 0:
            return ops.convert_to_tensor(self.value, "float32")
        phase = 1.0 - ops.minimum(ops.cast(step, "float32") / float(self.ramp_steps), 1.0)
        return self.value * ops.exp(-5.0 * phase * phase)

    def get_config(self):
        return {"value": self.value, "ramp_steps": self.ramp_steps}
