"""A local S3 peer: moto's server in its own process (a pytest plugin: `moto_endpoint` is
registered for every module by conftest.py). The bucket BUCKET exists in REGION."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

from support import free_port

BUCKET = "media"
REGION = "auto"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto S3 server of our own on a free port, with the bucket created."""
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which(
        "moto_server"
    )
    if exe is None:
        pytest.skip("S3 backend skipped: moto_server is not installed (dev dependency)")
    endpoint = f"http://127.0.0.1:{free_port()}"
    port = endpoint.rsplit(":", 1)[1]
    process = subprocess.Popen(  # noqa: S603 - our own dev tool, fixed arguments
        [exe, "-H", "127.0.0.1", "-p", port],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.skip(f"S3 backend skipped: moto_server did not start on {endpoint}")
                time.sleep(0.05)
        raw_client(endpoint).create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


def raw_client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
