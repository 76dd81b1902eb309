"""Speed benchmark: what distillation costs on top of training the student alone.

    python -m benchmarks.speed                     # both pairs, 30 timed steps each
    python -m benchmarks.speed --quick             # Fashion-MNIST pair, 10 steps (~2-3 min)
    python -m benchmarks.speed --pairs=resnet32x4:resnet8x4 --steps=50
    python -m benchmarks.speed --pairs=resnet32x4:resnet8x4 --against=torch \
        --torch_python=/path/to/venv-with-torch/bin/python --repeats=3

For each teacher:student pair (on random in-memory data of the pair's shape,
repeated), every configuration runs in its own subprocess (clean peak memory,
no shared caches) and times `--steps` steps after `--warmup` steps (tracing,
allocator warm-up) with a batch-end callback:

    student            the student alone: keras fit (the floor)
    teacher_inference  the teacher alone: forward in inference mode (keras evaluate)
    kd                 our Distiller, KD (T=4)
    feature            our Distiller, keras.distillation.FeatureDistillation("mse",
                       "stage3", "stage3") converted to our term (one student forward)
    fitnet, at         our Distiller with FitNet("stage3") / AT() (when those files exist)
    cached             our Distiller, KD, batches carrying "teacher_outputs" from a
                       TeacherCache (no teacher forward)
    keras_logits       keras.distillation.Distiller + LogitsDistillation(temperature=4)
    keras_feature      keras.distillation.Distiller + the same FeatureDistillation

With `--against=torch`, the same rounds also run `benchmarks/torch_steps.py` in the
interpreter `--torch_python` (one with `pip install torch`; never a dependency of the
package): `torch_student`, `torch_teacher_inference` and `torch_kd`, the same models
(RepDistiller's definitions), batch, optimizer and loss, interleaved with ours round by
round, and reports our examples/s over theirs for each of the three steps
(target >= 1.0).

It reports the ratios of per-step times (median wall time; the same ratios
from process CPU time per step are reported next to them, steadier when
other jobs share the machine):

    overhead     = kd / (student + teacher_inference)     target <= 1.05
    cached_ratio = cached / student                       target <= 1.05
    feature_speedup = keras_feature / feature             target >= 1.3
    kd_vs_keras_logits = keras_logits / kd                (information)
    student_vs_torch = torch_student / student            target >= 1.0 (--against=torch)
    teacher_vs_torch = torch_teacher_inference / teacher_inference   target >= 1.0
    kd_vs_torch      = torch_kd / kd                      target >= 1.0

The Fashion-MNIST pair has no teacher/student tap of equal shape (128 vs 48
channels at stage3), so `feature`/`keras_feature` are n/a there.

Writes `benchmarks/results/speed-<teacher>-<student>.json` (`...-quick.json`
with `--quick`) and prints a table.
Never asserts: a configuration that fails is reported with its error. Wall
time on a shared machine is noisy: say what else ran with the numbers.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time

from absl import app, flags

PAIRS = {
    "resnet32x4:resnet8x4": dict(input_shape=(32, 32, 3), num_classes=100, batch_size=64,
                                 feature_tap="stage3", adapter_tap="stage3"),
    # fmnist_teacher / fmnist_student stages differ in channels (128 vs 48 at stage3): no
    # equal-shape tap for FeatureDistillation; FitNet (adapter) and AT (attention maps) fit.
    "fmnist_teacher:fmnist_student": dict(input_shape=(28, 28, 1), num_classes=10,
                                          batch_size=128, feature_tap=None,
                                          adapter_tap="stage3"),
}
CONFIGS = ("student", "teacher_inference", "kd", "feature", "fitnet", "at", "cached",
           "keras_logits", "keras_feature")
TORCH_CONFIGS = ("torch_student", "torch_teacher_inference", "torch_kd")
TORCH_PAIRS = ("resnet32x4:resnet8x4",)  # the pairs benchmarks/torch_steps.py defines
TARGETS = {"overhead": ("<=", 1.05), "cached_ratio": ("<=", 1.05),
           "feature_speedup": (">=", 1.3), "student_vs_torch": (">=", 1.0),
           "teacher_vs_torch": (">=", 1.0), "kd_vs_torch": (">=", 1.0)}
RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

FLAGS = flags.FLAGS


def define_flags():
    if "pairs" in FLAGS:
        return
    flags.DEFINE_list("pairs", list(PAIRS), "teacher:student pairs (zoo names) to time.")
    flags.DEFINE_list("configs", list(CONFIGS), "Configurations to run (see the docstring).")
    flags.DEFINE_integer("steps", 30, "Timed steps per configuration.")
    flags.DEFINE_integer("warmup", 5, "Untimed steps first (tracing, warm-up).")
    flags.DEFINE_integer("batch_size", None, "Override the pair's batch size.")
    flags.DEFINE_bool("quick", False, "Fashion-MNIST pair only, 10 timed steps, 3 warm-up.")
    flags.DEFINE_integer("repeats", 1, "Rounds over all configurations; each configuration "
                         "reports its least disturbed round (shortest median step).")
    flags.DEFINE_bool("isolate", True, "One subprocess per configuration (peak memory).")
    flags.DEFINE_enum("mixed_precision", None, ["mixed_bfloat16", "mixed_float16"],
                      "Mixed precision policy for every configuration.")
    flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"], "XLA for the step.")
    flags.DEFINE_string("output_dir", RESULTS_DIR, "Where speed-<pair>.json is written.")
    flags.DEFINE_enum("against", None, ["torch"], "Also time the same steps in PyTorch "
                      "(benchmarks/torch_steps.py), interleaved with ours.")
    flags.DEFINE_string("torch_python", sys.executable, "Python interpreter that has torch, "
                        "for --against=torch.")
    flags.DEFINE_string("note", "", "Free text stored with the results (e.g. machine load).")
    flags.DEFINE_string("child", None, "Internal: run one configuration (JSON) and print it.")


# ------------------------------------------------------------ one configuration
class StepTimer:
    """Keras callback: wall and process-CPU time of each batch after `warmup`.

    The median wall time per step is robust to the pauses other processes
    cause on a shared machine; the CPU time per step (all threads of this
    process) measures the work done, whatever else runs.
    """

    def __init__(self, warmup):
        import keras

        timer = self

        class _Callback(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                timer.mark(batch)

            def on_test_batch_end(self, batch, logs=None):
                timer.mark(batch)

        self.warmup = warmup
        self.callback = _Callback()
        self.walls, self.cpus = [], []

    def mark(self, batch):
        if batch >= self.warmup - 1:
            self.walls.append(time.perf_counter())
            self.cpus.append(time.process_time())

    @property
    def count(self):
        return max(0, len(self.walls) - 1)

    def seconds_per_step(self):
        """Median wall seconds of the timed steps."""
        steps = sorted(b - a for a, b in zip(self.walls, self.walls[1:]))
        if not steps:
            return None
        middle = len(steps) // 2
        return steps[middle] if len(steps) % 2 else 0.5 * (steps[middle - 1] + steps[middle])

    def mean_seconds_per_step(self):
        return (self.walls[-1] - self.walls[0]) / self.count if self.count else None

    def cpu_seconds_per_step(self):
        return (self.cpus[-1] - self.cpus[0]) / self.count if self.count else None


def _models(teacher_name, student_name, spec):
    from keras_distill import models

    kwargs = dict(num_classes=spec["num_classes"], input_shape=tuple(spec["input_shape"]))
    return models.get(teacher_name, **kwargs), models.get(student_name, **kwargs)


def _data(spec, batch_size, teacher=None):
    """A repeated in-memory dataset; with a teacher, batches carry its cached outputs."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    count = batch_size * 8
    x = rng.random((count,) + tuple(spec["input_shape"])).astype("float32")
    y = rng.integers(0, spec["num_classes"], count)
    if teacher is None:
        return tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(
            batch_size, drop_remainder=True).prefetch(2)
    # The recipes' path: TeacherCache.compute once, attach to batches by example index.
    from keras_distill.teacher_cache import TeacherCache

    cache = TeacherCache.compute(teacher, x, batch_size=batch_size, verbose=False)
    batches = tf.data.Dataset.from_tensor_slices(
        ({"inputs": x, "index": np.arange(count)}, y)).repeat().batch(
            batch_size, drop_remainder=True)
    return cache.attach(batches).prefetch(2)


