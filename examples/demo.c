/* The worked example of segloss: BCE+Dice loss and gradient of four pixels, from C.
 *   cc -Wall -Wextra -Werror -pedantic -std=c99 -Iinclude examples/demo.c \
 *      -L.build/release -lsegloss -Wl,-rpath,$PWD/.build/release -o demo && ./demo */
#include <segloss.h>
#include <segloss.h> /* a second include must be harmless */

#include <stdio.h>

int main(void) {
    const float pred[4] = {0.9f, 0.1f, 0.8f, 0.7f};
    const float target[4] = {1.0f, 0.0f, 1.0f, 1.0f};
    float dice = 0.0f, loss = 0.0f, grad[4];
    segloss_status status;

    if (segloss_version_number() != SEGLOSS_VERSION_NUMBER) {
        fprintf(stderr, "header %d and library %u differ\n", SEGLOSS_VERSION_NUMBER,
                segloss_version_number());
        return 1;
    }
    status = segloss_dice_forward(pred, target, 4, 1.0f, &dice);
    if (status != SEGLOSS_OK) {
        fprintf(stderr, "segloss_dice_forward: %s\n", segloss_status_string(status));
        return 1;
    }
    status = segloss_bce_dice_forward_backward(pred, target, 4, 0.5f, 0.5f, 1.0f, &loss, grad);
    if (status != SEGLOSS_OK) {
        fprintf(stderr, "segloss_bce_dice_forward_backward: %s\n", segloss_status_string(status));
        return 1;
    }
    printf("segloss %s (C, kernel %s)\n", segloss_version_string(), segloss_kernel_name());
    printf("dice loss     %.8f\n", dice);
    printf("bce+dice loss %.8f\n", loss);
    printf("gradient      [%.8f, %.8f, %.8f, %.8f]\n", grad[0], grad[1], grad[2], grad[3]);

    /* Bad input gets a status and a message, and the outputs stay as they were. */
    {
        const float bad[4] = {0.9f, 1.5f, 0.8f, 0.7f};
        status = segloss_bce_dice_forward(bad, target, 4, 0.5f, 0.5f, 1.0f, &loss);
        printf("pred 1.5      status %d: %s\n", (int)status, segloss_status_string(status));
    }
    return 0;
}
