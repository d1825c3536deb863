//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0)
// Counts each network namespace's ESTABLISHED TCP connections from inet_sock_set_state, per
// local port for accepted ones (inbound) and in one sum for the rest (outbound). A socket's
// direction and key are kept in socket-local storage when it becomes ESTABLISHED, so its
// departure is taken off the same count. Sockets established before the program was attached
// have no storage: their departures are counted apart (gone), by local port, and user space
// takes them off the connections it counted with sock_diag when it first saw the namespace.
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

// The kernel's types, only the fields read here; CO-RE relocates them to this kernel's layout.
struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} __attribute__((preserve_access_index)) possible_net_t;

struct in6_addr {
	union {
		__u8 u6_addr8[16];
		__u32 u6_addr32[4];
	} in6_u;
} __attribute__((preserve_access_index));

struct sock_common {
	__be32 skc_daddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	struct in6_addr skc_v6_daddr;
	possible_net_t skc_net;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
} __attribute__((preserve_access_index));

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_LISTEN 10
#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

enum direction { DIR_SKIP = 0, DIR_IN = 1, DIR_OUT = 2, DIR_LISTEN = 3, DIR_CHANGES = 4 };

// key of counts: outbound connections are summed under port 0; DIR_LISTEN counts the
// namespace's listening sockets on the port (as established, opened unused).
struct key {
	__u32 netns;
	__u16 port;
	__u8 dir;
	__u8 pad;
};

struct value {
	__s64 established;
	__u64 opened; // connections that became ESTABLISHED (accepted ones for DIR_IN)
};

struct sk_state {
	struct key key;
};

// Shared by the CPUs (atomic adds), not per CPU: preallocated per-CPU maps would take memory in
// proportion to the node's CPUs. Entries: a few per pod namespace (its listening ports,
// outbound); the agent deletes a namespace's entries when it is gone.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__type(key, struct key);
	__type(value, struct value);
} counts SEC(".maps");

// gone: departures of sockets established before the program was attached, by netns and
// local port (dir 0), as user space cannot know their direction from here.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__type(key, struct key);
	__type(value, __s64);
} gone SEC(".maps");

// lost[0]: events that found counts or gone full (their connection is then miscounted until the
// next sock_diag check corrects it); user space reports it.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&lost, &zero);
	if (n)
		__sync_fetch_and_add(n, 1);
}

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sk_state);
} sockets SEC(".maps");

// Set by the loader: count connections whose peer is loopback (127.0.0.0/8, ::1, ::ffff:127.x).
volatile const __u8 include_loopback_peers = 0;

static __always_inline int loopback_peer(const struct sock *sk, __u16 family)
{
	if (family == AF_INET) {
		__u32 daddr = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		return (daddr & 0xff) == 127; // network order: first byte
	}
	__u32 a[4];
	BPF_CORE_READ_INTO(&a, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr32);
	if (a[0] == 0 && a[1] == 0 && a[2] == 0 && a[3] == bpf_htonl(1))
		return 1;
	if (a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0x0000ffff) && (a[3] & 0xff) == 127)
		return 1;
	return 0;
}

static __always_inline void add(struct key *k, __s64 est, __u64 opened)
{
	struct value *v = bpf_map_lookup_elem(&counts, k);
	if (!v) {
		struct value zero = {};
		bpf_map_update_elem(&counts, k, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&counts, k);
		if (!v) {
			count_lost();
			return;
		}
	}
	__sync_fetch_and_add(&v->established, est);
	if (opened)
		__sync_fetch_and_add(&v->opened, opened);
}

// changed counts every event recorded for a namespace (key dir DIR_CHANGES, port 0): user space
// reads it before and after a sock_diag count to know nothing moved in between.
static __always_inline void changed(__u32 netns)
{
	struct key k = {.netns = netns, .dir = DIR_CHANGES};
	add(&k, 0, 1);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(inet_sock_set_state, struct sock *sk, int oldstate, int newstate)
{
	if (oldstate == newstate)
		return 0;
	if (oldstate != TCP_ESTABLISHED && newstate != TCP_ESTABLISHED && oldstate != TCP_LISTEN && newstate != TCP_LISTEN)
		return 0;
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;

	// An accepted connection's socket is cloned from its listener and set from LISTEN (copied)
	// to SYN_RECV: not a listener closing.
	if (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV)
		return 0;
	if (newstate == TCP_LISTEN) {
		// The key is kept with the socket: when it closes, an automatically bound port has
		// already been released (inet_num 0) by the time the tracepoint fires.
		struct sk_state *st = bpf_sk_storage_get(&sockets, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		struct key k = {
			.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum),
			.port = BPF_CORE_READ(sk, __sk_common.skc_num),
			.dir = DIR_LISTEN,
		};
		if (st)
			st->key = k;
		else
			count_lost();
		add(&k, 1, 0);
		changed(k.netns);
		return 0;
	}
	if (oldstate == TCP_LISTEN) {
		struct sk_state *st = bpf_sk_storage_get(&sockets, sk, 0, 0);
		struct key k = {
			.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum),
			.port = BPF_CORE_READ(sk, __sk_common.skc_num),
			.dir = DIR_LISTEN,
		};
		if (st && st->key.dir == DIR_LISTEN) {
			k = st->key;
			bpf_sk_storage_delete(&sockets, sk);
		}
		add(&k, -1, 0);
		changed(k.netns);
		return 0;
	}

	if (newstate == TCP_ESTABLISHED) {
		struct sk_state *st = bpf_sk_storage_get(&sockets, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (!st) {
			count_lost(); // its departure will be taken for an older connection's
			return 0;
		}
		st->key.dir = DIR_SKIP;
		if (!include_loopback_peers && loopback_peer(sk, family))
			return 0;
		st->key.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
		if (oldstate == TCP_SYN_RECV) {
			st->key.dir = DIR_IN;
			st->key.port = BPF_CORE_READ(sk, __sk_common.skc_num);
		} else {
			st->key.dir = DIR_OUT;
			st->key.port = 0;
		}
		st->key.pad = 0;
		struct key k = st->key;
		add(&k, 1, 1);
		changed(k.netns);
		return 0;
	}

	// Leaving ESTABLISHED.
	struct sk_state *st = bpf_sk_storage_get(&sockets, sk, 0, 0);
	if (st) {
		if (st->key.dir == DIR_IN || st->key.dir == DIR_OUT) {
			struct key k = st->key;
			add(&k, -1, 0);
			changed(k.netns);
		}
		bpf_sk_storage_delete(&sockets, sk);
		return 0;
	}
	if (!include_loopback_peers && loopback_peer(sk, family))
		return 0;
	struct key k = {
		.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum),
		.port = BPF_CORE_READ(sk, __sk_common.skc_num),
	};
	__s64 *g = bpf_map_lookup_elem(&gone, &k);
	if (!g) {
		__s64 zero = 0;
		bpf_map_update_elem(&gone, &k, &zero, BPF_NOEXIST);
		g = bpf_map_lookup_elem(&gone, &k);
		if (!g) {
			count_lost();
			return 0;
		}
	}
	__sync_fetch_and_add(g, 1);
	changed(k.netns);
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
