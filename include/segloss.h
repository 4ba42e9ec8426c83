/*
 * segloss.h — segmentation losses (Dice, BCE, BCE+Dice), forward and backward, on raw
 * float buffers.
 *
 * Every function returns a segloss_status. Results go through output pointers, which are
 * the last parameters, and are written only when the status is SEGLOSS_OK: on any error
 * the outputs are left exactly as they were. No function traps, aborts, prints or exits.
 *
 * Semantics are PyTorch's (torch.nn.BCELoss with mean reduction, and the usual
 * "1 - (2 I + smooth) / (P + T + smooth)" Dice loss over all elements). Sums are
 * accumulated in double; the loss has a relative error of at most 1e-6 against a float64
 * reference. Results are bitwise identical for any number of worker threads.
 *
 * All functions are thread-safe: any number of host threads may call them at once.
 *
 * Memory rules, for every function below:
 *   - pred, target and grad_pred each point to `count` floats (4 * count bytes);
 *   - grad_pred may be the same pointer as pred (the gradient is computed in place);
 *     any other overlap of an output with an input is undefined;
 *   - no call allocates memory proportional to `count`.
 */
#ifndef SEGLOSS_H
#define SEGLOSS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef SEGLOSS_API
#  if defined(__GNUC__) || defined(__clang__)
#    define SEGLOSS_API __attribute__((visibility("default")))
#  else
#    define SEGLOSS_API
#  endif
#endif

/*======================================================================================
 * Version
 *====================================================================================*/

#define SEGLOSS_VERSION_MAJOR 0
#define SEGLOSS_VERSION_MINOR 1
#define SEGLOSS_VERSION_PATCH 0
/* MAJOR * 10000 + MINOR * 100 + PATCH: 0.1.0 is 100. */
#define SEGLOSS_VERSION_NUMBER \
    (SEGLOSS_VERSION_MAJOR * 10000 + SEGLOSS_VERSION_MINOR * 100 + SEGLOSS_VERSION_PATCH)

/* The library's SEGLOSS_VERSION_NUMBER. Compare it with the header's macro to detect a
 * header/library mismatch. */
SEGLOSS_API unsigned segloss_version_number(void);

/* The library's version as "MAJOR.MINOR.PATCH", a static string (never free it). */
SEGLOSS_API const char *segloss_version_string(void);

/*======================================================================================
 * Status
 *====================================================================================*/

/* The outcome of every call. Values are stable: new ones are appended, never renumbered. */
typedef enum segloss_status {
    /* Success: the outputs were written. */
    SEGLOSS_OK = 0,
    /* An input or output pointer is NULL. */
    SEGLOSS_ERROR_NULL_POINTER = 1,
    /* count is 0: the mean over no elements is undefined. */
    SEGLOSS_ERROR_EMPTY_INPUT = 2,
    /* A scalar parameter is out of its domain: a weight or smooth that is negative, NaN or
     * infinite, or a grad_loss that is NaN or infinite. */
    SEGLOSS_ERROR_INVALID_ARGUMENT = 3,
    /* Some element of pred is outside [0, 1] or NaN. */
    SEGLOSS_ERROR_PRED_OUT_OF_RANGE = 4,
    /* Some element of target is outside [0, 1] or NaN. */
    SEGLOSS_ERROR_TARGET_OUT_OF_RANGE = 5,
    /* count is so large that count * sizeof(float) bytes exceeds PTRDIFF_MAX: no buffer
     * can hold it, so the pointers cannot be valid. */
    SEGLOSS_ERROR_COUNT_TOO_LARGE = 6
} segloss_status;

/* A static, human-readable message for a status (never NULL, never free it). An unknown
 * value gives "unknown segloss status". */
SEGLOSS_API const char *segloss_status_string(segloss_status status);

/*======================================================================================
 * Threads and kernels
 *====================================================================================*/

