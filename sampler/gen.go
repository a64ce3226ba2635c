package sampler

// The BPF objects and their Go bindings are generated from bpf/ and
// committed; `make generate` rebuilds them with Debian's clang.
//go:generate go tool bpf2go -tags linux -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu -I../bpf/include" -target bpfel -type vigil_sample -type vigil_sample_head -type vigil_stats -type vigil_if_key -type vigil_if_stats -type vigil_outcome -type vigil_flag -type vigil_direction sensor ../bpf/sensor.c
