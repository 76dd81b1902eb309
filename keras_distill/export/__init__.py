"""Export a trained student to SavedModel and TFLite, with a parity check.

```python
from keras_distill import export

reports = export.export_student(
    distiller.student, "runs/kd/export",
    calibration_data=x_train, eval_data=(x_test, y_test))
print(export.format_table(reports))
```

Formats: `saved_model`, `tflite_float32`, `tflite_float16`,
`tflite_dynamic_int8`, `tflite_int8` (full integer, int8 input and output).
See docs/export.md.
"""

from keras_distill.export.convert import (
    FORMAT_DESCRIPTIONS,
    FORMATS,
    TFLITE_FORMATS,
    convert_to_tflite,
    float32_model,
    write_saved_model,
)
from keras_distill.export.exporter import (
    artifact_path,
    export_student,
    format_table,
    prepare_output_dir,
)
from keras_distill.export.parity import (
    DEFAULT_THRESHOLDS,
    ExportParityError,
    check_parity,
    compare_logits,
)
from keras_distill.export.runners import SavedModelRunner, TFLiteRunner, load_artifact

__all__ = [
    "DEFAULT_THRESHOLDS",
    "FORMATS",
    "FORMAT_DESCRIPTIONS",
    "TFLITE_FORMATS",
    "ExportParityError",
    "SavedModelRunner",
    "TFLiteRunner",
    "artifact_path",
    "check_parity",
    "compare_logits",
    "convert_to_tflite",
    "export_student",
    "float32_model",
    "format_table",
    "load_artifact",
    "prepare_output_dir",
    "write_saved_model",
]