/* Sets the number of worker threads every later call may use (process-wide).
 * n <= 0 restores the default: the SEGLOSS_NUM_THREADS environment variable when it holds
 * a positive integer, else the number of CPUs this process may run on. Values above 256
 * are taken as 256. Results do not depend on this number; only speed does.
 * Safe to call at any time, from any thread, also while other calls run. */
SEGLOSS_API void segloss_set_num_threads(int n);

/* The number of worker threads calls may use now (at least 1). */
SEGLOSS_API int segloss_get_num_threads(void);

/* Which compiled kernel this process runs: "avx512", "avx2" or "baseline", the best this
 * CPU supports, chosen once when the library is first used (the SEGLOSS_KERNEL environment
 * variable may name a lower one). A static string (never free it). */
SEGLOSS_API const char *segloss_kernel_name(void);

/*======================================================================================
 * Dice loss
 *
 *   I = sum(pred * target),  P = sum(pred),  T = sum(target)   over all `count` elements
 *   loss = 1 - (2 I + smooth) / (P + T + smooth)
 *
 * pred and target are expected in [0, 1] (probabilities, and 0/1 masks or soft labels).
 * With smooth = 0 and pred and target all zero the ratio is 0/0 and the loss is NaN, as
 * in PyTorch. The gradient's two coefficients, 2/D and (2I + smooth)/D^2, are applied in
 * float: with smooth = 0 and P + T below about 1e-38 they overflow to infinity, as PyTorch's
 * float32 gradient does.
 *====================================================================================*/

/* Dice loss over `count` elements.
 *   pred    count probabilities, each in [0, 1]
 *   target  count labels, each in [0, 1]
 *   count   number of elements, > 0
 *   smooth  added to numerator and denominator, finite and >= 0 (1.0 in the usual form)
 *   loss    out: the loss, written on SEGLOSS_OK only
 * Returns SEGLOSS_OK, SEGLOSS_ERROR_NULL_POINTER, SEGLOSS_ERROR_EMPTY_INPUT,
 * SEGLOSS_ERROR_COUNT_TOO_LARGE, SEGLOSS_ERROR_INVALID_ARGUMENT (smooth),
 * SEGLOSS_ERROR_PRED_OUT_OF_RANGE, SEGLOSS_ERROR_TARGET_OUT_OF_RANGE. */
SEGLOSS_API segloss_status segloss_dice_forward(const float *pred, const float *target,
                                                size_t count, float smooth, float *loss);

/* Gradient of grad_loss * (Dice loss) with respect to pred:
 *   grad_pred[i] = grad_loss * ( (2 I + smooth) / D^2 - 2 target[i] / D ),  D = P + T + smooth
 * Parameters as segloss_dice_forward, and
 *   grad_loss  the upstream gradient of the loss, finite (1.0 for the plain gradient)
 *   grad_pred  out: count floats, written on SEGLOSS_OK only; may be pred itself
 * Returns the statuses of segloss_dice_forward (INVALID_ARGUMENT also for grad_loss). */
SEGLOSS_API segloss_status segloss_dice_backward(const float *pred, const float *target,
                                                 size_t count, float smooth, float grad_loss,
                                                 float *grad_pred);

/*======================================================================================
 * Binary cross-entropy (torch.nn.BCELoss, mean reduction)
 *
 *   l_i  = -( t_i * max(log p_i, -100) + (1 - t_i) * max(log(1 - p_i), -100) )
 *   loss = mean(l_i)
 *   d loss / d p_i = (p_i - t_i) / max(p_i * (1 - p_i), 1e-12) / count
 *====================================================================================*/

/* Mean binary cross-entropy over `count` elements.
 *   pred    count probabilities, each in [0, 1]
 *   target  count labels, each in [0, 1]
 *   count   number of elements, > 0
 *   loss    out: the loss, written on SEGLOSS_OK only
 * Returns SEGLOSS_OK, SEGLOSS_ERROR_NULL_POINTER, SEGLOSS_ERROR_EMPTY_INPUT,
 * SEGLOSS_ERROR_COUNT_TOO_LARGE, SEGLOSS_ERROR_PRED_OUT_OF_RANGE,
 * SEGLOSS_ERROR_TARGET_OUT_OF_RANGE. */
