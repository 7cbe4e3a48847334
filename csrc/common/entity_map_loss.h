// Sizes of the losses over per-entity maps (attention_guidance_loss, diffusion_guided_loss):
// heatmaps and attention / target maps [B, E, H, W] seen as [B, E, P], entity_valid [B, E].
// Plain C++: no torch or CUDA types (the pure CUDA launchers take it).
#pragma once
#include <cstdint>

namespace dapo_fast {

struct MapLossSizes {
  int64_t batch, entities, pixels;
};

// Pixels per forward block of the CUDA kernels.
constexpr int64_t kMapLossCudaChunk = 4096;

// Chunks of kMapLossCudaChunk pixels per sample (at least one): the CUDA forward reduces each
// (sample, chunk) into its own partial sums.
inline int64_t map_loss_cuda_chunks(const MapLossSizes& s) {
  const int64_t chunks = (s.pixels + kMapLossCudaChunk - 1) / kMapLossCudaChunk;
  return chunks > 0 ? chunks : 1;
}

}  // namespace dapo_fast
