#!/usr/bin/env python3
"""Check the rules of docs/CODING_STYLE.md that a formatter cannot.

- banned functions (unbounded or not thread-safe), outside comments/strings;
- every .c file of ours includes "internal.h" first;
- no typedef'd structs;
- a cleanup/error label is indented by one space.

usage: check-style.py SOURCE_ROOT     (exit 1 and one line per finding)
"""
import os
import re
import sys

BANNED = ['strcpy', 'strncpy', 'strcat', 'strncat', 'sprintf', 'vsprintf',
          'gets', 'strtok', 'strerror', 'gmtime', 'localtime', 'atoi',
          'atol', 'sscanf', 'ctime', 'asctime']
BANNED_RE = re.compile(r'(?<![\w.>])(%s)\s*\(' % '|'.join(BANNED))
TYPEDEF_STRUCT_RE = re.compile(r'^\s*typedef\s+struct\b', re.M)
LABEL_RE = re.compile(r'^(\s*)(cleanup|error|nomem):\s*$')
INCLUDE_RE = re.compile(r'^\s*#\s*include\s+["<]([^">]+)[">]')
DIRS = ['common', 'server', 'authz', 'drivers', 'credentials', 'store',
        'sandbox',
        'tools', 'bench', 'tests']


def strip_comments_and_strings(text):
    """Blank out comments and string/char literals, keeping line breaks."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
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
        elif c in '"\'':
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == '\\' else 1
            out.append(c + ' ' * (min(j, n) - i - 1) + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return ''.join(out)


def check_file(path, rel):
    findings = []
    with open(path, encoding='utf-8', errors='replace') as f:
        text = f.read()
    code = strip_comments_and_strings(text)
    for lineno, line in enumerate(code.splitlines(), 1):
        m = BANNED_RE.search(line)
        if m:
            findings.append('%s:%d: banned function %s()' %
                            (rel, lineno, m.group(1)))
        m = LABEL_RE.match(line)
        if m and m.group(1) != ' ':
            findings.append('%s:%d: label "%s:" must be indented by one '
                            'space' % (rel, lineno, m.group(2)))
    if TYPEDEF_STRUCT_RE.search(code):
        findings.append('%s: typedef struct (use plain struct names)' % rel)
    if rel.endswith('.c'):
        first = None
        for line in text.splitlines():
            m = INCLUDE_RE.match(line)
            if m:
                first = m.group(1)
                break
        if first is not None and first != 'internal.h':
            findings.append('%s: first include is "%s", not "internal.h"' %
                            (rel, first))
    return findings


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else '.'
    findings = []
    for d in DIRS:
        for dirpath, _, files in os.walk(os.path.join(root, d)):
            for name in sorted(files):
                if name.endswith(('.c', '.h')):
                    path = os.path.join(dirpath, name)
                    findings += check_file(path, os.path.relpath(path, root))
    for f in findings:
        print(f)
    return 1 if findings else 0


if __name__ == '__main__':
    sys.exit(main())
