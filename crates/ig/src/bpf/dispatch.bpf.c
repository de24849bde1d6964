// SPDX-License-Identifier: GPL-2.0
//
// The dispatchers: what ig attaches to each network namespace's packet
// socket (ig_sock_disp) and to each TC hook (ig_tc_disp) in front of a
// gadget's socket filter or TC program. They write the network namespace
// the attachment is for into skb->cb[0], where gadget/sockets-map.h's
// lookups read it (upstream's dispatchers do the same), then tail-call the
// gadget's program, loaded once for every attachment.
//
// One instance per attachment: user space sets current_netns before load
// and puts the gadget's program at index 0 of the instance's ig_tail_call.
// Built by build.rs with clang alone, like the other embedded programs.

typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(name) __attribute__((section(name), used))

// The UAPI struct __sk_buff up to cb[] (stable offsets).
struct __sk_buff {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
	__u32 protocol;
	__u32 vlan_present;
	__u32 vlan_tci;
	__u32 vlan_proto;
	__u32 priority;
	__u32 ingress_ifindex;
	__u32 ifindex;
	__u32 tc_index;
	__u32 cb[5];
};

static long (*bpf_tail_call)(void *ctx, void *map, __u32 index) = (void *)12;

const volatile __u32 current_netns = 0;

struct {
	int (*type)[3]; // BPF_MAP_TYPE_PROG_ARRAY
	int (*max_entries)[1];
	int (*key_size)[4];
	int (*value_size)[4];
} ig_tail_call SEC(".maps");

SEC("socket")
int ig_sock_disp(struct __sk_buff *skb)
{
	skb->cb[0] = current_netns;
	bpf_tail_call(skb, &ig_tail_call, 0);
	return 0;
}

// TC_ACT_UNSPEC (-1): the next program, or the default action, decides.
SEC("classifier")
int ig_tc_disp(struct __sk_buff *skb)
{
	skb->cb[0] = current_netns;
	bpf_tail_call(skb, &ig_tail_call, 0);
	return -1;
}

char LICENSE[] SEC("license") = "GPL";
