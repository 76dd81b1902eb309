"""The teacher / student model zoo: CIFAR KD benchmark nets and Fashion-MNIST CNNs.

Every model is a functional `keras.Model` that outputs logits and has named
tap layers for feature distillation:

- `stage1`, `stage2`, `stage3` (and `stage4` for vgg / mobilenetv2): the
  feature map after each stage (`feature_taps(model)` lists them in order);
- `stem`: the map after the stem, `stageK_preact` (where it exists): the
  stage output before its final activation;
- `embedding`: the pooled pre-logit vector; `logits`: the Dense output.

Example:
    >>> from keras_distill import models
    >>> teacher = models.get("resnet32x4", num_classes=100)
    >>> student = models.get("resnet8x4", num_classes=100)
    >>> models.feature_taps(student)
    ['stage1', 'stage2', 'stage3']
    >>> app = models.get("keras.applications.ResNet50", num_classes=10,
    ...                  input_shape=(64, 64, 3))
"""

from keras_distill.models.applications import application_names, build_application
from keras_distill.models.fmnist import (
    fmnist_cnn, fmnist_student, fmnist_student_small, fmnist_student_wide, fmnist_teacher,
    fmnist_teacher_large, fmnist_teacher_medium, fmnist_teacher_small, fmnist_teacher_tiny)
from keras_distill.models.mobilenet import mobilenetv2
from keras_distill.models.registry import (
    SPECS, TAPS, ModelSpec, available, feature_taps, get, load, spec)
from keras_distill.models.resnet import (
    cifar_resnet, resnet8, resnet8x4, resnet14, resnet20, resnet32, resnet32x4, resnet44,
    resnet56, resnet110)
from keras_distill.models.shufflenet import shufflenetv1, shufflenetv2
from keras_distill.models.vgg import cifar_vgg, vgg8, vgg11, vgg13, vgg16, vgg19
from keras_distill.models.wrn import wide_resnet, wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2

__all__ = [
    "ModelSpec", "SPECS", "TAPS", "application_names", "available", "build_application",
    "cifar_resnet", "cifar_vgg", "feature_taps", "fmnist_cnn", "fmnist_student",
    "fmnist_student_small", "fmnist_student_wide", "fmnist_teacher", "fmnist_teacher_large",
    "fmnist_teacher_medium", "fmnist_teacher_small", "fmnist_teacher_tiny", "get", "load",
    "mobilenetv2", "resnet8", "resnet8x4", "resnet14", "resnet20", "resnet32", "resnet32x4",
    "resnet44", "resnet56", "resnet110", "shufflenetv1", "shufflenetv2", "spec", "vgg8", "vgg11",
    "vgg13", "vgg16", "vgg19", "wide_resnet", "wrn_16_1", "wrn_16_2", "wrn_40_1",
    "wrn_40_2",
]
