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
    SEGLOSS_ERROR_COUNT_TOO_LARGE = 6,
    /* The options of the general API are invalid: a struct_size the library does not know,
     * an unknown enum value, a parameter out of its domain, or a combination that is not
     * defined (see segloss_options). (NULL options are SEGLOSS_ERROR_NULL_POINTER.) */
    SEGLOSS_ERROR_INVALID_OPTIONS = 7,
    /* The shape descriptor of the general API is invalid: an unknown dtype or mask layout,
     * or a dtype not allowed for that input. */
    SEGLOSS_ERROR_INVALID_SHAPE = 8
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

/*======================================================================================
 * The general API: every loss of the Dice/BCE family on N x C x S tensors
 *
 * pred, target and the optional mask are contiguous N x C x S arrays in C order: sample n,
 * channel c, spatial position s (S is the product of the spatial sizes, H*W or D*H*W).
 *
 * The loss is  element_weight * E  +  region_weight * R  where
 *
 *   p_i   = pred_i, or sigmoid(pred_i) with SEGLOSS_INPUT_LOGITS
 *   t_i   = target_i;  t'_i = t_i (1 - label_smoothing) + 0.5 label_smoothing (BCE only)
 *   w_c   = pos_weight[c] (1 when pos_weight is NULL)
 *
 *   E, the element term (SEGLOSS_ELEMENT_BCE), mean (or sum) over valid elements of
 *     probabilities:  e_i = -( w_c t'_i max(log p_i, -100) + (1 - t'_i) max(log(1 - p_i), -100) )
 *                     (torch.nn.BCELoss, extended with pos_weight), whose gradient is, as
 *                     PyTorch's, (p_i (1 + (w_c - 1) t'_i) - w_c t'_i) / max(p_i (1 - p_i), 1e-12)
 *     logits:         e_i = (1 - t'_i) x_i + (1 + (w_c - 1) t'_i) (log(1 + exp(-|x_i|)) + max(-x_i, 0))
 *                     (torch.nn.BCEWithLogitsLoss: stable for every finite logit x_i), whose
 *                     gradient is sigmoid(x_i) (1 + (w_c - 1) t'_i) - w_c t'_i
 *
 *   R, the region term: per segment, from its sums over valid elements
 *     TP = sum p t,  FP = sum p (1 - t),  FN = sum (1 - p) t,  SQ = sum (p - t)^2
 *     the score, with n = smooth_nr, d = smooth_dr, clamped denominators max(D, denominator_min):
 *       DICE:            (2 TP + n) / (2 TP + FP + FN + d)        = (2I + n) / (P + T + d)
 *       DICE, squared:   (2 TP + n) / (2 TP + SQ + d)             = (2I + n) / (sum p^2 + sum t^2 + d)
 *       JACCARD:         (TP + n) / (TP + FP + FN + d)            = (I + n) / (P + T - I + d)
 *       JACCARD, squared:(TP + n) / (TP + SQ + d)                 = (I + n) / (sum p^2 + sum t^2 - I + d)
 *       TVERSKY:         (TP + n) / (TP + alpha FP + beta FN + d)
 *     the segment's loss:  1 - score, or max(1 - score, 0)^gamma for gamma != 1 (focal),
 *                          or with log_loss  -log(max(score, log_min));
 *     1 - score is evaluated as (D - N) / D with D - N = (FP + FN, alpha FP + beta FN or SQ)
 *     + d - n, from sums of non-negative terms (and, with logits, 1 - p = sigmoid(-x)), so a
 *     loss near 0 keeps its relative precision. (With n > d a score can exceed 1 and the
 *     loss be negative, as in the formula.)
 *     Where a clamp (D < denominator_min, score < log_min, 1 - score < 0 in the focal form)
 *     is active, the loss does not depend on what it clamps: the gradient through it is 0.
 *     At equality the clamp is not active (as torch.clamp_min passes the gradient there).
 *     A segment is empty when its T = TP + FN (over valid elements) is 0; empty_policy says
 *     what its loss is.
 *     R = mean (or sum) over the segments of channel_weights[c] * loss_segment; the mean
 *     divides by the number of (counted) segments, not by the weights' sum (MONAI's
 *     convention).
 *
 * Which elements one region score covers (segments):
 *   SEGLOSS_SEGMENT_ALL             the whole tensor, 1 segment (the flat functions above)
 *   SEGLOSS_SEGMENT_SAMPLE          each sample, N segments
 *   SEGLOSS_SEGMENT_CHANNEL         each channel over the batch ("batch Dice"), C segments
 *   SEGLOSS_SEGMENT_SAMPLE_CHANNEL  each sample x channel, N*C segments, in that order
 *
 * Masks: with mask != NULL an element is valid when its mask byte is non-zero. Invalid
 * elements add nothing to any sum, are not range-checked (they may hold anything), count
 * in no mean, and get gradient 0. The element mean is over valid elements; with none, E = 0.
 *
 * Accuracy: float32 pred is computed in float32 with the vectorized math above and summed
 * in float per run of at most 128 elements, then in double; float64 pred is computed in
 * double with the C library's log/exp/log1p. Results are bitwise identical for any number
 * of worker threads. The gradient has pred's dtype; the loss is a double.
 *====================================================================================*/

