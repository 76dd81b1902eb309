"""TLLM (Teach Less, Learn More): KD that stops distilling on undistillable classes.

The maths is `keras_distill.losses.ClassMask` around a distillation term;
the identification is `keras_distill.callbacks.undistillable.UndistillableClasses`.
This file holds the term factory; the `tllm` recipe is
`keras_distill/methods/tllm.py`.
"""

from keras_distill.losses.combinators import ClassMask
from keras_distill.losses.kd import KD


def tllm_term(num_classes, term=None, temperature=4.0, mode="hard_label", initial_mask=None):
    """TLLM's loss term: KD for distillable classes, the hard label for the others.

    Per example (`m` the class mask, 1 for an undistillable class, a
    variable that `UndistillableClasses` assigns):

        L = (1 - m[y]) * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))
            + m[y] * CE(y, softmax(z_s))                  (mode "hard_label")

    so with weights `w_ce * CE + w_kd * L` a sample of an undistillable
    class carries the hard-label loss only, at its full weight
    `w_ce + w_kd`. Mode `"drop"` removes the term without replacing it (the
    sample keeps only `w_ce * CE`: 0.1 under KD's usual 0.1 / 0.9 balance,
    which starved the masked classes in our first measurement).

    Args:
        num_classes: Number of classes `K`.
        term: The distillation term to mask (default `KD(temperature)`);
            any per-example term works.
        temperature: `T` of the default KD term (default 4.0).
        mode: `ClassMask` mode: `"hard_label"` (default), `"drop"`,
            `"renormalize"` (drop, and remove the masked classes from every
            teacher distribution) or `"one_hot"` (masked samples distil
            towards their one-hot label at temperature T).
        initial_mask: Classes masked before the first update (default none).

    Returns:
        A `ClassMask`, named like the inner term (`"kd"`).

    Reference:
        Zhu, Liu, Xu, Liu, Meng, Wang, Ou, Tang. "Teach Less, Learn More: On
        the Undistillable Classes in Knowledge Distillation". NeurIPS 2022.
    """
    return ClassMask(term if term is not None else KD(temperature=temperature),
                     num_classes=num_classes, mode=mode, initial_mask=initial_mask)
