// Sizes of the ops that score response maps [B, S, H, W] against proposal masks [B, P, H, W]
// (proposal_alignment, soft_iou, region_ambiguity), as their pure CUDA launchers see them.
// Plain C++: no torch or CUDA types.
#pragma once
#include <cstdint>

namespace dapo_fast {

// B images, S maps per image, P proposals per image, HW pixels per map.
struct MaskSizes {
  int64_t b, s, p, hw;
};

}  // namespace dapo_fast
