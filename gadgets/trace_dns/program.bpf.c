// SPDX-License-Identifier: GPL-2.0
//
// trace_dns: DNS queries and responses seen on the network, one event per
// packet, decoded in the kernel: id, query or response, the queried name,
// type, response code, endpoints, and for a response the time since its
// query was seen.
//
// A socket filter (SEC("socket")). ig attaches it, behind a dispatcher
// that writes the network namespace into skb->cb[0], to an AF_PACKET raw
// socket in the host's network namespace and in each followed container's,
// so it sees every packet of every interface of those namespaces, in both
// directions, as Ethernet frames (the loopback device has an all-zero
// Ethernet header too). The program always returns 0, so no packet is
// ever queued on that socket: the events leave through the ring buffer
// only.
//
// Parsed: Ethernet, then IPv4 (options skipped; later fragments ignored)
// or IPv6 (up to MAX_IPV6_EXT extension headers skipped), then UDP with
// the DNS port at either end, then the DNS header and the first question.
// Not parsed: DNS over TCP, VLAN-tagged frames that still carry their tag,
// and interfaces without an Ethernet header (tun, WireGuard...).
//
// A socket filter runs for the packet, not in its process: the process is
// the owner of the packet's local end (the source port of a packet this
// host sends, the destination port of one it receives), which ig's socket
// enricher records in gadget_sockets (gadget/sockets-map.h). Process
// filters (--pid, --comm, -c) apply to that owner.
//
// On the loopback device every packet is seen twice, leaving (OUTGOING,
// the sender's) and arriving (HOST, the receiver's); both are reported,
// each with its own process, as upstream's trace_dns does. A response's
// latency is then measured from the query leaving to the response
// arriving (the client's view).

#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// Events are sent with gadget_output_buf() only.
#define GADGET_NO_BUF_RESERVE
#define GADGET_TYPE_NETWORKING
#include <gadget/buffer.h>
#include <gadget/filter.h>
#include <gadget/macros.h>
#include <gadget/sockets-map.h>
#include <gadget/types.h>

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IP_OFFSET_MASK 0x1fff
#define LOOPBACK_IFINDEX 1
#define PACKET_OUTGOING 4

// IPv6 extension headers that can come before UDP.
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_AUTH 51
#define NEXTHDR_DEST 60
#define MAX_IPV6_EXT 4

#define DNS_HLEN 12
// Longest name on the wire (RFC 1035 3.1), and the decoded name's size.
#define NAME_WIRE_MAX 255
#define NAME_LEN 256

// The names of these enums are the displayed values.

// skb->pkt_type: who the packet is for, as seen by this host.
enum pkt_type : __u8 {
	HOST = 0,
	BROADCAST = 1,
	MULTICAST = 2,
	OTHERHOST = 3,
	OUTGOING = 4,
};

enum dns_qr : __u8 {
	Q = 0,
	R = 1,
};

// Response codes (RFC 1035 4.1.1, RFC 6895).
enum dns_rcode : __u8 {
	Success = 0,
	FormatError = 1,
	ServerFailure = 2,
	NameError = 3,
	NotImplemented = 4,
	Refused = 5,
};

// Common query types (IANA DNS parameters); others show as numbers.
enum dns_qtype : __u16 {
	A = 1,
	NS = 2,
	CNAME = 5,
	SOA = 6,
	PTR = 12,
	HINFO = 13,
	MX = 15,
	TXT = 16,
	AAAA = 28,
	SRV = 33,
	NAPTR = 35,
	OPT = 41,
	DS = 43,
	RRSIG = 46,
	NSEC = 47,
	DNSKEY = 48,
	SVCB = 64,
	HTTPS = 65,
	ANY = 255,
	CAA = 257,
};

struct event {
	// The owner of the packet's local end (empty when unknown).
	struct gadget_process proc;
	gadget_timestamp timestamp_raw;
	struct gadget_l4endpoint_t src;
	struct gadget_l4endpoint_t dst;
	// The server's address: dst of a query, src of a response.
	struct gadget_l3endpoint_t nameserver;
	// Interface the packet was seen on.
	__u32 ifindex;
	enum pkt_type pkt_type_raw;
	enum dns_qr qr_raw;
	enum dns_rcode rcode_raw;
	// Header flags: truncated, recursion desired, recursion available.
	bool tc;
	bool rd;
	bool ra;
	__u16 id;
	enum dns_qtype qtype_raw;
	// Number of answer records (ANCOUNT).
	__u16 num_answers;
	// For a response: the time since the matching query (same id and
	// client endpoint) was seen by this gadget; 0 otherwise.
	gadget_duration latency_ns_raw;
	// The first question's name, dotted ("www.example.com"); "." for the
	// root. Empty if the packet has no question or it could not be
	// decoded.
	char name[NAME_LEN];
};

