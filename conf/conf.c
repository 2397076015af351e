/* SPDX-License-Identifier: MIT */
/* Loads a libconfig file into a validated struct wr_conf and prints the result. */
#include "conf/conf.h"

#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define WR_CONF_MAX_SECONDS 86400
#define WR_CONF_MAX_WORKERS 1024
#define WR_CONF_MAX_CONNECTIONS 1000000
#define WR_CONF_MAX_READ_LIMIT (1LL << 40)
#define WR_CONF_KEY_LEN 160
#define WR_CONF_VALUE_LEN 200
#define WR_CONF_SHOWN_STRING_BYTES 120

/* The configuration being filled and the buffer for its error message. */
struct conf_loader {
    struct wr_conf *conf;
    char *err;
    size_t err_len;
};

/* The keys allowed in each group, in the order of the sample configuration. */
static const char *const top_keys[] = { "gateway", NULL };
static const char *const gateway_keys[] = {
    "listen", "workers", "max_connections", "handshake_timeout_seconds", "log_level",
    "tls", "auth", "openai_ws", "usage", NULL,
};
static const char *const tls_keys[] = { "cert_file", "key_file", NULL };
static const char *const auth_keys[] = { "clients", NULL };
static const char *const client_keys[] = { "name", "key_sha256", NULL };
static const char *const openai_ws_keys[] = {
    "upstream_url", "upstream_api_key_env", "upstream_ca_file", "upstream_proxy",
    "dial_timeout_seconds", "client_first_message_timeout_seconds", "write_timeout_seconds",
    "client_read_limit_bytes", "upstream_read_limit_bytes",
    "passthrough_downstream_ping_interval_seconds",
    "passthrough_downstream_ping_timeout_seconds",
    "passthrough_downstream_event_keepalive_seconds", "upstream_drain_timeout_seconds", NULL,
};
static const char *const usage_keys[] = { "ledger_path", NULL };

static const char *const log_level_names[] = { "error", "warn", "info", "debug" };

/* Text formatting shared by error messages and wr_conf_print. */

/* Writes the libconfig escape of c into out (at least 5 bytes) and returns out. */
static const char *escape_char(unsigned char c, char *out)
{
    switch (c) {
    case '"': return "\\\"";
    case '\\': return "\\\\";
    case '\n': return "\\n";
    case '\r': return "\\r";
    case '\t': return "\\t";
    default: break;
    }
    if (c < 0x20 || c >= 0x7f) {
        snprintf(out, 5, "\\x%02x", c);
    } else {
        out[0] = (char)c;
        out[1] = '\0';
    }
    return out;
}

/* Writes s quoted and escaped, cut after WR_CONF_SHOWN_STRING_BYTES bytes with "...". */
static void format_string(const char *s, char *out, size_t len)
{
    size_t used = 0;
    size_t i;
    char tmp[5];

    assert(len >= 16);
    out[used++] = '"';
    for (i = 0; s[i] != '\0'; i++) {
        const char *piece = escape_char((unsigned char)s[i], tmp);
        size_t piece_len = strlen(piece);

        if (i == WR_CONF_SHOWN_STRING_BYTES || used + piece_len + 5 > len) {
            memcpy(out + used, "...", 3);
            used += 3;
            break;
        }
        memcpy(out + used, piece, piece_len);
        used += piece_len;
    }
    out[used++] = '"';
    out[used] = '\0';
}

/* Writes the shortest "%g" form that reads back as the same double. */
static void format_double(double v, char *out, size_t len)
{
    int precision;

    for (precision = 1; precision <= 17; precision++) {
        snprintf(out, len, "%.*g", precision, v);
        if (strtod(out, NULL) == v) {
            return;
        }
    }
}

/* Writes a duration in milliseconds as seconds: "20", "0.5", "0.001". */
static void format_seconds(uint32_t ms, char *out, size_t len)
{
    unsigned fraction = ms % 1000;
    int digits = 3;

    if (fraction == 0) {
        snprintf(out, len, "%u", ms / 1000);
        return;
    }
    while (fraction % 10 == 0) {
        fraction /= 10;
        digits--;
    }
    snprintf(out, len, "%u.%0*u", ms / 1000, digits, fraction);
}

/* Writes the value of a setting as it would appear in the file, with groups and lists elided. */
static void format_value(const config_setting_t *s, char *out, size_t len)
{
    bool empty = config_setting_length(s) == 0;

    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
        snprintf(out, len, "%d", config_setting_get_int(s));
        break;
    case CONFIG_TYPE_INT64:
        snprintf(out, len, "%lldL", config_setting_get_int64(s));
        break;
    case CONFIG_TYPE_FLOAT:
        format_double(config_setting_get_float(s), out, len);
        break;
    case CONFIG_TYPE_STRING:
        format_string(config_setting_get_string(s), out, len);
        break;
    case CONFIG_TYPE_BOOL:
        snprintf(out, len, "%s", config_setting_get_bool(s) ? "true" : "false");
        break;
    case CONFIG_TYPE_GROUP:
        snprintf(out, len, "%s", empty ? "{}" : "{ ... }");
        break;
    case CONFIG_TYPE_LIST:
        snprintf(out, len, "%s", empty ? "()" : "( ... )");
        break;
    case CONFIG_TYPE_ARRAY:
        snprintf(out, len, "%s", empty ? "[]" : "[ ... ]");
        break;
    default:
        snprintf(out, len, "(unknown type)");
        break;
    }
}

/* Writes "prefix.name" into buf (WR_CONF_KEY_LEN bytes), cut short for a very long key. */
static const char *join_key(char *buf, const char *prefix, const char *name)
{
    int n;

    if (prefix[0] == '\0') {
        n = snprintf(buf, WR_CONF_KEY_LEN, "%s", name);
    } else {
        n = snprintf(buf, WR_CONF_KEY_LEN, "%s.%s", prefix, name);
    }
    if (n < 0 || n >= WR_CONF_KEY_LEN) {
        memcpy(buf + WR_CONF_KEY_LEN - 4, "...", 4);
    }
    return buf;
}

/* Error reporting. */

/*
 * Writes the file that contains setting s into out. libconfig names the main file as it was
 * given and an included file relative to the include directory, which is the file's directory.
 */
