/* SPDX-License-Identifier: MIT */
/* Helpers shared by conf.c, conf_parse.c and conf_print.c. Not part of the public interface. */
#ifndef WR_CONF_CONF_INTERNAL_H
#define WR_CONF_CONF_INTERNAL_H

#include <libconfig.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"

#define WR_CONF_MAX_SECONDS 86400
#define WR_CONF_KEY_LEN 160
#define WR_CONF_VALUE_LEN 200

/* The configuration being filled and the buffer for its error message. */
struct conf_loader {
    struct wr_conf *conf;
    char *err;
    size_t err_len;
};

/* Text formatting, shared by error messages and wr_conf_print. */
const char *conf_escape_char(unsigned char c, char *out);
void conf_format_string(const char *s, char *out, size_t len);
void conf_format_seconds(uint32_t ms, char *out, size_t len);
const char *conf_join_key(char *buf, const char *prefix, const char *name);

/* Error reporting. Each returns WR_ECONF with the message in the loader's buffer. */
__attribute__((format(printf, 4, 5)))
int conf_fail(struct conf_loader *ld, const config_setting_t *at, const char *key,
              const char *fmt, ...);
int conf_fail_invalid(struct conf_loader *ld, const config_setting_t *s, const char *key,
                      const char *allowed);

/* Typed readers. Each leaves the default in place when the key is absent. */
const config_setting_t *conf_member(const config_setting_t *group, const char *name);
int conf_check_members(struct conf_loader *ld, const config_setting_t *group,
                       const char *prefix, const char *const *allowed);
int conf_read_group(struct conf_loader *ld, const config_setting_t *parent, const char *prefix,
                    const char *name, const config_setting_t **out);
int conf_read_string_ref(struct conf_loader *ld, const config_setting_t *group,
                         const char *prefix, const char *name, const char **value,
                         const config_setting_t **found);
int conf_read_string(struct conf_loader *ld, const config_setting_t *group, const char *prefix,
                     const char *name, char *dst, size_t dst_size,
                     const config_setting_t **found);
int conf_read_int(struct conf_loader *ld, const config_setting_t *group, const char *prefix,
                  const char *name, long long min, long long max, const char *what,
                  long long *dst);
int conf_read_duration(struct conf_loader *ld, const config_setting_t *group,
                       const char *prefix, const char *name, bool positive, uint32_t *dst_ms,
                       const config_setting_t **found);

/* Addresses and URLs. Each parser returns NULL or the reason the text is invalid. */
const char *conf_parse_listen(const char *listen, struct wr_conf_endpoint *ep);
const char *conf_parse_upstream_url(const char *url, struct wr_conf *conf);
const char *conf_parse_proxy(const char *proxy, struct wr_conf_endpoint *ep);
bool conf_is_env_name(const char *name);

/* Files. */
int conf_file_readable(const char *path);
int conf_resolve_file(struct conf_loader *ld, const config_setting_t *at, const char *key,
                      const char *raw, char *dst, bool must_read);

#endif