/* Which form pred takes. */
typedef enum segloss_input_kind {
    SEGLOSS_INPUT_PROBABILITIES = 0, /* pred in [0, 1] */
    SEGLOSS_INPUT_LOGITS = 1         /* pred finite; sigmoid applied inside; gradients w.r.t. the logits */
} segloss_input_kind;

/* The element-wise term. */
typedef enum segloss_element_term {
    SEGLOSS_ELEMENT_NONE = 0,
    SEGLOSS_ELEMENT_BCE = 1
} segloss_element_term;

/* The region (overlap) term. */
typedef enum segloss_region_term {
    SEGLOSS_REGION_NONE = 0,
    SEGLOSS_REGION_DICE = 1,
    SEGLOSS_REGION_JACCARD = 2,
    SEGLOSS_REGION_TVERSKY = 3
} segloss_region_term;

/* Which elements one region score covers. */
typedef enum segloss_segments {
    SEGLOSS_SEGMENT_ALL = 0,
    SEGLOSS_SEGMENT_SAMPLE = 1,
    SEGLOSS_SEGMENT_CHANNEL = 2,
    SEGLOSS_SEGMENT_SAMPLE_CHANNEL = 3
} segloss_segments;

/* What the region loss of a segment whose target is empty (T = 0) is. */
typedef enum segloss_empty_policy {
    SEGLOSS_EMPTY_KEEP = 0,    /* the formula, as for any segment (MONAI's DiceLoss) */
    SEGLOSS_EMPTY_ZERO = 1,    /* 0, and the segment still counts in the mean (smp's losses) */
    SEGLOSS_EMPTY_EXCLUDE = 2  /* left out of the mean (R = 0 when every segment is empty) */
} segloss_empty_policy;

/* How the element terms and the segment losses are combined. */
typedef enum segloss_reduction {
    SEGLOSS_REDUCTION_MEAN = 0, /* E over valid elements, R over (counted) segments */
    SEGLOSS_REDUCTION_SUM = 1
} segloss_reduction;

/* Element types of the arrays. */
typedef enum segloss_dtype {
    SEGLOSS_FLOAT32 = 0,
    SEGLOSS_FLOAT64 = 1,
    SEGLOSS_UINT8 = 2 /* target only: each byte 0 or 1 */
} segloss_dtype;

/* What the mask covers. */
typedef enum segloss_mask_layout {
    SEGLOSS_MASK_PER_ELEMENT = 0, /* N x C x S bytes, one per element */
    SEGLOSS_MASK_PER_PIXEL = 1    /* N x S bytes, shared by the C channels of a pixel */
} segloss_mask_layout;

