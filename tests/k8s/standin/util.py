"""Small shared helpers: timestamps and the NameHash of agent-sandbox."""
import datetime
import pickle
import time


def rfc3339(t):
    """RFC 3339 UTC with seconds, as metav1.Time serialises."""
    return datetime.datetime.fromtimestamp(int(t), datetime.timezone.utc).strftime(
        '%Y-%m-%dT%H:%M:%SZ')


def now_rfc3339():
    return rfc3339(time.time())


def parse_rfc3339(s):
    return datetime.datetime.fromisoformat(s.replace('Z', '+00:00')).timestamp()


def name_hash(s):
    """FNV-1a 32-bit over the UTF-8 bytes, 8 lowercase hex digits
    (controllers/sandbox_controller.go NameHash)."""
    h = 2166136261
    for b in s.encode():
        h ^= b
        h = (h * 16777619) & 0xFFFFFFFF
    return '%08x' % h


def jcopy(obj):
    """A deep copy of a JSON value (dicts, lists, scalars). The store copies
    every object it hands out or keeps, several times per request, and
    pickle's C round trip costs a quarter of copy.deepcopy's Python walk."""
    return pickle.loads(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL))
