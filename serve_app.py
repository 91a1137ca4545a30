"""The Ray Serve application, for `serve run` / `serve deploy` on a cluster.

The config comes from $MOTORAY_CONFIG (default ./motoray.yaml) and the API token
from $MOTORAY_API_TOKEN (or the config's server.auth_token), read where the
application is built: with a Serve config file, that is on the cluster, so give
them to the application there:

    applications:
    - name: motoray
      route_prefix: /
      import_path: serve_app:app
      runtime_env: {env_vars: {MOTORAY_CONFIG: /etc/motoray.yaml}}  # token in that file

`motoray serve` builds the same application and also sets host, port and TLS.
"""

from motoray.api.deployment import build_app

app = build_app()
