#!/usr/bin/python3
"""A stand-in Kubernetes API server for sandgate's tests.

usage: standin.py --state-dir DIR [--port 0] [--admin-port 0] [--token TOKEN]
                  [--namespaces a,b] [--ready-delay-ms N] [--crd-dir DIR]
                  [--history-size N] [--host 127.0.0.1] [-v]

Serves the Kubernetes API over HTTPS (bearer token) for the agent-sandbox
CRDs and the core kinds a sandbox client touches, with a simulated
controller, scheduler, kubelet and garbage collector behind it, and an
admin API on a separate loopback port for fault injection and the request
log. On start it writes DIR/standin.json ({"url", "ca_file", "token",
"admin_url", "kubeconfig", "pid"}) and DIR/kubeconfig, then serves until
SIGTERM or SIGINT. See tests/k8s/README.md.
"""
import argparse
import os
import signal
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from standin.server import App  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--state-dir', required=True)
    ap.add_argument('--port', type=int, default=0)
    ap.add_argument('--admin-port', type=int, default=0)
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--token', default=os.environ.get('STANDIN_TOKEN'))
    ap.add_argument('--namespaces', default='default')
    ap.add_argument('--ready-delay-ms', type=int, default=None)
    ap.add_argument('--history-size', type=int, default=None)
    ap.add_argument('--crd-dir', default=os.path.join(HERE, 'agent-sandbox', 'crds'))
    ap.add_argument('-v', '--verbose', action='store_true')
    args = ap.parse_args()

    config = {}
    if args.ready_delay_ms is not None:
        config['ready_delay_ms'] = args.ready_delay_ms
    if args.history_size is not None:
        config['history_size'] = args.history_size
    namespaces = [n for n in args.namespaces.split(',') if n]
    app = App(args.state_dir, args.crd_dir, token=args.token, namespaces=namespaces,
              config=config, verbose=args.verbose, host=args.host)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    app.start(args.port, args.admin_port)
    print('standin: serving %s (admin %s)' % (app.url, app.admin_url), flush=True)
    while not done.wait(1.0):
        pass
    app.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main())
