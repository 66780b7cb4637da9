"""Run-time settings, filled in by run.py from its command line."""
import os

SANDGATE = os.environ.get('SANDGATE_BIN', '')
SOURCE_ROOT = os.environ.get('SANDGATE_SOURCE_ROOT', '')
BUILD_DIR = os.environ.get('SANDGATE_BUILD_DIR', '')
PROTOC = os.environ.get('PROTOC', 'protoc')
OPENSSL = os.environ.get('OPENSSL', 'openssl')
# Where the current module keeps its daemons' configs and logs.
WORK_DIR = ''
# Multiplies every wait; raised automatically for sanitizer builds.
TIMEOUT_SCALE = float(os.environ.get('SANDGATE_IT_TIMEOUT_SCALE', '0') or 0)


def scaled(seconds):
    return seconds * (TIMEOUT_SCALE or 1.0)