static void setting_file(const struct conf_loader *ld, const config_setting_t *s, char *out,
                         size_t len)
{
    const char *file = s != NULL ? config_setting_source_file(s) : NULL;
    int n;

    if (file == NULL) {
        file = ld->conf->path;
    }
    if (strcmp(file, ld->conf->path) == 0 || file[0] == '/') {
        snprintf(out, len, "%s", file);
        return;
    }
    n = snprintf(out, len, "%s/%s", ld->conf->dir, file);
    if (n < 0 || (size_t)n >= len) {
        /* The full path does not fit, so name the file as libconfig does. */
        snprintf(out, len, "%s", file);
    }
}

/*
 * Writes "FILE:LINE: KEY: DETAIL" into the loader's error buffer and returns WR_ECONF.
 * at is the setting whose line is reported; without it only the file is named.
 */
__attribute__((format(printf, 4, 5)))
static int conf_fail(struct conf_loader *ld, const config_setting_t *at, const char *key,
                     const char *fmt, ...)
{
    char file[PATH_MAX];
    unsigned line = at != NULL ? config_setting_source_line(at) : 0;
    char detail[1024];
    va_list ap;

    setting_file(ld, at, file, sizeof(file));
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    if (line > 0) {
        snprintf(ld->err, ld->err_len, "%s:%u: %s: %s", file, line, key, detail);
    } else {
        snprintf(ld->err, ld->err_len, "%s: %s: %s", file, key, detail);
    }
    return WR_ECONF;
}

/* Reports the value of s as invalid. allowed describes the values the key accepts. */
static int fail_invalid(struct conf_loader *ld, const config_setting_t *s, const char *key,
                        const char *allowed)
{
    char value[WR_CONF_VALUE_LEN];

    format_value(s, value, sizeof(value));
    return conf_fail(ld, s, key, "invalid value %s: %s", value, allowed);
}

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-' || c == '*';
}

/* Returns line number target (from 1) of file in a malloc'd buffer, or NULL. */
static char *read_source_line(const char *file, unsigned target)
{
    char *line = NULL;
    size_t cap = 0;
    unsigned number = 0;
    FILE *f = fopen(file, "re");

    if (f == NULL) {
        return NULL;
    }
    while (number < target && getline(&line, &cap, f) != -1) {
        number++;
    }
    fclose(f);
    if (number < target) {
        free(line);
        return NULL;
    }
    return line;
}

/*
 * Looks on the setting's source line for "name = literal" and copies the first literal
 * whose value differs from stored into written. Returns false when a literal matches
 * stored or none is found, so an unusual layout never causes a false error.
 */
static bool find_wrapped_literal(const config_setting_t *s, const char *file, long long stored,
                                 char *written, size_t written_len)
{
    const char *name = config_setting_name(s);
    size_t name_len = name != NULL ? strlen(name) : 0;
    bool matched = false;
    bool differs = false;
    char *line;
    const char *p;

    if (name == NULL || (line = read_source_line(file, config_setting_source_line(s))) == NULL) {
        return false;
    }
    for (p = strstr(line, name); p != NULL; p = strstr(p + 1, name)) {
        const char *q = p + name_len;
        const char *digits;
        char *end;
        long long v;

        if (p > line && is_name_char(p[-1])) {
            continue;
        }
        q += strspn(q, " \t");
        if (*q != '=' && *q != ':') {
            continue;
        }
        q++;
        q += strspn(q, " \t");
        digits = q + (*q == '-' || *q == '+');
        errno = 0;
        if (digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
            v = strtoll(q, &end, 16);
        } else {
            v = strtoll(q, &end, 10);
        }
        if (end == q || end == digits) {
            continue;
        }
        if (errno == 0 && v == stored) {
            matched = true;
        } else if (!differs) {
            differs = true;
            snprintf(written, written_len, "%.*s", (int)(end - q), q);
        }
    }
    free(line);
    return differs && !matched;
}

/*
 * NOTE: libconfig 1.5 keeps only the low 32 bits of an integer literal written without
 * an L suffix, so 4294967297 loads as 1. This check re-reads the literal to catch that.
 */
static int check_int_literal(struct conf_loader *ld, const config_setting_t *s, const char *key)
{
    char file[PATH_MAX];
    char written[64];

    if (config_setting_type(s) != CONFIG_TYPE_INT) {
        return 0;
    }
    setting_file(ld, s, file, sizeof(file));
    if (!find_wrapped_literal(s, file, config_setting_get_int(s), written, sizeof(written))) {
        return 0;
    }
    return conf_fail(ld, s, key,
                     "invalid value %s: integers outside -2147483648..2147483647 need an L "
                     "suffix (%sL) because libconfig 1.5 keeps only their low 32 bits",
                     written, written);
}

/* Typed readers. Each leaves the default in place when the key is absent. */

static const config_setting_t *member(const config_setting_t *group, const char *name)
{
    return group == NULL ? NULL : config_setting_get_member(group, name);
}

/* Rejects any member of group whose name is not in allowed. */
static int check_members(struct conf_loader *ld, const config_setting_t *group,
                         const char *prefix, const char *const *allowed)
{
    char key[WR_CONF_KEY_LEN];
    char value[WR_CONF_VALUE_LEN];
    char names[512];
    int n = config_setting_length(group);
    int i;
    size_t j;

    for (i = 0; i < n; i++) {
        const config_setting_t *child = config_setting_get_elem(group, (unsigned)i);
        const char *name = config_setting_name(child);
        size_t used = 0;

        for (j = 0; allowed[j] != NULL; j++) {
            if (name != NULL && strcmp(name, allowed[j]) == 0) {
                break;
            }
        }
        if (allowed[j] != NULL) {
            continue;
        }
        names[0] = '\0';
        for (j = 0; allowed[j] != NULL && used < sizeof(names); j++) {
            used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s",
                                     j == 0 ? "" : ", ", allowed[j]);
        }
        format_value(child, value, sizeof(value));
        return conf_fail(ld, child, join_key(key, prefix, name ? name : "(unnamed)"),
                         "unknown key with value %s: allowed keys are %s", value, names);
    }
    return 0;
}

/* Finds the group name inside parent. A missing group leaves *out NULL. */
static int read_group(struct conf_loader *ld, const config_setting_t *parent, const char *prefix,
                      const char *name, const config_setting_t **out)
{
    char key[WR_CONF_KEY_LEN];
    const config_setting_t *s = member(parent, name);

    *out = NULL;
    if (s == NULL) {
        return 0;
    }
    if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
        return fail_invalid(ld, s, join_key(key, prefix, name), "must be a group { ... }");
    }
    *out = s;
    return 0;
}

