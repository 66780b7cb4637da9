#!/usr/bin/python3
"""Run sandgate's integration tests (unittest) against a built daemon.

usage: run.py --sandgate BIN --source-root DIR --build-dir DIR
              [--protoc PROTOC] [MODULE[.Class[.test]] ...]

With no module, every test_*.py beside this file runs. Exit status: 0 when
every test passed, 1 on any failure or error, 77 (meson's "skipped") when
every test that ran was skipped. grpcio and protobuf are required: without
them the run fails, it does not skip.

Each module keeps its daemons' configs and logs under
<build-dir>/tests/integration/work/<module>.<pid>/ for inspection after a
failure (removed by the next run of the module).
"""
import argparse
import glob
import os
import shutil
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SKIP_EXIT = 77


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--sandgate', default=os.environ.get('SANDGATE_BIN'))
    ap.add_argument('--source-root', default=os.environ.get('SANDGATE_SOURCE_ROOT',
                                                           os.path.dirname(os.path.dirname(HERE))))
    ap.add_argument('--build-dir', default=os.environ.get('SANDGATE_BUILD_DIR'))
    ap.add_argument('--protoc', default=os.environ.get('PROTOC', 'protoc'))
    ap.add_argument('-v', '--verbose', action='store_true')
    ap.add_argument('tests', nargs='*')
    args = ap.parse_args()

    # grpcio polls an idle channel only every 5 s by default (the client
    # channel backup poller), so a GOAWAY from a daemon shutting down would
    # wait that long for an idle test channel to notice. Poll often.
    os.environ.setdefault('GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS', '100')
    try:
        import grpc  # noqa: F401
        import google.protobuf  # noqa: F401
    except ImportError as e:
        print('integration tests need grpcio and protobuf for %s (Debian: python3-grpcio, '
              'python3-protobuf): %s' % (sys.executable, e), file=sys.stderr)
        return 1

    if not args.sandgate:
        print('--sandgate BIN (or SANDGATE_BIN) is required', file=sys.stderr)
        return 1
    if not os.access(args.sandgate, os.X_OK):
        print('sandgate binary not executable: %s' % args.sandgate, file=sys.stderr)
        return 1

    sys.path.insert(0, HERE)
    from sgtest import env
    env.SANDGATE = os.path.abspath(args.sandgate)
    env.SOURCE_ROOT = os.path.abspath(args.source_root)
    env.BUILD_DIR = os.path.abspath(args.build_dir or os.path.dirname(os.path.dirname(
        os.path.dirname(env.SANDGATE))))
    env.PROTOC = args.protoc
    if not env.TIMEOUT_SCALE:
        env.TIMEOUT_SCALE = 3.0 if _is_sanitized(env.SANDGATE) else 1.0

    names = args.tests or sorted(os.path.splitext(os.path.basename(p))[0]
                                 for p in glob.glob(os.path.join(HERE, 'test_*.py')))
    module_label = names[0].split('.')[0] if len(names) == 1 else 'all'
    env.WORK_DIR = _work_dir(os.path.join(env.BUILD_DIR, 'tests', 'integration', 'work'),
                             module_label)

    suite = unittest.defaultTestLoader.loadTestsFromNames(names)
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2)
    print('sandgate: %s\nwork dir: %s\ntimeout scale: %.1f' % (env.SANDGATE, env.WORK_DIR,
                                                               env.TIMEOUT_SCALE), flush=True)
    result = runner.run(suite)
    sys.stdout.flush()
    if result.testsRun == 0:
        print('no tests ran', file=sys.stderr)
        return 1
    if not result.wasSuccessful():
        print('daemon configs and logs: %s' % env.WORK_DIR)
        return 1
    if len(result.skipped) == result.testsRun:
        return SKIP_EXIT
    return 0


def _work_dir(base, label):
    """<base>/<label>.<pid>, after removing the directories of earlier runs
    of the same label whose process is gone (runs may overlap, e.g. with
    meson test --repeat)."""
    os.makedirs(base, exist_ok=True)
    for name in os.listdir(base):
        stem, _, pid = name.rpartition('.')
        if stem != label or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        shutil.rmtree(os.path.join(base, name), ignore_errors=True)
    path = os.path.join(base, '%s.%d' % (label, os.getpid()))
    os.makedirs(path)
    return path


def _is_sanitized(path):
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError:
        return False
    return b'__asan_init' in data or b'__ubsan_handle' in data


if __name__ == '__main__':
    sys.exit(main())
