// Work split shared by the CPU kernels of the losses over per-entity maps
// (attention_guidance_loss, diffusion_guided_loss): (sample [, entity], chunk of kChunk pixels)
// tasks, small enough that a chunk of every entity stays in L1/L2 while it is read again.
#pragma once
#include <cstdint>

#include "entity_map_loss.h"

namespace dapo_fast {
namespace map_loss_cpu {

constexpr int64_t kChunk = 1024;

struct MapSizes {
  int64_t batch, entities, pixels, chunks;
};

inline MapSizes map_sizes(const MapLossSizes& s) {
  return {s.batch, s.entities, s.pixels, (s.pixels + kChunk - 1) / kChunk};
}

// Task t of a split into (row, chunk) tasks (row: a sample, or a (sample, entity) pair): its row,
// first pixel and pixel count.
struct ChunkTask {
  int64_t row, p0, n;
};

inline ChunkTask chunk_task(const MapSizes& s, int64_t task) {
  const int64_t p0 = (task % s.chunks) * kChunk;
  return {task / s.chunks, p0, s.pixels - p0 < kChunk ? s.pixels - p0 : kChunk};
}

}  // namespace map_loss_cpu
}  // namespace dapo_fast
