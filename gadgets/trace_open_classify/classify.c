// WASM guest of trace_open_classify: adds `category`, the kind of file an
// open() touched, from the path's first component: proc, sys, dev, tmp,
// etc, lib (/lib*, /usr/lib*), bin (/bin, /sbin, /usr/bin, /usr/sbin),
// home (/home, /root), relative (no leading /), other.
// Written against upstream's raw guest API (module "ig").
#include <stdint.h>
#include <string.h>

#define IMPORT(name) __attribute__((import_module("ig"), import_name(#name)))
#define EXPORT(name) __attribute__((export_name(#name)))

IMPORT(getDataSource) uint32_t getDataSource(uint64_t name);
IMPORT(dataSourceSubscribe) uint32_t dataSourceSubscribe(uint32_t ds, uint32_t type, uint32_t prio, uint64_t cb);
IMPORT(dataSourceGetField) uint32_t dataSourceGetField(uint32_t ds, uint64_t name);
IMPORT(dataSourceAddField) uint32_t dataSourceAddField(uint32_t ds, uint64_t name, uint32_t kind);
IMPORT(fieldGetBuffer) int32_t fieldGetBuffer(uint32_t f, uint32_t d, uint32_t kind, uint64_t dst);
IMPORT(fieldSet) uint32_t fieldSet(uint32_t f, uint32_t d, uint32_t kind, uint64_t value);

#define KIND_STRING 12

static uint64_t buf(const void *p, uint32_t len) { return ((uint64_t)len << 32) | (uint32_t)(uintptr_t)p; }
static uint64_t str(const char *s) { return buf(s, strlen(s)); }

static uint32_t f_fname, f_category;

EXPORT(gadgetAPIVersion) uint64_t api_version(void) { return 1; }

EXPORT(gadgetInit) int32_t init(void) {
	uint32_t ds = getDataSource(str("open"));
	f_fname = dataSourceGetField(ds, str("fname"));
	f_category = dataSourceAddField(ds, str("category"), KIND_STRING);
	if (!ds || !f_fname || !f_category)
		return 1;
	// Priority 0: before the filter (9000), so --filter category=... works.
	// Type 1: per event (upstream: 1 data, 2 array, 3 packet).
	return (int32_t)dataSourceSubscribe(ds, 1, 0, 0);
}

static int under(const char *path, const char *dir) {
	size_t n = strlen(dir);
	return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == 0);
}

static const char *classify(const char *p) {
	if (p[0] != '/')
		return "relative";
	if (under(p, "/proc")) return "proc";
	if (under(p, "/sys")) return "sys";
	if (under(p, "/dev")) return "dev";
	if (under(p, "/tmp") || under(p, "/var/tmp")) return "tmp";
	if (under(p, "/etc")) return "etc";
	if (strncmp(p, "/lib", 4) == 0 || strncmp(p, "/usr/lib", 8) == 0) return "lib";
	if (under(p, "/bin") || under(p, "/sbin") || under(p, "/usr/bin") || under(p, "/usr/sbin")) return "bin";
	if (under(p, "/home") || under(p, "/root")) return "home";
	return "other";
}

EXPORT(dataSourceCallback) void callback(uint64_t cb, uint32_t ds, uint32_t data) {
	char path[4096];
	int32_t n = fieldGetBuffer(f_fname, data, KIND_STRING, buf(path, sizeof path - 1));
	if (n < 0)
		return;
	path[n] = 0;
	fieldSet(f_category, data, KIND_STRING, str(classify(path)));
}
