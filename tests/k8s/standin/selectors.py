"""Label and field selectors (k8s.io/apimachinery/pkg/labels and
pkg/fields): parsing with the same grammar, matching against objects.

Parse errors raise ValueError with apimachinery's wording; the caller
answers them as 400 BadRequest.
"""
import re

_NAME = r'[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?'
_NAME_RE = re.compile('^' + _NAME + '$')
_DNS1123_SUBDOMAIN_RE = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')
_VALUE_RE = re.compile(r'^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$')

LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric "
                   "characters, '-', '_' or '.', and must start and end with an alphanumeric "
                   "character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for "
                   "validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
QUALIFIED_NAME_MSG = ("name part must consist of alphanumeric characters, '-', '_' or '.', and "
                      "must start and end with an alphanumeric character (e.g. 'MyName',  or "
                      "'my.name',  or '123-abc', regex used for validation is "
                      "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")


def qualified_name_errors(key):
    """validation.IsQualifiedName: [prefix/]name, prefix a DNS subdomain."""
    errs = []
    prefix, sep, name = key.rpartition('/')
    if sep and not prefix:
        errs.append('prefix part must be non-empty')
    if sep and prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN_RE.match(prefix)):
        errs.append('prefix part a lowercase RFC 1123 subdomain must consist of lower case '
                    "alphanumeric characters, '-' or '.', and must start and end with an "
                    'alphanumeric character')
    if not name:
        errs.append('name part must be non-empty')
    elif len(name) > 63:
        errs.append('name part must be no more than 63 characters')
    elif not _NAME_RE.match(name):
        errs.append(QUALIFIED_NAME_MSG)
    return errs


def label_value_errors(value):
    errs = []
    if len(value) > 63:
        errs.append('must be no more than 63 characters')
    if not _VALUE_RE.match(value):
        errs.append(LABEL_VALUE_MSG)
    return errs


# --- label selectors ---------------------------------------------------------

class Requirement:
    def __init__(self, key, op, values):
        self.key = key
        self.op = op          # '=', '!=', 'in', 'notin', 'exists', '!', 'gt', 'lt'
        self.values = values

    def matches(self, labels):
        has = self.key in labels
        v = labels.get(self.key)
        if self.op in ('=', 'in'):
            return has and v in self.values
        if self.op in ('!=', 'notin'):
            return not has or v not in self.values
        if self.op == 'exists':
            return has
        if self.op == '!':
            return not has
        if self.op in ('gt', 'lt'):
            try:
                lv, rv = int(v), int(self.values[0])
            except (TypeError, ValueError):
                return False
            return lv > rv if self.op == 'gt' else lv < rv
        return False


class LabelSelector:
    def __init__(self, requirements):
        self.requirements = requirements

    def empty(self):
        return not self.requirements

    def matches(self, labels):
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)


_TOKEN_RE = re.compile(r'\s*(==|!=|=|!|\(|\)|,|>|<|[^\s=!(),<>]+)')


def _tokenize(s):
    pos, out = 0, []
    s = s.rstrip()
    while pos < len(s):
        m = _TOKEN_RE.match(s, pos)
        if not m:
            raise ValueError('unable to parse requirement: found unexpected character at %d'
                             % pos)
        out.append(m.group(1))
        pos = m.end()
    return out


