// Hot CPU loops are compiled for several ISAs (x86-64-v4: AVX-512; v3: AVX2+FMA) and picked at load time (GCC ifunc), so a
// portable build still runs AVX-512/AVX2 code where the CPU has it. Put DAPO_CPU_CLONES
// before a function definition whose inner loops the compiler vectorises.
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(DAPO_FAST_NO_CLONES)
#define DAPO_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define DAPO_CPU_CLONES
#endif
