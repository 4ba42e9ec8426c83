// HeaderConformance — the build fails if an export drifts from its prototype in segloss.h.
//
// Each line passes the header's declaration (imported through the CSegLoss Clang module) and
// the Swift @_cdecl function to one generic function whose parameter pack forces both to the
// same parameter and result types. (A plain `func same<T>(_: T, _: T)` would not: T would
// silently become Any.) tests/check_exports.py checks the other half: the library exports
// exactly the functions the header declares.
import CSegLoss

private func sameSignature<each Argument, Result>(
    _ header: (repeat each Argument) -> Result, _ export: (repeat each Argument) -> Result
) {}

private func checkExportsMatchHeader() {
    sameSignature(CSegLoss.segloss_version_number, SegLoss.segloss_version_number)
    sameSignature(CSegLoss.segloss_version_string, SegLoss.segloss_version_string)
    sameSignature(CSegLoss.segloss_status_string, SegLoss.segloss_status_string)
    sameSignature(CSegLoss.segloss_set_num_threads, SegLoss.segloss_set_num_threads)
    sameSignature(CSegLoss.segloss_get_num_threads, SegLoss.segloss_get_num_threads)
    sameSignature(CSegLoss.segloss_kernel_name, SegLoss.segloss_kernel_name)
    sameSignature(CSegLoss.segloss_dice_forward, SegLoss.segloss_dice_forward)
    sameSignature(CSegLoss.segloss_dice_backward, SegLoss.segloss_dice_backward)
    sameSignature(CSegLoss.segloss_bce_forward, SegLoss.segloss_bce_forward)
    sameSignature(CSegLoss.segloss_bce_backward, SegLoss.segloss_bce_backward)
    sameSignature(CSegLoss.segloss_bce_dice_forward, SegLoss.segloss_bce_dice_forward)
    sameSignature(CSegLoss.segloss_bce_dice_backward, SegLoss.segloss_bce_dice_backward)
    sameSignature(CSegLoss.segloss_bce_dice_forward_backward, SegLoss.segloss_bce_dice_forward_backward)
    sameSignature(CSegLoss.segloss_options_init, SegLoss.segloss_options_init)
    sameSignature(CSegLoss.segloss_segment_count, SegLoss.segloss_segment_count)
    sameSignature(CSegLoss.segloss_forward, SegLoss.segloss_forward)
    sameSignature(CSegLoss.segloss_backward, SegLoss.segloss_backward)
    sameSignature(CSegLoss.segloss_forward_backward, SegLoss.segloss_forward_backward)
    sameSignature(CSegLoss.segloss_sums_length, SegLoss.segloss_sums_length)
    sameSignature(CSegLoss.segloss_compute_sums, SegLoss.segloss_compute_sums)
    sameSignature(CSegLoss.segloss_loss_from_sums, SegLoss.segloss_loss_from_sums)
    sameSignature(CSegLoss.segloss_backward_from_sums, SegLoss.segloss_backward_from_sums)
}
