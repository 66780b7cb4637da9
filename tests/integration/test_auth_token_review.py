"""Kubernetes TokenReview for the JWTs of reviewed issuers, through the real
binary and the Kubernetes API stand-in (tests/k8s/): a valid token works and
its review is cached; a revoked one is refused once the positive cache has
expired; a never-valid one is refused and negatively cached; concurrent
calls with one token share one review; an API that cannot answer gives
UNAVAILABLE, never an allow; an issuer without token_review is never
reviewed."""
import os
import signal
import threading
import time
import unittest
import uuid

from sgtest import env, rpcs
from sgtest import jwt as sgjwt
from sgtest.authfix import keydir, policy, role
from sgtest.daemon import DaemonTestCase
from test_k8s_driver import HAVE_STANDIN, StandIn

U, UNAVAIL, OK = 'UNAUTHENTICATED', 'UNAVAILABLE', 'OK'
SA_ISS = 'https://kubernetes.default.svc.test'
OTHER_ISS = 'https://other.test'
AUDIENCE = 'sandgate'
TTL_S = 2
NEG_TTL_S = 2
LISTER = role(['sandboxes.*'], 'own', tenants=['*'], projects=['*'])
REVIEW_PATH = '/apis/authentication.k8s.io/v1/tokenreviews'


def sa_name():
    return 'system:serviceaccount:team-a:' + 'sa-' + uuid.uuid4().hex[:8]


def review_policy(base, kubeconfig, sa, other, **review):
    d = keydir(base)
    sa.write_jwks(os.path.join(d, 'sa-jwks.json'))
    other.write_jwks(os.path.join(d, 'other-jwks.json'))
    p = policy([sa, other], {'lister': LISTER},
               [{'roles': ['lister'], 'subjects': [{'issuer': SA_ISS, 'subject': '*'},
                                                   {'issuer': OTHER_ISS, 'subject': '*'}]}])
    p['authentication']['jwt_issuers'][0]['token_review'] = True
    section = {'kubeconfig': kubeconfig, 'audiences': [AUDIENCE], 'cache_ttl_s': TTL_S,
               'negative_cache_ttl_s': NEG_TTL_S, 'timeout_ms': 2000}
    section.update(review)
    p['authentication']['token_review'] = section
    return p


