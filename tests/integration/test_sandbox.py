"""SandboxService end to end through the real binary: the process driver
runs real isolated processes, the store is the real SQLite file, and the
client is grpcio with messages built from the descriptor set."""
import os
import threading
import time
import unittest
import uuid

import grpc

from sgtest import env
from sgtest.daemon import DaemonTestCase
from sgtest.sandboxes import (Client, phase_name, sandbox, events, process_dir,
                              wait_for, bwrap_available)

HAVE_BWRAP = bwrap_available()


def name():
    return 'sb-' + uuid.uuid4().hex[:12]


@unittest.skipUnless(HAVE_BWRAP, 'bubblewrap cannot create namespaces here')
class ProcessLifecycleTest(DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.daemon = cls.start_class_daemon(
            config={'driver': {'name': 'process',
                               'settings': {'grace_period_ms': 2000}}})

    def setUp(self):
        self.c = Client(self.admin_channel(self.daemon))

    def test_create_ready_delete_with_exact_events(self):
        sb = self.c.create(sandbox(name(), tenant='team-a', project='review',
                                   labels={'app': 'x'}))
        self.assertEqual(phase_name(sb), 'ACCEPTED')
        self.assertTrue(sb.id.startswith('sb-'), sb.id)
        self.assertEqual(sb.owner, self.daemon.admin_subject)
        self.assertEqual(sb.status.driver, 'process')
        self.assertGreater(sb.resource_version, 0)
        ready = self.c.wait_phase(sb.id, 'READY')
        self.assertGreater(ready.resource_version, sb.resource_version)
        self.assertTrue(ready.status.backend_object, ready)
        self.assertTrue(ready.HasField('status') and ready.status.HasField('ready_time'))
        cond = {c.type: c for c in ready.status.conditions}
        self.assertEqual(cond['Ready'].status, 1)  # TRUE

        deleting = self.c.delete(sb.id)
        self.assertIn(phase_name(deleting), ('DELETING', 'DELETED'))
        gone = self.c.wait_phase(sb.id, 'DELETED')
        self.assertTrue(gone.HasField('delete_time'))
        # The driver removed its files with the process.
        self.assertFalse(os.path.exists(process_dir(self.daemon, sb.id)))

        evs = events(self.daemon, sb.id)
        self.assertEqual([e['type_name'] for e in evs],
                         ['ACCEPTED', 'ALLOCATION_STARTED', 'RESOURCE_CREATED', 'READY',
                          'DELETE_REQUESTED', 'DELETED'])
        seqs = [e['seq'] for e in evs]
        self.assertEqual(seqs, sorted(seqs))
        rvs = [e['resource_version'] for e in evs]
        # Events written by one change share its resource version; the
        # versions never go back.
        self.assertEqual(rvs, sorted(rvs))
        self.assertEqual(rvs[0], sb.resource_version)
        self.assertIn(ready.resource_version, rvs)
        self.assertEqual(rvs[-1], gone.resource_version)
        for e in evs:
            self.assertEqual((e['tenant'], e['project'], e['owner']),
                             ('team-a', 'review', self.daemon.admin_subject))
        self.assertEqual([e['phase'] for e in evs], [1, 2, 2, 3, 5, 6])

    def test_process_is_isolated(self):
        script = ('ls /proc | grep -c "^[0-9]" > /work/pids; '
                  'touch /etc/sandgate-escape 2>/dev/null && echo wrote-etc > /work/etc; '
                  'touch /sandgate-escape 2>/dev/null && echo wrote-root > /work/root; '
                  'cat /proc/net/dev | grep -c ":" > /work/ifaces; '
                  'hostname > /work/hostname; echo done > /work/done; exec sleep 1000')
        n = name()
        sb = self.c.create(sandbox(n, ['sh', '-c', script]))
        self.c.wait_phase(sb.id, 'READY')
        work = os.path.join(process_dir(self.daemon, sb.id), 'work')
        wait_for(lambda: os.path.exists(os.path.join(work, 'done')), what='script to finish')
        with open(os.path.join(work, 'pids')) as f:
            npids = int(f.read().strip())
        # Its own PID namespace: the shell, ls, grep and little else; the
        # host (this test, the gateway) has far more.
        self.assertLessEqual(npids, 6)
        self.assertGreater(len([d for d in os.listdir('/proc') if d.isdigit()]), npids)
        self.assertFalse(os.path.exists('/etc/sandgate-escape'))
        self.assertFalse(os.path.exists('/sandgate-escape'))
        self.assertFalse(os.path.exists(os.path.join(work, 'etc')))
        self.assertFalse(os.path.exists(os.path.join(work, 'root')))
        with open(os.path.join(work, 'ifaces')) as f:
            self.assertEqual(int(f.read().strip()), 1, 'only lo without network')
        with open(os.path.join(work, 'hostname')) as f:
            self.assertEqual(f.read().strip(), n)
        self.c.delete(sb.id)
        self.c.wait_phase(sb.id, 'DELETED')

    def test_exit_marks_failed_with_status(self):
        sb = self.c.create(sandbox(name(), ['sh', '-c', 'echo bye; exit 3']))
        failed = self.c.wait_phase(sb.id, 'FAILED')
        self.assertIn('3', failed.status.message)
        types = [e['type_name'] for e in events(self.daemon, sb.id)]
        self.assertEqual(types[-1], 'FAILED')
        self.assertNotIn('DELETED', types)
        with open(os.path.join(process_dir(self.daemon, sb.id), 'stdout.log')) as f:
            self.assertIn('bye', f.read())
        self.c.delete(sb.id)
        self.c.wait_phase(sb.id, 'DELETED')

    def test_ttl_expiry_deletes_with_expired_event(self):
        sb = self.c.create(sandbox(name(), ttlSeconds=1))
        self.assertTrue(sb.status.HasField('expire_time'))
        gone = self.c.wait_phase(sb.id, 'DELETED', timeout=env.scaled(30))
        types = [e['type_name'] for e in events(self.daemon, sb.id)]
        self.assertIn('EXPIRED', types)
        self.assertEqual(types[-2:], ['EXPIRED', 'DELETED'])
        self.assertNotIn('DELETE_REQUESTED', types)
        self.assertEqual(phase_name(gone), 'DELETED')

    def test_driver_config_reaches_the_driver_and_is_checked(self):
        bad = self.c.create
        with self.assertRaises(grpc.RpcError) as cm:
            bad(sandbox(name(), driverConfig={'process': {'nosuchkey': 1}}))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn('nosuchkey', cm.exception.details())
        # Another driver's block is ignored (passthrough by driver name).
        sb = self.c.create(sandbox(name(), driverConfig={'kubernetes': {'anything': [1]}}))
        self.c.wait_phase(sb.id, 'READY')
        self.c.delete(sb.id)
        # A non-object block is the gateway's to refuse.
        with self.assertRaises(grpc.RpcError) as cm:
            bad(sandbox(name(), driverConfig={'process': 'fast'}))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        st = self.protos.status_details(cm.exception)
        br = self.protos.bad_request(st)
        self.assertEqual([v.field for v in br.field_violations],
                         ['sandbox.spec.driver_config.process'])


class RecordsTest(DaemonTestCase):
    """Store semantics, with the no-op driver so they run fast anywhere."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.daemon = cls.start_class_daemon(config={'driver': {'name': 'noop'}})

    def setUp(self):
        self.c = Client(self.admin_channel(self.daemon))

    def test_idempotent_on_request_id(self):
        rid = 'req-' + uuid.uuid4().hex
        body = sandbox(name(), labels={'a': 'b'})
        first = self.c.create(body, request_id=rid)
        again = self.c.create(body, request_id=rid)
        self.assertEqual(first.id, again.id)
        self.assertEqual(again.request_id, rid)
        # The request id may also ride in the sandbox itself.
        body2 = dict(body, requestId=rid)
        self.assertEqual(self.c.create(body2).id, first.id)
        # Same id, different content: refused, nothing created.
        before = len(self.c.list_all())
        changed = dict(body, labels={'a': 'c'})
        with self.assertRaises(grpc.RpcError) as cm:
            self.c.create(changed, request_id=rid)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.ALREADY_EXISTS)
        self.assertIn(first.id, cm.exception.details())
        self.assertEqual(len(self.c.list_all()), before)
        self.assertEqual(len([e for e in events(self.daemon, first.id)
                              if e['type_name'] == 'ACCEPTED']), 1)

    def test_conditional_delete(self):
        sb = self.c.wait_phase(self.c.create(sandbox(name())).id, 'READY')
        with self.assertRaises(grpc.RpcError) as cm:
            self.c.delete(sb.id, expected_rv=sb.resource_version + 1000)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.ABORTED)
        self.assertEqual(phase_name(self.c.get(sb.id)), 'READY')
        d = self.c.delete(sb.id, expected_rv=sb.resource_version)
        self.assertEqual(phase_name(d), 'DELETING')
        # Deleting again (even with a stale version) is not an error.
        again = self.c.delete(sb.id, expected_rv=sb.resource_version)
        self.assertIn(phase_name(again), ('DELETING', 'DELETED'))
        self.c.wait_phase(sb.id, 'DELETED')
        self.assertEqual(phase_name(self.c.delete(sb.id)), 'DELETED')

    def test_not_found_and_bad_requests(self):
        for sid in ('sb-00000000000000000000000000', 'nope', '../x'):
            with self.assertRaises(grpc.RpcError) as cm:
                self.c.get(sid)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND, sid)
        with self.assertRaises(grpc.RpcError) as cm:
            self.c.get('')
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        with self.assertRaises(grpc.RpcError) as cm:
            self.c.create(sandbox('Not_A_Name', labels={'bad key!': 'v'},
                                  owner='someone-else'))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        fields = sorted(v.field for v in self.protos.bad_request(
            self.protos.status_details(cm.exception)).field_violations)
        self.assertIn('sandbox.name', fields)
        self.assertIn('sandbox.owner', fields)
        self.assertTrue(any(f.startswith('sandbox.labels') for f in fields), fields)
        with self.assertRaises(grpc.RpcError) as cm:
            self.c.create(sandbox(name(), credentials=[{'credential': 'git', 'env': 'TOKEN'}]))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
        with self.assertRaises(grpc.RpcError) as cm:
            self.c.list(labelSelector='a in (')
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        with self.assertRaises(grpc.RpcError) as cm:
            self.c.list(pageToken='garbage!')
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

    def test_filters_and_selector(self):
        tenant = 't' + uuid.uuid4().hex[:8]
        ids = {}
        for i, (proj, tier) in enumerate([('p1', 'web'), ('p1', 'db'), ('p2', 'web')]):
            sb = self.c.create(sandbox(name(), tenant=tenant, project=proj,
                                       labels={'tier': tier, 'n': str(i)}))
            ids[(proj, tier)] = sb.id
        got = lambda **f: sorted(s.id for s in self.c.list_all(tenant=tenant, **f))
        self.assertEqual(got(), sorted(ids.values()))
        self.assertEqual(got(project='p1'), sorted([ids[('p1', 'web')], ids[('p1', 'db')]]))
        self.assertEqual(got(labelSelector='tier=web'),
                         sorted([ids[('p1', 'web')], ids[('p2', 'web')]]))
        self.assertEqual(got(labelSelector='tier!=web,n in (0,1)'), [ids[('p1', 'db')]])
        self.assertEqual(got(project='p2', labelSelector='!tier'), [])
        # A token belongs to its filters.
        first = self.c.list(tenant=tenant, pageSize=1)
        self.assertTrue(first.next_page_token)
        with self.assertRaises(grpc.RpcError) as cm:
            self.c.list(tenant=tenant, project='p1', pageToken=first.next_page_token)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

    def test_pagination_while_inserting_and_deleting(self):
        tenant = 't' + uuid.uuid4().hex[:8]
        originals = [self.c.create(sandbox(name(), tenant=tenant)).id for _ in range(40)]
        deleted = set(originals[5:40:7])
        seen = []
        token = ''
        pages = 0
        while True:
            resp = self.c.list(tenant=tenant, pageSize=7, pageToken=token)
            seen.extend(s.id for s in resp.sandboxes)
            pages += 1
            if pages == 2:
                # Changes between pages: new rows and deletions.
                for _ in range(10):
                    self.c.create(sandbox(name(), tenant=tenant))
                for sid in deleted:
                    self.c.delete(sid)
                for sid in deleted:
                    self.c.wait_phase(sid, 'DELETED')
            token = resp.next_page_token
            if not token:
                break
        self.assertEqual(len(seen), len(set(seen)), 'no sandbox twice')
        # Every original that was not deleted before its page was listed.
        survivors = [s for s in originals if s not in deleted]
        self.assertTrue(set(survivors) <= set(seen), set(survivors) - set(seen))
        # Over the maximum page size is clamped, not refused; deleted
        # sandboxes are listed only when asked for by phase.
        everything = self.c.list(pageSize=5000, tenant=tenant)
        self.assertEqual(everything.next_page_token, '')
        self.assertEqual(len(everything.sandboxes), 50 - len(deleted))
        tombstones = self.c.list_all(tenant=tenant, phase='SANDBOX_PHASE_DELETED')
        self.assertEqual(sorted(s.id for s in tombstones), sorted(deleted))

    def test_concurrent_creates_all_land(self):
        tenant = 't' + uuid.uuid4().hex[:8]
        errors = []
        made = []
        lock = threading.Lock()

        def worker(k):
            c = Client(self.admin_channel(self.daemon))
            for i in range(25):
                try:
                    sb = c.create(sandbox(name(), tenant=tenant), request_id='w%d-%d' % (k, i))
                    with lock:
                        made.append(sb.id)
                except grpc.RpcError as e:
                    errors.append(e)
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(len(set(made)), 200)
        self.assertEqual(sorted(s.id for s in self.c.list_all(tenant=tenant)), sorted(made))


@unittest.skipUnless(HAVE_BWRAP, 'bubblewrap cannot create namespaces here')
class RestartTest(DaemonTestCase):
    def test_restart_finds_running_sandboxes(self):
        d = self.start_daemon(config={'driver': {'name': 'process'}})
        c = Client(self.admin_channel(d))
        keep = c.create(sandbox(name())).id
        lost = c.create(sandbox(name())).id
        c.wait_phase(keep, 'READY')
        c.wait_phase(lost, 'READY')
        with open(os.path.join(process_dir(d, lost), 'sandbox.json')) as f:
            import json
            pid = json.load(f).get('pid')
        self.assertEqual(d.stop(), 0)
        # While the gateway is down one sandbox dies.
        os.kill(pid, 9)
        d.start()
        c = Client(self.admin_channel(d))
        self.assertEqual(phase_name(c.get(keep)), 'READY')
        failed = c.wait_phase(lost, 'FAILED')
        self.assertTrue(failed.status.message)
        # The survivor is still there and can be deleted.
        time.sleep(0.5)
        self.assertEqual(phase_name(c.get(keep)), 'READY')
        c.delete(keep)
        c.wait_phase(keep, 'DELETED')
        self.assertFalse(os.path.exists(process_dir(d, keep)))
        c.delete(lost)
        c.wait_phase(lost, 'DELETED')
        self.assertEqual(d.stop(), 0)
        d.check_clean_exit()


if __name__ == '__main__':
    unittest.main()
