package bpfcount

// The BPF object is committed (counter_bpfel.o and its Go wrapper): building the agent needs no
// clang. `make lint` regenerates it and fails if the bytes differ. Debian 12: clang (14),
// libbpf-dev.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type key -type value counter counter.bpf.c -- -I/usr/include/x86_64-linux-gnu
