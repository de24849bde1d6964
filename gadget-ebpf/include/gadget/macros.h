/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */

/*
 * gadget/macros.h - declaration markers that tell ig what a gadget provides.
 *
 * A gadget describes itself through global variables whose *names* encode
 * the information (data sources, parameters, iterators). The variables are
 * never read at run time; they exist only so that clang records them in the
 * object's BTF, where the loader finds them as BTF VARs of type `const void *`
 * and splits the part after the prefix on "___" (three underscores, so that
 * single and double underscores stay usable inside identifiers).
 *
 * CONTRACT: the Rust parser of these markers lives in src/bpf/contract.rs.
 * Any change to a prefix, to the separator or to the meaning of a part must
 * be made in both files in the same commit.
 *
 * Marker shapes (each is `const void *<name>`):
 *   gadget_tracer_<ds>___<map>___<struct>       GADGET_TRACER
 *   gadget_param_<var>                          GADGET_PARAM
 *   gadget_iter_<ds>___<struct>___<prog>[___<prog>...]   GADGET_ITER
 *   gadget_mapiter_<ds>___<map>                 GADGET_MAPITER
 *   gadget_mapelem_iter_target_<prog>___<map>   GADGET_ITER_TARGET_MAP
 *   gadget_sk_prog_target_<prog>___<map>        GADGET_SK_TARGET_MAP
 *   gadget_map_tracer_<map>                     GADGET_TRACER_MAP (buffer.h)
 *
 * Markers are plain (non-static) globals on purpose: the compiler must emit
 * them even though no code refers to them. `unused` only silences warnings.
 */

#ifndef __GADGET_MACROS_H
#define __GADGET_MACROS_H

/* Token pasting that expands its arguments first. Internal. */
#define __GADGET_PASTE_(a, b) a##b
#define __GADGET_PASTE(a, b) __GADGET_PASTE_(a, b)

/* Number of variadic arguments, 1 to 3. Internal. */
#define __GADGET_NARGS_(_1, _2, _3, n, ...) n
#define __GADGET_NARGS(...) __GADGET_NARGS_(__VA_ARGS__, 3, 2, 1, 0)

/*
 * GADGET_TRACER(name, map, struct) declares the data source `name`: events of
 * type `struct <struct>` are sent through the ring buffer (or perf array)
 * `map`, normally declared with GADGET_TRACER_MAP().
 *
 * The second variable is a typed pointer to the event struct. Clang only
 * writes a struct to BTF when something refers to it, and the event struct
 * may otherwise be used only through casts or sizeof(); this reference keeps
 * its layout available to the loader.
 */
#define GADGET_TRACER(name, map, event_struct)                        \
	const void *gadget_tracer_##name##___##map##___##event_struct \
		__attribute__((unused));                              \
	const struct event_struct *__gadget_tracer_type_##name        \
		__attribute__((unused));

/*
 * GADGET_PARAM(var) exposes the global `const volatile` variable `var` as a
 * user-settable parameter. The loader reads its type and default value from
 * BTF and .rodata, and writes the user's value into .rodata before loading,
 * so the verifier sees it as a constant and prunes code that depends on it.
 */
#define GADGET_PARAM(var) \
	const void *gadget_param_##var __attribute__((unused));

/* One marker per program count, 1 to 3. Internal. */
#define __GADGET_ITER_MARK_1(name, type, p1)               \
	const void *gadget_iter_##name##___##type##___##p1 \
		__attribute__((unused));
#define __GADGET_ITER_MARK_2(name, type, p1, p2)                    \
	const void *gadget_iter_##name##___##type##___##p1##___##p2 \
		__attribute__((unused));
#define __GADGET_ITER_MARK_3(name, type, p1, p2, p3)                         \
	const void *gadget_iter_##name##___##type##___##p1##___##p2##___##p3 \
		__attribute__((unused));
#define __GADGET_ITER_MARK(name, type, ...)                              \
	__GADGET_PASTE(__GADGET_ITER_MARK_, __GADGET_NARGS(__VA_ARGS__)) \
	(name, type, __VA_ARGS__)

/*
 * GADGET_ITER(name, struct, prog...) declares the data source `name` filled
 * by one to three BPF iterator programs (SEC("iter/...")). Each run's output
 * is cut into records of sizeof(struct <struct>) and delivered as one array.
 * As with GADGET_TRACER, a typed pointer keeps the struct in BTF.
 */
#define GADGET_ITER(name, type, ...)                                          \
	const struct type *__gadget_iter_type_##name __attribute__((unused)); \
	__GADGET_ITER_MARK(name, type, __VA_ARGS__)

/* Former name of GADGET_ITER, kept so that older gadgets still compile. */
#define GADGET_SNAPSHOTTER(name, type, ...) GADGET_ITER(name, type, __VA_ARGS__)

/*
 * GADGET_MAPITER(name, map) declares the data source `name` read from the
 * hash map `map`: ig drains the map at every interval and turns each
 * key/value pair (both BTF structs) into one entry of an array.
 */
#define GADGET_MAPITER(name, map) \
	const void *gadget_mapiter_##name##___##map __attribute__((unused));

/*
 * GADGET_ITER_TARGET_MAP(prog, map) tells ig which map an
 * SEC("iter/bpf_map_elem") program walks: the map's fd has to be given to
 * the kernel when the iterator is attached.
 */
#define GADGET_ITER_TARGET_MAP(prog, map)                       \
	const void *gadget_mapelem_iter_target_##prog##___##map \
		__attribute__((unused));

/*
 * GADGET_SK_TARGET_MAP(prog, map) attaches an sk_skb or sk_msg program to the
 * sockmap or sockhash `map`.
 */
#define GADGET_SK_TARGET_MAP(prog, map)                    \
	const void *gadget_sk_prog_target_##prog##___##map \
		__attribute__((unused));

/*
 * GADGET_PROGRAM_FALLBACK(prog, fallback): if the kernel refuses to load or
 * attach program `prog` (fentry or kprobe on a locked-down kernel, say), ig
 * loads `fallback` instead; `fallback` is not loaded when `prog` works. Both
 * must be programs of this object producing the same events. This is our
 * addition: upstream switches programs off from gadget-specific Go code.
 */
#define GADGET_PROGRAM_FALLBACK(prog, fallback)                   \
	const void *gadget_program_fallback_##prog##___##fallback \
		__attribute__((unused));

#endif /* __GADGET_MACROS_H */
