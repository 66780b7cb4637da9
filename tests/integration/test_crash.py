"""kill -9 the gateway again and again while clients create sandboxes with
retries. After each restart every acknowledged create exists exactly once,
the event sequence has no gap, and no sandbox process runs without a live
record."""
import os
import random
import re
import signal
import threading
import time
import unittest

import grpc

from sgtest import env
from sgtest.daemon import DaemonTestCase
from sgtest.sandboxes import Client, phase_name, sandbox, events, bwrap_available

ROUNDS = 4
CLIENTS = 3


def sandbox_processes(data_dir):
    """{pid: sandbox id} of every process whose command line binds a work
    directory under data_dir (bubblewrap and what it runs)."""
    pat = re.compile(re.escape(os.path.join(data_dir, 'drivers', 'process')) + r'/(sb-[a-z0-9]+)/')
    out = {}
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as f:
                cmd = f.read().replace(b'\0', b' ').decode(errors='replace')
        except OSError:
            continue
        m = pat.search(cmd)
        if m:
            out[int(pid)] = m.group(1)
    return out


def kill_sandboxes(data_dir):
    for pid in sandbox_processes(data_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@unittest.skipUnless(bwrap_available(), 'bubblewrap cannot create namespaces here')
class CrashTest(DaemonTestCase):
    def test_kill_9_while_creating(self):
        rng = random.Random(os.environ.get('SG_CRASH_SEED', '7'))
        d = self.start_daemon(config={'driver': {'name': 'process'},
                                      'store': {'sqlite': {'durability': 'full'}}})
        # Sandboxes outlive the gateway: if the test fails half-way, do not
        # leave them running into the next test.
        self.addCleanup(kill_sandboxes, d.data_dir)
        acked = {}            # request id -> sandbox id
        lock = threading.Lock()
        stop = threading.Event()
        counter = iter(range(1, 1 << 30))
        problems = []

        def client(k):
            ch = self.admin_channel(d)
            c = Client(ch)
            while not stop.is_set():
                with lock:
                    rid = 'crash-%d' % next(counter)
                while not stop.is_set():
                    try:
                        sb = c.create(sandbox('c%d' % k, ['sleep', '1000']), request_id=rid,
                                      timeout=env.scaled(5))
                    except grpc.RpcError as e:
                        if e.code() not in (grpc.StatusCode.UNAVAILABLE,
                                            grpc.StatusCode.DEADLINE_EXCEEDED,
                                            grpc.StatusCode.CANCELLED,
                                            grpc.StatusCode.UNKNOWN):
                            problems.append('%s: %s %s' % (rid, e.code(), e.details()))
                            return
                        time.sleep(0.05)
                        continue
                    with lock:
                        if rid in acked and acked[rid] != sb.id:
                            problems.append('%s acknowledged as %s and %s'
                                            % (rid, acked[rid], sb.id))
                        acked[rid] = sb.id
                    break

        threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
        for t in threads:
            t.start()
        try:
            for r in range(ROUNDS):
                time.sleep(rng.uniform(0.4, 1.2))
                d.proc.send_signal(signal.SIGKILL)
                d.wait()
                d.start()
                self.check_invariants(d, dict(acked))
                self.assertFalse(problems, problems)
                self.assertGreater(len(acked), 0, 'round %d made no progress' % r)
        finally:
            stop.set()
            for t in threads:
                t.join(env.scaled(30))
        self.assertFalse(problems, problems)
        self.assertGreaterEqual(len(acked), ROUNDS)
        final = dict(acked)
        self.check_invariants(d, final)

        # Everything acknowledged gets to a final state, then deleting all
        # of it leaves no process behind.
        c = Client(self.admin_channel(d))
        for sid in set(final.values()):
            c.wait_phase(sid, ('READY', 'FAILED'), timeout=env.scaled(60))
        everything = c.list_all(page_size=1000)
        for sb in everything:
            c.delete(sb.id)
        for sb in everything:
            c.wait_phase(sb.id, 'DELETED', timeout=env.scaled(60))
        deadline = time.monotonic() + env.scaled(20)
        while sandbox_processes(d.data_dir) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(sandbox_processes(d.data_dir), {})
        self.assertEqual(d.stop(), 0)
        d.check_clean_exit()

    def check_invariants(self, d, acked):
        # The clients keep creating meanwhile: every read below is bracketed
        # by the ones before and after it instead of compared as a snapshot.
        c = Client(self.admin_channel(d))
        evs_before = events(d)
        rows = c.list_all(page_size=1000)
        by_rid = {}
        for sb in rows:
            by_rid.setdefault(sb.request_id, []).append(sb.id)
        for rid, sid in acked.items():
            self.assertEqual(by_rid.get(rid), [sid], 'request %s' % rid)
        for rid, sids in by_rid.items():
            self.assertEqual(len(sids), 1, 'request %s stored %d times' % (rid, len(sids)))
        evs = events(d)
        seqs = [e['seq'] for e in evs]
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)), 'event sequence has a gap')
        accepted = [e['sandbox_id'] for e in evs if e['type_name'] == 'ACCEPTED']
        self.assertEqual(len(accepted), len(set(accepted)))
        # Every sandbox accepted before the listing is listed, and every
        # listed one was accepted by the time the listing ended.
        accepted_before = {e['sandbox_id'] for e in evs_before
                           if e['type_name'] == 'ACCEPTED'}
        listed = {sb.id for sb in rows}
        self.assertEqual(accepted_before - listed, set(), 'accepted but not listed')
        self.assertEqual(listed - set(accepted), set(), 'listed without an ACCEPTED event')
        # No process without a live record: give the restarted reconciler
        # time to remove what it found without one. Processes are read
        # before the records, so a sandbox created in between is not a stray.
        deadline = time.monotonic() + env.scaled(20)
        while True:
            procs = sandbox_processes(d.data_dir)
            live = {sb.id for sb in c.list_all(page_size=1000)
                    if phase_name(sb) not in ('DELETED',)}
            strays = {pid: sid for pid, sid in procs.items() if sid not in live}
            if not strays or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(strays, {}, 'processes without a record')


if __name__ == '__main__':
    unittest.main()
