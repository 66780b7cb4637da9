/*
 * k8s_driver.h: the kubernetes driver, one agents.x-k8s.io/v1beta1
 * Sandbox per sandbox, its state read from watches (docs/DRIVERS.md).
 *
 * THREAD SAFETY: the ops table is static and immutable; the ops follow
 * the threading rules of include/sandgate/driver.h.
 */
#ifndef SG_K8S_DRIVER_H
#define SG_K8S_DRIVER_H

#include "internal.h"

#include <sandgate/driver.h>

extern const struct sg_driver_ops sg_kubernetes_driver;

#endif /* SG_K8S_DRIVER_H */