SEGLOSS_API segloss_status segloss_bce_forward(const float *pred, const float *target,
                                               size_t count, float *loss);

/* Gradient of grad_loss * (mean BCE) with respect to pred:
 *   grad_pred[i] = grad_loss * (p_i - t_i) / max(p_i * (1 - p_i), 1e-12) / count
 * Parameters as segloss_bce_forward, and
 *   grad_loss  the upstream gradient of the loss, finite
 *   grad_pred  out: count floats, written on SEGLOSS_OK only; may be pred itself
 * Returns the statuses of segloss_bce_forward and SEGLOSS_ERROR_INVALID_ARGUMENT
 * (grad_loss). */
SEGLOSS_API segloss_status segloss_bce_backward(const float *pred, const float *target,
                                                size_t count, float grad_loss,
                                                float *grad_pred);

/*======================================================================================
 * BCE + Dice
 *
 *   loss = weight_bce * BCE(pred, target) + weight_dice * Dice(pred, target; smooth)
 *
 * The usual form is weight_bce = weight_dice = 0.5, smooth = 1.0. A term whose weight is 0
 * is left out, not multiplied by 0: with weight_dice = 0 the loss stays finite even where the
 * Dice ratio is 0/0 (smooth = 0 and all-zero inputs).
 *====================================================================================*/

/* Weighted sum of mean BCE and Dice loss over `count` elements.
 *   pred         count probabilities, each in [0, 1]
 *   target       count labels, each in [0, 1]
 *   count        number of elements, > 0
 *   weight_bce   weight of the BCE term, finite and >= 0
 *   weight_dice  weight of the Dice term, finite and >= 0
 *   smooth       Dice smoothing, finite and >= 0
 *   loss         out: the loss, written on SEGLOSS_OK only
 * Returns SEGLOSS_OK, SEGLOSS_ERROR_NULL_POINTER, SEGLOSS_ERROR_EMPTY_INPUT,
 * SEGLOSS_ERROR_COUNT_TOO_LARGE, SEGLOSS_ERROR_INVALID_ARGUMENT (a weight or smooth),
 * SEGLOSS_ERROR_PRED_OUT_OF_RANGE, SEGLOSS_ERROR_TARGET_OUT_OF_RANGE. */
SEGLOSS_API segloss_status segloss_bce_dice_forward(const float *pred, const float *target,
                                                    size_t count, float weight_bce,
                                                    float weight_dice, float smooth,
                                                    float *loss);

/* Gradient of grad_loss * (BCE + Dice loss) with respect to pred: the weighted sum of the
 * two gradients above.
 *   grad_loss  the upstream gradient of the loss, finite
 *   grad_pred  out: count floats, written on SEGLOSS_OK only; may be pred itself
 * Returns the statuses of segloss_bce_dice_forward (INVALID_ARGUMENT also for grad_loss). */
SEGLOSS_API segloss_status segloss_bce_dice_backward(const float *pred, const float *target,
                                                     size_t count, float weight_bce,
                                                     float weight_dice, float smooth,
                                                     float grad_loss, float *grad_pred);

/* Loss and gradient (with grad_loss = 1) in one call: one statistics pass over pred and
 * target, then one gradient pass — the least memory traffic a training step can have.
 *   loss       out: the loss, written on SEGLOSS_OK only
 *   grad_pred  out: count floats, d loss / d pred, written on SEGLOSS_OK only; may be pred
 * Returns the statuses of segloss_bce_dice_forward. */
SEGLOSS_API segloss_status segloss_bce_dice_forward_backward(const float *pred,
                                                             const float *target, size_t count,
                                                             float weight_bce, float weight_dice,
                                                             float smooth, float *loss,
                                                             float *grad_pred);

#ifdef __cplusplus
}
#endif

#endif /* SEGLOSS_H */
