"""Distillation methods, one short file each, all `DistillationLoss` subclasses."""

from keras_distill.losses.base import DistillationLoss, kl_from_target, log_softmax_kl
from keras_distill.losses.combinators import ClassMask
from keras_distill.losses.attention_transfer import AT
from keras_distill.losses.bss import BSS
from keras_distill.losses.cc import CC
from keras_distill.losses.crd import CRD
from keras_distill.losses.dkd import DKD
from keras_distill.losses.dml import DML
from keras_distill.losses.dpk import DPK
from keras_distill.losses.fitnet import FitNet
from keras_distill.losses.fsp import FSP
from keras_distill.losses.kd import KD
from keras_distill.losses.pkt import PKT
from keras_distill.losses.rkd import RKD
from keras_distill.losses.sp import SP
from keras_distill.losses.vid import VID
from keras_distill.losses.keras_compat import from_keras
from keras_distill.losses.tang import TangKD
from keras_distill.losses.tllm import tllm_term

__all__ = [
    "DistillationLoss", "ClassMask", "from_keras", "log_softmax_kl", "kl_from_target",
    "KD", "DKD", "DPK", "FitNet", "AT", "FSP", "VID", "RKD", "SP", "PKT", "CC", "CRD",
    "DML", "BSS", "TangKD", "tllm_term",
]
