"""Field errors as k8s.io/apimachinery/pkg/util/validation/field renders
them: "<field>: <Type>[: <value>][: <detail>]" and a cause
{reason, message, field} for the Status details."""
import json

REQUIRED = ('Required value', 'FieldValueRequired')
INVALID = ('Invalid value', 'FieldValueInvalid')
NOT_SUPPORTED = ('Unsupported value', 'FieldValueNotSupported')
FORBIDDEN = ('Forbidden', 'FieldValueForbidden')
DUPLICATE = ('Duplicate value', 'FieldValueDuplicate')
TOO_LONG = ('Too long', 'FieldValueTooLong')
TOO_MANY = ('Too many', 'FieldValueTooMany')
TYPE_INVALID = ('Invalid value', 'FieldValueTypeInvalid')

# Types whose rendering leaves the value out (field.Error.ErrorBody).
_OMIT_VALUE = {REQUIRED, FORBIDDEN, TOO_LONG}


def format_value(value):
    """Strings quoted, numbers and bools bare, anything else JSON."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if value is None:
        return 'null'
    return json.dumps(value, separators=(',', ':'), sort_keys=True)


class FieldError:
    def __init__(self, kind, path, value=None, detail='', omit_value=False):
        self.kind = kind
        self.path = path
        self.value = value
        self.detail = detail
        self.omit_value = omit_value or kind in _OMIT_VALUE

    def body(self):
        s = self.kind[0]
        if not self.omit_value:
            s += ': ' + format_value(self.value)
        if self.detail:
            s += ': ' + self.detail
        return s

    def error(self):
        return '%s: %s' % (self.path, self.body()) if self.path else self.body()

    def cause(self):
        return {'reason': self.kind[1], 'message': self.body(), 'field': self.path}

    def __repr__(self):
        return 'FieldError(%s)' % self.error()


def required(path, detail=''):
    return FieldError(REQUIRED, path, None, detail)


def invalid(path, value, detail):
    return FieldError(INVALID, path, value, detail)


def type_invalid(path, value, detail):
    return FieldError(TYPE_INVALID, path, value, detail)


def not_supported(path, value, supported):
    detail = ''
    if supported:
        detail = 'supported values: ' + ', '.join(json.dumps(s) for s in supported)
    return FieldError(NOT_SUPPORTED, path, value, detail)


def forbidden(path, detail):
    return FieldError(FORBIDDEN, path, None, detail)


def duplicate(path, value):
    return FieldError(DUPLICATE, path, value)


def too_long(path, value, limit):
    return FieldError(TOO_LONG, path, value, 'may not be more than %d bytes' % limit)


def too_many(path, actual, limit):
    return FieldError(TOO_MANY, path, actual, 'must have at most %d items' % limit)


def child(path, name):
    return name if not path else path + '.' + name


def index(path, i):
    return '%s[%d]' % (path, i)


def key(path, k):
    return '%s[%s]' % (path, k)
