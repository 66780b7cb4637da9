"""Shared pieces of the authorization tests: a policy-file builder, an
issuer of test JWTs written into a daemon's directory, and the helpers
that explain a failure caused by a missing feature instead of letting it
pass or skip silently."""
import os

from . import jwt as sgjwt

ALL_PERMISSIONS = ['sandboxes.*', 'events.*', 'credentials.*']


def role(permissions, on='own', **scopes):
    """A role: one operations entry plus the scope lists given."""
    r = {'operations': [{'permissions': list(permissions), 'on': on}]}
    r.update(scopes)
    return r


def bind_subjects(issuer, role_of_sub):
    """One binding per (JWT subject claim -> role name)."""
    return [{'roles': [r], 'subjects': [{'issuer': issuer, 'subject': sub}]}
            for sub, r in role_of_sub.items()]


def policy(issuers=(), roles=None, bindings=(), static_tokens=()):
    auth = {}
    if issuers:
        auth['jwt_issuers'] = [i.policy_entry() for i in issuers]
    if static_tokens:
        auth['static_tokens'] = [{'name': n, 'sha256': sgjwt.sha256_hex(t)}
                                 for n, t in static_tokens]
    out = {'authentication': auth} if auth else {}
    out['roles'] = roles or {}
    out['bindings'] = list(bindings)
    return out


def keydir(base, name='keys'):
    d = os.path.join(base, name)
    os.makedirs(d, exist_ok=True)
    return d


def unknown_key_hint(outcome, what):
    """A sentence for a cell that needs a driver_config key the noop driver
    refuses (its describe() is missing), or '' when that is not the cause."""
    if outcome.code == 'INVALID_ARGUMENT' and 'unknown key' in outcome.details:
        return ('\n  -> the noop driver refused the driver_config key (%s): this cell '
                'needs the noop driver to accept it under "placement" and report it as a '
                'placement fact through describe() (drivers/noop/noop_placement.h)' % what)
    return ''
