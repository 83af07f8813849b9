"""What every workload's data shares: DataError, the file checks, the synthetic-data cache. (The
knee workloads' k-space reader is mrihpc/workloads/knee/kspace/.)"""

import math
import os


#: the smallest image side (and cine's frame count) a spec may give: SSIM's 7-pixel window
SSIM_WINDOW = 7


class DataError(Exception):
    """A data file that cannot be used; the message names the file and the problem."""


def all_finite(values) -> bool:
    """Whether a NumPy array holds no NaN and no infinite value. One BLAS pass first: a NaN or an
    inf makes the sum of squares non-finite (18 us on a 640 x 368 complex64 k-space slice, where
    ``np.isfinite(a).all()`` takes 113 us and cost the knee loader a third of its speed); each
    value is looked at only when that sum is not finite (or overflowed: values past ~1e19)."""
    import numpy as np  # already loaded: ``values`` is an array (login verbs import this module)

    if values.dtype.kind not in "fc":
        return True  # integers have no NaN
    flat = values.reshape(-1)  # a copy only where the array is not contiguous
    if values.dtype.kind == "c":
        flat = flat.view(flat.real.dtype)  # real and imaginary parts side by side
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is checked value by value
        if math.isfinite(float(flat @ flat)):
            return True
    return bool(np.isfinite(values).all())


def check_data_file(path, allowed: str) -> None:
    """DataError unless ``path``, named like a data file, is a regular file with a UTF-8 name. A
    folder, a broken or looping link, or a name that JSON files and logs cannot hold is an error,
    never skipped without a word. ``allowed``: what the layout wants there ("HDF5 files")."""
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError:  # os.fsdecode's surrogate escapes: the bytes are not UTF-8
        shown = os.fsencode(path.name).decode(
            "utf-8", "backslashreplace"
        )  # case\xff.h5: the bytes as they are
        raise DataError(
            f"{path.parent}/{shown}: the file name is not UTF-8; allowed: UTF-8 file names "
            "(rename it)"
        ) from None
    if not path.is_file():
        what = (
            "a folder"
            if path.is_dir()
            else "a broken or looping link"
            if path.is_symlink()
            else "not a regular file"
        )
        raise DataError(
            f"{path}: {what}, named like a data file; allowed: {allowed} (rename or remove it)"
        )
