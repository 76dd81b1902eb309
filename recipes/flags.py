"""absl flags of the recipes, defined in one place; `config_from_flags` builds a RunConfig."""

from absl import flags

from recipes.config import RunConfig, parse_options

FLAGS = flags.FLAGS


def define_flags():
    """Defines every recipe flag (idempotent). Unset flags take the dataset preset."""
    if "dataset" in FLAGS:
        return
    flags.DEFINE_string("method", "kd", "Distillation method (see --list_methods).")
    flags.DEFINE_bool("list_methods", False, "Print the available methods and exit.")
    flags.DEFINE_string("method_options", "", "Method overrides: key=value,key=value.")
    flags.DEFINE_string("dataset", "fashion_mnist", "fashion_mnist, mnist or any TFDS name.")
    flags.DEFINE_string("data_dir", None, "IDX folder (Fashion-MNIST) or TFDS data_dir.")
    flags.DEFINE_string("unlabeled_data", None, "Unlabeled images for KD+'s "
                        "plus_source=unlabeled: a .npy/.npz file, an image folder, or "
                        "tfds:<name>[:<split>].")
    flags.DEFINE_string("teacher", None, "Zoo model name or .keras file (default: preset).")
    flags.DEFINE_string("teacher_weights", None, "Teacher .keras/.weights.h5 to load.")
    flags.DEFINE_string("student", None, "Zoo model name or .keras file (default: preset).")
    flags.DEFINE_integer("epochs", None, "Student epochs (default: preset).")
    flags.DEFINE_integer("teacher_epochs", None, "Epochs when the teacher must be trained.")
    flags.DEFINE_integer("batch_size", None, "Global batch size (default: preset).")
    flags.DEFINE_enum("optimizer", "sgd", ["sgd", "adam"], "Optimizer.")
    flags.DEFINE_float("learning_rate", None, "Initial learning rate (default: preset).")
    flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
    flags.DEFINE_float("weight_decay", None, "Weight decay (default: preset).")
    flags.DEFINE_enum("lr_schedule", None, ["step", "cosine", "constant"], "LR schedule.")
    flags.DEFINE_list("lr_decay_epochs", None, "Epochs of x lr_decay_rate (step schedule).")
    flags.DEFINE_float("lr_decay_rate", None, "Step schedule factor.")
    flags.DEFINE_string("augment", None, "none, flip, crop_flip, randaugment, mixup, cutmix.")
    flags.DEFINE_float("validation_split", 0.1, "Share of train held out (seeded, stratified).")
    flags.DEFINE_integer("limit", None, "Cap examples per split (quick runs).")
    flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker", "tpu"],
                      "tf.distribute strategy.")
    flags.DEFINE_enum("mixed_precision", None, ["mixed_float16", "mixed_bfloat16"],
                      "Mixed precision policy (distillation maths stays float32).")
    flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"], "XLA for the step.")
    flags.DEFINE_enum("teacher_cache", "auto", ["auto", "on", "off"],
                      "Precompute the teacher's logits once (auto: when the pipeline does not "
                      "augment and no method reads teacher features).")
    flags.DEFINE_string("model_dir", None, "Output folder (default runs/<dataset>-<method>-...).")
    flags.DEFINE_string("teacher_dir", None, "Where trained teachers are cached for reuse.")
    flags.DEFINE_list("export", [], "Export formats: saved_model,tflite_float32,tflite_float16,"
                      "tflite_dynamic_int8,tflite_int8.")
    flags.DEFINE_bool("overwrite", False, "Allow replacing existing export artifacts.")
    flags.DEFINE_bool("baseline", True, "Also train the student from scratch for comparison.")
    flags.DEFINE_integer("seed", 0, "Random seed of the student runs.")
    flags.DEFINE_integer("teacher_seed", 0, "Seed of the teacher (trained once, reused).")
    flags.DEFINE_bool("smoke", False, "Tiny data and one epoch: checks the pipeline end to end.")
    flags.DEFINE_integer("verbose", None, "Keras verbosity (default: bar on a TTY, else 2).")
    flags.DEFINE_float("label_noise", 0.0, "Training label noise rate in [0, 1).")
    flags.DEFINE_enum("label_noise_type", "symmetric", ["symmetric", "asymmetric"], "Noise type.")
    flags.DEFINE_float("imbalance_ratio", 1.0, "Long-tailed imbalance ratio (>= 1).")
    flags.DEFINE_enum("imbalance_profile", "exponential", ["exponential", "step"], "Profile.")


def config_from_flags():
    """A RunConfig from the parsed flags."""
    jit = {"auto": "auto", "true": True, "false": False}[FLAGS.jit_compile]
    decay = tuple(int(e) for e in FLAGS.lr_decay_epochs) if FLAGS.lr_decay_epochs else None
    return RunConfig(
        method=FLAGS.method, dataset=FLAGS.dataset, data_dir=FLAGS.data_dir,
        unlabeled_data=FLAGS.unlabeled_data,
        teacher=FLAGS.teacher, teacher_weights=FLAGS.teacher_weights, student=FLAGS.student,
        epochs=FLAGS.epochs, teacher_epochs=FLAGS.teacher_epochs, batch_size=FLAGS.batch_size,
        optimizer=FLAGS.optimizer, learning_rate=FLAGS.learning_rate, momentum=FLAGS.momentum,
        weight_decay=FLAGS.weight_decay, lr_schedule=FLAGS.lr_schedule, lr_decay_epochs=decay,
        lr_decay_rate=FLAGS.lr_decay_rate, augment=FLAGS.augment,
        validation_split=FLAGS.validation_split, limit=FLAGS.limit, strategy=FLAGS.strategy,
        mixed_precision=FLAGS.mixed_precision, jit_compile=jit,
        teacher_cache=FLAGS.teacher_cache, model_dir=FLAGS.model_dir,
        teacher_dir=FLAGS.teacher_dir, export=tuple(FLAGS.export), overwrite=FLAGS.overwrite,
        baseline=FLAGS.baseline, seed=FLAGS.seed, teacher_seed=FLAGS.teacher_seed, smoke=FLAGS.smoke,
        method_options=parse_options(FLAGS.method_options), verbose=FLAGS.verbose,
        label_noise=FLAGS.label_noise, label_noise_type=FLAGS.label_noise_type,
        imbalance_ratio=FLAGS.imbalance_ratio, imbalance_profile=FLAGS.imbalance_profile)
