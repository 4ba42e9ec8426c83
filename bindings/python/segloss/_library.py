"""Loads libsegloss.so and declares its C API (include/segloss.h) for ctypes.

This is the only module that knows the C signatures: every function's argtypes and
restype are set once, in `declare`, next to the prototype they mirror, and every
non-OK status becomes a `SegLossError` in one place, the errcheck `check_status`.

The library is looked for, in this order, at
  1. the path in the SEGLOSS_LIBRARY environment variable, when it is set;
  2. libsegloss.so beside this package (an installed copy);
  3. the repository's build, ../../../.build/release/libsegloss.so from this file.
The first one that loads, exports the API and has a compatible version wins; when none
does, ImportError lists every path tried and why each failed.
"""
from __future__ import annotations

import ctypes
import enum
import os
from ctypes import POINTER, c_char_p, c_float, c_int, c_size_t, c_uint, c_void_p
from typing import Mapping, Sequence

LIBRARY_ENV = "SEGLOSS_LIBRARY"
LIBRARY_NAME = "libsegloss.so"

# The library versions this binding is written for: 0.1.x. Before 1.0 a minor release
# may change the API, so major and minor must match; any patch level will do.
EXPECTED_MAJOR, EXPECTED_MINOR = 0, 1


class Status(enum.IntEnum):
    """segloss_status: the outcome of every call (values are stable, only appended to)."""

    OK = 0
    ERROR_NULL_POINTER = 1
    ERROR_EMPTY_INPUT = 2
    ERROR_INVALID_ARGUMENT = 3
    ERROR_PRED_OUT_OF_RANGE = 4
    ERROR_TARGET_OUT_OF_RANGE = 5
    ERROR_COUNT_TOO_LARGE = 6


class SegLossError(ValueError):
    """A segloss call returned an error status.

    Attributes:
        status:   the segloss_status, a `Status` member (a plain int for a status newer
                  than this binding knows)
        message:  the library's own message for it (segloss_status_string)
        function: the C function that returned it
    """

    def __init__(self, status: int, message: str, function: str) -> None:
        self.status = status
        self.message = message
        self.function = function
        name = status.name if isinstance(status, Status) else str(int(status))
        super().__init__(f"{function}: {message} (status {int(status)}, {name})")


def candidate_paths(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The paths to try, in order (see the module docstring)."""
    here = os.path.dirname(os.path.abspath(__file__))
    paths = []
    if environ.get(LIBRARY_ENV):
        paths.append(environ[LIBRARY_ENV])
    paths.append(os.path.join(here, LIBRARY_NAME))
    paths.append(os.path.normpath(os.path.join(here, "..", "..", "..", ".build", "release", LIBRARY_NAME)))
    return paths


def load_library(paths: Sequence[str]) -> tuple[ctypes.CDLL, str]:
    """The first of `paths` that loads as a compatible segloss, declared; and its path.

    Raises ImportError listing every path tried, with the reason each one failed.
    """
    failures = []
    for path in paths:
        try:
            library = ctypes.CDLL(path)
            declare(library)
        except (OSError, AttributeError) as error:  # AttributeError: a symbol is missing
            failures.append(f"  {path}: {error}")
            continue
        version = library.segloss_version_number()
        if (version // 10000, version // 100 % 100) != (EXPECTED_MAJOR, EXPECTED_MINOR):
            failures.append(
                f"  {path}: library version {library.segloss_version_string().decode()} "
                f"({version}), but this binding needs {EXPECTED_MAJOR}.{EXPECTED_MINOR}.x")
            continue
        return library, path
    raise ImportError(
        f"segloss: cannot load {LIBRARY_NAME}; tried, in order:\n" + "\n".join(failures)
        + f"\nBuild it (make lib) or set {LIBRARY_ENV} to its path.")


def declare(library: ctypes.CDLL) -> None:
    """Sets argtypes and restype of every function of include/segloss.h on `library`.

    Buffers (const float *) are passed as addresses (c_void_p): the numpy layer hands
    over the data pointer of a contiguous float32 array without building a ctypes object.
    """
    def check_status(result, function, arguments):
        # The errcheck of every loss function: the one place a status becomes an exception.
        if result:  # not SEGLOSS_OK
            try:
                status = Status(result)
            except ValueError:
                status = result
            message = library.segloss_status_string(result).decode()
            raise SegLossError(status, message, function.__name__)
        return result

    def signature(name, restype, argtypes, errcheck=None):
        function = getattr(library, name)
        function.restype = restype
        function.argtypes = argtypes
        if errcheck is not None:
            function.errcheck = errcheck

    # unsigned segloss_version_number(void);
    signature("segloss_version_number", c_uint, [])
    # const char *segloss_version_string(void);
    signature("segloss_version_string", c_char_p, [])
    # const char *segloss_status_string(segloss_status status);
    signature("segloss_status_string", c_char_p, [c_int])
    # void segloss_set_num_threads(int n);
    signature("segloss_set_num_threads", None, [c_int])
    # int segloss_get_num_threads(void);
    signature("segloss_get_num_threads", c_int, [])
    # const char *segloss_kernel_name(void);
    signature("segloss_kernel_name", c_char_p, [])

    # segloss_status segloss_dice_forward(const float *pred, const float *target,
    #                                     size_t count, float smooth, float *loss);
    signature("segloss_dice_forward", c_int,
              [c_void_p, c_void_p, c_size_t, c_float, POINTER(c_float)], check_status)
    # segloss_status segloss_dice_backward(const float *pred, const float *target,
    #                                      size_t count, float smooth, float grad_loss,
    #                                      float *grad_pred);
    signature("segloss_dice_backward", c_int,
              [c_void_p, c_void_p, c_size_t, c_float, c_float, c_void_p], check_status)

    # segloss_status segloss_bce_forward(const float *pred, const float *target,
    #                                    size_t count, float *loss);
    signature("segloss_bce_forward", c_int,
              [c_void_p, c_void_p, c_size_t, POINTER(c_float)], check_status)
    # segloss_status segloss_bce_backward(const float *pred, const float *target,
    #                                     size_t count, float grad_loss, float *grad_pred);
    signature("segloss_bce_backward", c_int,
              [c_void_p, c_void_p, c_size_t, c_float, c_void_p], check_status)

    # segloss_status segloss_bce_dice_forward(const float *pred, const float *target,
    #                                         size_t count, float weight_bce,
    #                                         float weight_dice, float smooth, float *loss);
    signature("segloss_bce_dice_forward", c_int,
              [c_void_p, c_void_p, c_size_t, c_float, c_float, c_float, POINTER(c_float)],
              check_status)
    # segloss_status segloss_bce_dice_backward(const float *pred, const float *target,
    #                                          size_t count, float weight_bce,
    #                                          float weight_dice, float smooth,
    #                                          float grad_loss, float *grad_pred);
    signature("segloss_bce_dice_backward", c_int,
              [c_void_p, c_void_p, c_size_t, c_float, c_float, c_float, c_float, c_void_p],
              check_status)
    # segloss_status segloss_bce_dice_forward_backward(const float *pred,
    #                                                  const float *target, size_t count,
    #                                                  float weight_bce, float weight_dice,
    #                                                  float smooth, float *loss,
    #                                                  float *grad_pred);
    signature("segloss_bce_dice_forward_backward", c_int,
              [c_void_p, c_void_p, c_size_t, c_float, c_float, c_float, POINTER(c_float),
               c_void_p], check_status)


library, library_path = load_library(candidate_paths())
