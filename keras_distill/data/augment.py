"""Augmentation policies by name, built from Keras 3 preprocessing layers.

| name          | images (raw pixels, before normalising)      | mixing (after)        | labels |
|---------------|----------------------------------------------|-----------------------|--------|
| `none`        | -                                            | -                     | int    |
| `flip`        | horizontal flip (`keras.layers.RandomFlip`)  | -                     | int    |
| `crop`        | zero-pad `padding` + random crop             | -                     | int    |
| `crop_flip`   | pad + random crop + horizontal flip          | -                     | int    |
| `randaugment` | crop_flip, then `keras.layers.RandAugment`   | -                     | int    |
| `mixup`       | crop_flip                                    | `keras.layers.MixUp`  | soft   |
| `cutmix`      | crop_flip                                    | `keras.layers.CutMix` | soft   |

Every stage works on whole batches with per-image randomness (each image
gets its own crop offset, flip, RandAugment ops and magnitudes), which is
several times faster on CPU than mapping over single examples.

`randaugment`, `mixup` and `cutmix` run on top of a `base` policy
(`crop_flip` by default; `base="none"` for the layer alone). A list of
policies composes them in order.

MixUp and CutMix mix the labels too: the pipeline then yields one-hot /
soft labels of shape `(batch, num_classes)`, so the loss must accept
them (e.g. `keras.losses.CategoricalCrossentropy`, not the sparse one).

Seeding: the pipeline gives each batch its own seed tensor, drawn from
`tf.data.Dataset.random(seed)`; every random draw of the Keras layers is
derived from it with `tf.random.experimental.stateless_fold_in` (see
`SeedStream`). The layers' own stateful generators are never used, so a
given `seed` reproduces the same augmented stream, run after run, with a
parallel `map`, and each epoch still sees new augmentations.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import keras
import tensorflow as tf


class SeedStream(keras.random.SeedGenerator):
    """A stateless `SeedGenerator` fed by one seed tensor.

    The k-th call to `next()` returns `stateless_fold_in(seed, k)`. Passing it
    as `seed=` to a Keras preprocessing layer's `get_random_transformation`
    makes that layer's randomness a pure function of `seed`, which is what
    a parallel, reproducible `tf.data` pipeline needs (a layer's own
    `SeedGenerator` is a shared variable whose updates race under a
    parallel `map`).

    Args:
        seed: int32/int64 tensor of shape `(2,)`.
    """

    def __init__(self, seed):  # no super().__init__: this generator holds no variable
        self.name = "seed_stream"
        self._initial_seed = None
        self._seed = tf.cast(seed, tf.int64)
        self._count = 0

    def next(self, ordered=True):
        self._count += 1
        return tf.random.experimental.stateless_fold_in(self._seed, self._count)


ImagesFn = Callable[[tf.Tensor, SeedStream], tf.Tensor]
MixFn = Callable[[tf.Tensor, tf.Tensor, SeedStream], tuple]


class Augmentation:
    """An augmentation policy: an optional image stage and an optional mixing stage.

    Subclasses override `images_fn` and/or `mix_fn`; both work on batches
    and must draw per-image randomness from the `SeedStream` they receive.
    - `images_fn` gets float32 images `(B, H, W, C)` in the data's raw value
      range (0-255 for uint8 data), before normalisation.
    - `mix_fn` gets the normalised images and one-hot labels `(B, K)` and
      returns both mixed.

    Attributes:
        name: Registry name.
        soft_labels: True when labels are mixed (the pipeline then one-hot
            encodes them).
    """

    name = "none"
    soft_labels = False

    def images_fn(self, image_shape: tuple, value_range: tuple) -> Optional[ImagesFn]:
        """Returns the image function for this image shape and value range, or None."""
        return None

    def mix_fn(self, image_shape: tuple) -> Optional[MixFn]:
        """Returns the image-and-label mixing function, or None."""
        return None

    @property
    def is_identity(self) -> bool:
        """True when the policy leaves the data unchanged."""
        return False

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"


class Identity(Augmentation):
    """No augmentation (`"none"`)."""

    @property
    def is_identity(self) -> bool:
        return True


def _apply(layer, images, seed):
    transformation = layer.get_random_transformation(images, training=True, seed=seed)
    return layer.transform_images(images, transformation, training=True)


def random_crop(images, padding: int, seed: SeedStream):
    """Zero-pads each image by `padding` and crops it back at a random offset.

    Like `ZeroPadding2D(padding)` + `keras.layers.RandomCrop`, except that
    every image of the batch gets its own offset (`RandomCrop` draws one
    offset per batch).
    """
    height, width = images.shape[1], images.shape[2]
    padded = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]])
    batch = tf.shape(images)[0]
    offsets = tf.random.stateless_uniform(
        (batch, 2), seed=seed.next(), minval=0, maxval=2 * padding + 1, dtype=tf.int32
    )
    rows = offsets[:, :1] + tf.range(height)[tf.newaxis]
    cols = offsets[:, 1:] + tf.range(width)[tf.newaxis]
    cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(cropped, cols, axis=2, batch_dims=1)


class CropFlip(Augmentation):
    """Zero-pad then random crop back to size, and/or a horizontal flip.

    The standard CIFAR augmentation with `padding=4, flip=True` (pad-4
    random crop + `keras.layers.RandomFlip("horizontal")`), each image of a
    batch with its own offset and flip.

    Args:
        padding: Pixels of zero padding on each side before the crop; 0 for
            no crop. 4 is the CIFAR standard; 2 or 4 suit 28x28 images.
        flip: Random horizontal flip (avoid it on digits).
    """

    def __init__(self, padding: int = 4, flip: bool = True):
        if int(padding) < 0:
            raise ValueError(f"padding must be >= 0, got {padding}.")
        self.padding, self.flip = int(padding), bool(flip)
        self.name = {(True, True): "crop_flip", (True, False): "crop"}.get(
            (self.padding > 0, self.flip), "flip" if self.flip else "none"
        )

    @property
    def is_identity(self) -> bool:
        return self.padding == 0 and not self.flip

    def images_fn(self, image_shape, value_range):
        if self.is_identity:
            return None
        padding = self.padding
        flip = keras.layers.RandomFlip("horizontal", dtype="float32") if self.flip else None

        def apply(images, seed):
            if padding:
                images = random_crop(images, padding, seed)
            if flip is not None:
                images = _apply(flip, images, seed)
            return images

        return apply


class _OnBase(Augmentation):
    """A policy applied after a base policy (crop_flip by default)."""

    def __init__(self, base: Union[str, Augmentation] = "crop_flip", **base_options):
        self.base = get_augmentation(base, **base_options)

    def images_fn(self, image_shape, value_range):
        return self.base.images_fn(image_shape, value_range)

    def mix_fn(self, image_shape):
        return self.base.mix_fn(image_shape)


class RandAugmentPolicy(_OnBase):
    """`base` (default crop_flip), then `keras.layers.RandAugment`.

    Each image draws its own `num_ops` operations and magnitudes (the Keras
    layer alone draws the operations once per batch).

    Args:
        num_ops: Operations applied per image.
        factor: Strength in [0, 1].
        interpolation: `"bilinear"` or `"nearest"`.
        base: Policy applied first.
        **base_options: Options of the base policy, e.g. `padding=2`.

    Reference:
        Cubuk et al., "RandAugment", 2020, https://arxiv.org/abs/1909.13719
    """

    name = "randaugment"

    def __init__(
        self, num_ops=2, factor=0.5, interpolation="bilinear", base="crop_flip", **base_options
    ):
        super().__init__(base, **base_options)
        self.num_ops, self.factor, self.interpolation = int(num_ops), factor, interpolation

    def images_fn(self, image_shape, value_range):
        base = self.base.images_fn(image_shape, value_range)
        layer = keras.layers.RandAugment(
            value_range=tuple(value_range),
            num_ops=self.num_ops,
            factor=self.factor,
            interpolation=self.interpolation,
            dtype="float32",
        )
        operations = [getattr(layer, name) for name in layer._AUGMENT_LAYERS]
        num_ops = self.num_ops

        def apply(images, seed):
            if base is not None:
                images = base(images, seed)
            batch = tf.shape(images)[0]
            chosen = tf.random.stateless_uniform(
                (num_ops, batch), seed=seed.next(), minval=0, maxval=len(operations), dtype=tf.int32
            )
            for step in range(num_ops):
                result = images
                for index, operation in enumerate(operations):
                    transformed = _apply(operation, images, seed)
                    pick = tf.reshape(tf.equal(chosen[step], index), (-1, 1, 1, 1))
                    result = tf.where(pick, transformed, result)
                images = result
            return images

        return apply


class _Mixing(_OnBase):
    soft_labels = True
    layer_class = None

    def __init__(self, base="crop_flip", **options):
        base_options = {k: v for k, v in options.items() if k in ("padding", "flip")}
        self.layer_options = {k: v for k, v in options.items() if k not in base_options}
        super().__init__(base, **base_options)

    def mix_fn(self, image_shape):
        layer = self.layer_class(dtype="float32", **self.layer_options)

        def apply(images, labels, seed):
            data = {"images": images, "labels": labels}
            transformation = layer.get_random_transformation(data, training=True, seed=seed)
            images = layer.transform_images(images, transformation, training=True)
            labels = layer.transform_labels(labels, transformation, training=True)
            return images, labels

        return apply


class MixUpPolicy(_Mixing):
    """`base` on images, then `keras.layers.MixUp` on images and labels (soft labels).

    Args:
        alpha: Beta(alpha, alpha) parameter of the mixing weight (default 0.2).
        base: Image policy applied first (default crop_flip).

    Reference:
        Zhang et al., "mixup: Beyond Empirical Risk Minimization", 2018,
        https://arxiv.org/abs/1710.09412
    """

    name = "mixup"
    layer_class = keras.layers.MixUp


class CutMixPolicy(_Mixing):
    """`base` on images, then `keras.layers.CutMix` on images and labels (soft labels).

    Args:
        factor: Beta(factor, factor) parameter of the box area (default 1.0).
        base: Image policy applied first (default crop_flip).

    Reference:
        Yun et al., "CutMix", 2019, https://arxiv.org/abs/1905.04899
    """

    name = "cutmix"
    layer_class = keras.layers.CutMix


class Compose(Augmentation):
    """Runs several policies in order (all image stages, then all mixing stages)."""

    def __init__(self, policies: Sequence[Augmentation]):
        self.policies = [p for p in policies if not p.is_identity]
        self.name = "+".join(p.name for p in self.policies) or "none"
        self.soft_labels = any(p.soft_labels for p in self.policies)

    @property
    def is_identity(self) -> bool:
        return not self.policies

    def images_fn(self, image_shape, value_range):
        fns = [f for f in (p.images_fn(image_shape, value_range) for p in self.policies) if f]
        if not fns:
            return None

        def apply(images, seed):
            for fn in fns:
                images = fn(images, seed)
            return images

        return apply

    def mix_fn(self, image_shape):
        fns = [f for f in (p.mix_fn(image_shape) for p in self.policies) if f]
        if not fns:
            return None

        def apply(images, labels, seed):
            for fn in fns:
                images, labels = fn(images, labels, seed)
            return images, labels

        return apply


_REGISTRY = {
    "none": Identity,
    "flip": lambda: CropFlip(padding=0, flip=True),
    "crop": lambda padding=4: CropFlip(padding=padding, flip=False),
    "crop_flip": CropFlip,
    "randaugment": RandAugmentPolicy,
    "mixup": MixUpPolicy,
    "cutmix": CutMixPolicy,
}


def register_augmentation(name: str, factory: Callable[..., Augmentation]) -> None:
    """Adds a named policy; `factory(**options)` must return an `Augmentation`."""
    _REGISTRY[name] = factory


def available_augmentations() -> list:
    """Names accepted by `get_augmentation` / `make_dataset(augment=...)`."""
    return sorted(_REGISTRY)


def get_augmentation(spec=None, **options) -> Augmentation:
    """Resolves a policy from a name, an `Augmentation`, a list, or None.

    Args:
        spec: `None` or `"none"` (no augmentation), a registered name
            (`"flip"`, `"crop"`, `"crop_flip"`, `"randaugment"`, `"mixup"`,
            `"cutmix"`), an `Augmentation`, or a list of these (composed).
        **options: Options of a named policy, e.g. `padding=2`, `alpha=0.4`,
            `num_ops=3`, `base="none"`.

    Returns:
        An `Augmentation`.

    Raises:
        ValueError: unknown name (the message lists the known ones).

    Example:

    ```python
    policy = get_augmentation("crop_flip", padding=2)   # 28x28 images
    policy = get_augmentation("mixup", alpha=0.4)
    ```
    """
    if spec is None:
        return Identity()
    if isinstance(spec, Augmentation):
        return spec
    if isinstance(spec, (list, tuple)):
        return Compose([get_augmentation(item) for item in spec])
    if isinstance(spec, str):
        key = spec.strip().lower().replace("-", "_")
        if key not in _REGISTRY:
            raise ValueError(
                f"Unknown augmentation {spec!r}. Known: {', '.join(available_augmentations())} "
                "(or a list of them, or an Augmentation instance; add your own with "
                "register_augmentation)."
            )
        policy = _REGISTRY[key](**options)
        if not isinstance(policy, Augmentation):
            raise TypeError(
                f"augmentation factory {key!r} returned {policy!r}, not an Augmentation."
            )
        return policy
    raise TypeError(f"augment must be a name, an Augmentation, a list or None; got {spec!r}.")


def is_deterministic(augment) -> bool:
    """True when the augmentation leaves the inputs unchanged (`"none"`).

    A teacher-output cache is only valid for such pipelines: with any random
    augmentation the teacher sees different inputs every epoch.

    Args:
        augment: Anything `get_augmentation` accepts.

    Returns:
        Whether the pipeline's inputs are the same every epoch.
    """
    return get_augmentation(augment).is_identity
