"""DPK's training-only codec: aligners, encoders, token mixing and decoder.

One `PriorKnowledgeCodec` per distilled stage. It is owned and trained by
the Distiller (through `DPK.add_adapter`) and never exported with the
student. Tokens are the cells of a grid of `patch_size x patch_size`
patches: the aligners are strided convolutions that map each patch of the
student's and the teacher's feature map to one token of a common `width`.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_distill")
class PatchEmbedding(keras.layers.Layer):
    """Aligner: one `width`-wide token per `patch_size x patch_size` patch.

    A convolution with kernel and stride `patch_size` (`(B, H, W, C)` ->
    `(B, H/p, W/p, width)`); with `patch_size=1` a 1x1 projection.

    Args:
        width: Token width.
        patch_size: Patch side `p`; must divide the map's height and width.
    """

    def __init__(self, width, patch_size, **kwargs):
        super().__init__(**kwargs)
        self.width, self.patch_size = int(width), int(patch_size)
        self.projection = keras.layers.Conv2D(
            self.width, self.patch_size, strides=self.patch_size, dtype=self.dtype_policy,
            name="projection")

    def build(self, input_shape):
        self.projection.build(input_shape)

    def call(self, inputs):
        return self.projection(inputs)

    def compute_output_shape(self, input_shape):
        return self.projection.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "width": self.width, "patch_size": self.patch_size}


@keras.saving.register_keras_serializable(package="keras_distill")
class ResidualConvBlock(keras.layers.Layer):
    """`x + Conv3x3(ReLU(LayerNorm(x)))`: a small pre-norm encoder/decoder block.

    The residual path keeps the identity reachable, so the codec can pass a
    token through unchanged.
    """

    def build(self, input_shape):
        self.norm = keras.layers.LayerNormalization(dtype=self.dtype_policy, name="norm")
        self.conv = keras.layers.Conv2D(input_shape[-1], 3, padding="same",
                                        dtype=self.dtype_policy, name="conv")
        self.norm.build(input_shape)
        self.conv.build(input_shape)

    def call(self, inputs):
        return inputs + self.conv(ops.relu(self.norm(inputs)))

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="keras_distill")
class PriorKnowledgeCodec(keras.layers.Layer):
    """Aligns, encodes, mixes and decodes one stage's feature maps (DPK).

    `encode(student, teacher)` gives token grids `(B, H/p, W/p, width)`;
    `mix(student_tokens, teacher_tokens, ratio)` takes the teacher's token
    where `u >= ratio` (`u ~ U[0, 1)` per token, one draw shared by the
    whole batch as in the public re-implementation), so the expected teacher share
    is `1 - ratio`, all-student at `ratio = 1` and all-teacher at
    `ratio = 0`; `decode(hybrid)` maps the hybrid grid back to the
    teacher's `(B, H, W, teacher_channels)`.

    Args:
        width: Common token width.
        patch_size: Patch side `p`.
        teacher_channels: Channels of the teacher map the decoder predicts.
        depth: `ResidualConvBlock`s in each encoder and in the decoder
            (0: aligners and a transposed-convolution decoder only).
        seed: Seed of the mask's `keras.random.SeedGenerator` (tracked, so
            the stream is checkpointed with the adapter).
    """

    def __init__(self, width, patch_size, teacher_channels, depth=1, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.width, self.patch_size = int(width), int(patch_size)
        self.teacher_channels, self.depth, self.seed = int(teacher_channels), int(depth), seed
        policy = self.dtype_policy
        self.student_aligner = PatchEmbedding(self.width, self.patch_size, dtype=policy,
                                              name="student_aligner")
        self.teacher_aligner = PatchEmbedding(self.width, self.patch_size, dtype=policy,
                                              name="teacher_aligner")
        blocks = lambda role: [ResidualConvBlock(dtype=policy, name=f"{role}_block{i}")
                               for i in range(self.depth)]
        self.student_encoder, self.teacher_encoder = blocks("student"), blocks("teacher")
        self.decoder_blocks = blocks("decoder")
        self.unembedding = keras.layers.Conv2DTranspose(
            self.teacher_channels, self.patch_size, strides=self.patch_size, dtype=policy,
            name="unembedding")
        self.seed_generator = keras.random.SeedGenerator(seed, name=f"{self.name}_mask_seed")

    def build(self, student_shape, teacher_shape=None):
        teacher_shape = teacher_shape or student_shape
        self.student_aligner.build(student_shape)
        self.teacher_aligner.build(teacher_shape)
        token_shape = self.student_aligner.compute_output_shape(student_shape)
        for block in self.student_encoder + self.teacher_encoder + self.decoder_blocks:
            block.build(token_shape)
        self.unembedding.build(token_shape)

    @staticmethod
    def _run(blocks, tokens):
        for block in blocks:
            tokens = block(tokens)
        return tokens

    def encode(self, student, teacher):
        """Student and teacher token grids `(B, H/p, W/p, width)`."""
        return (self._run(self.student_encoder, self.student_aligner(student)),
                self._run(self.teacher_encoder, self.teacher_aligner(teacher)))

    def teacher_token_mask(self, grid_shape, ratio):
        """A `(1, gh, gw, 1)` boolean mask, True where the teacher's token is taken."""
        uniform = keras.random.uniform((1,) + tuple(grid_shape) + (1,), dtype="float32",
                                       seed=self.seed_generator)
        return uniform >= ops.cast(ratio, "float32")

    def mix(self, student_tokens, teacher_tokens, ratio):
        """The hybrid grid: teacher tokens where `u >= ratio`, student tokens elsewhere."""
        grid = tuple(student_tokens.shape[1:3])
        mask = self.teacher_token_mask(grid, ratio)
        return ops.where(mask, teacher_tokens, ops.cast(student_tokens, teacher_tokens.dtype))

    def decode(self, hybrid):
        """`(B, H/p, W/p, width)` -> `(B, H, W, teacher_channels)`."""
        return self.unembedding(self._run(self.decoder_blocks, hybrid))

    def call(self, student, teacher, ratio=0.5):
        return self.decode(self.mix(*self.encode(student, teacher), ratio))

    # Keras weight files skip seed-generator states; keep the mask stream resumable.
    def save_own_variables(self, store):
        super().save_own_variables(store)
        store["mask_seed_state"] = self.seed_generator.state.numpy()

    def load_own_variables(self, store):
        if "mask_seed_state" in store.keys():
            self.seed_generator.state.assign(store["mask_seed_state"])
        super().load_own_variables({k: store[k] for k in store.keys() if k != "mask_seed_state"})

    def get_config(self):
        return {**super().get_config(), "width": self.width, "patch_size": self.patch_size,
                "teacher_channels": self.teacher_channels, "depth": self.depth,
                "seed": self.seed}
