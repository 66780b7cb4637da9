"""Structural openAPIV3Schema handling, as the apiextensions-apiserver does it
for custom resources: pruning of unknown fields, dropping of non-nullable
nulls, defaulting, and validation with kube-openapi's messages.

Order on a write (apiextensions-apiserver): decode and prune (unknown fields
are collected for the Warning header or the strict-decoding error), then
default, then validate. ObjectMeta at the root is not described by the CRD
schema ("metadata: {type: object}"); resources.py handles it.
"""
import datetime
import json
import re
import sys

from . import field
from .util import jcopy

_ROOT_TYPEMETA = ('apiVersion', 'kind', 'metadata')


def json_type(value):
    """The OpenAPI type name of a decoded JSON value."""
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return 'boolean'
    if isinstance(value, int):
        return 'integer'
    if isinstance(value, float):
        return 'number'
    if isinstance(value, str):
        return 'string'
    if isinstance(value, list):
        return 'array'
    return 'object'


# --- pruning -----------------------------------------------------------------

def prune(obj, schema, path='', root=True):
    """Remove fields the schema does not describe; return their paths in the
    order met ("spec.foo", "spec.containers[0].bar")."""
    unknown = []
    _prune(obj, schema, path, root, unknown)
    return unknown


def _prune(value, schema, path, root, unknown):
    if schema is None or schema.get('x-kubernetes-preserve-unknown-fields'):
        return
    if isinstance(value, dict):
        props = schema.get('properties')
        addl = schema.get('additionalProperties')
        if props is None and addl is None:
            if schema.get('type') == 'object' and not root:
                # An object with neither: nothing is known, everything pruned.
                for k in list(value):
                    unknown.append(field.child(path, k))
                    del value[k]
            return
        for k in list(value):
            sub = props.get(k) if props else None
            if sub is None and root and k in _ROOT_TYPEMETA:
                continue
            if sub is None and isinstance(addl, dict):
                sub = addl
            if sub is None and addl is not True:
                unknown.append(field.child(path, k))
                del value[k]
                continue
            if root and k == 'metadata':
                continue
            _prune(value[k], sub, field.child(path, k), False, unknown)
    elif isinstance(value, list):
        items = schema.get('items')
        if isinstance(items, dict):
            for i, v in enumerate(value):
                _prune(v, items, field.index(path, i), False, unknown)


# --- defaulting --------------------------------------------------------------

def apply_defaults(value, schema):
    """Drop nulls of non-nullable fields that have no default, replace the
    nulls and the absences of defaulted fields with the default (structural
    defaulting), recursively."""
    if schema is None:
        return
    if isinstance(value, dict):
        props = schema.get('properties') or {}
        for k, sub in props.items():
            if k in value and value[k] is None and not sub.get('nullable'):
                if 'default' in sub:
                    value[k] = jcopy(sub['default'])
                else:
                    del value[k]
            elif k not in value and 'default' in sub:
                value[k] = jcopy(sub['default'])
        addl = schema.get('additionalProperties')
        for k, v in list(value.items()):
            sub = props.get(k)
            if sub is None and isinstance(addl, dict):
                sub = addl
            if sub is not None and v is not None:
                apply_defaults(v, sub)
    elif isinstance(value, list):
        items = schema.get('items')
        if isinstance(items, dict):
            for v in value:
                apply_defaults(v, items)


# --- validation --------------------------------------------------------------

_DATE_TIME = re.compile(r'^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$')
_pattern_cache = {}


def _compile(pattern):
    rx = _pattern_cache.get(pattern)
    if rx is None:
        rx = re.compile(pattern)
        _pattern_cache[pattern] = rx
    return rx


def valid_date_time(s):
    if not _DATE_TIME.match(s):
        return False
    try:
        datetime.datetime.fromisoformat(s.replace('Z', '+00:00').replace('z', '+00:00')
                                        .replace('t', 'T'))
    except ValueError:
        # fromisoformat in 3.11 handles any fraction length; a bad day or
        # month lands here.
        return False
    return True


_FORMATS = {
    'date-time': valid_date_time,
    'date': lambda s: bool(re.match(r'^\d{4}-\d{2}-\d{2}$', s)),
    'byte': lambda s: bool(re.match(r'^[A-Za-z0-9+/]*={0,2}$', s)) and len(s) % 4 == 0,
}