def _feature_term(tap):
    import keras

    return keras.distillation.FeatureDistillation(loss="mse", teacher_layer_name=tap,
                                                  student_layer_name=tap)


def _build(config, teacher, student, tap, adapter_tap):
    """The model to fit for a configuration (None for teacher_inference)."""
    import keras

    from keras_distill.distiller import Distiller
    from keras_distill.losses.kd import KD

    if config == "student":
        return student
    if config in ("kd", "cached"):
        return Distiller(teacher, student, [KD(temperature=4.0)], [0.9], student_loss_weight=0.1)
    if config == "feature":
        return Distiller(teacher, student, [_feature_term(tap)], [0.5], student_loss_weight=0.5)
    if config == "fitnet":
        from keras_distill.losses.fitnet import FitNet

        return Distiller(teacher, student, [FitNet(teacher_tap=adapter_tap)], [100.0],
                         student_loss_weight=1.0)
    if config == "at":
        from keras_distill.losses.attention_transfer import AT

        return Distiller(teacher, student, [AT()], [1000.0], student_loss_weight=1.0)
    if config == "keras_logits":
        return keras.distillation.Distiller(
            teacher, student, [keras.distillation.LogitsDistillation(temperature=4.0)],
            distillation_loss_weights=[1.0], student_loss_weight=0.5)
    if config == "keras_feature":
        return keras.distillation.Distiller(
            teacher, student, [_feature_term(tap)], distillation_loss_weights=[1.0],
            student_loss_weight=0.5)
    raise ValueError(f"Unknown configuration {config!r}; choose from {CONFIGS}.")


