/*
 * noop_driver.h: the built-in "noop" driver.
 *
 * It makes nothing: it keeps an in-memory map of sandbox id to state, so
 * that benchmarks and reconciler tests exercise the driver contract without
 * a backend. With ready_delay_ms 0 (the default) create reports RUNNING at
 * once; otherwise it reports PENDING through done, and RUNNING through watch
 * ready_delay_ms later. remove reports GONE. Nothing survives close.
 *
 * Settings (strict, unknown keys rejected):
 *     {"ready_delay_ms": <integer 0..4294967295, default 0>}
 * Per-sandbox driver_config block (strict):
 *     {"fail" or "pending": "<non-empty message>", "placement": {...}},
 *     each optional, "fail" and "pending" not together
 * With "fail", create reports FAILED, reason "InjectedFailure", that
 * message and exit_code -1. With "pending", create reports PENDING,
 * reason "InjectedPending" and that message, and the sandbox never
 * becomes ready (a backend stuck in provisioning, for the reconciler's
 * tests). "placement" is reported by describe verbatim
 * (noop_placement.h), so authorization can be tested on every scope
 * without a cluster.
 *
 * config_validate reads only what open set (the host table) and changes
 * nothing, so it may run on any thread, concurrently, as the ABI requires.
 */
#ifndef SG_NOOP_DRIVER_H
#define SG_NOOP_DRIVER_H

#include <sandgate/driver.h>

extern const struct sg_driver_ops sg_noop_driver;

#endif /* SG_NOOP_DRIVER_H */
