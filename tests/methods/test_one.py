"""The `one` recipe builder (keras_distill/methods/one.py).

Moved from tests/losses/test_one.py (the maths of the term is tested there).
"""

import pytest

from keras_distill import methods
from keras_distill.methods import MethodContext
from keras_distill.native_ensemble import NativeEnsemble
from keras_distill.schedules import SigmoidRampUp
from keras_distill.testing import conv_net


def test_recipe_method_branches_the_last_stage_with_the_reference_ramp_up():
    student = conv_net("s", 4, seed=1)
    context = MethodContext(teacher=None, student=student, num_classes=3, epochs=30,
                            steps_per_epoch=10, student_taps=["stage1", "stage2"])
    assert not methods.needs_teacher("one")
    spec = methods.build("one", context)
    model = spec.model_builder(context, spec)
    assert isinstance(model, NativeEnsemble) and model.split == "stage1"
    assert model.num_branches == 3 and model.student is student
    ramp = model.distillation_loss_weight
    assert isinstance(ramp, SigmoidRampUp) and ramp.ramp_steps == 8 * 10  # 80/300 of 30
    context.options = {"branches": 2, "rampup_epochs": 0, "split": "stage2"}
    spec = methods.build("one", context)
    model = spec.model_builder(context, spec)
    assert model.num_branches == 2 and float(model.distillation_loss_weight.numpy()) == 1.0


def test_without_feature_taps_the_split_must_be_given():
    student = conv_net("s", 4, seed=1)
    context = MethodContext(teacher=None, student=student, num_classes=3)
    with pytest.raises(ValueError, match="split=<layer name>"):
        methods.build("one", context)
