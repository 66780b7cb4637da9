"""Per-Sandbox and per-SandboxClaim timings for benchmarks: the wall-clock
time (Unix seconds, float) at which the store committed each step of a
Sandbox's or a claim's start.
Kubernetes timestamps have whole seconds, too coarse to tell the
stand-in's own latency from its client's. A store listener, so the time is
the moment watchers are offered the change; not part of the API.

    created      the Sandbox ADDED (a create went through)
    pod_created  its pod ADDED (the controller's first action)
    pod_ready    the pod's Ready condition True (the kubelet)
    ready        the Sandbox's Ready condition True (the controller)
    ready_sent   the first watch event with that condition written to a
                 watch connection (the stand-in's part of the delivery)

and for a SandboxClaim (entries carry "kind"):

    created      the claim ADDED
    bound        its status first names a Sandbox
    ready        its Ready condition True (forwarded from that Sandbox)
    ready_sent   as above
"""
import threading
import time

LIMIT = 100000


def _ready(obj):
    for c in (obj.get('status') or {}).get('conditions') or []:
        if c.get('type') == 'Ready':
            return c.get('status') == 'True'
    return False


class Timeline:
    def __init__(self, store):
        self.lock = threading.Lock()
        self.entries = {}
        store.listeners.append(self._on_change)

    def _mark(self, ns, name, what, t, kind='Sandbox'):
        with self.lock:
            e = self.entries.get((kind, ns, name))
            if e is None:
                if len(self.entries) >= LIMIT:
                    return
                e = self.entries[(kind, ns, name)] = {'kind': kind, 'namespace': ns,
                                                      'name': name}
            e.setdefault(what, t)

    def _on_change(self, ch):
        """Store listener, under the store lock: record only."""
        kind = ch.res.kind
        if ch.type == 'DELETED' or kind not in ('Sandbox', 'Pod', 'SandboxClaim'):
            return
        t = time.time()
        if kind in ('Sandbox', 'SandboxClaim'):
            if ch.type == 'ADDED':
                self._mark(ch.ns, ch.name, 'created', t, kind)
            if kind == 'SandboxClaim' and \
                    ((ch.obj.get('status') or {}).get('sandbox') or {}).get('name'):
                self._mark(ch.ns, ch.name, 'bound', t, kind)
            if _ready(ch.obj):
                self._mark(ch.ns, ch.name, 'ready', t, kind)
            return
        owner = None
        for o in ch.obj['metadata'].get('ownerReferences') or []:
            if o.get('kind') == 'Sandbox' and o.get('controller'):
                owner = o.get('name')
        if owner is None:
            return
        if ch.type == 'ADDED':
            self._mark(ch.ns, owner, 'pod_created', t)
        if _ready(ch.obj):
            self._mark(ch.ns, owner, 'pod_ready', t)

    def watch_sent(self, type_, obj):
        """A watch connection wrote this event (its handler thread)."""
        kind = obj.get('kind')
        if type_ in ('ADDED', 'MODIFIED') and kind in ('Sandbox', 'SandboxClaim') and \
                _ready(obj):
            md = obj['metadata']
            self._mark(md.get('namespace', ''), md['name'], 'ready_sent', time.time(), kind)

    def list(self, namespace=None):
        with self.lock:
            return [dict(e) for e in self.entries.values()
                    if namespace is None or e['namespace'] == namespace]

    def clear(self):
        with self.lock:
            self.entries = {}