/* The number of sums one segment has, in this order: TP, FP, FN, SQ (as above), the sum of
 * the element terms e_i (0 when the element term is NONE or its weight 0: it is then not
 * computed), and the number of valid elements. */
#define SEGLOSS_SUMS_PER_SEGMENT 6

/* The options of a loss. Always start from segloss_options_init(), which sets struct_size
 * and the seed's BCE + Dice (0.5 BCE + 0.5 Dice, smooth 1, over the whole tensor); then
 * change what you need. Enum-valued fields are ints holding the enums above.
 * Rules (anything else is SEGLOSS_ERROR_INVALID_OPTIONS): every double finite;
 * weights, smoothing, alpha, beta, denominator_min >= 0; gamma > 0; log_min in (0, 1];
 * label_smoothing in [0, 1]; squared only with DICE or JACCARD; log_loss only with gamma 1;
 * pos_weight only with the BCE term; not both terms NONE. */
typedef struct segloss_options {
    size_t struct_size;       /* sizeof(segloss_options) of the caller's header */
    int input;                /* segloss_input_kind: PROBABILITIES */
    int element_term;         /* segloss_element_term: BCE */
    int region_term;          /* segloss_region_term: DICE */
    int segments;             /* segloss_segments: ALL */
    int empty_policy;         /* segloss_empty_policy: KEEP */
    int reduction;            /* segloss_reduction: MEAN */
    int squared;              /* 0 or 1: squared denominator (MONAI's squared_pred) */
    int log_loss;             /* 0 or 1: region loss -log(max(score, log_min)) (smp's log_loss) */
    double element_weight;    /* 0.5 */
    double region_weight;     /* 0.5 */
    double smooth_nr;         /* 1: added to the score's numerator */
    double smooth_dr;         /* 1: added to the score's denominator */
    double alpha;             /* 0.5: Tversky weight of FP */
    double beta;              /* 0.5: Tversky weight of FN */
    double gamma;             /* 1: focal exponent, loss (1 - score)^gamma (for gamma != 1,
                                 1 - score is clamped at 0 first) */
    double denominator_min;   /* 0: the score's denominator is max(D, denominator_min) */
    double log_min;           /* 1e-7: the score's floor in the log form */
    double label_smoothing;   /* 0: BCE targets moved toward 0.5 by this factor */
    const double *pos_weight;      /* NULL, or C finite values >= 0: BCE weight of t = 1 */
    const double *channel_weights; /* NULL, or C finite values >= 0: weight of each segment's
                                      region loss by its channel (not with ALL or SAMPLE;
                                      allowed, and unused, with REGION_NONE) */
} segloss_options;

/* The layout and element types of pred, target and mask. */
typedef struct segloss_shape {
    size_t batch;      /* N >= 1 */
    size_t channels;   /* C >= 1 */
    size_t spatial;    /* S >= 1 */
    int pred_dtype;    /* SEGLOSS_FLOAT32 or SEGLOSS_FLOAT64 (the gradient has this type) */
    int target_dtype;  /* SEGLOSS_FLOAT32, SEGLOSS_FLOAT64 or SEGLOSS_UINT8 */
    int mask_layout;   /* segloss_mask_layout, read only when a mask is given */
} segloss_shape;

/* Sets every field to its default (see segloss_options), struct_size included.
 * Returns SEGLOSS_OK, or SEGLOSS_ERROR_NULL_POINTER. */
SEGLOSS_API segloss_status segloss_options_init(segloss_options *options);

/* The number of segments (region scores) of a call: 1, N, C or N*C.
 * Returns SEGLOSS_OK, NULL_POINTER, EMPTY_INPUT (a dimension is 0), COUNT_TOO_LARGE,
 * INVALID_OPTIONS, INVALID_SHAPE. */
