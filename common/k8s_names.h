/*
 * k8s_names.h: Kubernetes' naming rules (apimachinery's validation), for
 * the kubernetes driver's schemas and the kubernetes-secret credential
 * source, which both check names before the API server does so that
 * errors name the request's field.
 *
 * THREAD SAFETY: pure functions; any thread.
 */
#ifndef SG_COMMON_K8S_NAMES_H
#define SG_COMMON_K8S_NAMES_H

#include "internal.h"

/* RFC 1123 label: [a-z0-9]([-a-z0-9]*[a-z0-9])?, 1 to 63 bytes
   (namespaces, most object names). */
bool k8s_is_dns_label(const char *s);
/* RFC 1123 subdomain: such labels (of any length) joined by '.', 1 to 253
   bytes (Secret names, label prefixes). */
bool k8s_is_dns_subdomain(const char *s);
/* A label value: "" or 1 to 63 of [A-Za-z0-9-_.], alphanumeric at both
   ends. */
bool k8s_is_label_value(const char *s);
/* A qualified name ([subdomain/]name, as label and annotation keys). */
bool k8s_is_qualified_name(const char *s);
/* A Secret or ConfigMap data key: 1 to 253 of [-._a-zA-Z0-9], not "."
   and not starting with "..". */
bool k8s_is_data_key(const char *s);

#endif /* SG_COMMON_K8S_NAMES_H */
