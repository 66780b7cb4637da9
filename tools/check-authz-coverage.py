#!/usr/bin/env python3
"""Check that authorization covers every RPC and every handler.

Fails (exit 1, one line per problem) if:
  (a) an RPC of a sandgate.v1 service in proto/sandgate/v1/*.proto has no
      `option (sandgate.v1.authorization)`;
  (b) a handler registered with HANDLED(service, method, kind, request, fn)
      in server/services.c does not pass its own method's generated rule,
      `&sg_authz_rule_<method in lower snake case>`, as an argument to a
      call of an sg_authz_* function in its body. The body is the
      definition `void fn(struct sg_call *call, ...)` in server/svc_*.c up
      to the closing brace in column 0;
  (c) a handler's body names another method's rule.
Each exception must be listed in ALLOWED below with its reason; an entry
that no longer matches anything is a problem too, so the list stays short.

usage: check-authz-coverage.py SOURCE_ROOT      (or --root SOURCE_ROOT)
       check-authz-coverage.py --self-test      (the checker's own tests)
"""
import argparse
import glob
import importlib.util
import os
import re
import sys
import tempfile

# Exceptions: {(method path, kind): reason}. kind is 'no-option' (a),
# 'no-check' (b) or 'rule:<identifier>' (c). Empty: none are needed.
ALLOWED = {}

PACKAGE = 'sandgate.v1'
PROTO_DIR = os.path.join('proto', 'sandgate', 'v1')
SERVICES_C = os.path.join('server', 'services.c')
SVC_GLOB = os.path.join('server', 'svc_*.c')
RULE_PREFIX = 'sg_authz_rule_'
# Functions of the generated table that are lookups, not checks.
RULE_LOOKUPS = {'sg_authz_rule_for_path', 'sg_authz_rule_at'}

# Inside package sandgate.v1 the option may be named relative to it.
OPTION_RE = re.compile(
    r'\boption\s*\(\s*\.?(?:(?:sandgate\s*\.\s*)?v1\s*\.\s*)?authorization'
    r'\s*\)')