def validate(value, schema, path='', old=None, root=True):
    """Every schema violation of value as FieldErrors. old is the previous
    object on an update (for transition rules), or None on create."""
    errs = []
    _validate(value, schema, path, errs, old, root)
    return errs


def _type_ok(value, schema):
    t = schema.get('type')
    actual = json_type(value)
    if schema.get('x-kubernetes-int-or-string'):
        return actual in ('integer', 'string') or (actual == 'number' and value == int(value))
    if t is None:
        return True
    if actual == t:
        return True
    if t == 'number' and actual == 'integer':
        return True
    if t == 'integer' and actual == 'number' and value == int(value):
        return True
    return False


def _validate(value, schema, path, errs, old, root):
    if schema is None:
        return
    name = path or '<root>'
    if value is None:
        if schema.get('nullable'):
            return
        t = 'integer,string' if schema.get('x-kubernetes-int-or-string') else schema.get('type')
        if t:
            errs.append(field.type_invalid(path, 'null', '%s in body must be of type %s: "null"'
                                           % (name, t)))
        return
    if not _type_ok(value, schema):
        actual = json_type(value)
        errs.append(field.type_invalid(path, actual, '%s in body must be of type %s: "%s"'
                                       % (name, schema.get('type'), actual)))
        return
    if 'enum' in schema and value not in schema['enum']:
        errs.append(field.not_supported(path, value, schema['enum']))
    if isinstance(value, str) and not isinstance(value, bool):
        _validate_string(value, schema, path, name, errs)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _validate_number(value, schema, path, name, errs)
    for sub_key in ('anyOf', 'oneOf'):
        if sub_key in schema:
            matches = sum(1 for s in schema[sub_key] if not validate(value, s, path, None, False))
            if (sub_key == 'anyOf' and matches == 0) or (sub_key == 'oneOf' and matches != 1):
                errs.append(field.invalid(path, value, '%s in body must be of type %s' % (
                    name, ','.join(s.get('type', '?') for s in schema[sub_key]))))
    for s in schema.get('allOf', []):
        _validate(value, s, path, errs, None, False)
    if isinstance(value, dict):
        _validate_object(value, schema, path, name, errs, old, root)
    elif isinstance(value, list):
        _validate_array(value, schema, path, name, errs, old)
    for rule in schema.get('x-kubernetes-validations', []):
        _validate_rule(rule, value, old, path, errs)


def _validate_string(value, schema, path, name, errs):
    fmt = schema.get('format')
    check = _FORMATS.get(fmt)
    if check and not check(value):
        errs.append(field.type_invalid(path, value, '%s in body must be of type %s: %s'
                                       % (name, fmt, json.dumps(value))))
    if 'maxLength' in schema and len(value) > schema['maxLength']:
        errs.append(field.too_long(path, value, schema['maxLength']))
    if 'minLength' in schema and len(value) < schema['minLength']:
        errs.append(field.invalid(path, value, '%s in body should be at least %d chars long'
                                  % (name, schema['minLength'])))
    if 'pattern' in schema and not _compile(schema['pattern']).search(value):
        errs.append(field.invalid(path, value, "%s in body should match '%s'"
                                  % (name, schema['pattern'])))


def _num(v):
    return int(v) if isinstance(v, float) and v == int(v) else v


def _validate_number(value, schema, path, name, errs):
    if 'minimum' in schema:
        lo = schema['minimum']
        if schema.get('exclusiveMinimum') and value <= lo:
            errs.append(field.invalid(path, _num(value), '%s in body should be greater than %s'
                                      % (name, _num(lo))))
        elif value < lo:
            errs.append(field.invalid(path, _num(value), '%s in body should be greater than or '
                                      'equal to %s' % (name, _num(lo))))
    if 'maximum' in schema:
        hi = schema['maximum']
        if schema.get('exclusiveMaximum') and value >= hi:
            errs.append(field.invalid(path, _num(value), '%s in body should be less than %s'
                                      % (name, _num(hi))))
        elif value > hi:
            errs.append(field.invalid(path, _num(value), '%s in body should be less than or '
                                      'equal to %s' % (name, _num(hi))))
    if 'multipleOf' in schema and value % schema['multipleOf']:
        errs.append(field.invalid(path, _num(value), '%s in body should be a multiple of %s'
                                  % (name, schema['multipleOf'])))


