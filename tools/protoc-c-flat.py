#!/usr/bin/env python3
"""Run protoc-c and flatten its output for meson.

protoc-c writes <out>/<dir>/<name>.pb-c.{c,h} mirroring the proto path, but a
meson custom_target cannot declare outputs in subdirectories. This wrapper
generates into a scratch directory, then writes each file to
<out>/<dir_with_underscores>_<name>.pb-c.{c,h} and rewrites the generated
#include lines to match, so protos may import each other by path.

usage: protoc-c-flat.py --protoc PROTOC --out DIR -I ROOT... -- REL.proto...
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

INCLUDE_RE = re.compile(r'#include "([^"]+)\.pb-c\.h"')


def flat(rel):
    """'grpc/health/v1/health' -> 'grpc_health_v1_health'"""
    return rel.replace('/', '_').replace('-', '_')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--protoc', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('-I', dest='includes', action='append', default=[])
    ap.add_argument('protos', nargs='+')
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [args.protoc, '--c_out=' + tmp]
        cmd += ['-I' + i for i in args.includes]
        cmd += args.protos
        subprocess.run(cmd, check=True)
        for rel in args.protos:
            stem = rel[:-len('.proto')]
            for ext in ('.pb-c.c', '.pb-c.h'):
                with open(os.path.join(tmp, stem + ext)) as f:
                    text = f.read()
                text = INCLUDE_RE.sub(
                    lambda m: '#include "%s.pb-c.h"' % flat(m.group(1)), text)
                dst = os.path.join(args.out, flat(stem) + ext)
                with open(dst + '.tmp', 'w') as f:
                    f.write(text)
                os.replace(dst + '.tmp', dst)
    return 0


if __name__ == '__main__':
    sys.exit(main())