/* Points *value at the string stored by libconfig, valid until config_destroy. */
static int read_string_ref(struct conf_loader *ld, const config_setting_t *group,
                           const char *prefix, const char *name, const char **value,
                           const config_setting_t **found)
{
    char key[WR_CONF_KEY_LEN];
    const config_setting_t *s = member(group, name);

    *found = s;
    if (s == NULL) {
        return 0;
    }
    if (config_setting_type(s) != CONFIG_TYPE_STRING) {
        return fail_invalid(ld, s, join_key(key, prefix, name), "must be a string");
    }
    *value = config_setting_get_string(s);
    return 0;
}

/* Copies the string into dst, which has room for dst_size bytes including the NUL. */
static int read_string(struct conf_loader *ld, const config_setting_t *group, const char *prefix,
                       const char *name, char *dst, size_t dst_size,
                       const config_setting_t **found)
{
    char key[WR_CONF_KEY_LEN];
    const char *value = NULL;
    int rc = read_string_ref(ld, group, prefix, name, &value, found);

    if (rc < 0 || *found == NULL) {
        return rc;
    }
    if (strlen(value) >= dst_size) {
        char shown[WR_CONF_VALUE_LEN];

        format_string(value, shown, sizeof(shown));
        return conf_fail(ld, *found, join_key(key, prefix, name),
                         "invalid value %s: must be a string of at most %zu bytes", shown,
                         dst_size - 1);
    }
    memcpy(dst, value, strlen(value) + 1);
    return 0;
}

/* Reads an integer from min to max. what is the noun phrase of the message ("an integer"). */
static int read_int(struct conf_loader *ld, const config_setting_t *group, const char *prefix,
                    const char *name, long long min, long long max, const char *what,
                    long long *dst)
{
    char key[WR_CONF_KEY_LEN];
    char allowed[128];
    const config_setting_t *s = member(group, name);
    long long v;
    int rc;

    if (s == NULL) {
        return 0;
    }
    join_key(key, prefix, name);
    snprintf(allowed, sizeof(allowed), "must be %s from %lld to %lld", what, min, max);
    if (config_setting_type(s) != CONFIG_TYPE_INT && config_setting_type(s) != CONFIG_TYPE_INT64) {
        return fail_invalid(ld, s, key, allowed);
    }
    rc = check_int_literal(ld, s, key);
    if (rc < 0) {
        return rc;
    }
    v = config_setting_get_int64(s);
    if (v < min || v > max) {
        return fail_invalid(ld, s, key, allowed);
    }
    *dst = v;
    return 0;
}

/*
 * Reads a duration in seconds, an integer or a decimal, and stores it in milliseconds,
 * rounded. With positive set the rounded value must be above 0.
 */
static int read_duration(struct conf_loader *ld, const config_setting_t *group,
                         const char *prefix, const char *name, bool positive, uint32_t *dst_ms,
                         const config_setting_t **found)
{
    char key[WR_CONF_KEY_LEN];
    const char *allowed = positive
        ? "must be a number of seconds greater than 0 (at least 0.001) and at most 86400"
        : "must be a number of seconds from 0 to 86400";
    const config_setting_t *s = member(group, name);
    double seconds;
    uint32_t ms;
    int rc;

    *found = s;
    if (s == NULL) {
        return 0;
    }
    join_key(key, prefix, name);
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        rc = check_int_literal(ld, s, key);
        if (rc < 0) {
            return rc;
        }
        seconds = (double)config_setting_get_int64(s);
        break;
    case CONFIG_TYPE_FLOAT:
        seconds = config_setting_get_float(s);
        break;
    default:
        return fail_invalid(ld, s, key, allowed);
    }
    /* The negated comparison also rejects NaN. */
    if (!(seconds >= 0 && seconds <= WR_CONF_MAX_SECONDS)) {
        return fail_invalid(ld, s, key, allowed);
    }
    ms = (uint32_t)(seconds * 1000.0 + 0.5);
    if (positive && ms == 0) {
        return fail_invalid(ld, s, key, allowed);
    }
    *dst_ms = ms;
    return 0;
}

/* Addresses and URLs. Each parser returns NULL or the reason the text is invalid. */

static bool is_host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_';
}

static bool is_ipv6_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
           c == ':' || c == '.';
}

/*
 * Parses "host", "host:port", "[v6]" or "[v6]:port". A default_port of 0 makes the port
 * required.
 */
static const char *parse_host_port(const char *s, size_t len, uint16_t default_port,
                                   struct wr_conf_endpoint *ep)
{
    const char *host = s;
    size_t host_len;
    const char *rest;
    size_t i;
    unsigned long port = 0;

    if (s[0] == '[') {
        const char *close = memchr(s, ']', len);

        if (close == NULL) {
            return "an IPv6 host needs a closing ]";
        }
        host = s + 1;
        host_len = (size_t)(close - host);
        for (i = 0; i < host_len; i++) {
            if (!is_ipv6_char(host[i])) {
                return "an IPv6 host may contain only hex digits, colons and dots";
            }
        }
        if (host_len > 0 && memchr(host, ':', host_len) == NULL) {
            return "brackets are only for IPv6 addresses";
        }
        rest = close + 1;
    } else {
        const char *colon = memchr(s, ':', len);

        host_len = colon == NULL ? len : (size_t)(colon - s);
        if (colon != NULL && memchr(colon + 1, ':', len - host_len - 1) != NULL) {
            return "an IPv6 host must be in brackets, as in [::1]:8080";
        }
        for (i = 0; i < host_len; i++) {
            if (!is_host_char(host[i])) {
                return "the host may contain only letters, digits, '-', '.' and '_'";
            }
        }
        rest = s + host_len;
    }
    if (host_len == 0) {
        return "the host is missing";
    }
    if (host_len >= sizeof(ep->host)) {
        return "the host is longer than 255 bytes";
    }

    len -= (size_t)(rest - s);
    if (len == 0) {
        if (default_port == 0) {
            return "the port is missing";
        }
        port = default_port;
    } else if (rest[0] != ':') {
        return "expected :port after the host";
    } else {
        for (i = 1; i < len; i++) {
            if (rest[i] < '0' || rest[i] > '9' || i > 5) {
                return "the port must be a number from 1 to 65535";
            }
            port = port * 10 + (unsigned long)(rest[i] - '0');
        }
        if (len == 1 || port < 1 || port > 65535) {
            return "the port must be a number from 1 to 65535";
        }
    }
    memcpy(ep->host, host, host_len);
    ep->host[host_len] = '\0';
    ep->port = (uint16_t)port;
    return NULL;
}

