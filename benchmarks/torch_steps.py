"""The PyTorch anchor of `benchmarks.speed --against=torch`: the same three steps in PyTorch.

Runs in an interpreter that has torch (a separate venv; torch is never a dependency of
keras_distill or of its tests), imports nothing from TensorFlow, and prints one line
`RESULT {json}` like `benchmarks.speed --child`:

    python benchmarks/torch_steps.py '{"pair": "resnet32x4:resnet8x4", "config": "torch_kd",
                                       "steps": 30, "warmup": 5, "batch_size": null}'

The models are the CIFAR ResNets of RepDistiller / mdistiller (`models/resnet.py`:
3x3 stem, three stages of basic blocks with strides 1, 2, 2, a 1x1 conv + BN shortcut where
the shape changes, global average pooling, a linear layer), written here from that
description so their parameter counts equal the Keras zoo's (checked in
`tests/benchmarks/test_speed_against_torch.py` when torch is importable). The steps are the
ones the toolkits run (RepDistiller `train_distill`):

    torch_student            SGD step of the student on cross-entropy
    torch_teacher_inference  the teacher's forward in eval mode under `torch.no_grad()`
    torch_kd                 teacher forward (eval, no_grad) + student SGD step on
                             0.1 * CE + 0.9 * T^2 KL(p_t || p_s), T = 4

Threads: torch's defaults (intra-op = the machine's cores), the same as a user gets.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

# Model name -> (depth, widths of stem and the three stages); RepDistiller's definitions.
RESNETS = {
    "resnet8": (8, (16, 16, 32, 64)), "resnet14": (14, (16, 16, 32, 64)),
    "resnet20": (20, (16, 16, 32, 64)), "resnet32": (32, (16, 16, 32, 64)),
    "resnet56": (56, (16, 16, 32, 64)), "resnet110": (110, (16, 16, 32, 64)),
    "resnet8x4": (8, (32, 64, 128, 256)), "resnet32x4": (32, (32, 64, 128, 256)),
}
PAIRS = {"resnet32x4:resnet8x4": dict(input_shape=(32, 32, 3), num_classes=100,
                                      batch_size=64)}
CONFIGS = ("torch_student", "torch_teacher_inference", "torch_kd")


def cifar_resnet(name, num_classes):
    """A CIFAR ResNet with basic blocks, as a `torch.nn.Module` returning logits."""
    import torch
    from torch import nn

    depth, widths = RESNETS[name]
    blocks = (depth - 2) // 6

    class Block(nn.Module):
        def __init__(self, in_planes, planes, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.shortcut = None
            if stride != 1 or in_planes != planes:
                self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                              nn.BatchNorm2d(planes))

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return torch.relu(out + (x if self.shortcut is None else self.shortcut(x)))

    layers = [nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()]
    in_planes = widths[0]
    for planes, stride in zip(widths[1:], (1, 2, 2)):
        for index in range(blocks):
            layers.append(Block(in_planes, planes, stride if index == 0 else 1))
            in_planes = planes
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_planes, num_classes)]
    return nn.Sequential(*layers)


def run_config(job):
    """Times one configuration; returns the same keys as `benchmarks.speed.run_config`."""
    import torch
    import torch.nn.functional as F

    pair, config = job["pair"], job["config"]
    spec = PAIRS[pair]
    batch_size = job.get("batch_size") or spec["batch_size"]
    torch.manual_seed(0)
    teacher_name, student_name = pair.split(":")
    teacher = cifar_resnet(teacher_name, spec["num_classes"])
    student = cifar_resnet(student_name, spec["num_classes"])
    height, width, channels = spec["input_shape"]
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.rand(batch_size, channels, height, width, generator=generator),
                torch.randint(0, spec["num_classes"], (batch_size,), generator=generator))
               for _ in range(8)]
    optimizer = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9)
    teacher.eval()
    temperature = 4.0

    def step(x, y):
        if config == "torch_teacher_inference":
            with torch.no_grad():
                teacher(x)
            return
        student.train()
        logits = student(x)
        loss = F.cross_entropy(logits, y)
        if config == "torch_kd":
            with torch.no_grad():
                teacher_logits = teacher(x)
            kl = F.kl_div(F.log_softmax(logits / temperature, dim=1),
                          F.log_softmax(teacher_logits / temperature, dim=1),
                          reduction="batchmean", log_target=True)
            loss = 0.1 * loss + 0.9 * temperature ** 2 * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    walls, cpus = [], []
    total = job["warmup"] + job["steps"]
    for index in range(total):
        x, y = batches[index % len(batches)]
        step(x, y)
        if index >= job["warmup"] - 1:
            walls.append(time.perf_counter())
            cpus.append(time.process_time())
    steps = sorted(b - a for a, b in zip(walls, walls[1:]))
    middle = len(steps) // 2
    seconds = steps[middle] if len(steps) % 2 else 0.5 * (steps[middle - 1] + steps[middle])
    count = len(walls) - 1

    def params(model):
        return int(sum(p.numel() for p in model.parameters()))

    return {"pair": pair, "config": config, "batch_size": batch_size,
            "seconds_per_step": seconds, "steps_per_second": 1.0 / seconds,
            "mean_seconds_per_step": (walls[-1] - walls[0]) / count,
            "cpu_seconds_per_step": (cpus[-1] - cpus[0]) / count,
            "examples_per_second": batch_size / seconds,
            "timed_steps": count, "warmup_steps": job["warmup"],
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
            "teacher_params": params(teacher), "student_params": params(student),
            "torch_version": torch.__version__, "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads()}


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    print("RESULT " + json.dumps(run_config(json.loads(sys.argv[1]))), flush=True)