def _validate_object(value, schema, path, name, errs, old, root):
    props = schema.get('properties') or {}
    for req in schema.get('required', []):
        if req not in value:
            errs.append(field.required(field.child(path, req)))
    if 'maxProperties' in schema and len(value) > schema['maxProperties']:
        errs.append(field.too_many(path, len(value), schema['maxProperties']))
    if 'minProperties' in schema and len(value) < schema['minProperties']:
        errs.append(field.invalid(path, len(value), '%s in body should have at least %d '
                                  'properties' % (name, schema['minProperties'])))
    addl = schema.get('additionalProperties')
    for k, v in value.items():
        if root and k in _ROOT_TYPEMETA:
            continue
        sub = props.get(k)
        if sub is None and isinstance(addl, dict):
            sub = addl
        if sub is None:
            continue
        old_v = old.get(k) if isinstance(old, dict) else None
        _validate(v, sub, field.child(path, k), errs, old_v, False)


def _validate_array(value, schema, path, name, errs, old):
    if 'maxItems' in schema and len(value) > schema['maxItems']:
        errs.append(field.too_many(path, len(value), schema['maxItems']))
    if 'minItems' in schema and len(value) < schema['minItems']:
        errs.append(field.invalid(path, value, '%s in body should have at least %d items'
                                  % (name, schema['minItems'])))
    items = schema.get('items')
    if isinstance(items, dict):
        for i, v in enumerate(value):
            # Transition rules inside lists would need correlation by key;
            # no rule in these CRDs sits below a list.
            _validate(v, items, field.index(path, i), errs, None, False)
    list_type = schema.get('x-kubernetes-list-type')
    if list_type == 'map':
        keys = schema.get('x-kubernetes-list-map-keys') or []
        seen = set()
        for i, v in enumerate(value):
            if not isinstance(v, dict):
                continue
            kv = {k: v.get(k) for k in keys if k in v}
            ident = json.dumps(kv, sort_keys=True)
            if ident in seen:
                errs.append(field.duplicate(field.index(path, i), kv))
            seen.add(ident)
    elif list_type == 'set':
        seen = set()
        for i, v in enumerate(value):
            ident = json.dumps(v, sort_keys=True)
            if ident in seen:
                errs.append(field.duplicate(field.index(path, i), v))
            seen.add(ident)
    elif schema.get('uniqueItems'):
        seen = set()
        for i, v in enumerate(value):
            ident = json.dumps(v, sort_keys=True)
            if ident in seen:
                errs.append(field.duplicate(field.index(path, i), v))
            seen.add(ident)


# --- CEL (x-kubernetes-validations) ------------------------------------------
#
# A CEL interpreter is out of scope. The CRDs carry one rule; it is
# implemented here by its exact text, so a CRD update that changes the rule
# shows up as "not evaluated" on stderr instead of silently passing.

def _vct_immutable(self, old_self):
    has_new = isinstance(self, dict) and 'volumeClaimTemplates' in self
    has_old = isinstance(old_self, dict) and 'volumeClaimTemplates' in old_self
    return has_new == has_old and (not has_new or
                                   self['volumeClaimTemplates'] == old_self['volumeClaimTemplates'])


KNOWN_RULES = {
    'has(self.volumeClaimTemplates) == has(oldSelf.volumeClaimTemplates) && '
    '(!has(self.volumeClaimTemplates) || self.volumeClaimTemplates == '
    'oldSelf.volumeClaimTemplates)': (True, _vct_immutable),
}
_warned = set()


def _validate_rule(rule, value, old, path, errs):
    known = KNOWN_RULES.get(rule.get('rule'))
    if known is None:
        if rule.get('rule') not in _warned:
            _warned.add(rule.get('rule'))
            print('standin: CEL rule not evaluated: %s' % rule.get('rule'), file=sys.stderr)
        return
    transition, fn = known
    if transition and old is None:
        return  # transition rules run on update only
    if not fn(value, old):
        # Kubernetes >= 1.34 omits the object value from the message.
        errs.append(field.FieldError(field.INVALID, path, None,
                                     rule.get('message') or 'failed rule: %s' % rule['rule'],
                                     omit_value=True))