// The DNS server port looked for at either end.
const volatile __u16 dns_port = 53;
GADGET_PARAM(dns_port);

GADGET_TRACER_MAP(events, 1024 * 256);
GADGET_TRACER(dns, events, event);

// Work area: the event being built, and the question name as it is on the
// wire and while it is decoded. Too big for the 512-byte BPF stack.
struct work {
	struct event e;
	__u8 wire[NAME_WIRE_MAX + 1];
	char dotted[NAME_WIRE_MAX + 1];
	// Position of the next length byte in wire.
	__u32 next;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct work);
} work SEC(".maps");

// Queries waiting for their response, by id and client endpoint; the
// value is the query's timestamp. LRU: unanswered queries age out.
struct query_key {
	__u8 client[16];
	__u16 client_port;
	__u16 id;
	__u8 version;
	__u8 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct query_key);
	__type(value, __u64);
} queries SEC(".maps");

struct dns_header {
	__u16 id;
	__u16 flags;
	__u16 qdcount;
	__u16 ancount;
	__u16 nscount;
	__u16 arcount;
};

// Decodes the wire name in w->wire (avail bytes valid) into w->e.name and
// returns its length on the wire (the final zero included), or 0.
//
// Each length byte is replaced by a dot in place, in w->dotted, which
// gives ".www.example.com"; the name is then copied without the first
// dot. (Writing to name[i - 1] directly makes clang produce index
// arithmetic the verifier cannot follow.)
static __always_inline __u32 decode_name(struct work *w, __u32 avail)
{
	__builtin_memset(w->dotted, 0, sizeof(w->dotted));
	w->next = 0;
	for (__u32 i = 0; i < NAME_WIRE_MAX; i++) {
		__u8 c;

		if (i >= avail)
			break;
		c = w->wire[i];
		// Reloaded from memory at each step: a value the verifier
		// tracks exactly would make it check every iteration once
		// per possible label layout.
		if (i != *(volatile __u32 *)&w->next) {
			w->dotted[i] = c;
			continue;
		}
		if (c == 0) {
			if (i == 0) {
				// The root.
				w->e.name[0] = '.';
				w->e.name[1] = '\0';
			} else {
				bpf_probe_read_kernel(w->e.name, NAME_LEN - 1,
						      &w->dotted[1]);
				w->e.name[NAME_LEN - 1] = '\0';
			}
			return i + 1;
		}
		// Labels are at most 63 bytes; above that it is a
		// compression pointer, which a first question never uses.
		if (c > 63)
			break;
		w->dotted[i] = '.';
		w->next = i + c + 1;
	}
	w->e.name[0] = '\0';
	return 0;
}

