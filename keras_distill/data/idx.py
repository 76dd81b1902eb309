"""Fashion-MNIST and MNIST from IDX files (gzipped or not), with fallbacks.

Fashion-MNIST is looked for, in order, in: `data_dir`; Debian's
`dataset-fashion-mnist` package (`/usr/share/datasets/fashion-mnist`); the
Keras cache (`$KERAS_HOME/datasets/fashion-mnist`); and finally
`keras.datasets.fashion_mnist.load_data()`, which downloads (only when
`download=True`). MNIST: `data_dir`, the Keras cache (`mnist.npz`), then
`keras.datasets.mnist.load_data()`.

We read the IDX files ourselves rather than through TFDS because Debian's
`.gz` files differ in bytes from upstream (same IDX content), so TFDS's
checksum rejects them.
"""

from __future__ import annotations

import gzip
import logging
import os
import struct
from typing import Optional

import numpy as np

from keras_distill.data.splits import DataError, DataNotFoundError

DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

FASHION_MNIST_CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
MNIST_CLASS_NAMES = tuple(str(i) for i in range(10))

IDX_FILE_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_log = logging.getLogger(__name__)


def read_idx(path: str) -> np.ndarray:
    """Reads one IDX file (optionally gzipped) into a numpy array.

    Args:
        path: Path to an IDX file, e.g. `train-images-idx3-ubyte.gz`.

    Returns:
        The array, e.g. uint8 of shape `(60000, 28, 28)` for MNIST images.

    Raises:
        DataError: the file is not a valid IDX file.

    Reference:
        Format: http://yann.lecun.com/exdb/mnist/ (bottom of the page).
    """
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number {data[:4]!r}).")
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - offset != expected:
        raise DataError(
            f"{path} is truncated or corrupt: header says shape {shape} "
            f"({expected} bytes) but {len(data) - offset} bytes follow."
        )
    return np.frombuffer(data, dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str, array: np.ndarray) -> None:
    """Writes a numpy array as an IDX file (gzipped when `path` ends in `.gz`).

    Useful to convert your own data or to build test fixtures.

    Args:
        path: Output path.
        array: Array of a dtype IDX supports (uint8, int8, int16, int32,
            float32, float64).
    """
    array = np.asarray(array)
    code = next(
        (
            code
            for code, dtype in _IDX_DTYPES.items()
            if (dtype.kind, dtype.itemsize) == (array.dtype.kind, array.dtype.itemsize)
        ),
        None,
    )
    if code is None:
        raise DataError(f"IDX cannot store dtype {array.dtype}.")
    out_dtype = _IDX_DTYPES[code]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(out_dtype).tobytes()
    with (gzip.open if path.endswith(".gz") else open)(path, "wb") as handle:
        handle.write(payload)


def find_idx_files(directory: Optional[str]) -> tuple[Optional[dict], list]:
    """Finds the 4 MNIST-style IDX files in `directory`.

    Accepts `train-images-idx3-ubyte`, with or without `.gz`, and the
    `train-images.idx3-ubyte` spelling of some mirrors.

    Returns:
        `(paths, missing)`: `paths` maps `train_images`, `train_labels`,
        `test_images`, `test_labels` to files when all 4 exist (else None);
        `missing` lists the file names not found.
    """
    if not directory or not os.path.isdir(directory):
        return None, list(IDX_FILE_NAMES.values())
    found, missing = {}, []
    for key, base in IDX_FILE_NAMES.items():
        dotted = base.replace("-idx", ".idx")
        for candidate in (base, base + ".gz", dotted, dotted + ".gz"):
            path = os.path.join(directory, candidate)
            if os.path.isfile(path):
                found[key] = path
                break
        else:
            missing.append(base)
    return (found if not missing else None), missing


def load_idx_directory(directory: str) -> tuple:
    """Reads the 4 IDX files of `directory`.

    Returns:
        `(x_train, y_train, x_test, y_test)` as numpy arrays.

    Raises:
        DataNotFoundError: some of the 4 files are missing.
    """
    paths, missing = find_idx_files(directory)
    if paths is None:
        raise DataNotFoundError(
            f"{directory} lacks IDX files: {', '.join(missing)} (each may end in .gz)."
        )
    return tuple(read_idx(paths[key]) for key in IDX_FILE_NAMES)


