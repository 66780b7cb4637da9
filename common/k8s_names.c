/*
 * k8s_names.c: Kubernetes' naming rules (k8s_names.h).
 */
#include "internal.h"

#include "k8s_names.h"

#define LABEL_MAX 63
#define SUBDOMAIN_MAX 253

static bool is_alnum_lower(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
    return is_alnum_lower(c) || (c >= 'A' && c <= 'Z');
}

/* [a-z0-9]([-a-z0-9]*[a-z0-9])? of len bytes, 1 to max. */
static bool label_span(const char *s, size_t len, size_t max)
{
    if (len == 0 || len > max || !is_alnum_lower(s[0]) ||
        !is_alnum_lower(s[len - 1]))
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!is_alnum_lower(s[i]) && s[i] != '-')
            return false;
    }
    return true;
}

bool k8s_is_dns_label(const char *s)
{
    return label_span(s, strlen(s), LABEL_MAX);
}

bool k8s_is_dns_subdomain(const char *s)
{
    size_t len = strlen(s);
    size_t start = 0;

    if (len == 0 || len > SUBDOMAIN_MAX)
        return false;
    for (size_t i = 0; i <= len; i++) {
        if (s[i] == '.' || s[i] == '\0') {
            if (!label_span(s + start, i - start, SUBDOMAIN_MAX))
                return false;
            start = i + 1;
        }
    }
    return true;
}

static bool name_part(const char *s, size_t len)
{
    if (len == 0 || len > LABEL_MAX || !is_alnum(s[0]) ||
        !is_alnum(s[len - 1]))
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
            return false;
    }
    return true;
}

bool k8s_is_label_value(const char *s)
{
    size_t len = strlen(s);

    return len == 0 || name_part(s, len);
}

bool k8s_is_qualified_name(const char *s)
{
    const char *slash = strchr(s, '/');
    char prefix[SUBDOMAIN_MAX + 1];
    size_t plen;

    if (slash == NULL)
        return name_part(s, strlen(s));
    plen = (size_t)(slash - s);
    if (plen == 0 || plen >= sizeof(prefix))
        return false;
    memcpy(prefix, s, plen);
    prefix[plen] = '\0';
    return k8s_is_dns_subdomain(prefix) &&
           name_part(slash + 1, strlen(slash + 1));
}

bool k8s_is_data_key(const char *s)
{
    size_t len = strlen(s);

    if (len == 0 || len > SUBDOMAIN_MAX || STREQ(s, ".") ||
        STRPREFIX(s, ".."))
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '.' && s[i] != '_')
            return false;
    }
    return true;
}
