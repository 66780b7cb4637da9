"""TokenReview (authentication.k8s.io/v1 tokenreviews, create only), as the
apiserver answers it: 201 with the TokenReview, its status filled. Which
tokens are valid is told through the admin API (POST /tokenreviews); a
token never told about, or revoked, is not authenticated.
"""
import json
import threading

from . import errors
from .errors import ApiError

GROUP = 'authentication.k8s.io'
VERSION = 'v1'
RESOURCE = 'tokenreviews'
# The apiserver's own audience: used when a review names none.
API_AUDIENCES = ['https://kubernetes.default.svc.cluster.local']


def handles(info):
    """Is this request for the tokenreviews resource?"""
    return info.is_resource and info.group == GROUP and info.version == VERSION \
        and info.resource == RESOURCE


def of(app):
    """The stand-in's TokenReviews, made on first use."""
    with _make_lock:
        if getattr(app, 'token_reviews', None) is None:
            app.token_reviews = TokenReviews()
        return app.token_reviews


_make_lock = threading.Lock()


def _bad_request(message):
    return ApiError(400, 'BadRequest', message)


class TokenReviews:
    def __init__(self):
        self.lock = threading.Lock()
        self.tokens = {}   # token -> {'username', 'uid', 'groups', 'audiences'}
        self.revoked = set()
        self.reviews = 0

    # --- admin --------------------------------------------------------------

    def admin(self, method, parts, body):
        """POST {token, username, uid, groups, audiences}: a valid token;
        POST {token, revoke: true}: revoked from now on; GET: counts;
        DELETE: forget every token."""
        if method == 'GET':
            with self.lock:
                return 200, {'tokens': len(self.tokens), 'revoked': len(self.revoked),
                             'reviews': self.reviews}
        if method == 'DELETE':
            with self.lock:
                self.tokens.clear()
                self.revoked.clear()
                self.reviews = 0
            return 200, {}
        if method != 'POST':
            return 405, {'error': 'method not allowed'}
        token = body['token']
        if not isinstance(token, str) or not token:
            raise ValueError('token: a non-empty string is required')
        with self.lock:
            if body.get('revoke'):
                self.revoked.add(token)
                return 200, {}
            self.revoked.discard(token)
            self.tokens[token] = {
                'username': body['username'],
                'uid': body.get('uid', ''),
                'groups': list(body.get('groups', [])),
                'audiences': list(body.get('audiences') or API_AUDIENCES),
            }
        return 200, {}

    # --- the API ------------------------------------------------------------

    def create(self, method, raw, entry):
        """Answer a request to the resource: (code, body)."""
        if method != 'POST':
            raise errors.method_not_allowed()
        try:
            review = json.loads(raw.decode('utf-8')) if raw else None
        except (UnicodeDecodeError, ValueError) as e:
            raise _bad_request('the body of the request was in an unknown format: %s' % e)
        if not isinstance(review, dict) or review.get('kind') != 'TokenReview' or \
                review.get('apiVersion') != GROUP + '/' + VERSION:
            raise _bad_request('the body is not an %s/%s TokenReview' % (GROUP, VERSION))
        spec = review.get('spec') or {}
        token = spec.get('token') or ''
        if isinstance(entry.get('body'), dict) and token:
            entry['body'] = dict(entry['body'], spec=dict(spec, token='<redacted>'))
        if not token:
            raise _bad_request('token is required for TokenReview in authentication')
        audiences = spec.get('audiences') or []
        with self.lock:
            self.reviews += 1
            status = self._status(token, audiences)
        out = {'kind': 'TokenReview', 'apiVersion': GROUP + '/' + VERSION,
               'metadata': {'creationTimestamp': None}, 'spec': spec, 'status': status}
        return 201, out

    def _status(self, token, audiences):
        user = self.tokens.get(token)
        if user is None or token in self.revoked:
            why = 'service account token has been invalidated' if user else \
                'token lookup failed'
            return {'user': {}, 'error': '[invalid bearer token, %s]' % why}
        wanted = audiences or API_AUDIENCES
        common = [a for a in wanted if a in user['audiences']]
        if not common:
            return {'user': {}, 'error': '[invalid bearer token, token audiences %s is '
                    'invalid for the target audiences %s]' % (
                        json.dumps(user['audiences']), json.dumps(wanted))}
        u = {'username': user['username'], 'groups': user['groups']}
        if user['uid']:
            u['uid'] = user['uid']
        return {'authenticated': True, 'user': u, 'audiences': common}
