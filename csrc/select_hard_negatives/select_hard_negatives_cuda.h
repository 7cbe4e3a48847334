// Raw-pointer launcher of the greedy hard-negative selection (CUDA).
#pragma once
#include <cstdint>

namespace dapo_fast {

// cos: [B*N, B*N]; sim: [B, B*N]; scratch: 3 * B * (B-1) * N elements (difficulty, uniqueness,
// running max cos); picked: B * (B-1) int64; out: [B, B-1, num].
void select_hard_negatives_cuda_launch(bool is_double, const void* cos, const void* sim, void* scratch,
                                       int64_t* picked, int64_t* out, int64_t batch, int64_t n, int64_t num,
                                       int mode, void* stream);

}  // namespace dapo_fast