def load_snake():
    """The generator's method-name conversion, so the two always agree."""
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location(
        'gen_authz_table', os.path.join(here, 'gen-authz-table.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.snake


snake = load_snake()


def strip(text, keep_strings):
    """Blank out comments (and string contents unless keep_strings),
    keeping every newline and column so offsets and lines still match."""
    out = []
    i, n = 0, len(text)
    while i < n:
        if text.startswith('/*', i):
            j = text.find('*/', i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r'[^\n]', ' ', text[i:j]))
            i = j
        elif text.startswith('//', i):
            j = text.find('\n', i)
            j = n if j < 0 else j
            out.append(' ' * (j - i))
            i = j
        elif text[i] in '"\'':
            q = text[i]
            j = i + 1
            while j < n and text[j] != q and text[j] != '\n':
                j += 2 if text[j] == '\\' else 1
            j = min(j, n - 1)
            body = text[i + 1:j]
            if not keep_strings:
                body = re.sub(r'[^\n]', ' ', body)
            out.append(q + body + text[j])
            i = j + 1
        else:
            out.append(text[i])
            i += 1
    return ''.join(out)


def line_of(text, offset):
    return text.count('\n', 0, offset) + 1


def matching(text, start, open_c, close_c):
    """Offset of the bracket closing the one at text[start], or -1."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == open_c:
            depth += 1
        elif text[i] == close_c:
            depth -= 1
            if depth == 0:
                return i
    return -1


def split_args(text):
    """Split a call's argument text at top-level commas."""
    args, depth, cur = [], 0, []
    for c in text:
        if c in '([{':
            depth += 1
        elif c in ')]}':
            depth -= 1
        if c == ',' and depth == 0:
            args.append(''.join(cur))
            cur = []
        else:
            cur.append(c)
    args.append(''.join(cur))
    return [a.strip() for a in args]


class Problems:
    def __init__(self):
        self.items = []
        self.used_allow = set()

    def add(self, where, path, kind, message):
        key = (path, kind)
        if path is not None and key in ALLOWED:
            self.used_allow.add(key)
            return
        self.items.append('%s: %s' % (where, message))


# ---- (a) the proto files ----

def parse_protos(root, problems):
    """{method name: [(service, path, file:line)]} of the sandgate.v1
    services; reports RPCs without the option."""
    rpcs = {}
    files = sorted(glob.glob(os.path.join(root, PROTO_DIR, '*.proto')))
    if not files:
        problems.add(PROTO_DIR, None, None, 'no .proto files found')
    for path in files:
        rel = os.path.relpath(path, root)
        with open(path, encoding='utf-8') as f:
            raw = f.read()
        text = strip(raw, keep_strings=False)
        m = re.search(r'^\s*package\s+([\w.]+)\s*;', text, re.M)
        if not m or m.group(1) != PACKAGE:
            continue
        for svc in re.finditer(r'\bservice\s+(\w+)\s*\{', text):
            open_at = svc.end() - 1
            close_at = matching(text, open_at, '{', '}')
            if close_at < 0:
                problems.add('%s:%d' % (rel, line_of(text, svc.start())),
                             None, None, 'service %s: no closing brace'
                             % svc.group(1))
                continue
            parse_service(text, rel, svc.group(1), open_at + 1, close_at,
                          rpcs, problems)
    return rpcs


def parse_service(text, rel, service, start, end, rpcs, problems):
    rpc_re = re.compile(r'\brpc\s+(\w+)\s*\(')
    pos = start
    while True:
        m = rpc_re.search(text, pos, end)
        if not m:
            return
        name = m.group(1)
        where = '%s:%d' % (rel, line_of(text, m.start()))
        path = '/%s.%s/%s' % (PACKAGE, service, name)
        rpcs.setdefault(name, []).append((service, path, where))
        ret = re.compile(r'\)\s*returns\s*\([^)]*\)\s*([;{])').search(
            text, m.end(), end)
        if not ret:
            problems.add(where, path, 'no-option',
                         '%s: cannot parse the rpc declaration' % path)
            return
        body = ''
        pos = ret.end()
        if ret.group(1) == '{':
            close_at = matching(text, ret.end() - 1, '{', '}')
            if close_at < 0 or close_at > end:
                problems.add(where, path, 'no-option',
                             '%s: rpc body has no closing brace' % path)
                return
            body = text[ret.end():close_at]
            pos = close_at + 1
        if not OPTION_RE.search(body):
            problems.add(where, path, 'no-option',
                         '%s has no option (sandgate.v1.authorization)'
                         % path)


# ---- (b), (c) the handlers ----

def parse_handled(root, problems):
    """[(service, method, fn, where)] of the HANDLED(...) entries."""
    path = os.path.join(root, SERVICES_C)
    if not os.path.exists(path):
        problems.add(SERVICES_C, None, None, 'file not found')
        return []
    with open(path, encoding='utf-8') as f:
        text = strip(f.read(), keep_strings=True)
    # Drop preprocessor lines (the HANDLED and METHOD definitions) with
    # their continuations, keeping the line count.
    text = re.sub(r'^[ \t]*#(?:[^\n]*\\\n)*[^\n]*',
                  lambda m: re.sub(r'[^\n]', ' ', m.group(0)), text,
                  flags=re.M)
    entries = []
    for m in re.finditer(r'\bHANDLED\s*\(', text):
        where = '%s:%d' % (SERVICES_C, line_of(text, m.start()))
        close_at = matching(text, m.end() - 1, '(', ')')
        args = split_args(text[m.end():close_at]) if close_at >= 0 else []
        strs = [re.fullmatch(r'"([^"\\]*)"', a) for a in args[:2]]
        if (len(args) != 5 or not all(strs) or
                not re.fullmatch(r'[A-Za-z_]\w*', args[4])):
            problems.add(where, None, None,
                         'cannot parse this HANDLED(service, method, kind, '
                         'request, handler) entry')
            continue
        entries.append((strs[0].group(1), strs[1].group(1), args[4], where))
    # A handler set any other way would escape the check.
    for m in re.finditer(r'\.on_start\s*=', text):
        problems.add('%s:%d' % (SERVICES_C, line_of(text, m.start())), None,
                     None, 'handler registered outside HANDLED(...): the '
                     'coverage check cannot see it')
    return entries


def load_svc_files(root):
    out = []
    for path in sorted(glob.glob(os.path.join(root, SVC_GLOB))):
        with open(path, encoding='utf-8') as f:
            out.append((os.path.relpath(path, root),
                        strip(f.read(), keep_strings=False)))
    return out


def find_body(svc_files, fn):
    """[(file, line, body)] of the definitions of fn as a handler."""
    found = []
    def_re = re.compile(r'^void\s+%s\s*\(' % re.escape(fn), re.M)
    for rel, text in svc_files:
        for m in def_re.finditer(text):
            close_at = matching(text, m.end() - 1, '(', ')')
            if close_at < 0:
                continue
            params = text[m.end():close_at]
            if not re.match(r'\s*struct\s+sg_call\s*\*\s*\w*\s*(,|$)',
                            params):
                continue
            after = re.compile(r'\s*(\S)').match(text, close_at + 1)
            if not after or after.group(1) != '{':
                continue  # a prototype
            body_start = after.end()
            end = re.compile(r'^\}', re.M).search(text, body_start)
            if not end:
                continue
            found.append((rel, line_of(text, m.start()),
                          text[body_start:end.start()]))
    return found


def checked_rules(body):
    """Rule identifiers passed as an argument of an sg_authz_* call."""
    rules = set()
    for m in re.finditer(r'\b(sg_authz_\w+)\s*\(', body):
        if m.group(1).startswith(RULE_PREFIX):
            continue
        close_at = matching(body, m.end() - 1, '(', ')')
        if close_at < 0:
            continue
        for arg in split_args(body[m.end():close_at]):
            a = re.fullmatch(r'\(*&?\(*(%s\w+)\)*' % RULE_PREFIX,
                             re.sub(r'\s+', '', arg))
            if a:
                rules.add(a.group(1))
    return rules


def check_handlers(root, rpcs, problems):
    svc_files = load_svc_files(root)
    rule_of = {RULE_PREFIX + snake(name): name for name in rpcs}
    for service, method, fn, where in parse_handled(root, problems):
        path = '/%s.%s/%s' % (PACKAGE, service, method)
        if not any(s == service for s, _, _ in rpcs.get(method, [])):
            problems.add(where, None, None,
                         '%s is registered but is not an RPC of the '
                         'sandgate.v1 protos' % path)
            continue
        own = RULE_PREFIX + snake(method)
        bodies = find_body(svc_files, fn)
        if not bodies:
            problems.add(where, path, 'no-check',
                         '%s: handler %s is not defined as "void %s(struct '
                         'sg_call *call, ...)" in %s' % (path, fn, fn,
                                                         SVC_GLOB))
            continue
        if len(bodies) > 1:
            problems.add(where, path, 'no-check',
                         '%s: handler %s is defined more than once (%s)'
                         % (path, fn, ', '.join('%s:%d' % (r, l)
                                                for r, l, _ in bodies)))
            continue
        rel, line, body = bodies[0]
        here = '%s:%d' % (rel, line)
        if own not in checked_rules(body):
            problems.add(here, path, 'no-check',
                         '%s: handler %s never passes &%s to an sg_authz_* '
                         'call' % (path, fn, own))
        named = set(re.findall(r'\b%s\w+' % RULE_PREFIX, body))
        for other in sorted(named - {own} - RULE_LOOKUPS):
            if other in rule_of:
                problems.add(here, path, 'rule:' + other,
                             '%s: handler %s uses %s, the rule of %s'
                             % (path, fn, other, rule_of[other]))


def check(root):
    problems = Problems()
    rpcs = parse_protos(root, problems)
    check_handlers(root, rpcs, problems)
    for key in sorted(set(ALLOWED) - problems.used_allow):
        problems.items.append('ALLOWED: entry %r matches nothing; remove it'
                              % (key,))
    return problems.items


# ---- self-test ----

GOOD_PROTO = '''\
syntax = "proto3";
package sandgate.v1;
// rpc Commented(A) returns (B);
service ThingService {
  rpc CreateThing(CreateThingRequest) returns (Thing) {
    option (sandgate.v1.authorization) = {
      permission: "things.create /* not a comment */ rpc X("
      scopes: [ AUTHORIZATION_SCOPE_TENANT ]
    };
  }
  rpc GetThing(GetThingRequest) returns (Thing) {
    option (authorization) = { permission: "things.get" };
  }
  rpc WatchThings(WatchThingsRequest) returns (stream Thing) {
    option (sandgate.v1.authorization).permission = "things.watch";
  }
}
'''

OTHER_PACKAGE_PROTO = '''\
syntax = "proto3";
package other.v1;
service Free { rpc Open(A) returns (B); }
'''

GOOD_SERVICES = '''\
#include "internal.h"
#define HANDLED(svc, name, k, req, fn) \\
    { .path = "/sandgate.v1." svc "/" name, .on_start = (fn) }
static const struct sg_method methods[] = {
    HANDLED("ThingService", "CreateThing", SG_METHOD_UNARY,
            create_thing_request, sg_svc_create_thing),
    /* HANDLED("ThingService", "GetThing", U, r, sg_svc_nothing), */
    HANDLED("ThingService", "GetThing", SG_METHOD_UNARY,
            get_thing_request, sg_svc_get_thing),
    METHOD("ThingService", "WatchThings", SG_METHOD_SERVER_STREAM,
           watch_things_request),
};
'''

GOOD_SVC = '''\
#include "internal.h"

void sg_svc_create_thing(struct sg_call *call, const ProtobufCMessage *msg);

static int helper(struct sg_call *call)
{
    return sg_authz_check_object(call, &sg_authz_rule_get_thing, NULL);
}

void sg_svc_create_thing(struct sg_call *call, const ProtobufCMessage *msg)
{
    struct sg_error err = SG_ERROR_INIT;

    if (validate(msg, &err) < 0 ||
        sg_authz_check_create(call, &sg_authz_rule_create_thing,
                              build(msg, (int)sizeof(err)), &err) < 0)
        goto cleanup;
    if (1) {
    }
 cleanup:
    sg_error_reset(&err);
}

void sg_svc_get_thing(struct sg_call *call,
                      const ProtobufCMessage *msg)
{
    const struct sg_authz_rule *r = sg_authz_rule_for_path("/x");

    (void)r;
    if (sg_authz_check_object(call, & sg_authz_rule_get_thing, obj) < 0)
        return;
}
'''

SELF_TESTS = [
    # (name, {file: replacement text or (old, new)}, expected substrings)
    ('good', {}, []),
    ('rpc without option',
     {'proto/sandgate/v1/thing.proto':
      ('    option (authorization) = { permission: "things.get" };\n',
       '')},
     ['/sandgate.v1.ThingService/GetThing has no option']),
    ('rpc without body',
     {'proto/sandgate/v1/thing.proto':
      ('  rpc WatchThings(WatchThingsRequest) returns (stream Thing) {\n'
       '    option (sandgate.v1.authorization).permission = "things.watch";'
       '\n  }\n', '  rpc WatchThings(W) returns (stream Thing);\n')},
     ['WatchThings has no option']),
    ('option only in a comment',
     {'proto/sandgate/v1/thing.proto':
      ('    option (authorization) = { permission: "things.get" };\n',
       '    // option (sandgate.v1.authorization) = {};\n')},
     ['GetThing has no option']),
    ('option of another extension',
     {'proto/sandgate/v1/thing.proto':
      ('option (authorization) =', 'option (other.authorization) =')},
     ['GetThing has no option']),
    ('handler without a check',
     {'server/svc_thing.c':
      ('    if (sg_authz_check_object(call, & sg_authz_rule_get_thing, obj)'
       ' < 0)\n        return;\n', '')},
     ['GetThing: handler sg_svc_get_thing never passes '
      '&sg_authz_rule_get_thing']),
    ('rule named but not an argument of an sg_authz_ call',
     {'server/svc_thing.c':
      ('sg_authz_check_object(call, & sg_authz_rule_get_thing, obj)',
       'other_check(call, &sg_authz_rule_get_thing, obj)')},
     ['never passes &sg_authz_rule_get_thing']),
    ('rule nested in another argument',
     {'server/svc_thing.c':
      ('sg_authz_check_object(call, & sg_authz_rule_get_thing, obj)',
       'sg_authz_check_object(call, pick(&sg_authz_rule_get_thing), obj)')},
     ['never passes &sg_authz_rule_get_thing']),
    ('check only in a comment',
     {'server/svc_thing.c':
      ('    if (sg_authz_check_object(call, & sg_authz_rule_get_thing, obj)'
       ' < 0)\n        return;\n',
       '    /* sg_authz_check_object(call, &sg_authz_rule_get_thing) */\n')},
     ['never passes &sg_authz_rule_get_thing']),
    ('check only in a helper',
     {'server/svc_thing.c':
      ('        sg_authz_check_create(call, &sg_authz_rule_create_thing,',
       '        helper2(call, &sg_authz_rule_create_thing,')},
     ['CreateThing: handler sg_svc_create_thing never passes']),
    ('check after the body ends',
     {'server/svc_thing.c':
      ('    struct sg_error err = SG_ERROR_INIT;\n\n',
       '    struct sg_error err = SG_ERROR_INIT;\n\n    if (1) {\n}\n')},
     ['CreateThing: handler sg_svc_create_thing never passes']),
    ('another method\'s rule',
     {'server/svc_thing.c':
      ('        goto cleanup;\n    if (1)',
       '        goto cleanup;\n    sg_authz_check_object(call, '
       '&sg_authz_rule_get_thing, NULL);\n    if (1)')},
     ['CreateThing: handler sg_svc_create_thing uses '
      'sg_authz_rule_get_thing, the rule of GetThing']),
    ('handler not defined',
     {'server/services.c': ('sg_svc_get_thing)', 'sg_svc_missing)')},
     ['handler sg_svc_missing is not defined']),
    ('handler with another signature',
     {'server/svc_thing.c':
      ('void sg_svc_get_thing(struct sg_call *call,',
       'void sg_svc_get_thing(struct other *call,')},
     ['handler sg_svc_get_thing is not defined']),
    ('unknown method',
     {'server/services.c': ('"GetThing", SG_METHOD_UNARY',
                            '"GetThings", SG_METHOD_UNARY')},
     ['/sandgate.v1.ThingService/GetThings is registered but is not an '
      'RPC']),
    ('unparseable entry',
     {'server/services.c': ('get_thing_request, sg_svc_get_thing)',
                            'get_thing_request)')},
     ['cannot parse this HANDLED']),
    ('handler set by hand',
     {'server/services.c': ('};\n', '    {.path = "/x", .on_start = f},\n'
                                    '};\n')},
     ['handler registered outside HANDLED']),
    ('no protos', {'proto/sandgate/v1/thing.proto': None,
                   'proto/sandgate/v1/other.proto': None},
     ['no .proto files found', 'CreateThing is registered',
      'GetThing is registered']),
    ('no services.c', {'server/services.c': None},
     ['server/services.c: file not found']),
]


def write_tree(root, changes):
    files = {
        'proto/sandgate/v1/thing.proto': GOOD_PROTO,
        'proto/sandgate/v1/other.proto': OTHER_PACKAGE_PROTO,
        'server/services.c': GOOD_SERVICES,
        'server/svc_thing.c': GOOD_SVC,
    }
    for name, change in changes.items():
        if change is None:
            del files[name]
        elif isinstance(change, tuple):
            if change[0] not in files[name]:
                raise AssertionError('self-test fixture: %r not in %s'
                                     % (change[0], name))
            files[name] = files[name].replace(change[0], change[1], 1)
        else:
            files[name] = change
    for name, text in files.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w', encoding='utf-8') as f:
            f.write(text)


def self_test():
    global ALLOWED
    failures = 0
    for name, changes, expected in SELF_TESTS:
        with tempfile.TemporaryDirectory() as root:
            write_tree(root, changes)
            found = check(root)
        ok = (not found) if not expected else (
            len(found) == len(expected) and
            all(any(e in f for f in found) for e in expected))
        if not ok:
            failures += 1
            print('self-test %r: expected %r, got %r' % (name, expected,
                                                        found))
    # The allow-list: an entry excuses its problem; a stale one is one.
    saved = ALLOWED
    try:
        ALLOWED = {('/sandgate.v1.ThingService/GetThing', 'no-check'): 't'}
        with tempfile.TemporaryDirectory() as root:
            write_tree(root, dict((n, c) for n, c, _ in SELF_TESTS)[
                'handler without a check'])
            if check(root):
                failures += 1
                print('self-test allow-list: entry did not excuse')
            write_tree(root, {})
            found = check(root)
            if len(found) != 1 or 'matches nothing' not in found[0]:
                failures += 1
                print('self-test stale allow-list entry: got %r' % found)
    finally:
        ALLOWED = saved
    print('check-authz-coverage self-test: %d cases, %d failed'
          % (len(SELF_TESTS) + 2, failures))
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser(
        description='Check that every RPC has an authorization rule and '
                    'every handler checks its own.')
    ap.add_argument('root', nargs='?', help='source root')
    ap.add_argument('--root', dest='root_opt', help='source root')
    ap.add_argument('--self-test', action='store_true',
                    help="run the checker's own tests")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    root = args.root_opt or args.root or '.'
    problems = check(root)
    for p in problems:
        print('check-authz-coverage: ' + p)
    if problems:
        print('check-authz-coverage: %d problem(s); exceptions go in '
              'ALLOWED in tools/check-authz-coverage.py' % len(problems))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
