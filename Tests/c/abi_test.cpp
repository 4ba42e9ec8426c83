// A C++ consumer of libsegloss.so: the header included twice inside a C++ translation unit
// (extern "C" linkage), compiled with -Wall -Wextra -Werror -pedantic as C++11 and C++17.
// Runs the worked example through std::vector buffers and checks it against PyTorch's own
// float32 results; checks that errors leave outputs untouched. Exit status 0 when all pass.
#include <segloss.h>
#include <segloss.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

namespace {

int failures = 0;
int checks = 0;

void check(bool ok, const std::string &what) {
    ++checks;
    if (!ok) {
        ++failures;
        std::fprintf(stderr, "FAIL: %s\n", what.c_str());
    }
}

bool close_to(double got, double want) { return std::fabs(got - want) <= 1e-5 * std::fabs(want) + 1e-7; }

// RAII guard that restores the thread count.
struct ThreadCount {
    explicit ThreadCount(int n) { segloss_set_num_threads(n); }
    ~ThreadCount() { segloss_set_num_threads(0); }
};

}  // namespace

int main() {
    const std::vector<float> pred = {0.9f, 0.1f, 0.8f, 0.7f};
    const std::vector<float> target = {1.0f, 0.0f, 1.0f, 1.0f};
    const double torch_loss = 0.15266359;  // PyTorch 2.x float32, BCEDiceLoss(0.5, 0.5), smooth 1
    const double torch_grad[4] = {-0.22409600, 0.20752795, -0.24145710, -0.26377853};

    float loss = 0;
    std::vector<float> grad(pred.size());
    segloss_status status = segloss_bce_dice_forward_backward(
        pred.data(), target.data(), pred.size(), 0.5f, 0.5f, 1.0f, &loss, grad.data());
    check(status == SEGLOSS_OK, std::string("forward_backward: ") + segloss_status_string(status));
    check(close_to(loss, torch_loss), "loss " + std::to_string(loss));
    for (std::size_t i = 0; i < grad.size(); ++i)
        check(close_to(grad[i], torch_grad[i]), "grad[" + std::to_string(i) + "] " + std::to_string(grad[i]));

    {
        ThreadCount one(1);
        float single = 0;
        check(segloss_bce_dice_forward(pred.data(), target.data(), pred.size(), 0.5f, 0.5f, 1.0f,
                                       &single) == SEGLOSS_OK && single == loss,
              "one thread gives the same loss");
    }

    std::vector<float> bad = pred;
    bad[2] = std::numeric_limits<float>::quiet_NaN();
    float untouched = -7.0f;
    std::vector<float> grad_untouched(pred.size(), -7.0f);
    status = segloss_bce_dice_forward_backward(bad.data(), target.data(), bad.size(), 0.5f, 0.5f,
                                               1.0f, &untouched, grad_untouched.data());
    check(status == SEGLOSS_ERROR_PRED_OUT_OF_RANGE, "NaN pred gives PRED_OUT_OF_RANGE");
    check(untouched == -7.0f, "loss untouched on error");
    for (float g : grad_untouched) check(g == -7.0f, "grad untouched on error");

    check(segloss_version_number() == static_cast<unsigned>(SEGLOSS_VERSION_NUMBER), "version");

    std::printf("abi_test (C++%ld): %d passed, %d failed\n", static_cast<long>(__cplusplus / 100 % 100),
                checks - failures, failures);
    return failures == 0 ? 0 : 1;
}