def run_config(job):
    """Times one configuration in this process; returns a result dict."""
    import keras
    import tensorflow as tf

    pair, config = job["pair"], job["config"]
    spec = PAIRS[pair]
    batch_size = job["batch_size"] or spec["batch_size"]
    if job.get("mixed_precision"):
        keras.mixed_precision.set_global_policy(job["mixed_precision"])
    keras.utils.set_random_seed(0)
    teacher_name, student_name = pair.split(":")
    teacher, student = _models(teacher_name, student_name, spec)
    steps = job["warmup"] + job["steps"]
    timer = StepTimer(job["warmup"])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    jit = {"auto": "auto", "true": True, "false": False}[job.get("jit_compile", "auto")]
    if config == "teacher_inference":
        teacher.compile(loss=loss, jit_compile=jit)
        teacher.evaluate(_data(spec, batch_size), steps=steps, verbose=0,
                         callbacks=[timer.callback])
        model = teacher
    else:
        model = _build(config, teacher, student, spec["feature_tap"], spec["adapter_tap"])
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss=loss,
                      jit_compile=jit)
        data = _data(spec, batch_size, teacher if config == "cached" else None)
        model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[timer.callback])
    seconds = timer.seconds_per_step()
    return {"pair": pair, "config": config, "batch_size": batch_size,
            "seconds_per_step": seconds, "steps_per_second": 1.0 / seconds if seconds else None,
            "mean_seconds_per_step": timer.mean_seconds_per_step(),
            "cpu_seconds_per_step": timer.cpu_seconds_per_step(),
            "examples_per_second": batch_size / seconds if seconds else None,
            "timed_steps": timer.count, "warmup_steps": job["warmup"],
            "jit_compile": bool(getattr(model, "jit_compile", False)),
            "policy": keras.config.dtype_policy().name,
            "peak_rss_mb": _peak_rss_mb(),
            "teacher_params": int(teacher.count_params()),
            "student_params": int(student.count_params()),
            "tf_version": tf.__version__, "keras_version": keras.__version__}


