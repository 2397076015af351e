/* SPDX-License-Identifier: MIT */
/* Upstream helpers: CONNECT requests, address lists and the resolver's retry delays. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <string.h>

#include "core/upstream.h"

Test(upstream, connect_request_names_host)
{
    char buf[256];
    size_t n = wr_proxy_connect_request(buf, sizeof(buf), "api.openai.com", 443);

    cr_assert_eq(n, strlen(buf));
    cr_assert_str_eq(buf, "CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n\r\n");
}

Test(upstream, connect_request_brackets_ipv6)
{
    char buf[256];

    wr_proxy_connect_request(buf, sizeof(buf), "::1", 8443);
    cr_assert_str_eq(buf, "CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n");
}

Test(upstream, connect_request_reports_small_buffer)
{
    char buf[16];

    cr_assert_geq(wr_proxy_connect_request(buf, sizeof(buf), "api.openai.com", 443), sizeof(buf));
}

Test(upstream, resolves_numeric_hosts)
{
    struct wr_addr_list list;
    const struct sockaddr_in *v4 = (const struct sockaddr_in *)&list.addrs[0];
    const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&list.addrs[0];

    cr_assert_eq(wr_resolve("127.0.0.1", 8443, &list), 0);
    cr_assert_eq(list.count, 1);
    cr_assert_eq(v4->sin_family, AF_INET);
    cr_assert_eq(ntohs(v4->sin_port), 8443);
    cr_assert_eq(wr_resolve("::1", 443, &list), 0);
    cr_assert_eq(list.count, 1);
    cr_assert_eq(v6->sin6_family, AF_INET6);
    cr_assert_eq(ntohs(v6->sin6_port), 443);
}

Test(upstream, list_equality_checks_order)
{
    struct wr_addr_list a, b, c;

    cr_assert_eq(wr_resolve("127.0.0.1", 80, &a), 0);
    cr_assert_eq(wr_resolve("127.0.0.1", 80, &b), 0);
    cr_assert_eq(wr_resolve("127.0.0.1", 81, &c), 0);
    cr_assert(wr_addr_list_equal(&a, &b));
    cr_assert_not(wr_addr_list_equal(&a, &c));
    b.count = 0;
    cr_assert_not(wr_addr_list_equal(&a, &b));
}

Test(upstream, retry_delay_doubles_to_interval)
{
    cr_assert_eq(wr_resolve_delay_ms(true, 0), WR_RESOLVE_INTERVAL_MS);
    cr_assert_eq(wr_resolve_delay_ms(false, 1), WR_RESOLVE_RETRY_MIN_MS);
    cr_assert_eq(wr_resolve_delay_ms(false, 2), 2 * WR_RESOLVE_RETRY_MIN_MS);
    cr_assert_eq(wr_resolve_delay_ms(false, 3), 4 * WR_RESOLVE_RETRY_MIN_MS);
    cr_assert_eq(wr_resolve_delay_ms(false, 40), WR_RESOLVE_INTERVAL_MS);
}