class ReviewBase(DaemonTestCase):
    """A stand-in, two issuers (one reviewed) and a gateway per class."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.api = StandIn()
        cls.sa = sgjwt.Issuer(SA_ISS, [sgjwt.Key.rsa('sa-1')], audiences=[AUDIENCE],
                              algorithms=['RS256'])
        cls.other = sgjwt.Issuer(OTHER_ISS, [sgjwt.Key.p256('o-1')], audiences=[AUDIENCE],
                                 algorithms=['ES256'])
        base = env.WORK_DIR or cls.api.dir
        cls.d = cls.start_class_daemon(
            policy=review_policy(os.path.join(base, cls.__name__ + '-keys'),
                                 cls.api.kubeconfig, cls.sa, cls.other),
            audit=True)

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.api.stop()

    def valid_token(self, lifetime=600):
        """A reviewed token the stand-in knows as valid."""
        sub = sa_name()
        tok = self.sa.token(sub, lifetime=lifetime)
        self.api.admin('POST', '/tokenreviews', {'token': tok, 'username': sub,
                                                 'uid': uuid.uuid4().hex,
                                                 'groups': ['system:serviceaccounts'],
                                                 'audiences': [AUDIENCE]})
        return tok

    def call(self, token):
        return rpcs.invoke(self.channel(self.d.address, token=token), 'ListSandboxes', {},
                           timeout=env.scaled(15))

    def reviews_since(self, seq):
        return [r for r in self.api.requests(seq) if r.get('path') == REVIEW_PATH]

    def assertRefused(self, out, code, token, text):
        self.assertEqual(out.code, code, out.details)
        self.assertIn(text, out.details)
        self.assertNotIn(token, out.details)
        self.assertNotIn(token.split('.')[2][-16:], out.details)


@unittest.skipUnless(HAVE_STANDIN, 'the Kubernetes API stand-in (tests/k8s/standin.py) is '
                     'not there')
class TokenReviewTest(ReviewBase):
    def test_valid_token_is_reviewed_once_within_the_ttl(self):
        tok = self.valid_token()
        seq = self.api.last_seq()
        for _ in range(5):
            out = self.call(tok)
            self.assertEqual(out.code, OK, out.details)
        reviews = self.reviews_since(seq)
        self.assertEqual(len(reviews), 1, reviews)
        r = reviews[0]
        self.assertEqual(r['method'], 'POST')
        self.assertEqual(r['status'], 201)
        self.assertEqual(r['body']['apiVersion'], 'authentication.k8s.io/v1')
        self.assertEqual(r['body']['kind'], 'TokenReview')
        self.assertEqual(r['body']['spec']['audiences'], [AUDIENCE])

    def test_revoked_token_is_refused_after_the_positive_cache_expires(self):
        tok = self.valid_token()
        self.assertEqual(self.call(tok).code, OK)
        self.api.admin('POST', '/tokenreviews', {'token': tok, 'revoke': True})
        # Still cached: revocation shows only after cache_ttl_s.
        self.assertEqual(self.call(tok).code, OK)
        time.sleep(TTL_S + 0.5)
        seq = self.api.last_seq()
        out = self.call(tok)
        self.assertRefused(out, U, tok, 'token was revoked or is not valid')
        self.assertIn('invalidated', out.details)
        self.assertEqual(len(self.reviews_since(seq)), 1)
        denials = [r for r in self.d.audit_records()
                   if r.get('code') == U and 'revoked' in (r.get('reason') or '')]
        self.assertTrue(denials, 'no audit record of the refusal')

    def test_never_valid_token_is_refused_and_negatively_cached(self):
        tok = self.sa.token(sa_name())   # verifies locally; unknown to the API
        seq = self.api.last_seq()
        for _ in range(4):
            self.assertRefused(self.call(tok), U, tok, 'token was revoked or is not valid')
        self.assertEqual(len(self.reviews_since(seq)), 1)
        time.sleep(NEG_TTL_S + 0.5)
        self.assertRefused(self.call(tok), U, tok, 'token was revoked or is not valid')
        self.assertEqual(len(self.reviews_since(seq)), 2)

    def test_token_of_an_unreviewed_issuer_makes_no_review(self):
        seq = self.api.last_seq()
        for _ in range(3):
            out = self.call(self.other.token('someone-' + uuid.uuid4().hex[:6]))
            self.assertEqual(out.code, OK, out.details)
        self.assertEqual(self.reviews_since(seq), [])

    def test_locally_invalid_token_is_never_reviewed(self):
        tok = self.sa.token(sa_name(), lifetime=-120)   # expired
        self.api.admin('POST', '/tokenreviews', {'token': tok, 'username': 'x',
                                                 'audiences': [AUDIENCE]})
        seq = self.api.last_seq()
        self.assertEqual(self.call(tok).code, U)
        self.assertEqual(self.reviews_since(seq), [])

    def test_a_reload_can_turn_reviews_on(self):
        plain = {k: v for k, v in self.d.policy.items()}
        plain['authentication'] = {
            'jwt_issuers': [dict(e) for e in self.d.policy['authentication']['jwt_issuers']]}
        plain['authentication']['jwt_issuers'][0].pop('token_review')
        d = self.start_daemon(policy=plain)
        tok = self.sa.token(sa_name())   # unknown to the API
        ch = self.channel(d.address, token=tok)
        seq = self.api.last_seq()
        self.assertEqual(rpcs.invoke(ch, 'ListSandboxes', {}).code, OK)
        self.assertEqual(self.reviews_since(seq), [])
        d.reload(self.d.policy)
        deadline = time.monotonic() + env.scaled(10)
        out = rpcs.invoke(ch, 'ListSandboxes', {})
        while out.code == OK and time.monotonic() < deadline:
            time.sleep(0.1)
            out = rpcs.invoke(ch, 'ListSandboxes', {})
        self.assertRefused(out, U, tok, 'token was revoked or is not valid')
        self.assertEqual(len(self.reviews_since(seq)), 1)

    def test_concurrent_calls_share_one_review(self):
        tok = self.valid_token()
        fid = self.api.fault({'path': REVIEW_PATH}, {'delay_ms': 600})['ids'][0]
        self.addCleanup(self.api.admin, 'DELETE', '/faults/%d' % fid)
        seq = self.api.last_seq()
        outs = []

        def one():
            outs.append(self.call(tok).code)
        threads = [threading.Thread(target=one) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(outs, [OK] * 6)
        self.assertEqual(len(self.reviews_since(seq)), 1)

    def test_api_errors_give_unavailable_and_are_not_cached(self):
        tok = self.valid_token()
        fid = self.api.fault({'path': REVIEW_PATH}, {'status': 503})['ids'][0]
        seq = self.api.last_seq()
        out = self.call(tok)
        self.assertRefused(out, UNAVAIL, tok, 'token review unavailable')
        # The first attempt and its retries, all refused.
        self.assertEqual(len(self.reviews_since(seq)), 3)
        self.api.admin('DELETE', '/faults/%d' % fid)
        self.assertEqual(self.call(tok).code, OK)


@unittest.skipUnless(HAVE_STANDIN, 'the Kubernetes API stand-in (tests/k8s/standin.py) is '
                     'not there')
class TokenReviewSlowApiTest(ReviewBase):
    """An API that does not answer: timeout_ms bounds the review, and a
    review pending at SIGTERM does not hold up the exit."""

    def setUp(self):
        fid = self.api.fault({'path': REVIEW_PATH}, {'delay_ms': 30000})['ids'][0]
        self.addCleanup(self.api.admin, 'DELETE', '/faults/%d' % fid)

    def test_hung_api_gives_unavailable_within_the_timeout(self):
        tok = self.valid_token()
        started = time.monotonic()
        out = self.call(tok)
        self.assertRefused(out, UNAVAIL, tok, 'token review unavailable')
        # timeout_ms is 2000; far less than the API's 30 s.
        self.assertLess(time.monotonic() - started, env.scaled(10))

    def test_review_pending_at_sigterm_ends_and_the_daemon_exits_cleanly(self):
        d = self.start_daemon(policy=self.d.policy)
        tok = self.valid_token()
        outs = []
        t = threading.Thread(target=lambda: outs.append(rpcs.invoke(
            self.channel(d.address, token=tok), 'ListSandboxes', {},
            timeout=env.scaled(20))))
        t.start()
        deadline = time.monotonic() + env.scaled(10)
        while not [r for r in self.api.requests() if r.get('path') == REVIEW_PATH
                   and r.get('status') is None] and time.monotonic() < deadline:
            time.sleep(0.05)
        d.signal(signal.SIGTERM)
        self.assertEqual(d.wait(env.scaled(15)), 0, d.tail())
        t.join(env.scaled(15))
        self.assertEqual(len(outs), 1)
        self.assertIn(outs[0].code, (UNAVAIL,), outs[0].details)
        self.assertNotIn(tok, outs[0].details)


@unittest.skipUnless(HAVE_STANDIN, 'the Kubernetes API stand-in (tests/k8s/standin.py) is '
                     'not there')
class TokenReviewApiDownTest(ReviewBase):
    def test_api_down_gives_unavailable(self):
        tok = self.valid_token()
        self.api.stop()
        out = self.call(tok)
        self.assertRefused(out, UNAVAIL, tok, 'token review unavailable')


if __name__ == '__main__':
    unittest.main()