def keras_cache_dir() -> str:
    """The folder where `keras.datasets` caches downloads (`$KERAS_HOME/datasets`)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "datasets")


def _candidate_dirs(data_dir: Optional[str], names: tuple) -> list:
    if not data_dir:
        return []
    return [data_dir] + [os.path.join(data_dir, name) for name in names]


def load_mnist_like(name: str, data_dir: Optional[str] = None, download: bool = True) -> tuple:
    """Loads Fashion-MNIST or MNIST as numpy arrays.

    Args:
        name: `"fashion_mnist"` or `"mnist"`.
        data_dir: Folder holding the 4 IDX files (or a `fashion_mnist/`,
            `fashion-mnist/` or `mnist/` subfolder holding them).
        download: Allow `keras.datasets` to download when no local copy exists.

    Returns:
        `(x_train, y_train, x_test, y_test, class_names, info)` where images
        are uint8 of shape `(N, 28, 28)` and `info` says which source was used.

    Raises:
        DataNotFoundError: no source worked; the message lists the three ways
            to get the data.
        DataError: `data_dir` holds some but not all of the IDX files.
    """
    fashion = name == "fashion_mnist"
    subfolders = ("fashion_mnist", "fashion-mnist") if fashion else ("mnist",)
    tried = []

    for directory in _candidate_dirs(data_dir, subfolders):
        paths, missing = find_idx_files(directory)
        if paths is not None:
            return _from_idx(name, directory, "data_dir")
        if os.path.isdir(directory) and len(missing) < len(IDX_FILE_NAMES):
            raise DataError(
                f"{directory} holds only some IDX files of {name}; missing: "
                f"{', '.join(missing)} (each may end in .gz). Add them or point "
                "data_dir elsewhere."
            )
    if data_dir:
        tried.append(f"data_dir={data_dir!r}: no IDX files")
        _log.warning("No %s IDX files in data_dir=%s; trying other sources.", name, data_dir)

    if fashion:
        if find_idx_files(DEBIAN_FASHION_MNIST_DIR)[0] is not None:
            return _from_idx(name, DEBIAN_FASHION_MNIST_DIR, "debian")
        tried.append(f"{DEBIAN_FASHION_MNIST_DIR}: not present")
        cache = os.path.join(keras_cache_dir(), "fashion-mnist")
        if find_idx_files(cache)[0] is not None:
            return _from_idx(name, cache, "keras_cache")
        tried.append(f"Keras cache {cache}: not present")
    else:
        cache = os.path.join(keras_cache_dir(), "mnist.npz")
        if os.path.isfile(cache):
            with np.load(cache) as arrays:
                result = (arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"])
            return result + (MNIST_CLASS_NAMES, {"source": "keras_cache", "path": cache})
        tried.append(f"Keras cache {cache}: not present")

    if download:
        import keras

        module = keras.datasets.fashion_mnist if fashion else keras.datasets.mnist
        try:
            (x_train, y_train), (x_test, y_test) = module.load_data()
        except Exception as error:  # network errors vary (URLError, HTTPError, ...)
            tried.append(f"keras.datasets.{name}.load_data(): failed ({error})")
        else:
            names = FASHION_MNIST_CLASS_NAMES if fashion else MNIST_CLASS_NAMES
            return x_train, y_train, x_test, y_test, names, {"source": "keras.datasets"}
    else:
        tried.append(f"keras.datasets.{name}.load_data(): skipped (download=False)")

    files = ", ".join(f"{base}[.gz]" for base in IDX_FILE_NAMES.values())
    ways = [
        f"(1) pass --data_dir (data_dir=...) pointing at a folder with the 4 IDX files: {files}"
    ]
    if fashion:
        ways.append(
            "(2) on Debian/Ubuntu: `apt-get install dataset-fashion-mnist` "
            f"(installs them in {DEBIAN_FASHION_MNIST_DIR})"
        )
    ways.append(
        f"({len(ways) + 1}) allow internet access with download=True so "
        f"keras.datasets.{name}.load_data() can download them"
    )
    raise DataNotFoundError(
        f"Could not find the {name} dataset. Tried: " + "; ".join(tried) + ". "
        "Get the data one of these ways: " + "; ".join(ways) + "."
    )


def _from_idx(name: str, directory: str, source: str) -> tuple:
    x_train, y_train, x_test, y_test = load_idx_directory(directory)
    names = FASHION_MNIST_CLASS_NAMES if name == "fashion_mnist" else MNIST_CLASS_NAMES
    return x_train, y_train, x_test, y_test, names, {"source": source, "path": directory}
