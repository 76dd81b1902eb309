"""Assign a variable from a function of the epoch."""

import keras


class VariableSchedule(keras.callbacks.Callback):
    """Sets `variable` to `schedule(epoch)` at the start of every epoch.

    The Distiller stores float loss weights as variables, so this changes a
    weight during `fit` without retracing (a Python float changed by a
    callback has no effect once the step is traced).

    Args:
        variable: A `keras.Variable`, or a term name whose weight variable
            to change (looked up on the Distiller being trained).
        schedule: `epoch (int, 0-based) -> float`.
        verbose: If true, print each change.

    Example:

    ```python
    # Distil for one epoch, then train on labels only.
    off_after_first = VariableSchedule("kd", lambda epoch: 0.9 if epoch < 1 else 0.0)
    distiller.fit(data, epochs=3, callbacks=[off_after_first])
    ```
    """

    def __init__(self, variable, schedule, verbose=False):
        super().__init__()
        self.variable = variable
        self.schedule = schedule
        self.verbose = verbose

    def _target(self):
        if isinstance(self.variable, str):
            weight = self.model.loss_weight(self.variable)
            if not isinstance(weight, keras.Variable):
                raise TypeError(
                    f"The weight of term {self.variable!r} is a schedule, not a variable; "
                    "VariableSchedule needs a float or keras.Variable weight.")
            return weight
        return self.variable

    def on_epoch_begin(self, epoch, logs=None):
        value = float(self.schedule(epoch))
        target = self._target()
        target.assign(value)
        if self.verbose:
            print(f"VariableSchedule: {target.path} = {value} at epoch {epoch}")
