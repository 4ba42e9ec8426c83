"""Loads libsegloss.so and declares its C API (include/segloss.h) for ctypes.

This is the only module that knows the C signatures: every function's argtypes and
restype are set once, in `declare` (the flat losses), `declare_general` (the general
API: its structs and enums are declared here too) and `declare_split_phase` (its data-parallel
split phase, with segloss_slice), next to the prototype they mirror,
and every non-OK status becomes a `SegLossError` in one place, the errcheck
`check_status`.

The library is looked for, in this order, at
  1. the path in the SEGLOSS_LIBRARY environment variable, when it is set;
  2. libsegloss.so beside this package (an installed copy);
  3. the repository's build, ../../../.build/release/libsegloss.so from this file.
The first one that loads, exports the API and has a compatible version wins; when none
does, ImportError lists every path tried and why each failed.

A library built before the general API (no segloss_forward and friends) still loads: the
flat functions work, `general_api_missing` says why the general ones are unavailable, and
segloss.loss and the other general functions raise `GeneralAPIUnavailable` with it. The same
holds, one step later, for the split-phase API (`declare_split_phase`,
`split_phase_missing`) that segloss.distributed uses.
"""
from __future__ import annotations

import ctypes
import enum
import os
from ctypes import (POINTER, Structure, c_char_p, c_double, c_float, c_int, c_size_t, c_uint,
                    c_void_p)
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
    ERROR_INVALID_OPTIONS = 7
    ERROR_INVALID_SHAPE = 8


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


class GeneralAPIUnavailable(RuntimeError):
    """The loaded library predates the general API (segloss_forward and friends): rebuild
    it. The flat functions (segloss.dice_loss and the others) still work."""


# --- the general API's types ---------------------------------------------------------------


class InputKind(enum.IntEnum):
    """segloss_input_kind: which form pred takes."""

    PROBABILITIES = 0
    LOGITS = 1


class ElementTerm(enum.IntEnum):
    """segloss_element_term: the element-wise term."""

    NONE = 0
    BCE = 1


class RegionTerm(enum.IntEnum):
    """segloss_region_term: the region (overlap) term."""

    NONE = 0
    DICE = 1
    JACCARD = 2
    TVERSKY = 3


class Segments(enum.IntEnum):
    """segloss_segments: which elements one region score covers."""

    ALL = 0
    SAMPLE = 1
    CHANNEL = 2
    SAMPLE_CHANNEL = 3


class EmptyPolicy(enum.IntEnum):
    """segloss_empty_policy: the region loss of a segment whose target is empty."""

    KEEP = 0
    ZERO = 1
    EXCLUDE = 2


class Reduction(enum.IntEnum):
    """segloss_reduction: how element terms and segment losses are combined."""

    MEAN = 0
    SUM = 1


class DType(enum.IntEnum):
    """segloss_dtype: element types of the arrays."""

    FLOAT32 = 0
    FLOAT64 = 1
    UINT8 = 2


class MaskLayout(enum.IntEnum):
    """segloss_mask_layout: what the mask covers."""

    PER_ELEMENT = 0
    PER_PIXEL = 1


# #define SEGLOSS_SUMS_PER_SEGMENT 6: TP, FP, FN, SQ, sum of element terms, valid count.
SUMS_PER_SEGMENT = 6


class OptionsStruct(Structure):
    """segloss_options, field for field (include/segloss.h)."""

    _fields_ = [
        ("struct_size", c_size_t),         # sizeof(segloss_options) of the caller's header
        ("input", c_int),                  # segloss_input_kind
        ("element_term", c_int),           # segloss_element_term
        ("region_term", c_int),            # segloss_region_term
        ("segments", c_int),               # segloss_segments
        ("empty_policy", c_int),           # segloss_empty_policy
        ("reduction", c_int),              # segloss_reduction
        ("squared", c_int),
        ("log_loss", c_int),
        ("element_weight", c_double),
        ("region_weight", c_double),
        ("smooth_nr", c_double),
        ("smooth_dr", c_double),
        ("alpha", c_double),
        ("beta", c_double),
        ("gamma", c_double),
        ("denominator_min", c_double),
        ("log_min", c_double),
        ("label_smoothing", c_double),
        ("pos_weight", POINTER(c_double)),       # const double *: NULL or C values
        ("channel_weights", POINTER(c_double)),  # const double *: NULL or C values
    ]


class ShapeStruct(Structure):
    """segloss_shape, field for field (include/segloss.h)."""

    _fields_ = [
        ("batch", c_size_t),
        ("channels", c_size_t),
        ("spatial", c_size_t),
        ("pred_dtype", c_int),    # segloss_dtype
        ("target_dtype", c_int),  # segloss_dtype
        ("mask_layout", c_int),   # segloss_mask_layout
    ]


class SliceStruct(Structure):
    """segloss_slice, field for field (include/segloss.h): where a rank's samples sit in a
    batch split across processes (the split-phase API)."""

    _fields_ = [
        ("sample_offset", c_size_t),  # index of the rank's first sample in the whole batch
        ("total_batch", c_size_t),    # samples in the whole batch
    ]


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


