from tests.s3server import s3_endpoint, s3_https_endpoint  # noqa: F401  (fixtures)
