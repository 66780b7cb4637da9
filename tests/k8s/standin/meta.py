"""ObjectMeta: the known fields (for pruning), validation of names, labels,
annotations, finalizers and ownerReferences (apimachinery's
api/validation/objectmeta.go), and the immutable fields on update."""
import re

from . import field
from .selectors import label_value_errors, qualified_name_errors

OBJECT_META_FIELDS = {
    'name', 'generateName', 'namespace', 'selfLink', 'uid', 'resourceVersion', 'generation',
    'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'labels',
    'annotations', 'ownerReferences', 'finalizers', 'managedFields',
}
OWNER_REF_FIELDS = {'apiVersion', 'kind', 'name', 'uid', 'controller', 'blockOwnerDeletion'}

DNS1123_SUBDOMAIN = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')
DNS1123_LABEL = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')
DNS1035_LABEL = re.compile(r'^[a-z]([-a-z0-9]*[a-z0-9])?$')

SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                 "characters, '-' or '.', and must start and end with an alphanumeric character "
                 "(e.g. 'example.com', regex used for validation is "
                 "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
             "'-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
             "'123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
DNS1035_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
               "start with an alphabetic character, and end with an alphanumeric character "
               "(e.g. 'my-name',  or 'abc-123', regex used for validation is "
               "'[a-z]([-a-z0-9]*[a-z0-9])?')")


def dns1123_subdomain_errors(name):
    errs = []
    if len(name) > 253:
        errs.append('must be no more than 253 characters')
    if not DNS1123_SUBDOMAIN.match(name):
        errs.append(SUBDOMAIN_MSG)
    return errs


def dns1123_label_errors(name):
    errs = []
    if len(name) > 63:
        errs.append('must be no more than 63 characters')
    if not DNS1123_LABEL.match(name):
        errs.append(LABEL_MSG)
    return errs


def dns1035_label_errors(name):
    errs = []
    if len(name) > 63:
        errs.append('must be no more than 63 characters')
    if not DNS1035_LABEL.match(name):
        errs.append(DNS1035_MSG)
    return errs


def path_segment_errors(name):
    if name in ('.', '..'):
        return ['may not be \'%s\'' % name]
    for bad in ('/', '%'):
        if bad in name:
            return ['may not contain \'%s\'' % bad]
    return []


def prune_meta(meta, path='metadata'):
    """Drop unknown ObjectMeta fields; return their paths."""
    unknown = []
    if not isinstance(meta, dict):
        return unknown
    for k in list(meta):
        if k not in OBJECT_META_FIELDS:
            unknown.append(field.child(path, k))
            del meta[k]
    refs = meta.get('ownerReferences')
    if isinstance(refs, list):
        for i, r in enumerate(refs):
            if isinstance(r, dict):
                for k in list(r):
                    if k not in OWNER_REF_FIELDS:
                        unknown.append('%s.ownerReferences[%d].%s' % (path, i, k))
                        del r[k]
    return unknown


def _type_errs(meta, errs):
    types = {'name': str, 'generateName': str, 'namespace': str, 'labels': dict,
             'annotations': dict, 'finalizers': list, 'ownerReferences': list,
             'resourceVersion': str, 'uid': str}
    for k, t in types.items():
        if k in meta and meta[k] is not None and not isinstance(meta[k], t):
            errs.append(field.type_invalid('metadata.' + k, meta[k], 'must be of type %s'
                                           % {str: 'string', dict: 'object',
                                              list: 'array'}[t]))
    return not errs


def validate_meta(meta, name_errors, namespaced, create):
    """Field errors of ObjectMeta. name_errors(name) -> list of strings."""
    errs = []
    if not _type_errs(meta, errs):
        return errs
    name = meta.get('name') or ''
    gen = meta.get('generateName') or ''
    if create and not name and not gen:
        errs.append(field.required('metadata.name', 'name or generateName is required'))
    if gen:
        # The generated name is checked as a whole later; the prefix must be
        # a valid name once a character is appended (ValidateNameFunc with
        # prefix=true lets a trailing '-' or '.' through).
        for msg in name_errors(gen.rstrip('-.') or 'a'):
            errs.append(field.invalid('metadata.generateName', gen, msg))
    if name:
        for msg in name_errors(name):
            errs.append(field.invalid('metadata.name', name, msg))
    ns = meta.get('namespace') or ''
    if namespaced and not ns:
        errs.append(field.required('metadata.namespace'))
    elif not namespaced and ns:
        errs.append(field.forbidden('metadata.namespace', 'not allowed on this type'))
    for k, v in (meta.get('labels') or {}).items():
        for msg in qualified_name_errors(k):
            errs.append(field.invalid('metadata.labels', k, msg))
        if not isinstance(v, str):
            errs.append(field.type_invalid('metadata.labels', v, 'must be of type string'))
            continue
        for msg in label_value_errors(v):
            errs.append(field.invalid('metadata.labels', v, msg))
    total = 0
    for k, v in (meta.get('annotations') or {}).items():
        for msg in qualified_name_errors(k.lower()):
            errs.append(field.invalid('metadata.annotations', k, msg))
        if not isinstance(v, str):
            errs.append(field.type_invalid('metadata.annotations', v, 'must be of type string'))
            continue
        total += len(k) + len(v)
    if total > 256 * 1024:
        errs.append(field.too_long('metadata.annotations', '', 256 * 1024))
    for i, f in enumerate(meta.get('finalizers') or []):
        if not isinstance(f, str):
            errs.append(field.type_invalid(field.index('metadata.finalizers', i), f,
                                           'must be of type string'))
            continue
        for msg in qualified_name_errors(f):
            errs.append(field.invalid(field.index('metadata.finalizers', i), f, msg))
    controllers = []
    for i, r in enumerate(meta.get('ownerReferences') or []):
        p = field.index('metadata.ownerReferences', i)
        if not isinstance(r, dict):
            errs.append(field.type_invalid(p, r, 'must be of type object'))
            continue
        for k in ('apiVersion', 'kind', 'name', 'uid'):
            if not r.get(k):
                errs.append(field.invalid(field.child(p, k), r.get(k, ''),
                                          '%s must not be empty' % k))
        if r.get('controller') is True:
            controllers.append(r.get('name', ''))
    if len(controllers) > 1:
        errs.append(field.invalid('metadata.ownerReferences', meta.get('ownerReferences'),
                                  'Only one reference can have Controller set to true. Found '
                                  '"true" in references for %s' % ' and '.join(controllers)))
    return errs


def validate_meta_update(meta, old):
    errs = []
    for k in ('name', 'namespace', 'uid'):
        if (meta.get(k) or '') != (old.get(k) or ''):
            errs.append(field.invalid('metadata.' + k, meta.get(k) or '', 'field is immutable'))
    if old.get('deletionTimestamp'):
        added = [f for f in meta.get('finalizers') or [] if f not in (old.get('finalizers') or [])]
        if added:
            errs.append(field.forbidden('metadata.finalizers',
                                        'no new finalizers can be added if the object is being '
                                        'deleted, found new finalizers []string{%s}'
                                        % ', '.join('"%s"' % f for f in added)))
    return errs