SEGLOSS_API segloss_status segloss_segment_count(const segloss_options *options,
                                                 const segloss_shape *shape,
                                                 size_t *segments);

/* The loss.
 *   options         the loss (see segloss_options)
 *   shape           N, C, S and the dtypes
 *   pred            N*C*S values of shape->pred_dtype
 *   target          N*C*S values of shape->target_dtype
 *   mask            NULL, or the valid-element bytes (shape->mask_layout)
 *   loss            out: the loss
 *   segment_scores  NULL, or out: one score per segment (the Dice, Jaccard or Tversky
 *                   index, as defined above, empty segments included; with REGION_NONE the
 *                   Dice index with the options' smooth_nr, smooth_dr and denominator_min)
 *   segment_sums    NULL, or out: SEGLOSS_SUMS_PER_SEGMENT doubles per segment
 * Outputs are written on SEGLOSS_OK only. The seed's loss (the options' defaults, float32
 * pred and target, no mask) takes the flat functions' passes unless segment outputs are
 * asked for; the two paths agree to the last bits of float32 rounding, not bitwise.
 * Returns SEGLOSS_OK, NULL_POINTER, EMPTY_INPUT, COUNT_TOO_LARGE (N*C*S times the size of
 * the widest dtype exceeds PTRDIFF_MAX), INVALID_OPTIONS, INVALID_SHAPE, PRED_OUT_OF_RANGE
 * (a probability outside [0, 1], or a logit that is NaN or infinite), TARGET_OUT_OF_RANGE
 * (outside [0, 1], NaN, or a uint8 other than 0 and 1). With several faults, the first in
 * this order: a NULL pointer; the options' own fields (INVALID_OPTIONS); the shape's dtypes
 * (INVALID_SHAPE); its dimensions (EMPTY_INPUT, COUNT_TOO_LARGE); pos_weight and
 * channel_weights (INVALID_OPTIONS); the slice and grad_loss (INVALID_ARGUMENT); the data. */
SEGLOSS_API segloss_status segloss_forward(const segloss_options *options,
                                           const segloss_shape *shape, const void *pred,
                                           const void *target, const unsigned char *mask,
                                           double *loss, double *segment_scores,
                                           double *segment_sums);

/* Writes grad_loss * d loss / d pred (w.r.t. the logits with SEGLOSS_INPUT_LOGITS) into
 * grad_pred: N*C*S values of shape->pred_dtype, 0 where the mask is 0; grad_pred may be pred.
 * Returns the statuses of segloss_forward, and INVALID_ARGUMENT for a non-finite grad_loss. */
SEGLOSS_API segloss_status segloss_backward(const segloss_options *options,
                                            const segloss_shape *shape, const void *pred,
                                            const void *target, const unsigned char *mask,
                                            double grad_loss, void *grad_pred);

/* The loss and its gradient (grad_loss = 1) from one statistics pass and one gradient pass.
 * Parameters as segloss_forward and segloss_backward. */
SEGLOSS_API segloss_status segloss_forward_backward(const segloss_options *options,
                                                    const segloss_shape *shape,
                                                    const void *pred, const void *target,
                                                    const unsigned char *mask, double *loss,
                                                    void *grad_pred, double *segment_scores,
                                                    double *segment_sums);

/*======================================================================================
 * Split phase: one loss over a batch split across processes (data parallel)
 *
 * Every loss above is a function of per-segment sums, which add up across processes. So a
 * batch split over ranks gets the exact loss of the whole batch — not an average of the
 * ranks' losses — in three steps:
 *
 *   1. segloss_compute_sums      each rank: the sums of its own slice, into `sums`
 *   2. all-reduce `sums` (element-wise sum of doubles) with MPI_Allreduce,
 *      torch.distributed.all_reduce or any other engine
 *   3. segloss_loss_from_sums    the loss of the whole batch (same on every rank)
 *      segloss_backward_from_sums  each rank: the gradient of its own elements
 *
 * `slice` says where a rank's samples sit: samples sample_offset ... sample_offset +
 * shape->batch - 1 of total_batch (NULL: the whole batch is local). For SEGMENT_ALL and
 * SEGMENT_CHANNEL every rank has the same segments; for SEGMENT_SAMPLE(_CHANNEL) the sums
 * buffer has the segments of all total_batch samples, and a rank's own samples fill their
 * places while the others' stay 0, so the all-reduce gathers them. The loss then equals the
 * single-process loss on the whole batch (to the rounding of the sums' additions), for
 * every option, and so does the gradient.
 *====================================================================================*/