static const char *parse_listen(const char *listen, struct wr_conf_endpoint *ep)
{
    return parse_host_port(listen, strlen(listen), 0, ep);
}

/* Parses ws://host[:port][/path][?query] into the upstream fields of conf. */
static const char *parse_upstream_url(const char *url, struct wr_conf *conf)
{
    const char *authority;
    size_t authority_len;
    const char *path;
    const char *reason;
    size_t i;

    if (strchr(url, '#') != NULL) {
        return "a fragment (#...) is not allowed";
    }
    if (strncasecmp(url, "wss://", 6) == 0) {
        conf->upstream_tls = true;
        authority = url + 6;
    } else if (strncasecmp(url, "ws://", 5) == 0) {
        conf->upstream_tls = false;
        authority = url + 5;
    } else {
        return "the scheme must be ws:// or wss://";
    }
    authority_len = strcspn(authority, "/?");
    if (memchr(authority, '@', authority_len) != NULL) {
        return "userinfo (user@) is not allowed";
    }
    reason = parse_host_port(authority, authority_len, conf->upstream_tls ? 443 : 80,
                             &conf->upstream);
    if (reason != NULL) {
        return reason;
    }
    path = authority + authority_len;
    for (i = 0; path[i] != '\0'; i++) {
        if (path[i] <= 0x20 || path[i] >= 0x7f) {
            return "the path may contain only printable ASCII characters without spaces";
        }
    }
    /* The request target needs a leading slash, also before a bare query. */
    snprintf(conf->upstream_path, sizeof(conf->upstream_path), "%s%s",
             path[0] == '/' ? "" : "/", path);
    return NULL;
}

/* Parses http://host:port, with an optional trailing slash. */
static const char *parse_proxy(const char *proxy, struct wr_conf_endpoint *ep)
{
    const char *authority;
    size_t authority_len;

    if (strncasecmp(proxy, "http://", 7) != 0) {
        return "the scheme must be http://";
    }
    authority = proxy + 7;
    authority_len = strcspn(authority, "/?#");
    if (memchr(authority, '@', authority_len) != NULL) {
        return "userinfo (user@) is not allowed";
    }
    if (strcmp(authority + authority_len, "") != 0 && strcmp(authority + authority_len, "/") != 0) {
        return "a path, query or fragment is not allowed";
    }
    return parse_host_port(authority, authority_len, 0, ep);
}

static bool is_env_name(const char *name)
{
    size_t i;

    if (name[0] >= '0' && name[0] <= '9') {
        return false;
    }
    for (i = 0; name[i] != '\0'; i++) {
        char c = name[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_')) {
            return false;
        }
    }
    return true;
}

/* Files. */

/* Writes raw resolved against dir into out. Absolute paths are copied unchanged. */
static bool resolve_path(const char *dir, const char *raw, char *out, size_t out_len)
{
    int n;

    if (raw[0] == '/' || raw[0] == '\0') {
        n = snprintf(out, out_len, "%s", raw);
    } else if (strcmp(dir, "/") == 0) {
        n = snprintf(out, out_len, "/%s", raw);
    } else {
        n = snprintf(out, out_len, "%s/%s", dir, raw);
    }
    return n >= 0 && (size_t)n < out_len;
}

/* Returns 0 when path is a readable file, or the errno of the check that failed. */
static int file_readable(const char *path)
{
    struct stat st;
    int fd;
    int rc = 0;

    if (access(path, R_OK) != 0) {
        return errno;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno;
    }
    if (fstat(fd, &st) != 0) {
        rc = errno;
    } else if (S_ISDIR(st.st_mode)) {
        rc = EISDIR;
    }
    close(fd);
    return rc;
}

/*
 * Resolves raw into dst (PATH_MAX bytes) and, with must_read set, checks that the file
 * can be read. at is the setting to blame, or the enclosing group for a default.
 */
static int resolve_file(struct conf_loader *ld, const config_setting_t *at, const char *key,
                        const char *raw, char *dst, bool must_read)
{
    char shown[WR_CONF_VALUE_LEN];
    int error;

    format_string(raw, shown, sizeof(shown));
    if (!resolve_path(ld->conf->dir, raw, dst, PATH_MAX)) {
        return conf_fail(ld, at, key, "invalid value %s: the resolved path is longer than %d bytes",
                         shown, PATH_MAX - 1);
    }
    if (!must_read) {
        return 0;
    }
    error = file_readable(dst);
    if (error == 0) {
        return 0;
    }
    if (strcmp(raw, dst) == 0) {
        return conf_fail(ld, at, key, "invalid value %s: cannot read the file (%s): "
                         "must be a readable PEM file", shown, strerror(error));
    }
    return conf_fail(ld, at, key, "invalid value %s (%s): cannot read the file (%s): "
                     "must be a readable PEM file", shown, dst, strerror(error));
}

/* Groups. */

static int load_tls(struct conf_loader *ld, const config_setting_t *tls,
                    const config_setting_t *anchor)
{
    struct wr_conf *conf = ld->conf;
    const char *prefix = "gateway.tls";
    const config_setting_t *cert_at = NULL;
    const config_setting_t *key_at = NULL;
    char cert[PATH_MAX] = "";
    char key[PATH_MAX] = "";
    bool has_cert;
    bool has_key;
    int rc;

    if (tls != NULL && (rc = check_members(ld, tls, prefix, tls_keys)) < 0) {
        return rc;
    }
    if ((rc = read_string(ld, tls, prefix, "cert_file", cert, sizeof(cert), &cert_at)) < 0 ||
        (rc = read_string(ld, tls, prefix, "key_file", key, sizeof(key), &key_at)) < 0) {
        return rc;
    }
    has_cert = cert[0] != '\0';
    has_key = key[0] != '\0';
    if (has_cert != has_key) {
        const config_setting_t *at = has_cert ? key_at : cert_at;

        return conf_fail(ld, at != NULL ? at : anchor,
                         has_cert ? "gateway.tls.key_file" : "gateway.tls.cert_file",
                         "invalid value \"\": must be set when %s is set, because downstream "
                         "TLS needs both (leave both empty for plain TCP)",
                         has_cert ? "cert_file" : "key_file");
    }
    if (!has_cert) {
        return 0;
    }
    rc = resolve_file(ld, cert_at, "gateway.tls.cert_file", cert, conf->tls_cert_file, true);
    if (rc < 0) {
        return rc;
    }
    return resolve_file(ld, key_at, "gateway.tls.key_file", key, conf->tls_key_file, true);
}

