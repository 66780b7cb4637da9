"""Kubernetes error responses: the Status object and its constructors.

The constructors mirror k8s.io/apimachinery/pkg/api/errors, so the codes,
reasons, messages and details are the ones a real API server sends (see
section 3.3 of the Kubernetes API research note).
"""


class ApiError(Exception):
    """An error answered as a Status object with an HTTP code."""

    def __init__(self, code, reason, message, details=None, headers=None, metadata=None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}
        self.metadata = metadata or {}

    def status(self):
        body = {'kind': 'Status', 'apiVersion': 'v1', 'metadata': dict(self.metadata),
                'status': 'Failure', 'message': self.message, 'reason': self.reason}
        if self.details:
            body['details'] = self.details
        body['code'] = self.code
        return body


class PlainNotFound(Exception):
    """A path no API group serves: Go's http.NotFound, a plain-text body."""


def _details(gr, name, kind_override=None, **extra):
    d = {}
    if name:
        d['name'] = name
    if gr.group:
        d['group'] = gr.group
    d['kind'] = kind_override or gr.resource
    d.update({k: v for k, v in extra.items() if v is not None})
    return d


class GroupResource:
    """A resource's plural and group: renders as "sandboxes.agents.x-k8s.io"
    or, for the core group, just "pods"."""

    def __init__(self, resource, group=''):
        self.resource = resource
        self.group = group

    def __str__(self):
        return self.resource + ('.' + self.group if self.group else '')


def not_found(gr, name):
    return ApiError(404, 'NotFound', '%s "%s" not found' % (gr, name), _details(gr, name))


def already_exists(gr, name, deleting=False):
    prefix = 'object is being deleted: ' if deleting else ''
    return ApiError(409, 'AlreadyExists', '%s%s "%s" already exists' % (prefix, gr, name),
                    _details(gr, name))


def generate_name_conflict(gr, name):
    return ApiError(409, 'AlreadyExists',
                    '%s "%s" already exists, the server was not able to generate a unique '
                    'name for the object' % (gr, name),
                    _details(gr, name, retryAfterSeconds=1))


def conflict(gr, name, why):
    return ApiError(409, 'Conflict', 'Operation cannot be fulfilled on %s "%s": %s'
                    % (gr, name, why), _details(gr, name))


def stale_conflict(gr, name):
    return conflict(gr, name, 'the object has been modified; please apply your changes to '
                    'the latest version and try again')


def bad_request(message):
    return ApiError(400, 'BadRequest', message)


def unauthorized():
    return ApiError(401, 'Unauthorized', 'Unauthorized')


def forbidden(gr, name, why):
    if name:
        msg = '%s "%s" is forbidden: %s' % (gr, name, why)
    else:
        msg = '%s is forbidden: %s' % (gr, why)
    return ApiError(403, 'Forbidden', msg, _details(gr, name))


def method_not_allowed():
    return ApiError(405, 'MethodNotAllowed',
                    'the server does not allow this method on the requested resource')


def not_acceptable(types):
    return ApiError(406, 'NotAcceptable',
                    'only the following media types are accepted: %s' % ', '.join(types))


def unsupported_media_type(types):
    return ApiError(415, 'UnsupportedMediaType',
                    'the body of the request was in an unknown format - accepted media types '
                    'include: %s' % ', '.join(types))


def expired(message, continue_token=None):
    meta = {'continue': continue_token} if continue_token else None
    return ApiError(410, 'Expired', message, metadata=meta)


def too_many_requests(retry_after):
    return ApiError(429, 'TooManyRequests', 'Too many requests, please try again later.',
                    {'retryAfterSeconds': retry_after},
                    headers={'Retry-After': str(retry_after)})


def internal_error(why):
    return ApiError(500, 'InternalError', 'Internal error occurred: %s' % why,
                    {'causes': [{'message': why}]})


def service_unavailable(why):
    return ApiError(503, 'ServiceUnavailable', why)


def timeout(message, retry_after=None, causes=None):
    details = {}
    if causes:
        details['causes'] = causes
    if retry_after is not None:
        details['retryAfterSeconds'] = retry_after
    return ApiError(504, 'Timeout', message, details or None)


def invalid(qualified_kind, group, kind, name, field_errors):
    """422 Invalid from a list of FieldError: "<Kind>.<group> "name" is
    invalid: <errors>", several errors joined as "[e1, e2]"."""
    texts = [e.error() for e in field_errors]
    joined = texts[0] if len(texts) == 1 else '[' + ', '.join(texts) + ']'
    details = {}
    if name:
        details['name'] = name
    if group:
        details['group'] = group
    details['kind'] = kind
    details['causes'] = [e.cause() for e in field_errors]
    return ApiError(422, 'Invalid', '%s "%s" is invalid: %s' % (qualified_kind, name, joined),
                    details)


def generic_invalid(message):
    """422 with no field errors (e.g. a JSON patch that cannot be applied)."""
    return ApiError(422, 'Invalid', message)


def success_status(gr, name, uid):
    """The body of a DELETE that removed the object at once."""
    return {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Success',
            'details': _details(gr, name, uid=uid)}
