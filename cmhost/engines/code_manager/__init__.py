"""Code Manager: the API that deploys a puppetserver-driven server's control repository with
r10k, served over TLS by a supervised process of its own beside puppetserver.

    files.py     what the process and the driver share on disk: deploy requests, events
    deploys.py   the process's queue of deployments and their statuses
    api.py       its HTTPS API: POST /code-manager/v1/deploys, POST /code-manager/v1/webhook,
                 GET /code-manager/v1/deploys/status, as Puppet Enterprise documents them
    __main__.py  the process: `python -m cmhost.engines.code_manager` (secrets on stdin)
    side.py      the driver's side: the port, the process, deploy requests, events, health
"""