def parse_label_selector(s):
    tokens = _tokenize(s or '')
    reqs = []
    i = 0

    def need(cond, what):
        if not cond:
            raise ValueError('unable to parse requirement: %s' % what)

    def check_key(k):
        errs = qualified_name_errors(k)
        if errs:
            raise ValueError('unable to parse requirement: key: Invalid value: "%s": %s'
                             % (k, '; '.join(errs)))

    def check_value(v):
        errs = label_value_errors(v)
        if errs:
            raise ValueError('unable to parse requirement: values[0]: Invalid value: "%s": %s'
                             % (v, '; '.join(errs)))

    while i < len(tokens):
        t = tokens[i]
        if t == '!':
            need(i + 1 < len(tokens), 'found end of string, expected: identifier after \'!\'')
            key = tokens[i + 1]
            check_key(key)
            reqs.append(Requirement(key, '!', []))
            i += 2
        else:
            key = t
            need(key not in ('=', '==', '!=', '(', ')', ',', 'in', 'notin'),
                 "found '%s', expected: !, identifier, or 'end of string'" % key)
            check_key(key)
            i += 1
            if i >= len(tokens) or tokens[i] == ',':
                reqs.append(Requirement(key, 'exists', []))
            else:
                op = tokens[i]
                i += 1
                if op in ('=', '==', '!=', '>', '<'):
                    value = ''
                    if i < len(tokens) and tokens[i] not in (',', ')', '('):
                        value = tokens[i]
                        i += 1
                    if op in ('>', '<'):
                        need(re.match(r'^-?\d+$', value), 'for \'gt\', \'lt\' operators, the '
                             'value must be an integer')
                    else:
                        check_value(value)
                    name = {'==': '=', '>': 'gt', '<': 'lt'}.get(op, op)
                    reqs.append(Requirement(key, name, [value]))
                elif op in ('in', 'notin'):
                    need(i < len(tokens) and tokens[i] == '(', "found '%s', expected: '('"
                         % (tokens[i] if i < len(tokens) else 'end of string'))
                    i += 1
                    values = []
                    while True:
                        need(i < len(tokens), "found 'end of string', expected: ')'")
                        if tokens[i] == ')':
                            i += 1
                            break
                        if tokens[i] == ',':
                            # An empty element, as in "in (a,,b)" or "in (,a)".
                            values.append('')
                            i += 1
                            continue
                        check_value(tokens[i])
                        values.append(tokens[i])
                        i += 1
                        if i < len(tokens) and tokens[i] == ',':
                            i += 1
                    need(values, "for 'in', 'notin' operators, values set can't be empty")
                    reqs.append(Requirement(key, op, values))
                else:
                    raise ValueError("unable to parse requirement: found '%s', expected: in, "
                                     "notin, =, ==, !=, gt, lt" % op)
        if i < len(tokens):
            need(tokens[i] == ',', "found '%s', expected: ',' or 'end of string'" % tokens[i])
            i += 1
            need(i < len(tokens), "found 'end of string', expected: identifier")
    return LabelSelector(reqs)


# --- field selectors ---------------------------------------------------------

class FieldSelector:
    def __init__(self, terms):
        self.terms = terms  # [(field, op, value)], op '=' or '!='

    def empty(self):
        return not self.terms

    def matches(self, fields):
        for f, op, v in self.terms:
            actual = fields.get(f, '')
            if (op == '=') != (actual == v):
                return False
        return True

    def fields(self):
        return [t[0] for t in self.terms]

    def exact(self, name):
        """The value required by an '=' term on name, or None."""
        for f, op, v in self.terms:
            if f == name and op == '=':
                return v
        return None


def _split_unescaped(s, sep):
    parts, cur, i = [], [], 0
    while i < len(s):
        c = s[i]
        if c == '\\' and i + 1 < len(s):
            cur.append(s[i:i + 2])
            i += 2
            continue
        if c == sep:
            parts.append(''.join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append(''.join(cur))
    return parts


def _unescape(s):
    out, i = [], 0
    while i < len(s):
        if s[i] == '\\':
            if i + 1 >= len(s) or s[i + 1] not in '\\,=!':
                raise ValueError('invalid field selector: invalid escape sequence')
            out.append(s[i + 1])
            i += 2
        else:
            out.append(s[i])
            i += 1
    return ''.join(out)


def parse_field_selector(s):
    terms = []
    if not s:
        return FieldSelector(terms)
    for part in _split_unescaped(s, ','):
        if not part:
            continue
        for op, name in (('!=', '!='), ('==', '='), ('=', '=')):
            idx = _find_unescaped(part, op)
            if idx >= 0:
                terms.append((_unescape(part[:idx]), name, _unescape(part[idx + len(op):])))
                break
        else:
            raise ValueError("invalid selector: '%s'; can't understand '%s'" % (s, part))
    return FieldSelector(terms)


def _find_unescaped(s, op):
    i = 0
    while i < len(s):
        if s[i] == '\\':
            i += 2
            continue
        if s.startswith(op, i):
            return i
        i += 1
    return -1
