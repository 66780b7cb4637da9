/*
 * yaml_node.c: loading the one document of a YAML file (see yaml_node.h).
 */
#include "internal.h"

#include "yaml_node.h"

static void report_parser_error(const yaml_parser_t *parser,
                                const char *name, struct sg_error *err)
{
    const char *problem = parser->problem != NULL ? parser->problem
                                                  : "unknown error";

    switch (parser->error) {
    case YAML_MEMORY_ERROR:
        sg_error_report(err, SG_ERR_NO_MEMORY, "out of memory");
        break;
    case YAML_READER_ERROR:
        /* The reader knows a byte offset, not a line. */
        sg_error_report(err, SG_ERR_CONFIG, "%s: invalid input at byte %zu: %s",
                        name, parser->problem_offset, problem);
        break;
    default:
        if (parser->context != NULL)
            sg_error_report(err, SG_ERR_CONFIG,
                            "%s:%zu: YAML syntax error: %s %s", name,
                            parser->problem_mark.line + 1, parser->context,
                            problem);
        else
            sg_error_report(err, SG_ERR_CONFIG, "%s:%zu: YAML syntax error: %s",
                            name, parser->problem_mark.line + 1, problem);
        break;
    }
}

int sg_yaml_load(yaml_parser_t *parser, const char *name,
                 yaml_document_t *doc, struct sg_error *err)
{
    if (yaml_parser_load(parser, doc))
        return 0;
    report_parser_error(parser, name, err);
    return -1;
}

int sg_yaml_expect_end(yaml_parser_t *parser, const char *name,
                       struct sg_error *err)
{
    yaml_document_t extra;
    int ret = 0;

    if (sg_yaml_load(parser, name, &extra, err) < 0)
        return -1;
    if (yaml_document_get_root_node(&extra) != NULL) {
        sg_error_report(err, SG_ERR_CONFIG,
                        "%s:%zu: expected a single YAML document", name,
                        extra.start_mark.line + 1);
        ret = -1;
    }
    yaml_document_delete(&extra);
    return ret;
}
