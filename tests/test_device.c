/* test_device.c — the device query (include/magna/cuda.h): a build without CUDA says so; a CUDA build
 * answers from cudart, and on a machine without a GPU (this one, CI) says that no device was found; the
 * emulated build (test_device_emu) has its one emulated device. Asking
 * for cuda fails with MAGNA_ERR_UNSUPPORTED and that reason wherever the backend cannot train. */
#include "check.h"
#include "magna.h"

#include <string.h>

int main(void) {
    char why[256] = "";
    const bool available = magna_cuda_available(why, sizeof why);
    printf("cuda built=%d available=%d: %s\n", magna_cuda_built(), available, why);
    CHECK(why[0] != 0, "magna_cuda_available gives no reason");
#ifdef MAGNA_CUDA_EMU
    CHECK(magna_cuda_built() && available && strcmp(why, "emulated CUDA device (CPU)") == 0, "emulator: %s", why);
#endif
    if (!magna_cuda_built())
        CHECK(!available && strstr(why, "this build has no CUDA"), "no CUDA build: %s", why);
    else if (!available)
        CHECK(strstr(why, "no CUDA device") || strstr(why, "no usable CUDA device"), "no device: %s", why);
    /* NULL and a tiny buffer are fine */
    CHECK(magna_cuda_available(NULL, 0) == available, "the answer changed without a reason buffer");
    char tiny[4];
    magna_cuda_available(tiny, sizeof tiny);
    CHECK(strlen(tiny) == 3, "reason not cut to the buffer: '%s'", tiny);

    magna_device d = MAGNA_DEVICE_CUDA;
    magna_error err;
    CHECK(magna_device_parse("cpu", &d, &err) == MAGNA_OK && d == MAGNA_DEVICE_CPU, "parse cpu");
    CHECK(magna_device_parse("cuda", &d, &err) == MAGNA_OK && d == MAGNA_DEVICE_CUDA, "parse cuda");
    CHECK(magna_device_parse("gpu", &d, &err) == MAGNA_ERR_ARG && strstr(err.message, "unknown device 'gpu'"),
          "parse gpu: %s", err.message);
    CHECK(magna_device_check(MAGNA_DEVICE_CPU, &err) == MAGNA_OK, "the CPU always runs");
    /* cuda runs exactly where a device answers; elsewhere it is refused with the device query's reason */
    if (available) {
        CHECK(magna_device_check(MAGNA_DEVICE_CUDA, &err) == MAGNA_OK, "check cuda with a device: %s", err.message);
    } else {
        CHECK(magna_device_check(MAGNA_DEVICE_CUDA, &err) == MAGNA_ERR_UNSUPPORTED &&
                  strstr(err.message, "cannot run on cuda: ") && strstr(err.message, why),
              "check cuda: %s", err.message);
    }
    /* a graph asks the same question */
    magna_graph *g = magna_graph_new(1);
    CHECK((magna_graph_set_device(g, MAGNA_DEVICE_CUDA) == MAGNA_OK) == available, "set_device(cuda): %s",
          magna_graph_errmsg(g));
    CHECK(magna_graph_device(g) == (available ? MAGNA_DEVICE_CUDA : MAGNA_DEVICE_CPU), "the graph's device");
    magna_graph_free(g);
    g = magna_graph_new(1); /* bf16 is a choice made before compile, on either device */
    magna_node *x = magna_param(g, "x", 1, (int64_t[]){3}, magna_init_zeros());
    CHECK(magna_graph_set_bf16(g, true) == MAGNA_OK && magna_graph_bf16(g), "bf16 on a cpu graph refused");
    CHECK(magna_graph_compile(g, magna_sum(g, x, MAGNA_ALL_AXES, false)) == MAGNA_OK, "%s", magna_graph_errmsg(g));
    CHECK(magna_graph_set_bf16(g, false) == MAGNA_ERR_STATE, "bf16 changed after compile");
    magna_graph_free(g);
    CHECK(magna_device_check((magna_device)7, &err) == MAGNA_ERR_ARG, "device 7 accepted");
    return check_finish("test_device");
}
