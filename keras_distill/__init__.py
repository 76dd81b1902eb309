"""keras_distill: knowledge distillation for Keras 3 / TensorFlow."""

import os as _os

_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from keras_distill import features, losses, methods, schedules, views  # noqa: E402
from keras_distill.cohort import Cohort  # noqa: E402
from keras_distill.distiller import Distiller  # noqa: E402
from keras_distill.native_ensemble import NativeEnsemble  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Distiller", "Cohort", "NativeEnsemble", "losses", "methods", "features", "schedules",
           "views"]