SEC("socket")
int ig_trace_dns(struct __sk_buff *skb)
{
	struct event *e;
	struct work *w;
	struct dns_header dh;
	struct query_key qk = {};
	__u32 zero = 0, l4, qoff, avail, wire_len;
	__u16 h_proto, sport, dport, flags, qtype;
	struct gadget_socket_value *owner;
	__u64 *query_ts;
	bool pair;
	__u8 proto;

	if (bpf_skb_load_bytes(skb, 12, &h_proto, sizeof(h_proto)))
		return 0;
	h_proto = bpf_ntohs(h_proto);

	w = bpf_map_lookup_elem(&work, &zero);
	if (!w)
		return 0;
	e = &w->e;

	if (h_proto == ETH_P_IP) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)))
			return 0;
		if (ip.protocol != IPPROTO_UDP ||
		    (bpf_ntohs(ip.frag_off) & IP_OFFSET_MASK))
			return 0;
		l4 = ETH_HLEN + ip.ihl * 4;
		__builtin_memset(&e->src, 0, sizeof(e->src));
		__builtin_memset(&e->dst, 0, sizeof(e->dst));
		e->src.version = e->dst.version = 4;
		e->src.addr_raw.v4 = ip.saddr;
		e->dst.addr_raw.v4 = ip.daddr;
	} else if (h_proto == ETH_P_IPV6) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6)))
			return 0;
		proto = ip6.nexthdr;
		l4 = ETH_HLEN + sizeof(ip6);
		for (int i = 0; i < MAX_IPV6_EXT; i++) {
			__u8 ext[2];

			if (proto == IPPROTO_UDP)
				break;
			if (bpf_skb_load_bytes(skb, l4, ext, sizeof(ext)))
				return 0;
			if (proto == NEXTHDR_FRAGMENT) {
				__u16 frag;

				if (bpf_skb_load_bytes(skb, l4 + 2, &frag,
						       sizeof(frag)))
					return 0;
				// Only the first fragment has the header.
				if (bpf_ntohs(frag) & ~7)
					return 0;
				l4 += 8;
			} else if (proto == NEXTHDR_AUTH) {
				l4 += (ext[1] + 2) * 4;
			} else if (proto == NEXTHDR_HOP ||
				   proto == NEXTHDR_ROUTING ||
				   proto == NEXTHDR_DEST) {
				l4 += (ext[1] + 1) * 8;
			} else {
				return 0;
			}
			proto = ext[0];
		}
		if (proto != IPPROTO_UDP)
			return 0;
		e->src.version = e->dst.version = 6;
		__builtin_memcpy(e->src.addr_raw.v6, &ip6.saddr, 16);
		__builtin_memcpy(e->dst.addr_raw.v6, &ip6.daddr, 16);
	} else {
		return 0;
	}

	if (bpf_skb_load_bytes(skb, l4, &sport, sizeof(sport)) ||
	    bpf_skb_load_bytes(skb, l4 + 2, &dport, sizeof(dport)))
		return 0;
	sport = bpf_ntohs(sport);
	dport = bpf_ntohs(dport);
	if (sport != dns_port && dport != dns_port)
		return 0;

	if (bpf_skb_load_bytes(skb, l4 + 8, &dh, sizeof(dh)))
		return 0;
	flags = bpf_ntohs(dh.flags);

	owner = gadget_socket_lookup(skb);
	if (gadget_should_discard_data_by_skb(owner))
		return 0;
	__builtin_memset(&e->proc, 0, sizeof(e->proc));
	gadget_process_populate_from_socket(owner, &e->proc);

	e->timestamp_raw = bpf_ktime_get_boot_ns();
	e->src.port = sport;
	e->dst.port = dport;
	e->src.proto_raw = e->dst.proto_raw = IPPROTO_UDP;
	e->ifindex = skb->ifindex;
	e->pkt_type_raw = skb->pkt_type;
	e->id = bpf_ntohs(dh.id);
	e->qr_raw = flags >> 15;
	e->tc = (flags >> 9) & 1;
	e->rd = (flags >> 8) & 1;
	e->ra = (flags >> 7) & 1;
	e->rcode_raw = flags & 0xf;
	e->num_answers = bpf_ntohs(dh.ancount);
	e->latency_ns_raw = 0;
	e->qtype_raw = 0;
	e->name[0] = '\0';

	// The first question: name, then type and class.
	qoff = l4 + 8 + DNS_HLEN;
	if (dh.qdcount != 0 && skb->len > qoff) {
		avail = skb->len - qoff;
		if (avail > NAME_WIRE_MAX)
			avail = NAME_WIRE_MAX;
		// Let the verifier see the bound (NAME_WIRE_MAX is 255).
		barrier_var(avail);
		avail &= 0xff;
		if (avail > 0 &&
		    !bpf_skb_load_bytes(skb, qoff, w->wire, avail)) {
			wire_len = decode_name(w, avail);
			if (wire_len > 0 &&
			    !bpf_skb_load_bytes(skb, qoff + wire_len, &qtype,
						sizeof(qtype)))
				e->qtype_raw = bpf_ntohs(qtype);
		}
	}

	// The nameserver, and the client endpoint that pairs query and
	// response.
	e->nameserver.version = e->src.version;
	if (e->qr_raw == Q) {
		e->nameserver.addr_raw = e->dst.addr_raw;
		__builtin_memcpy(qk.client, e->src.addr_raw.v6, 16);
		qk.client_port = sport;
	} else {
		e->nameserver.addr_raw = e->src.addr_raw;
		__builtin_memcpy(qk.client, e->dst.addr_raw.v6, 16);
		qk.client_port = dport;
	}
	qk.id = e->id;
	qk.version = e->src.version;
	// On loopback, from the query leaving to the response arriving; on
	// other interfaces each packet is seen once.
	pair = skb->ifindex != LOOPBACK_IFINDEX ||
	       (e->qr_raw == Q ? skb->pkt_type == PACKET_OUTGOING :
				 skb->pkt_type == HOST);
	if (!pair) {
		// Not this copy.
	} else if (e->qr_raw == Q) {
		bpf_map_update_elem(&queries, &qk, &e->timestamp_raw, BPF_ANY);
	} else {
		query_ts = bpf_map_lookup_elem(&queries, &qk);
		if (query_ts) {
			if (*query_ts < e->timestamp_raw)
				e->latency_ns_raw =
					e->timestamp_raw - *query_ts;
			bpf_map_delete_elem(&queries, &qk);
		}
	}

	gadget_output_buf(skb, &events, e, sizeof(*e));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