/* Where a rank's samples sit in the batch. */
typedef struct segloss_slice {
    size_t sample_offset; /* index of the rank's first sample in the whole batch */
    size_t total_batch;   /* samples in the whole batch, >= sample_offset + shape->batch;
                             0 is SEGLOSS_ERROR_EMPTY_INPUT */
} segloss_slice;

/* The number of doubles of a sums buffer: SEGLOSS_SUMS_PER_SEGMENT times the number of
 * segments of the whole batch. Returns the statuses of segloss_segment_count, and
 * INVALID_ARGUMENT for a slice that does not fit (sample_offset + batch > total_batch). */
SEGLOSS_API segloss_status segloss_sums_length(const segloss_options *options,
                                               const segloss_shape *shape,
                                               const segloss_slice *slice, size_t *length);

/* Step 1: the slice's sums into `sums` (sums_length doubles, which must be what
 * segloss_sums_length gives; every one is written: 0 for other ranks' segments). The rank's
 * inputs are checked as segloss_forward checks them. A rank with no samples (shape->batch 0,
 * with a slice) is allowed: its sums are all 0.
 * Returns the statuses of segloss_forward, and INVALID_ARGUMENT for a bad slice or a
 * sums_length that does not match. */
SEGLOSS_API segloss_status segloss_compute_sums(const segloss_options *options,
                                                const segloss_shape *shape,
                                                const segloss_slice *slice, const void *pred,
                                                const void *target, const unsigned char *mask,
                                                double *sums, size_t sums_length);

/* Step 3: the loss of the whole batch from the all-reduced `sums` (sums_length doubles),
 * and optionally each segment's score (as segloss_forward). Only shape's channels and the
 * slice's total_batch size the buffers (shape->batch may be 0). Sums that are all 0 (no
 * valid element anywhere) give the loss of an all-masked batch, as segloss_forward would.
 * Returns SEGLOSS_OK, NULL_POINTER, INVALID_OPTIONS, INVALID_SHAPE, EMPTY_INPUT,
 * COUNT_TOO_LARGE, and INVALID_ARGUMENT for a bad slice, a sums_length that does not match,
 * or a sum that is negative or NaN (+inf, which huge logits can give, is accepted). */
SEGLOSS_API segloss_status segloss_loss_from_sums(const segloss_options *options,
                                                  const segloss_shape *shape,
                                                  const segloss_slice *slice,
                                                  const double *sums, size_t sums_length,
                                                  double *loss, double *segment_scores);

/* Step 3: grad_loss * d loss / d pred of the rank's own elements, from the all-reduced
 * `sums` (as segloss_backward, which is this with the rank's own sums). The rank's inputs
 * are range-checked again before anything is written (one more read of pred and target,
 * the price of never writing a gradient from unchecked data). Returns the statuses of
 * segloss_backward and of segloss_loss_from_sums. */
SEGLOSS_API segloss_status segloss_backward_from_sums(const segloss_options *options,
                                                      const segloss_shape *shape,
                                                      const segloss_slice *slice,
                                                      const void *pred, const void *target,
                                                      const unsigned char *mask,
                                                      const double *sums, size_t sums_length,
                                                      double grad_loss, void *grad_pred);

#ifdef __cplusplus
}
#endif

#endif /* SEGLOSS_H */