def declare_general(library: ctypes.CDLL) -> str | None:
    """Declares the general API on `library` (already declared by `declare`): None when
    it has it, else why not — a missing symbol (a library older than the general API), or
    a segloss_options whose size differs from this binding's OptionsStruct."""
    check_status = library.segloss_dice_forward.errcheck

    def signature(name, argtypes):
        function = getattr(library, name)
        function.restype = c_int
        function.argtypes = argtypes
        function.errcheck = check_status

    options_p, shape_p = POINTER(OptionsStruct), POINTER(ShapeStruct)
    try:
        # segloss_status segloss_options_init(segloss_options *options);
        signature("segloss_options_init", [options_p])
        # segloss_status segloss_segment_count(const segloss_options *options,
        #                                      const segloss_shape *shape, size_t *segments);
        signature("segloss_segment_count", [options_p, shape_p, POINTER(c_size_t)])
        # segloss_status segloss_forward(const segloss_options *options,
        #                                const segloss_shape *shape, const void *pred,
        #                                const void *target, const unsigned char *mask,
        #                                double *loss, double *segment_scores,
        #                                double *segment_sums);
        signature("segloss_forward", [options_p, shape_p, c_void_p, c_void_p, c_void_p,
                                      POINTER(c_double), c_void_p, c_void_p])
        # segloss_status segloss_backward(const segloss_options *options,
        #                                 const segloss_shape *shape, const void *pred,
        #                                 const void *target, const unsigned char *mask,
        #                                 double grad_loss, void *grad_pred);
        signature("segloss_backward", [options_p, shape_p, c_void_p, c_void_p, c_void_p,
                                       c_double, c_void_p])
        # segloss_status segloss_forward_backward(const segloss_options *options,
        #                                         const segloss_shape *shape,
        #                                         const void *pred, const void *target,
        #                                         const unsigned char *mask, double *loss,
        #                                         void *grad_pred, double *segment_scores,
        #                                         double *segment_sums);
        signature("segloss_forward_backward", [options_p, shape_p, c_void_p, c_void_p,
                                               c_void_p, POINTER(c_double), c_void_p,
                                               c_void_p, c_void_p])
    except AttributeError as error:
        return (f"the library has no general API, it is older than this binding ({error}); "
                f"rebuild it (make lib)")
    # A library built from a newer header may have a larger struct: let it initialize a
    # buffer with room to spare, and read only struct_size back.
    room = (ctypes.c_char * (4 * ctypes.sizeof(OptionsStruct)))()
    library.segloss_options_init(ctypes.cast(room, options_p))
    options = OptionsStruct.from_buffer(room)
    if options.struct_size != ctypes.sizeof(OptionsStruct):
        return (f"the library's segloss_options has {options.struct_size} bytes, but this "
                f"binding's has {ctypes.sizeof(OptionsStruct)}: they were built from "
                f"different headers")
    return None


def declare_split_phase(library: ctypes.CDLL) -> str | None:
    """Declares the split-phase API (segloss_sums_length, segloss_compute_sums,
    segloss_loss_from_sums, segloss_backward_from_sums) on `library`, whose general API is
    already declared: None when it has them, else why not (a library older than them)."""
    check_status = library.segloss_dice_forward.errcheck

    def signature(name, argtypes):
        function = getattr(library, name)
        function.restype = c_int
        function.argtypes = argtypes
        function.errcheck = check_status

    options_p, shape_p, slice_p = POINTER(OptionsStruct), POINTER(ShapeStruct), POINTER(SliceStruct)
    try:
        # segloss_status segloss_sums_length(const segloss_options *options,
        #                                    const segloss_shape *shape,
        #                                    const segloss_slice *slice, size_t *length);
        signature("segloss_sums_length", [options_p, shape_p, slice_p, POINTER(c_size_t)])
        # segloss_status segloss_compute_sums(const segloss_options *options,
        #                                     const segloss_shape *shape,
        #                                     const segloss_slice *slice, const void *pred,
        #                                     const void *target, const unsigned char *mask,
        #                                     double *sums, size_t sums_length);
        signature("segloss_compute_sums", [options_p, shape_p, slice_p, c_void_p, c_void_p,
                                           c_void_p, c_void_p, c_size_t])
        # segloss_status segloss_loss_from_sums(const segloss_options *options,
        #                                       const segloss_shape *shape,
        #                                       const segloss_slice *slice,
        #                                       const double *sums, size_t sums_length,
        #                                       double *loss, double *segment_scores);
        signature("segloss_loss_from_sums", [options_p, shape_p, slice_p, c_void_p, c_size_t,
                                             POINTER(c_double), c_void_p])
        # segloss_status segloss_backward_from_sums(const segloss_options *options,
        #                                           const segloss_shape *shape,
        #                                           const segloss_slice *slice,
        #                                           const void *pred, const void *target,
        #                                           const unsigned char *mask,
        #                                           const double *sums, size_t sums_length,
        #                                           double grad_loss, void *grad_pred);
        signature("segloss_backward_from_sums", [options_p, shape_p, slice_p, c_void_p,
                                                 c_void_p, c_void_p, c_void_p, c_size_t,
                                                 c_double, c_void_p])
    except AttributeError as error:
        return (f"the library has no split-phase API, it is older than this binding ({error}); "
                f"rebuild it (make lib)")
    return None


library, library_path = load_library(candidate_paths())
general_api_missing: str | None = declare_general(library)
"""None when the loaded library has the general API, else why it has not."""
split_phase_missing: str | None = (general_api_missing if general_api_missing is not None
                                   else declare_split_phase(library))
"""None when the loaded library has the split-phase API (segloss.distributed), else why not."""