def _peak_rss_mb():
    """Peak resident memory of this process (Linux reports KB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0), 1)


def unavailable(pair, config):
    """Why a configuration cannot run for a pair, or None."""
    if config in ("feature", "keras_feature") and PAIRS[pair]["feature_tap"] is None:
        return "no teacher/student tap of equal shape for FeatureDistillation"
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    files = {"fitnet": "fitnet.py", "at": "attention_transfer.py"}
    if config in files and not os.path.exists(
            os.path.join(here, "keras_distill", "losses", files[config])):
        return f"keras_distill/losses/{files[config]} is not in this checkout"
    return None


def _run_isolated(job, torch_python=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    here = os.path.dirname(os.path.abspath(__file__))
    if job["config"] in TORCH_CONFIGS:
        command = [torch_python, os.path.join(here, "torch_steps.py"), json.dumps(job)]
    else:
        command = [sys.executable, "-m", "benchmarks.speed", f"--child={json.dumps(job)}"]
    process = subprocess.run(command, cwd=os.path.dirname(here), env=env,
                             capture_output=True, text=True)
    for line in process.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (process.stderr or process.stdout).strip().splitlines()[-3:]
    return {"pair": job["pair"], "config": job["config"],
            "error": f"exit {process.returncode}: {' | '.join(tail)}"}


def _run_here(job):
    import keras

    try:
        result = run_config(job)
        result["peak_rss_mb"] = None  # shared process: not this configuration's peak
        return result
    except Exception as error:  # noqa: BLE001 - reported, never raised
        return {"pair": job["pair"], "config": job["config"],
                "error": f"{type(error).__name__}: {error}"}
    finally:
        keras.mixed_precision.set_global_policy("float32")
        keras.backend.clear_session()


# ------------------------------------------------------------------- report
def ratios(by_config, key="seconds_per_step"):
    """The target ratios from per-step times `key` (None when an input is missing)."""
    def time_of(name):
        return (by_config.get(name) or {}).get(key)

    def ratio(numerator, denominator):
        return numerator / denominator if numerator and denominator else None

    student, teacher = time_of("student"), time_of("teacher_inference")
    return {
        "overhead": ratio(time_of("kd"), (student + teacher) if student and teacher else None),
        "cached_ratio": ratio(time_of("cached"), student),
        "feature_speedup": ratio(time_of("keras_feature"), time_of("feature")),
        "kd_vs_keras_logits": ratio(time_of("keras_logits"), time_of("kd")),
        "student_vs_torch": ratio(time_of("torch_student"), student),
        "teacher_vs_torch": ratio(time_of("torch_teacher_inference"), teacher),
        "kd_vs_torch": ratio(time_of("torch_kd"), time_of("kd")),
    }


def _meets(name, value):
    if value is None or name not in TARGETS:
        return "-"
    op, target = TARGETS[name]
    return "yes" if (value <= target if op == "<=" else value >= target) else "no"


def print_report(pair, results, summary, cpu_summary):
    print(f"\n{pair}  (batch {results[0].get('batch_size', '?')})")
    header = (f"{'configuration':18s} {'ms/step':>8s} {'steps/s':>8s} {'ex/s':>7s} "
              f"{'cpu ms':>8s} {'peak MB':>8s}")
    print(header)
    print("-" * len(header))
    for result in results:
        if "error" in result:
            print(f"{result['config']:18s} n/a: {result['error'][:100]}")
            continue
        seconds, cpu = result["seconds_per_step"], result.get("cpu_seconds_per_step")
        peak = result.get("peak_rss_mb")
        print(f"{result['config']:18s} {seconds * 1000:8.1f} {1 / seconds:8.2f} "
              f"{result['examples_per_second']:7.0f} "
              f"{cpu * 1000 if cpu else float('nan'):8.1f} "
              f"{peak if peak is not None else '-':>8}")
    print(f"\n{'ratio':18s} {'wall':>8s} {'cpu':>8s}  target")
    for name, value in summary.items():
        if value is None and cpu_summary[name] is None and name.endswith("_torch"):
            continue  # not run with --against=torch
        target = TARGETS.get(name)
        goal = f"{target[0]} {target[1]} (met: {_meets(name, value)})" if target else ""
        shown = [f"{v:.3f}" if v is not None else "n/a" for v in (value, cpu_summary[name])]
        print(f"{name:18s} {shown[0]:>8s} {shown[1]:>8s}  {goal}")


def _least_disturbed(rounds):
    """The round with the shortest median step (other jobs only ever slow a run down)."""
    timed = [r for r in rounds if r.get("seconds_per_step")]
    if not timed:
        return rounds[-1]
    best = dict(min(timed, key=lambda r: r["seconds_per_step"]))
    best["rounds"] = len(timed)
    return best


def main(argv):
    del argv
    if FLAGS.child:
        print("RESULT " + json.dumps(run_config(json.loads(FLAGS.child))), flush=True)
        return
    pairs, steps, warmup = FLAGS.pairs, FLAGS.steps, FLAGS.warmup
    if FLAGS.quick:
        pairs = [p for p in FLAGS.pairs if p.startswith("fmnist")] or \
            ["fmnist_teacher:fmnist_student"]
        steps, warmup = min(steps, 10), min(warmup, 3)
    unknown = [p for p in pairs if p not in PAIRS]
    bad = [c for c in FLAGS.configs if c not in CONFIGS]
    configs = list(FLAGS.configs)
    if FLAGS.against == "torch":
        unknown += [p for p in pairs if p not in TORCH_PAIRS]
        # Interleave: each of ours is followed by its torch counterpart in every round.
        for ours, theirs in (("student", "torch_student"),
                             ("teacher_inference", "torch_teacher_inference"), ("kd", "torch_kd")):
            if ours in configs:
                configs.insert(configs.index(ours) + 1, theirs)
    if unknown or bad:
        sys.exit(f"error: unknown pairs {unknown} or configs {bad}; pairs: {list(PAIRS)}, "
                 f"configs: {list(CONFIGS)}")
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    for pair in pairs:
        runs = {config: [] for config in configs}
        for repeat in range(FLAGS.repeats):  # rounds interleave the configurations
            for config in configs:
                reason = unavailable(pair, config)
                if reason:
                    runs[config] = [{"pair": pair, "config": config, "error": reason}]
                    continue
                job = {"pair": pair, "config": config, "steps": steps, "warmup": warmup,
                       "batch_size": FLAGS.batch_size,
                       "mixed_precision": FLAGS.mixed_precision,
                       "jit_compile": FLAGS.jit_compile}
                started = time.time()
                isolate = FLAGS.isolate or config in TORCH_CONFIGS
                result = _run_isolated(job, FLAGS.torch_python) if isolate else _run_here(job)
                result["wall_seconds"] = round(time.time() - started, 1)
                result["load_average_1min"] = round(os.getloadavg()[0], 2)
                runs[config].append(result)
                print(f"  {pair} {config} (round {repeat + 1}): " + (
                    f"{result['seconds_per_step'] * 1000:.1f} ms/step"
                    if result.get("seconds_per_step") else result.get("error", "no timing")),
                    flush=True)
        results = [_least_disturbed(runs[config]) for config in configs]
        by_config = {r["config"]: r for r in results if "error" not in r}
        summary = ratios(by_config)
        cpu_summary = ratios(by_config, "cpu_seconds_per_step")
        payload = {"pair": pair, "results": results, "all_rounds": runs, "ratios": summary,
                   "cpu_time_ratios": cpu_summary,
                   "targets": {k: list(v) for k, v in TARGETS.items()},
                   "steps": steps, "warmup": warmup, "repeats": FLAGS.repeats,
                   "isolated": FLAGS.isolate,
                   "command": " ".join(["python -m benchmarks.speed"] + sys.argv[1:]),
                   "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                               "load_average": list(os.getloadavg())},
                   "note": FLAGS.note, "time": time.strftime("%Y-%m-%d %H:%M:%S")}
        suffix = "-quick" if FLAGS.quick else ""  # never overwrites a full run's file
        path = os.path.join(FLAGS.output_dir, f"speed-{pair.replace(':', '-')}{suffix}.json")
        with open(path + ".tmp", "w") as handle:
            json.dump(payload, handle, indent=2)
        os.replace(path + ".tmp", path)
        print_report(pair, results, summary, cpu_summary)
        print(f"written: {path}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
