/* SPDX-License-Identifier: MIT */
/* Typed readers, address and URL parsers, and error messages for the configuration. */
#include "conf/conf_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define WR_CONF_SHOWN_STRING_BYTES 120

/* Text formatting shared by error messages and wr_conf_print. */

/* Writes the libconfig escape of c into out (at least 5 bytes) and returns out. */
const char *conf_escape_char(unsigned char c, char *out)
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
void conf_format_string(const char *s, char *out, size_t len)
{
    size_t used = 0;
    size_t i;
    char tmp[5];

    assert(len >= 16);
    out[used++] = '"';
    for (i = 0; s[i] != '\0'; i++) {
        const char *piece = conf_escape_char((unsigned char)s[i], tmp);
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
void conf_format_seconds(uint32_t ms, char *out, size_t len)
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
        conf_format_string(config_setting_get_string(s), out, len);
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
const char *conf_join_key(char *buf, const char *prefix, const char *name)
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
int conf_fail(struct conf_loader *ld, const config_setting_t *at, const char *key,
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
int conf_fail_invalid(struct conf_loader *ld, const config_setting_t *s, const char *key,
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

const config_setting_t *conf_member(const config_setting_t *group, const char *name)
{
    return group == NULL ? NULL : config_setting_get_member(group, name);
}

/* Rejects any member of group whose name is not in allowed. */
int conf_check_members(struct conf_loader *ld, const config_setting_t *group,
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
        return conf_fail(ld, child, conf_join_key(key, prefix, name ? name : "(unnamed)"),
                         "unknown key with value %s: allowed keys are %s", value, names);
    }
    return 0;
}

/* Finds the group name inside parent. A missing group leaves *out NULL. */
int conf_read_group(struct conf_loader *ld, const config_setting_t *parent, const char *prefix,
                    const char *name, const config_setting_t **out)
{
    char key[WR_CONF_KEY_LEN];
    const config_setting_t *s = conf_member(parent, name);

    *out = NULL;
    if (s == NULL) {
        return 0;
    }
    if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
        return conf_fail_invalid(ld, s, conf_join_key(key, prefix, name),
                                 "must be a group { ... }");
    }
    *out = s;
    return 0;
}

/* Points *value at the string stored by libconfig, valid until config_destroy. */
int conf_read_string_ref(struct conf_loader *ld, const config_setting_t *group,
                         const char *prefix, const char *name, const char **value,
                         const config_setting_t **found)
{
    char key[WR_CONF_KEY_LEN];
    const config_setting_t *s = conf_member(group, name);

    *found = s;
    if (s == NULL) {
        return 0;
    }
    if (config_setting_type(s) != CONFIG_TYPE_STRING) {
        return conf_fail_invalid(ld, s, conf_join_key(key, prefix, name), "must be a string");
    }
    *value = config_setting_get_string(s);
    return 0;
}

/* Copies the string into dst, which has room for dst_size bytes including the NUL. */
int conf_read_string(struct conf_loader *ld, const config_setting_t *group, const char *prefix,
                     const char *name, char *dst, size_t dst_size,
                     const config_setting_t **found)
{
    char key[WR_CONF_KEY_LEN];
    const char *value = NULL;
    int rc = conf_read_string_ref(ld, group, prefix, name, &value, found);

    if (rc < 0 || *found == NULL) {
        return rc;
    }
    if (strlen(value) >= dst_size) {
        char shown[WR_CONF_VALUE_LEN];

        conf_format_string(value, shown, sizeof(shown));
        return conf_fail(ld, *found, conf_join_key(key, prefix, name),
                         "invalid value %s: must be a string of at most %zu bytes", shown,
                         dst_size - 1);
    }
    memcpy(dst, value, strlen(value) + 1);
    return 0;
}

/* Reads an integer from min to max. what is the noun phrase of the message ("an integer"). */
int conf_read_int(struct conf_loader *ld, const config_setting_t *group, const char *prefix,
                  const char *name, long long min, long long max, const char *what,
                  long long *dst)
{
    char key[WR_CONF_KEY_LEN];
    char allowed[128];
    const config_setting_t *s = conf_member(group, name);
    long long v;
    int rc;

    if (s == NULL) {
        return 0;
    }
    conf_join_key(key, prefix, name);
    snprintf(allowed, sizeof(allowed), "must be %s from %lld to %lld", what, min, max);
    if (config_setting_type(s) != CONFIG_TYPE_INT && config_setting_type(s) != CONFIG_TYPE_INT64) {
        return conf_fail_invalid(ld, s, key, allowed);
    }
    rc = check_int_literal(ld, s, key);
    if (rc < 0) {
        return rc;
    }
    v = config_setting_get_int64(s);
    if (v < min || v > max) {
        return conf_fail_invalid(ld, s, key, allowed);
    }
    *dst = v;
    return 0;
}

/*
 * Reads a duration in seconds, an integer or a decimal, and stores it in milliseconds,
 * rounded. With positive set the rounded value must be above 0.
 */
int conf_read_duration(struct conf_loader *ld, const config_setting_t *group,
                       const char *prefix, const char *name, bool positive, uint32_t *dst_ms,
                       const config_setting_t **found)
{
    char key[WR_CONF_KEY_LEN];
    const char *allowed = positive
        ? "must be a number of seconds greater than 0 (at least 0.001) and at most 86400"
        : "must be a number of seconds from 0 to 86400";
    const config_setting_t *s = conf_member(group, name);
    double seconds;
    uint32_t ms;
    int rc;

    *found = s;
    if (s == NULL) {
        return 0;
    }
    conf_join_key(key, prefix, name);
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
        return conf_fail_invalid(ld, s, key, allowed);
    }
    /* The negated comparison also rejects NaN. */
    if (!(seconds >= 0 && seconds <= WR_CONF_MAX_SECONDS)) {
        return conf_fail_invalid(ld, s, key, allowed);
    }
    ms = (uint32_t)(seconds * 1000.0 + 0.5);
    if (positive && ms == 0) {
        return conf_fail_invalid(ld, s, key, allowed);
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

const char *conf_parse_listen(const char *listen, struct wr_conf_endpoint *ep)
{
    return parse_host_port(listen, strlen(listen), 0, ep);
}

/* Parses ws://host[:port][/path][?query] into the upstream fields of conf. */
const char *conf_parse_upstream_url(const char *url, struct wr_conf *conf)
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
const char *conf_parse_proxy(const char *proxy, struct wr_conf_endpoint *ep)
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

bool conf_is_env_name(const char *name)
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
int conf_file_readable(const char *path)
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
int conf_resolve_file(struct conf_loader *ld, const config_setting_t *at, const char *key,
                      const char *raw, char *dst, bool must_read)
{
    char shown[WR_CONF_VALUE_LEN];
    int error;

    conf_format_string(raw, shown, sizeof(shown));
    if (!resolve_path(ld->conf->dir, raw, dst, PATH_MAX)) {
        return conf_fail(ld, at, key, "invalid value %s: the resolved path is longer than %d bytes",
                         shown, PATH_MAX - 1);
    }
    if (!must_read) {
        return 0;
    }
    error = conf_file_readable(dst);
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
