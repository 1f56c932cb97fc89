/* fuzz_proto.c: libFuzzer target for the embed protocol's decoders (server/proto.c), built
 * with clang -fsanitize=fuzzer,address,undefined and run for a bounded time by ctest. Every
 * accepted request's texts are read end to end, so an out-of-bounds pointer would trip ASan. */
#include <stddef.h>
#include <stdint.h>

#include "../../server/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cv_proto_limits lim = {64, 4096};
    cv_proto_req req;
    char msg[256];
    if (cv_proto_decode_request(data, size, &lim, &req, msg, sizeof msg) == CV_ST_OK) {
        volatile uint8_t sink = 0;
        for (uint32_t i = 0; i < req.n; i++)
            for (uint32_t k = 0; k < req.len[i]; k++)
                sink ^= (uint8_t)req.text[i][k];
        cv_proto_req_free(&req);
    }
    cv_proto_rep rep;
    if (cv_proto_decode_reply(data, size, &rep) == CV_OK) cv_proto_rep_free(&rep);
    (void)cv_utf8_invalid_at((const char *)data, size);
    return 0;
}