static bool is_hex_lower(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static int hex_value(char c)
{
    return c <= '9' ? c - '0' : c - 'a' + 10;
}

static int load_client(struct conf_loader *ld, const config_setting_t *entry, const char *prefix,
                       struct wr_conf_client *client)
{
    char key[WR_CONF_KEY_LEN];
    const config_setting_t *name_at = NULL;
    const config_setting_t *hash_at = NULL;
    const char *hash = NULL;
    size_t len;
    size_t i;
    int rc;

    if (config_setting_type(entry) != CONFIG_TYPE_GROUP) {
        return fail_invalid(ld, entry, prefix,
                            "must be a group { name = \"...\"; key_sha256 = \"...\"; }");
    }
    if ((rc = check_members(ld, entry, prefix, client_keys)) < 0) {
        return rc;
    }

    rc = read_string(ld, entry, prefix, "name", client->name, sizeof(client->name), &name_at);
    if (rc < 0) {
        return rc;
    }
    if (name_at == NULL) {
        return conf_fail(ld, entry, join_key(key, prefix, "name"),
                         "missing: every client needs a name of 1 to 63 printable ASCII "
                         "characters");
    }
    len = strlen(client->name);
    for (i = 0; i < len && client->name[i] >= 0x20 && client->name[i] < 0x7f; i++) {
    }
    if (len == 0 || i < len) {
        return fail_invalid(ld, name_at, join_key(key, prefix, "name"),
                            "must be 1 to 63 printable ASCII characters");
    }

    rc = read_string_ref(ld, entry, prefix, "key_sha256", &hash, &hash_at);
    if (rc < 0) {
        return rc;
    }
    if (hash_at == NULL) {
        return conf_fail(ld, entry, join_key(key, prefix, "key_sha256"),
                         "missing: every client needs the SHA-256 of its key as 64 lowercase "
                         "hex digits");
    }
    len = strlen(hash);
    for (i = 0; i < len && is_hex_lower(hash[i]); i++) {
    }
    if (len != 64 || i < len) {
        char allowed[160];

        snprintf(allowed, sizeof(allowed), "must be exactly 64 lowercase hex digits, the "
                 "SHA-256 of the client key (found %zu characters)", len);
        return fail_invalid(ld, hash_at, join_key(key, prefix, "key_sha256"), allowed);
    }
    for (i = 0; i < 32; i++) {
        client->key_sha256[i] = (uint8_t)(hex_value(hash[2 * i]) * 16 + hex_value(hash[2 * i + 1]));
    }
    return 0;
}

/* Rejects client i when an earlier client has the same name or the same key hash. */
static int check_client_unique(struct conf_loader *ld, const config_setting_t *entry,
                               const char *prefix, unsigned i)
{
    const struct wr_conf_client *clients = ld->conf->clients;
    char key[WR_CONF_KEY_LEN];
    char allowed[160];
    unsigned j;

    for (j = 0; j < i; j++) {
        if (strcmp(clients[j].name, clients[i].name) == 0) {
            snprintf(allowed, sizeof(allowed), "already used by gateway.auth.clients[%u]: "
                     "client names must be unique", j);
            return fail_invalid(ld, member(entry, "name"), join_key(key, prefix, "name"), allowed);
        }
        if (memcmp(clients[j].key_sha256, clients[i].key_sha256, 32) == 0) {
            snprintf(allowed, sizeof(allowed), "same key as gateway.auth.clients[%u] (\"%s\"): "
                     "every client needs its own key", j, clients[j].name);
            return fail_invalid(ld, member(entry, "key_sha256"),
                                join_key(key, prefix, "key_sha256"), allowed);
        }
    }
    return 0;
}

static int load_auth(struct conf_loader *ld, const config_setting_t *auth,
                     const config_setting_t *anchor)
{
    const char *allowed = "must be a list of client groups "
                          "( { name = \"...\"; key_sha256 = \"...\"; } ) with at least one entry";
    struct wr_conf *conf = ld->conf;
    const config_setting_t *list;
    char prefix[WR_CONF_KEY_LEN];
    unsigned n;
    unsigned i;
    int rc;

    if (auth == NULL) {
        return conf_fail(ld, anchor, "gateway.auth",
                         "missing: add auth: { clients = ( { name = \"...\"; "
                         "key_sha256 = \"...\"; } ); }; with at least one client");
    }
    if ((rc = check_members(ld, auth, "gateway.auth", auth_keys)) < 0) {
        return rc;
    }
    list = member(auth, "clients");
    if (list == NULL) {
        return conf_fail(ld, auth, "gateway.auth.clients", "missing: %s", allowed);
    }
    if (config_setting_type(list) != CONFIG_TYPE_LIST || config_setting_length(list) == 0) {
        return fail_invalid(ld, list, "gateway.auth.clients", allowed);
    }

    n = (unsigned)config_setting_length(list);
    conf->clients = calloc(n, sizeof(*conf->clients));
    if (conf->clients == NULL) {
        return conf_fail(ld, list, "gateway.auth.clients", "out of memory for %u clients", n);
    }
    for (i = 0; i < n; i++) {
        const config_setting_t *entry = config_setting_get_elem(list, i);

        snprintf(prefix, sizeof(prefix), "gateway.auth.clients[%u]", i);
        if ((rc = load_client(ld, entry, prefix, &conf->clients[i])) < 0 ||
            (rc = check_client_unique(ld, entry, prefix, i)) < 0) {
            return rc;
        }
        conf->num_clients = i + 1;
    }
    return 0;
}

/* Reads the four strings of openai_ws and resolves the CA file. */
static int load_upstream_target(struct conf_loader *ld, const config_setting_t *ws,
                                const config_setting_t *anchor)
{
    const char *prefix = "gateway.openai_ws";
    struct wr_conf *conf = ld->conf;
    const config_setting_t *at = NULL;
    const char *reason;
    char raw_ca[PATH_MAX];
    int rc;

    rc = read_string(ld, ws, prefix, "upstream_url", conf->upstream_url,
                     sizeof(conf->upstream_url), &at);
    if (rc < 0) {
        return rc;
    }
    if ((reason = parse_upstream_url(conf->upstream_url, conf)) != NULL) {
        char shown[WR_CONF_VALUE_LEN];

        format_string(conf->upstream_url, shown, sizeof(shown));
        return conf_fail(ld, at ? at : anchor, "gateway.openai_ws.upstream_url",
                         "invalid value %s: %s (expected ws:// or wss://, a host, an optional "
                         "port from 1 to 65535, then a path and query)", shown, reason);
    }

    rc = read_string(ld, ws, prefix, "upstream_api_key_env", conf->upstream_api_key_env,
                     sizeof(conf->upstream_api_key_env), &at);
    if (rc < 0) {
        return rc;
    }
    if (!is_env_name(conf->upstream_api_key_env)) {
        return fail_invalid(ld, at, "gateway.openai_ws.upstream_api_key_env",
                            "must be \"\" or an environment variable name made of letters, "
                            "digits and '_', not starting with a digit");
    }

    rc = read_string(ld, ws, prefix, "upstream_proxy", conf->upstream_proxy,
                     sizeof(conf->upstream_proxy), &at);
    if (rc < 0) {
        return rc;
    }
    if (conf->upstream_proxy[0] != '\0' &&
        (reason = parse_proxy(conf->upstream_proxy, &conf->proxy)) != NULL) {
        char shown[WR_CONF_VALUE_LEN];

        format_string(conf->upstream_proxy, shown, sizeof(shown));
        return conf_fail(ld, at, "gateway.openai_ws.upstream_proxy",
                         "invalid value %s: %s (expected \"\" or http://host:port)", shown,
                         reason);
    }

    memcpy(raw_ca, conf->upstream_ca_file, sizeof(raw_ca));
    rc = read_string(ld, ws, prefix, "upstream_ca_file", raw_ca, sizeof(raw_ca), &at);
    if (rc < 0) {
        return rc;
    }
    if (conf->upstream_tls && raw_ca[0] == '\0') {
        return conf_fail(ld, at ? at : anchor, "gateway.openai_ws.upstream_ca_file",
                         "invalid value \"\": must be a readable PEM file because "
                         "upstream_url uses wss://");
    }
    return resolve_file(ld, at ? at : anchor, "gateway.openai_ws.upstream_ca_file", raw_ca,
                        conf->upstream_ca_file, conf->upstream_tls);
}

/* Checks that a Pong deadline fits inside each Ping interval. */
static int check_ping(struct conf_loader *ld, const config_setting_t *interval_at,
                      const config_setting_t *timeout_at, const config_setting_t *anchor)
{
    const struct wr_conf *conf = ld->conf;
    const config_setting_t *at = anchor;
    char interval[32];
    char timeout[32];

    if (timeout_at != NULL) {
        at = timeout_at;
    } else if (interval_at != NULL) {
        at = interval_at;
    }
    if (conf->ping_interval_ms == 0 ||
        (conf->ping_timeout_ms > 0 && conf->ping_timeout_ms < conf->ping_interval_ms)) {
        return 0;
    }
    format_seconds(conf->ping_interval_ms, interval, sizeof(interval));
    format_seconds(conf->ping_timeout_ms, timeout, sizeof(timeout));
    return conf_fail(ld, at, "gateway.openai_ws.passthrough_downstream_ping_timeout_seconds",
                     "invalid value %s: must be greater than 0 and less than "
                     "passthrough_downstream_ping_interval_seconds (%s), or set the interval "
                     "to 0 to disable keepalive", timeout, interval);
}

static int load_openai_ws(struct conf_loader *ld, const config_setting_t *ws,
                          const config_setting_t *anchor)
{
    const char *prefix = "gateway.openai_ws";
    struct wr_conf *conf = ld->conf;
    const config_setting_t *interval_at = NULL;
    const config_setting_t *timeout_at = NULL;
    const config_setting_t *at = NULL;
    long long client_limit = (long long)conf->client_read_limit_bytes;
    long long upstream_limit = (long long)conf->upstream_read_limit_bytes;
    int rc;

    if (ws != NULL && (rc = check_members(ld, ws, prefix, openai_ws_keys)) < 0) {
        return rc;
    }
    if ((rc = load_upstream_target(ld, ws, anchor)) < 0) {
        return rc;
    }
    if ((rc = read_duration(ld, ws, prefix, "dial_timeout_seconds", true,
                            &conf->dial_timeout_ms, &at)) < 0 ||
        (rc = read_duration(ld, ws, prefix, "client_first_message_timeout_seconds", true,
                            &conf->client_first_message_timeout_ms, &at)) < 0 ||
        (rc = read_duration(ld, ws, prefix, "write_timeout_seconds", true,
                            &conf->write_timeout_ms, &at)) < 0 ||
        (rc = read_int(ld, ws, prefix, "client_read_limit_bytes", 1, WR_CONF_MAX_READ_LIMIT,
                       "a number of bytes", &client_limit)) < 0 ||
        (rc = read_int(ld, ws, prefix, "upstream_read_limit_bytes", 1, WR_CONF_MAX_READ_LIMIT,
                       "a number of bytes", &upstream_limit)) < 0 ||
        (rc = read_duration(ld, ws, prefix, "passthrough_downstream_ping_interval_seconds", false,
                            &conf->ping_interval_ms, &interval_at)) < 0 ||
        (rc = read_duration(ld, ws, prefix, "passthrough_downstream_ping_timeout_seconds", false,
                            &conf->ping_timeout_ms, &timeout_at)) < 0 ||
        (rc = read_duration(ld, ws, prefix, "passthrough_downstream_event_keepalive_seconds",
                            false, &conf->event_keepalive_ms, &at)) < 0 ||
        (rc = read_duration(ld, ws, prefix, "upstream_drain_timeout_seconds", false,
                            &conf->upstream_drain_timeout_ms, &at)) < 0) {
        return rc;
    }
    conf->client_read_limit_bytes = (uint64_t)client_limit;
    conf->upstream_read_limit_bytes = (uint64_t)upstream_limit;
    return check_ping(ld, interval_at, timeout_at, ws != NULL ? ws : anchor);
}

static int load_usage(struct conf_loader *ld, const config_setting_t *usage,
                      const config_setting_t *anchor)
{
    struct wr_conf *conf = ld->conf;
    const config_setting_t *at = NULL;
    char raw[PATH_MAX];
    int rc;

    if (usage != NULL && (rc = check_members(ld, usage, "gateway.usage", usage_keys)) < 0) {
        return rc;
    }
    memcpy(raw, conf->ledger_path, sizeof(raw));
    rc = read_string(ld, usage, "gateway.usage", "ledger_path", raw, sizeof(raw), &at);
    if (rc < 0) {
        return rc;
    }
    if (raw[0] == '\0') {
        return fail_invalid(ld, at, "gateway.usage.ledger_path", "must be a file path");
    }
    /* The ledger directory is checked at start-up, where a failure has its own exit status. */
    return resolve_file(ld, at ? at : anchor, "gateway.usage.ledger_path", raw,
                        conf->ledger_path, false);
}

static int load_gateway(struct conf_loader *ld, const config_setting_t *gw)
{
    struct wr_conf *conf = ld->conf;
    const config_setting_t *at = NULL;
    const config_setting_t *tls;
    const config_setting_t *auth;
    const config_setting_t *ws;
    const config_setting_t *usage;
    long long workers = conf->workers;
    long long max_connections = conf->max_connections;
    char log_level[16] = "";
    const char *reason;
    size_t i;
    int rc;

    if ((rc = check_members(ld, gw, "gateway", gateway_keys)) < 0) {
        return rc;
    }

    if ((rc = read_string(ld, gw, "gateway", "listen", conf->listen, sizeof(conf->listen),
                          &at)) < 0) {
        return rc;
    }
    if ((reason = parse_listen(conf->listen, &conf->listen_addr)) != NULL) {
        char shown[WR_CONF_VALUE_LEN];

        format_string(conf->listen, shown, sizeof(shown));
        return conf_fail(ld, at, "gateway.listen", "invalid value %s: %s (expected host:port "
                         "or [IPv6]:port with a port from 1 to 65535)", shown, reason);
    }

    if ((rc = read_int(ld, gw, "gateway", "workers", 0, WR_CONF_MAX_WORKERS,
                       "an integer", &workers)) < 0 ||
        (rc = read_int(ld, gw, "gateway", "max_connections", 1, WR_CONF_MAX_CONNECTIONS,
                       "an integer", &max_connections)) < 0 ||
        (rc = read_duration(ld, gw, "gateway", "handshake_timeout_seconds", true,
                            &conf->handshake_timeout_ms, &at)) < 0) {
        return rc;
    }
    conf->workers = (unsigned)workers;
    conf->max_connections = (unsigned)max_connections;

    rc = read_string(ld, gw, "gateway", "log_level", log_level, sizeof(log_level), &at);
    if (rc < 0) {
        return rc;
    }
    for (i = 0; at != NULL && i < sizeof(log_level_names) / sizeof(log_level_names[0]); i++) {
        if (strcmp(log_level, log_level_names[i]) == 0) {
            conf->log_level = (enum wr_log_level)i;
            break;
        }
    }
    if (at != NULL && i == sizeof(log_level_names) / sizeof(log_level_names[0])) {
        return fail_invalid(ld, at, "gateway.log_level", "must be one of error, warn, info, debug");
    }

    if ((rc = read_group(ld, gw, "gateway", "tls", &tls)) < 0 ||
        (rc = read_group(ld, gw, "gateway", "auth", &auth)) < 0 ||
        (rc = read_group(ld, gw, "gateway", "openai_ws", &ws)) < 0 ||
        (rc = read_group(ld, gw, "gateway", "usage", &usage)) < 0) {
        return rc;
    }
    if ((rc = load_tls(ld, tls, tls ? tls : gw)) < 0 ||
        (rc = load_auth(ld, auth, gw)) < 0 ||
        (rc = load_openai_ws(ld, ws, gw)) < 0) {
        return rc;
    }
    return load_usage(ld, usage, usage ? usage : gw);
}

/* Public entry points. */

void wr_conf_defaults(struct wr_conf *conf)
{
    const char *reason;

    memset(conf, 0, sizeof(*conf));
    snprintf(conf->listen, sizeof(conf->listen), "127.0.0.1:8080");
    reason = parse_listen(conf->listen, &conf->listen_addr);
    assert(reason == NULL);
    conf->workers = 0;
    conf->max_connections = 10000;
    conf->handshake_timeout_ms = 10000;
    conf->log_level = WR_LOG_INFO;

    snprintf(conf->upstream_url, sizeof(conf->upstream_url), "wss://api.openai.com/v1/responses");
    reason = parse_upstream_url(conf->upstream_url, conf);
    assert(reason == NULL);
    (void)reason;
    snprintf(conf->upstream_api_key_env, sizeof(conf->upstream_api_key_env), "OPENAI_API_KEY");
    snprintf(conf->upstream_ca_file, sizeof(conf->upstream_ca_file),
             "/etc/ssl/certs/ca-certificates.crt");
    conf->dial_timeout_ms = 10000;
    conf->client_first_message_timeout_ms = 30000;
    conf->write_timeout_ms = 120000;
    conf->client_read_limit_bytes = 67108864;
    conf->upstream_read_limit_bytes = 67108864;
    conf->ping_interval_ms = 20000;
    conf->ping_timeout_ms = 5000;
    conf->event_keepalive_ms = 0;
    conf->upstream_drain_timeout_ms = 10000;

    /* Relative until wr_conf_load resolves it against the file's directory. */
    snprintf(conf->ledger_path, sizeof(conf->ledger_path), "usage.jsonl");
}

/* Stores path and the absolute directory that contains it. */
static int set_paths(struct conf_loader *ld, const char *path)
{
    struct wr_conf *conf = ld->conf;
    char dir[PATH_MAX];
    const char *slash;

    if (path[0] == '\0' || strlen(path) >= sizeof(conf->path)) {
        snprintf(ld->err, ld->err_len, "invalid configuration file path: must be 1 to %d bytes",
                 PATH_MAX - 1);
        return WR_ECONF;
    }
    memcpy(conf->path, path, strlen(path) + 1);
    slash = strrchr(path, '/');
    if (slash == NULL) {
        snprintf(dir, sizeof(dir), ".");
    } else if (slash == path) {
        snprintf(dir, sizeof(dir), "/");
    } else {
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    }
    if (realpath(dir, conf->dir) == NULL) {
        snprintf(ld->err, ld->err_len, "%s: cannot read the configuration file: %s", path,
                 strerror(errno));
        return WR_ECONF;
    }
    return 0;
}

static int read_file(struct conf_loader *ld, config_t *cfg)
{
    const char *path = ld->conf->path;
    const char *error_file;
    int saved_errno;

    config_set_include_dir(cfg, ld->conf->dir);
    errno = 0;
    if (config_read_file(cfg, path) == CONFIG_TRUE) {
        return 0;
    }
    saved_errno = errno;

    if (config_error_type(cfg) == CONFIG_ERR_FILE_IO) {
        if (saved_errno == 0) {
            /* fopen accepts a directory, and libconfig then fails without an errno. */
            saved_errno = file_readable(path);
        }
        snprintf(ld->err, ld->err_len, "%s: cannot read the configuration file: %s", path,
                 saved_errno != 0 ? strerror(saved_errno) : config_error_text(cfg));
        return WR_ECONF;
    }

    /* An included file is named relative to the include directory. */
    error_file = config_error_file(cfg) != NULL ? config_error_file(cfg) : path;
    if (strcmp(error_file, path) == 0 || error_file[0] == '/') {
        snprintf(ld->err, ld->err_len, "%s:%d: %s", error_file, config_error_line(cfg),
                 config_error_text(cfg));
    } else {
        snprintf(ld->err, ld->err_len, "%s/%s:%d: %s", ld->conf->dir, error_file,
                 config_error_line(cfg), config_error_text(cfg));
    }
    return WR_ECONF;
}

int wr_conf_load(struct wr_conf *conf, const char *path, char *err, size_t err_len)
{
    struct conf_loader ld = { conf, err, err_len };
    char dummy[1];
    config_t cfg;
    const config_setting_t *gw;
    int rc;

    if (err == NULL || err_len == 0) {
        ld.err = dummy;
        ld.err_len = sizeof(dummy);
    }
    ld.err[0] = '\0';
    wr_conf_defaults(conf);
    rc = set_paths(&ld, path);
    if (rc < 0) {
        return rc;
    }

    config_init(&cfg);
    rc = read_file(&ld, &cfg);
    if (rc < 0) {
        goto out;
    }
    rc = check_members(&ld, config_root_setting(&cfg), "", top_keys);
    if (rc < 0) {
        goto out;
    }
    gw = config_lookup(&cfg, "gateway");
    if (gw == NULL) {
        rc = conf_fail(&ld, NULL, "gateway", "missing: the file must contain a group "
                       "gateway: { auth: { clients = ( ... ); }; };");
        goto out;
    }
    if (config_setting_type(gw) != CONFIG_TYPE_GROUP) {
        rc = fail_invalid(&ld, gw, "gateway", "must be a group { ... }");
        goto out;
    }
    rc = load_gateway(&ld, gw);

out:
    config_destroy(&cfg);
    if (rc < 0) {
        wr_conf_free(conf);
    }
    return rc;
}

void wr_conf_free(struct wr_conf *conf)
{
    free(conf->clients);
    conf->clients = NULL;
    conf->num_clients = 0;
}

const char *wr_conf_log_level_name(enum wr_log_level level)
{
    if ((unsigned)level >= sizeof(log_level_names) / sizeof(log_level_names[0])) {
        return "unknown";
    }
    return log_level_names[level];
}

/* Printing. */

static void print_string(FILE *out, const char *key, const char *value)
{
    char tmp[5];
    size_t i;

    fprintf(out, "%s = \"", key);
    for (i = 0; value[i] != '\0'; i++) {
        fputs(escape_char((unsigned char)value[i], tmp), out);
    }
    fputs("\"\n", out);
}

static void print_seconds(FILE *out, const char *key, uint32_t ms)
{
    char seconds[32];

    format_seconds(ms, seconds, sizeof(seconds));
    fprintf(out, "%s = %s\n", key, seconds);
}

void wr_conf_print(const struct wr_conf *conf, FILE *out)
{
    const char *env = conf->upstream_api_key_env;
    unsigned i;

    print_string(out, "gateway.listen", conf->listen);
    fprintf(out, "gateway.workers = %u\n", conf->workers);
    fprintf(out, "gateway.max_connections = %u\n", conf->max_connections);
    print_seconds(out, "gateway.handshake_timeout_seconds", conf->handshake_timeout_ms);
    print_string(out, "gateway.log_level", wr_conf_log_level_name(conf->log_level));
    print_string(out, "gateway.tls.cert_file", conf->tls_cert_file);
    print_string(out, "gateway.tls.key_file", conf->tls_key_file);
    for (i = 0; i < conf->num_clients; i++) {
        char key[WR_CONF_KEY_LEN];

        snprintf(key, sizeof(key), "gateway.auth.clients[%u].name", i);
        print_string(out, key, conf->clients[i].name);
        fprintf(out, "gateway.auth.clients[%u].key_sha256 = <redacted>\n", i);
    }
    print_string(out, "gateway.openai_ws.upstream_url", conf->upstream_url);
    print_string(out, "gateway.openai_ws.upstream_api_key_env", env);
    print_string(out, "gateway.openai_ws.upstream_ca_file", conf->upstream_ca_file);
    print_string(out, "gateway.openai_ws.upstream_proxy", conf->upstream_proxy);
    print_seconds(out, "gateway.openai_ws.dial_timeout_seconds", conf->dial_timeout_ms);
    print_seconds(out, "gateway.openai_ws.client_first_message_timeout_seconds",
                  conf->client_first_message_timeout_ms);
    print_seconds(out, "gateway.openai_ws.write_timeout_seconds", conf->write_timeout_ms);
    fprintf(out, "gateway.openai_ws.client_read_limit_bytes = %llu\n",
            (unsigned long long)conf->client_read_limit_bytes);
    fprintf(out, "gateway.openai_ws.upstream_read_limit_bytes = %llu\n",
            (unsigned long long)conf->upstream_read_limit_bytes);
    print_seconds(out, "gateway.openai_ws.passthrough_downstream_ping_interval_seconds",
                  conf->ping_interval_ms);
    print_seconds(out, "gateway.openai_ws.passthrough_downstream_ping_timeout_seconds",
                  conf->ping_timeout_ms);
    print_seconds(out, "gateway.openai_ws.passthrough_downstream_event_keepalive_seconds",
                  conf->event_keepalive_ms);
    print_seconds(out, "gateway.openai_ws.upstream_drain_timeout_seconds",
                  conf->upstream_drain_timeout_ms);
    print_string(out, "gateway.usage.ledger_path", conf->ledger_path);

    if (env[0] == '\0') {
        fputs("upstream_api_key_env is empty: no Authorization is sent upstream\n", out);
    } else {
        fprintf(out, "upstream_api_key_env %s is %s\n", env,
                getenv(env) != NULL ? "set" : "not set");
    }
}
