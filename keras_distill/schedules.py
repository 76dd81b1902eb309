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
