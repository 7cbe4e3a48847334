// Element types as seen by pure CUDA launchers, which take void pointers plus this tag so
// their headers need neither torch nor CUDA types (see csrc/<op>/<op>_cuda.h).
#pragma once

namespace dapo_fast {

enum class DType { Float32, Float64, Float16, BFloat16 };

}  // namespace dapo_fast
