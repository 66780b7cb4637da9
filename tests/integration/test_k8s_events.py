"""Kubernetes Events about a sandbox's pod reach the sandbox's status: the
real binary with driver kubernetes, a grpcio client and the API stand-in
of tests/k8s/, whose simulated scheduler and kubelet emit the Events
(FailedScheduling; Failed for an image pull) that a cluster would.

The expected reason and message are read back from the stand-in's own
Events, never written down here.
"""
import datetime
import json
import time
import unittest
import urllib.parse
import urllib.request
import uuid

from sgtest import env
from sgtest.daemon import DaemonTestCase
from sgtest.sandboxes import Client, phase_name

from test_k8s_driver import HAVE_STANDIN, StandIn, body, driver_config, name

NS = 'sbx-default'


def ready_condition(sb):
    for c in sb.status.conditions:
        if c.type == 'Ready':
            return c
    return None


@unittest.skipUnless(HAVE_STANDIN, 'the Kubernetes API stand-in (tests/k8s/standin.py) is not there')
class K8sEventsTest(DaemonTestCase):
    def setUp(self):
        self.api = StandIn(ready_delay_ms=200)
        self.addCleanup(self.api.stop)
        self.api.namespace(NS)

    def gateway(self):
        d = self.start_daemon(config=driver_config(self.api.kubeconfig))
        return Client(self.admin_channel(d))

    def pod_events(self, sid, type_='Warning'):
        """The stand-in's Events of type_ about the pod of sandbox sid, oldest
        first (their names grow with time)."""
        sel = 'involvedObject.kind=Pod,involvedObject.name=sg-%s,type=%s' % (sid, type_)
        url = '%s/api/v1/namespaces/%s/events?fieldSelector=%s' % (
            self.api.info['url'], NS, urllib.parse.quote(sel))
        req = urllib.request.Request(url, headers={'Authorization': 'Bearer ' +
                                                   self.api.info['token']})
        with urllib.request.urlopen(req, timeout=10, context=self.api.ctx) as r:
            items = json.loads(r.read())['items']
        return sorted(items, key=lambda e: e['metadata']['name'])

    def wait_shown(self, c, sid, want, timeout=None):
        """Poll until the sandbox's Ready condition and status.message show
        want() (reason, message), which may change while we wait."""
        deadline = time.monotonic() + (timeout or env.scaled(20))
        sb = got = None
        while time.monotonic() < deadline:
            expected = want()
            sb = c.get(sid)
            cond = ready_condition(sb)
            got = (cond.reason if cond else '', sb.status.message)
            if expected is not None and got == expected:
                return sb
            time.sleep(0.05)
        self.fail('sandbox %s shows %r (%s), want %r' % (sid, got, phase_name(sb), want()))

    def latest_warning(self, sid):
        evs = self.pod_events(sid)
        return (evs[-1]['reason'], evs[-1]['message']) if evs else None

    def post_event(self, sid, reason, message):
        """A Warning Event about the pod of sid, as a kubelet would write it."""
        pods = self.api.admin('GET', '/objects?resource=pods&namespace=' + NS)['objects']
        pod = [p for p in pods if p['metadata']['name'] == 'sg-' + sid][0]
        ts = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
        ev = {'apiVersion': 'v1', 'kind': 'Event',
              'metadata': {'name': 'sg-%s.%s' % (sid, uuid.uuid4().hex[:12]),
                           'namespace': NS},
              'involvedObject': {'kind': 'Pod', 'namespace': NS, 'name': pod['metadata']['name'],
                                 'uid': pod['metadata']['uid'], 'apiVersion': 'v1'},
              'reason': reason, 'message': message, 'type': 'Warning',
              'source': {'component': 'kubelet'}, 'firstTimestamp': ts, 'lastTimestamp': ts,
              'count': 1}
        self.api.admin('POST', '/objects', ev)

    def test_unschedulable_stays_provisioning_with_the_scheduler_event(self):
        self.api.config(unschedulable_selector='it-case=unschedulable')
        c = self.gateway()
        stuck = c.create(body(name(), {'podLabels': {'it-case': 'unschedulable'}}))
        fine = c.create(body(name()))
        got = self.wait_shown(c, stuck.id, lambda: self.latest_warning(stuck.id))
        self.assertEqual(self.latest_warning(stuck.id)[0], 'FailedScheduling')
        self.assertEqual(phase_name(got), 'PROVISIONING')
        cond = ready_condition(got)
        self.assertEqual(cond.status, 3, cond)  # CONDITION_STATUS_UNKNOWN
        self.assertEqual(cond.message, got.status.message)
        # The other sandbox is not affected by its neighbour's events.
        self.assertEqual(phase_name(c.wait_phase(fine.id, ('READY', 'FAILED'))), 'READY')
        # The scheduler keeps retrying; an unschedulable pod is not a failure.
        time.sleep(env.scaled(1.5))
        self.assertEqual(phase_name(c.get(stuck.id)), 'PROVISIONING')

        # The same warning again writes nothing; a new one is written once.
        # (resource_version is one counter across the store: the next write
        # of any sandbox gets the highest one plus one.)
        rv = max(s.resource_version for s in c.list_all())
        reason, message = self.latest_warning(stuck.id)
        self.post_event(stuck.id, reason, message)
        self.post_event(stuck.id, 'FailedScheduling', message + ' (again, differently)')
        got = self.wait_shown(c, stuck.id,
                              lambda: ('FailedScheduling', message + ' (again, differently)'))
        self.assertEqual(got.resource_version, rv + 1)

        # Once the pod can be scheduled, the warning gives way and it runs.
        self.api.config(unschedulable_selector=None)
        got = c.wait_phase(stuck.id, ('READY', 'FAILED'), timeout=env.scaled(20))
        self.assertEqual(phase_name(got), 'READY', got.status.message)
        # The Sandbox's own Ready reason replaces the warning's.
        self.assertEqual(ready_condition(got).reason, 'DependenciesReady')
        c.delete(stuck.id)
        self.assertEqual(phase_name(c.wait_phase(stuck.id, ('DELETED',))), 'DELETED')

    def test_image_pull_failure_shows_the_kubelet_event(self):
        self.api.config(fail_image='no-such-image')
        c = self.gateway()
        sb = c.create(body(name(), image='registry.invalid/no-such-image:1'))
        got = self.wait_shown(c, sb.id, lambda: self.latest_warning(sb.id))
        reason, message = self.latest_warning(sb.id)
        self.assertEqual(reason, 'Failed')
        self.assertIn('ImagePull', message)
        # Kubernetes keeps retrying a pull, and the Sandbox stays not Ready
        # without a terminal reason: the driver maps that to PENDING, so the
        # sandbox stays PROVISIONING, saying why, until it is deleted.
        time.sleep(env.scaled(1))
        got = c.get(sb.id)
        self.assertEqual(phase_name(got), 'PROVISIONING')
        self.assertEqual((ready_condition(got).reason, got.status.message), (reason, message))
        c.delete(sb.id)
        self.assertEqual(phase_name(c.wait_phase(sb.id, ('DELETED',))), 'DELETED')

    def test_events_watch_lists_again_after_410(self):
        self.api.fault({'watch': True, 'resource': 'events', 'count': 1}, {'send_410': True})
        self.api.config(unschedulable=True)
        c = self.gateway()
        sb = c.create(body(name()))
        got = self.wait_shown(c, sb.id, lambda: self.latest_warning(sb.id))
        self.assertEqual(phase_name(got), 'PROVISIONING')
        faults = self.api.admin('GET', '/faults')['faults']
        self.assertEqual([f['fired'] for f in faults], [1])
        # The driver's own requests (this test's have other selectors).
        mine = [r for r in self.api.requests() if r.get('resource') == 'events'
                and r['params'].get('fieldSelector') == 'involvedObject.kind=Pod']
        lists = [r for r in mine if r.get('method') == 'GET' and not r.get('watch')]
        watches = [r for r in mine if r.get('watch')]
        self.assertGreaterEqual(len(lists), 2)  # the first list, and the one after 410
        self.assertGreaterEqual(len(watches), 2)
        self.assertEqual([r for r in self.api.requests() if r.get('resource') == 'events'
                          and r.get('method') != 'GET'], [])


if __name__ == '__main__':
    unittest.main()
