/*
 * internal.h: the shared header of the test driver plugins.
 *
 * The plugins stand for out-of-tree drivers: they are built against the
 * public ABI header alone (their include path is include/ only), so this
 * is not common/internal.h. It exists because every .c file of the tree
 * includes "internal.h" first (docs/CODING_STYLE.md).
 */
#ifndef SG_TEST_PLUGIN_INTERNAL_H
#define SG_TEST_PLUGIN_INTERNAL_H

#include <sandgate/driver.h>

#include <stddef.h>
#include <string.h>

#endif /* SG_TEST_PLUGIN_INTERNAL_H */
