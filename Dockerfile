# motoray in one container: a local Ray head, the API on :5000 and JupyterLab on :8888.
#   docker build -t motoray .
#   docker run --init -p 5000:5000 -p 8888:8888 --shm-size=2g \
#     -e MOTORAY_API_TOKEN=... -e JUPYTER_TOKEN=... motoray
# The base is the exact image the cluster nodes run (cluster.yaml): same Ray, Python and OS,
# so what works here works there. Its tag carries the Ray version pinned in pyproject.toml.
FROM rayproject/ray:2.60.0-py311-cpu

# The base image gives its `ray` user password-less sudo; a service container needs none.
# Numeric ids: ray = 1000, its group users = 100 in the base image.
USER 0
RUN gpasswd -d ray sudo && sed -i '/^ray ALL=NOPASSWD: ALL$/d' /etc/sudoers
USER 1000:100

WORKDIR /home/ray/motoray
COPY --chown=1000:100 . .
RUN pip install --no-cache-dir . jupyterlab==4.6.6 \
    && chmod 0755 docker/entrypoint.sh

EXPOSE 5000 8888
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:5000/healthz', timeout=4)"]
ENTRYPOINT ["/home/ray/motoray/docker/entrypoint.sh"]
