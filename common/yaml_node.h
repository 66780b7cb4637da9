/*
 * yaml_node.h: reading libyaml document nodes, the way every YAML file of
 * sandgate is read (the daemon configuration, the policy): line numbers
 * for messages, kind names, and the YAML 1.2 core schema's null.
 *
 * THREAD SAFETY: pure functions over nodes and parsers the caller owns.
 */
#ifndef SG_COMMON_YAML_NODE_H
#define SG_COMMON_YAML_NODE_H

#include "internal.h"

#include "error.h"

#include <yaml.h>

/*
 * Load the parser's next document into *doc, which the caller frees with
 * yaml_document_delete. A syntax or reader error is SG_ERR_CONFIG naming
 * name (and the line where there is one); then nothing is to be freed.
 * Returns 0 or -1.
 */
int sg_yaml_load(yaml_parser_t *parser, const char *name,
                 yaml_document_t *doc, struct sg_error *err);

/* After the one document a file may hold: -1 with err set ("NAME:LINE:
   expected a single YAML document") when another follows, else 0. */
int sg_yaml_expect_end(yaml_parser_t *parser, const char *name,
                       struct sg_error *err);

/* 1-based line of a node, for "FILE:LINE: key: ..." messages. */
static inline size_t sg_yaml_line(const yaml_node_t *node)
{
    return node->start_mark.line + 1;
}

/* "mapping", "sequence" or "scalar", for "expected a mapping" messages. */
static inline const char *sg_yaml_kind_name(const yaml_node_t *node)
{
    switch (node->type) {
    case YAML_MAPPING_NODE:
        return "mapping";
    case YAML_SEQUENCE_NODE:
        return "sequence";
    default:
        return "scalar";
    }
}

/* The text of a scalar node. */
static inline const char *sg_yaml_text(const yaml_node_t *node)
{
    return (const char *)node->data.scalar.value;
}

/* A plain ~, null, Null, NULL or nothing at all (YAML 1.2 core schema). */
static inline bool sg_yaml_is_null(const yaml_node_t *node)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};

    if (node->type != YAML_SCALAR_NODE ||
        node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    for (size_t i = 0; i < SG_N_ELEMENTS(nulls); i++) {
        if (STREQ(sg_yaml_text(node), nulls[i]))
            return true;
    }
    return false;
}

#endif /* SG_COMMON_YAML_NODE_H */
